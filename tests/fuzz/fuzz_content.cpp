// decode_content (a file's content field, as the stat cache stores it) must reject bad input
// with an error, and whatever it accepts must re-encode to exactly the input bytes.
#include "fuzz_common.h"
#include "object/tree.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    auto in = dvol_fuzz::as_bytes(data, size);
    auto content = dvol::decode_content(in);
    if (!content) return 0;
    dvol_fuzz::check(dvol_fuzz::same_bytes(in, dvol::encode_content(*content)), "fuzz_content",
                     "encode_content(decode_content(x)) != x");
    return 0;
}
