// A buffer of several MiB that a command fills and refills (the chunker's read buffers): a
// mapping of its own, backed by transparent huge pages where the kernel offers them
// (madvise(MADV_HUGEPAGE); THP in "madvise" mode, as Debian ships it, gives them to no one
// else). Filled the first time, it costs a page fault per 2 MiB instead of one per 4 KiB: on a
// VM where a fault costs 11-14 us, 3,072 faults per 12 MiB buffer (docs/DECISIONS.md, "Buffers
// kept, on huge pages"). Not zero-filled by us: a page is touched only when written.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

namespace dvol {

class BigBuffer {
public:
    BigBuffer() = default;
    // Throws std::bad_alloc when the memory cannot be mapped.
    explicit BigBuffer(size_t size);
    ~BigBuffer();
    BigBuffer(BigBuffer&& o) noexcept;
    BigBuffer& operator=(BigBuffer&& o) noexcept;
    BigBuffer(const BigBuffer&) = delete;
    BigBuffer& operator=(const BigBuffer&) = delete;

    std::byte* data() const { return data_; }
    size_t size() const { return size_; }
    std::span<std::byte> span() const { return {data_, size_}; }

private:
    void release();
    std::byte* data_ = nullptr;
    size_t size_ = 0;
    size_t mapped_ = 0;  // bytes mapped at data_ (size_ rounded up to whole huge pages)
};

// The same hint for memory the caller already has, not yet touched (a vector's storage just
// reserved, which an interface fills as a vector): the whole huge pages inside [p, p + n).
void advise_huge_pages(void* p, size_t n);

// Grows v's capacity to at least n at once (not chunk by chunk, each growth touching new
// memory), the new storage with that hint; nothing happens when it holds n already.
void reserve_huge(std::vector<std::byte>& v, size_t n);

}  // namespace dvol
