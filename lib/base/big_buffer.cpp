#include "base/big_buffer.h"

#include <sys/mman.h>

#include <cstdint>
#include <new>
#include <utility>

namespace dvol {

namespace {
constexpr size_t kHugePage = size_t{2} << 20;  // x86-64's and arm64's (4 KiB granule) PMD size
constexpr uintptr_t huge_down(uintptr_t x) { return x / kHugePage * kHugePage; }
constexpr uintptr_t huge_up(uintptr_t x) { return huge_down(x + kHugePage - 1); }
}  // namespace

BigBuffer::BigBuffer(size_t size) : size_(size) {
    if (size == 0) return;
    // Whole huge pages on a huge page boundary: map one more, then unmap the ends around it.
    mapped_ = huge_up(size);
    size_t over = mapped_ + kHugePage;
    void* p = ::mmap(nullptr, over, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    auto start = reinterpret_cast<uintptr_t>(p);
    uintptr_t aligned = huge_up(start);
    if (aligned > start) ::munmap(p, aligned - start);
    uintptr_t end = start + over, used_end = aligned + mapped_;
    if (end > used_end) ::munmap(reinterpret_cast<void*>(used_end), end - used_end);
    data_ = reinterpret_cast<std::byte*>(aligned);
    // A hint: without THP (or with it off) the buffer is plain pages, and works the same.
    (void)::madvise(data_, mapped_, MADV_HUGEPAGE);
}

BigBuffer::~BigBuffer() { release(); }

BigBuffer::BigBuffer(BigBuffer&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)), mapped_(std::exchange(o.mapped_, 0)) {}

BigBuffer& BigBuffer::operator=(BigBuffer&& o) noexcept {
    if (this != &o) {
        release();
        data_ = std::exchange(o.data_, nullptr);
        size_ = std::exchange(o.size_, 0);
        mapped_ = std::exchange(o.mapped_, 0);
    }
    return *this;
}

void BigBuffer::release() {
    if (data_) ::munmap(data_, mapped_);
    data_ = nullptr;
    size_ = mapped_ = 0;
}

void advise_huge_pages(void* p, size_t n) {
    auto start = reinterpret_cast<uintptr_t>(p);
    uintptr_t first = huge_up(start), end = huge_down(start + n);
    if (end > first) (void)::madvise(reinterpret_cast<void*>(first), end - first, MADV_HUGEPAGE);
}

void reserve_huge(std::vector<std::byte>& v, size_t n) {
    if (v.capacity() >= n) return;
    v.reserve(n);
    advise_huge_pages(v.data(), v.capacity());
}

}  // namespace dvol
