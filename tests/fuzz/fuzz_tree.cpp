// decode_tree must reject bad input with an error, and whatever it accepts must re-encode to
// exactly the input bytes (one tree, one encoding, one id).
#include "fuzz_common.h"
#include "object/tree.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    auto in = dvol_fuzz::as_bytes(data, size);
    auto tree = dvol::decode_tree(in);
    if (!tree) return 0;
    dvol_fuzz::check(dvol_fuzz::same_bytes(in, dvol::encode_tree(*tree)), "fuzz_tree",
                     "encode_tree(decode_tree(x)) != x");
    return 0;
}
