// Holding a volume's users still around a change of its live data (LiveDataHooks).
#pragma once

#include "base/error.h"
#include "repo/repository.h"

namespace dvol {

// Calls hooks.quiesce in start() and hooks.resume when it goes, if start() succeeded.
class Quiesced {
public:
    explicit Quiesced(const LiveDataHooks& hooks) : hooks_(hooks) {}
    Status start() {
        if (hooks_.quiesce) DVOL_CHECK(hooks_.quiesce());
        started_ = true;
        return {};
    }
    ~Quiesced() {
        if (started_ && hooks_.resume) hooks_.resume();
    }
    Quiesced(const Quiesced&) = delete;
    Quiesced& operator=(const Quiesced&) = delete;

private:
    const LiveDataHooks& hooks_;
    bool started_ = false;
};

}  // namespace dvol
