// decode_commit must reject bad input with an error; whatever it accepts, encode_commit must
// accept too and turn back into exactly the input bytes (one commit, one encoding, one id).
#include "fuzz_common.h"
#include "object/commit.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    auto in = dvol_fuzz::as_bytes(data, size);
    auto commit = dvol::decode_commit(in);
    if (!commit) return 0;
    auto again = dvol::encode_commit(*commit);
    dvol_fuzz::check(again.ok(), "fuzz_commit", "encode_commit rejected a commit that decode_commit accepted");
    dvol_fuzz::check(dvol_fuzz::same_bytes(in, *again), "fuzz_commit", "encode_commit(decode_commit(x)) != x");
    return 0;
}
