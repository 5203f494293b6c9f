// decode_extent_list must reject bad input with an error, and whatever it accepts must
// re-encode to exactly the input bytes.
#include "fuzz_common.h"
#include "object/tree.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    auto in = dvol_fuzz::as_bytes(data, size);
    auto list = dvol::decode_extent_list(in);
    if (!list) return 0;
    dvol_fuzz::check(!list->empty(), "fuzz_extent_list", "decode_extent_list accepted an empty list");
    dvol_fuzz::check(dvol_fuzz::same_bytes(in, dvol::encode_extent_list(*list)), "fuzz_extent_list",
                     "encode_extent_list(decode_extent_list(x)) != x");
    return 0;
}
