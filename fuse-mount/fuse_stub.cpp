// fuse-mount without libfuse (meson -Dfuse=disabled, or libfuse3-dev missing): dvol mount says so.
#include "serve.h"

namespace dvol::mountfs {

bool fuse_built() { return false; }

Status serve(CommitFs&, const ServeConfig&, const Logger&, const std::function<void(const Status&)>& ready) {
    Error e = make_error(Errc::unsupported, "this dvol was built without FUSE support (install libfuse3-dev and build again)");
    ready(e);
    return e;
}

}  // namespace dvol::mountfs
