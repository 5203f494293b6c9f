#include "remote/pack_upload.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include "meta/db.h"
#include "store/pack_format.h"

namespace dvol::remote {

PackUpload::~PackUpload() { discard(); }

void PackUpload::discard() {
    if (!fd_.valid()) return;
    ::unlink(path_.c_str());
    fd_.reset();
    entries_.clear();
    size_ = 0;
}

Status PackUpload::start() {
    path_ = tmp_dir_ + "/push-" + random_name() + ".pack";
    DVOL_TRY(fd_, open_file(path_, O_RDWR | O_CREAT | O_EXCL, 0600));
    // Held while the file lives: the store's cleanup removes only files nobody holds.
    if (::flock(fd_.get(), LOCK_EX | LOCK_NB) != 0) return errno_error("lock", path_);
    auto hdr = pack_header();
    DVOL_CHECK(write_all(fd_.get(), hdr, path_));
    (void)hash_.finish();  // a fresh hash, whatever an earlier pack left in it
    hash_.update(hdr);
    size_ = kPackHeaderSize;
    return {};
}

Status PackUpload::add(const ObjectId& id, std::span<const std::byte> record, uint32_t stored_len, uint32_t raw_len) {
    if (!fd_.valid()) DVOL_CHECK(start());
    DVOL_CHECK(pwrite_all(fd_.get(), record, size_, path_));
    hash_.update(record);
    entries_.push_back(IndexEntry{id, size_, stored_len, raw_len});
    size_ += record.size();
    ++stats_.objects;
    if (size_ >= target_) DVOL_CHECK(finish());
    return {};
}

Status PackUpload::finish() {
    if (!fd_.valid()) return {};
    ObjectId sum = hash_.finish();  // of the whole file: the pack's name, and its payload hash for S3
    std::string name = sum.hex();
    PackIndexFile index{kind_, size_, entries_};
    auto encoded = encode_pack_index(index);
    // The pack first, its index after: an index names only a pack that is there in full.
    DVOL_CHECK(backend_.write_file_hashed(pack_key(name), fd_.get(), size_, sum));
    DVOL_CHECK(backend_.write(index_key(name), encoded));
    std::vector<meta::RemoteIndex::Record> records;
    records.reserve(entries_.size());
    for (const auto& e : entries_) records.push_back({e.id, e.offset, e.stored_len, e.raw_len});
    {
        DVOL_TRY(auto txn, meta::Db::Transaction::begin(db_));
        DVOL_CHECK(index_.add_pack(remote_, name, static_cast<int>(kind_), size_, records));
        DVOL_CHECK(txn.commit());
    }
    ++stats_.packs;
    stats_.bytes += size_;
    if (on_upload_) on_upload_(size_);
    discard();
    return {};
}

}  // namespace dvol::remote
