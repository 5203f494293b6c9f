#!/bin/sh
# Short fuzz run for the normal test command: builds the libFuzzer targets in ./build-fuzz with
# clang and runs each for DVOL_FUZZ_SECONDS (default 10) seconds via `meson test --suite fuzz`.
# Exit status is non-zero when a target crashes (crash inputs: build-fuzz/tests/fuzz/artifacts/).
# Needs clang++ with libFuzzer (Debian 12: clang-14 libclang-rt-14-dev); installs them when
# missing and running as root (or with password-less sudo), otherwise prints SKIP and exits 0.
set -eu
cd "$(dirname "$0")/../.."

CXX_FUZZ="${CXX_FUZZ:-clang++}"
seconds="${DVOL_FUZZ_SECONDS:-10}"

probe_dir=$(mktemp -d "${TMPDIR:-/tmp}/dvol-fuzz-probe.XXXXXX")
trap 'rm -rf "$probe_dir"' EXIT INT TERM
can_fuzz() {
  command -v "$CXX_FUZZ" >/dev/null 2>&1 || return 1
  printf '%s\n' '#include <cstddef>' '#include <cstdint>' \
    'extern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }' >"$probe_dir/probe.cpp"
  "$CXX_FUZZ" -fsanitize=fuzzer,address,undefined "$probe_dir/probe.cpp" -o "$probe_dir/probe" >/dev/null 2>&1
}

if ! can_fuzz; then
  if [ "$(id -u)" -ne 0 ] && ! { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; }; then
    echo "ci_fuzz: SKIP: $CXX_FUZZ with libFuzzer is missing and cannot install clang-14 libclang-rt-14-dev without root"
    exit 0
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "ci_fuzz: SKIP: $CXX_FUZZ with libFuzzer is missing and there is no apt-get to install it"
    exit 0
  fi
  ./scripts/apt-install.sh --what "the fuzz targets" clang-14 libclang-rt-14-dev
  command -v "$CXX_FUZZ" >/dev/null 2>&1 || CXX_FUZZ=clang++-14
  if ! can_fuzz; then
    echo "ci_fuzz: $CXX_FUZZ still cannot build a libFuzzer target after installing clang-14 libclang-rt-14-dev" >&2
    exit 1
  fi
fi

if [ ! -f build-fuzz/build.ninja ]; then
  CXX="$CXX_FUZZ" meson setup build-fuzz -Dfuzz=true -Dtests=true --wrap-mode=nodownload
else
  meson configure build-fuzz -Dfuzz=true -Dtests=true
fi
# Only the fuzzers and the seed generator; the rest of the clang build is not needed here.
ninja -C build-fuzz fuzzers
# run_fuzz.sh reads DVOL_FUZZ_SECONDS; the meson timeout (120 s) grows with it.
DVOL_FUZZ_SECONDS="$seconds" meson test -C build-fuzz --suite fuzz --no-rebuild --print-errorlogs \
  --timeout-multiplier=$((seconds / 60 + 1))
