# Shared helpers for the black-box CLI tests. Source it from a test script:
#
#   . "$(dirname "$0")/lib.sh"
#
# It gives each test a fresh temporary pool ($DVOL_ROOT, removed on exit), an isolated $HOME
# (so the user's own git identity does not leak into commits), and these checks:
#
#   run CMD...                    run CMD; its stdout, stderr and exit code land in
#                                 $OUT, $ERR and $RC (never fails by itself)
#   expect_ok CMD...              CMD exits 0
#   expect_fail CODE CMD...       CMD exits with CODE and says something on stderr
#   expect_stderr_contains STR    the last command's stderr contains STR
#   expect_stderr_one_line        the last command's stderr is exactly one line
#   expect_stdout_contains STR    the last command's stdout contains STR
#   expect_stdout_eq STR          the last command's stdout is exactly STR (trailing newline
#                                 aside)
#   expect_eq WHAT EXPECTED ACTUAL
#   check WHAT CMD...             CMD (any shell command or test) succeeds
#   finish                        prints "N checks passed" (or the failures) and exits
#
# A failed check prints "FAIL: ..." with the command, exit code and output, and the test goes
# on so that one run shows every failure; `finish` then exits 1. Where nothing sensible can
# follow a failure, write `expect_ok ... || abort`.
#
# `dvol ARGS...` runs the binary under test ($DVOL) with --disable-docker-integration, so the
# tests never depend on a Docker daemon. Use "$DVOL" directly to run it exactly as given.

set -u
set -o pipefail

if [ -z "${DVOL:-}" ]; then
    echo "FAIL: set DVOL to the dvol binary under test" >&2
    exit 1
fi
if [ ! -x "$DVOL" ]; then
    echo "FAIL: DVOL=$DVOL is not an executable file" >&2
    exit 1
fi

TEST_NAME=$(basename "$0" .sh)
CHECKS=0
FAILURES=0
FAILED_CHECKS=()

TEST_TMP=$(mktemp -d "${TMPDIR:-/tmp}/dvol-$TEST_NAME.XXXXXX")
cleanup() {
    # Restore permissions a test may have taken away so that rm can descend everywhere.
    chmod -R u+rwX "$TEST_TMP" 2>/dev/null
    rm -rf "$TEST_TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export DVOL_ROOT="$TEST_TMP/pool"
mkdir -p "$DVOL_ROOT" "$TEST_TMP/home" "$TEST_TMP/work"
export HOME="$TEST_TMP/home"
export XDG_CONFIG_HOME="$TEST_TMP/home/.config"
export LC_ALL=C
export TZ=UTC
unset DOCKER_HOST

OUT_FILE="$TEST_TMP/.stdout"
ERR_FILE="$TEST_TMP/.stderr"
OUT=""
ERR=""
RC=0
LAST_CMD=""

dvol() { "$DVOL" --disable-docker-integration "$@"; }

MIB=$((1024 * 1024))
T=120  # seconds before a hung command counts as a failure

# dvol under a time limit, so that a hang fails the test instead of hanging it.
tdvol() { timeout "$T" "$DVOL" --disable-docker-integration "$@"; }

# manifest DIR: every entry's type, mode and path, files' size, mtime and SHA-256, symlink targets.
manifest() {
    (
        cd "$1" || exit 1
        find . -mindepth 1 \( -type f -printf '%y %m %s %T@ %p\n' \) -o -printf '%y %m %p -> %l\n' | LC_ALL=C sort
        find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum
    )
}

# apt_install PKG...: installs Debian packages with scripts/apt-install.sh (as every script of the
# project does: no recommended packages, non-interactive, an update and a retry when the first try
# fails), without letting their services start: the e2e tests run their own servers. Its output
# goes to $APT_LOG, whose end it prints when the install fails; the callers check for what they
# need afterwards.
APT_LOG="$TEST_TMP/apt.log"
APT_INSTALL="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/scripts/apt-install.sh"
apt_install() {
    "$APT_INSTALL" --no-start --log "$APT_LOG" --what "for $TEST_NAME" "$@"
    return 0
}

# The last errors apt-get printed, on one line.
apt_errors() { grep -E '^(E|W):' "$APT_LOG" | tail -n 3 | tr '\n' ' '; }

# Quotes a command for messages.
show_cmd() {
    local s="" a
    for a in "$@"; do s+="$(printf '%q' "$a") "; done
    printf '%s' "${s% }"
}

pass() { CHECKS=$((CHECKS + 1)); }

fail() {
    CHECKS=$((CHECKS + 1))
    FAILURES=$((FAILURES + 1))
    FAILED_CHECKS+=("$1")
    {
        echo "FAIL: $1"
        if [ -n "${2:-}" ]; then printf '%s\n' "$2" | sed 's/^/    /'; fi
    } >&2
    return 1
}

# Details of the last command for a failure message.
last_details() {
    printf 'command: %s\nexit code: %s\nstdout: %s\nstderr: %s' "$LAST_CMD" "$RC" \
        "$(printf '%s' "$OUT" | head -c 2000)" "$(printf '%s' "$ERR" | head -c 2000)"
}

abort() {
    echo "ABORT: $TEST_NAME cannot go on after the failure above" >&2
    finish
}

run() {
    LAST_CMD=$(show_cmd "$@")
    "$@" >"$OUT_FILE" 2>"$ERR_FILE" </dev/null
    RC=$?
    OUT=$(cat "$OUT_FILE")
    ERR=$(cat "$ERR_FILE")
    return 0
}

# run, with stdin taken from the string $1.
run_input() {
    local input=$1
    shift
    LAST_CMD="$(show_cmd "$@") <<< $(printf '%q' "$input")"
    printf '%s' "$input" | "$@" >"$OUT_FILE" 2>"$ERR_FILE"
    RC=$?
    OUT=$(cat "$OUT_FILE")
    ERR=$(cat "$ERR_FILE")
    return 0
}

crashed() {
    # A message a user should never see: a crash, an uncaught exception, a sanitizer report.
    printf '%s' "$ERR" | grep -qE 'terminate called|Assertion .* failed|Segmentation fault|AddressSanitizer|runtime error:|what\(\):'
}

expect_ok() {
    run "$@"
    if [ "$RC" -ne 0 ]; then
        fail "expected success: $LAST_CMD" "$(last_details)"
        return 1
    fi
    if crashed; then
        fail "crash report on stderr: $LAST_CMD" "$(last_details)"
        return 1
    fi
    pass
}

expect_fail() {
    local code=$1
    shift
    run "$@"
    if [ "$RC" -ne "$code" ]; then
        fail "expected exit code $code: $LAST_CMD" "$(last_details)"
        return 1
    fi
    if [ -z "$ERR" ]; then
        fail "expected a message on stderr: $LAST_CMD" "$(last_details)"
        return 1
    fi
    if crashed; then
        fail "crash report on stderr: $LAST_CMD" "$(last_details)"
        return 1
    fi
    pass
}

expect_stderr_contains() {
    if [[ "$ERR" != *"$1"* ]]; then
        fail "stderr should contain '$1': $LAST_CMD" "$(last_details)"
        return 1
    fi
    pass
}

expect_stderr_one_line() {
    local n
    n=$(printf '%s\n' "$ERR" | wc -l)
    [ -z "$ERR" ] && n=0
    if [ "$n" -ne 1 ]; then
        fail "stderr should be exactly one line (it has $n): $LAST_CMD" "$(last_details)"
        return 1
    fi
    pass
}

expect_stdout_contains() {
    if [[ "$OUT" != *"$1"* ]]; then
        fail "stdout should contain '$1': $LAST_CMD" "$(last_details)"
        return 1
    fi
    pass
}

expect_stdout_eq() {
    if [ "$OUT" != "$1" ]; then
        fail "stdout differs from what was expected: $LAST_CMD" \
            "$(printf -- '--- expected\n%s\n--- actual\n%s\n--- diff\n%s' "$1" "$OUT" \
                "$(diff <(printf '%s\n' "$1") <(printf '%s\n' "$OUT") | head -40)")"
        return 1
    fi
    pass
}

expect_eq() {
    local what=$1 expected=$2 actual=$3
    if [ "$expected" != "$actual" ]; then
        fail "$what" "$(printf -- '--- expected\n%s\n--- actual\n%s\n--- diff\n%s' "$expected" "$actual" \
            "$(diff <(printf '%s\n' "$expected") <(printf '%s\n' "$actual") | head -40)")"
        return 1
    fi
    pass
}

check() {
    local what=$1
    shift
    if ! "$@"; then
        fail "$what" "check: $(show_cmd "$@")"
        return 1
    fi
    pass
}

# Evaluates a python3 expression over the JSON document in $OUT; `d` is the document.
# json_check WHAT EXPR
json_check() {
    local what=$1 expr=$2 res
    if ! res=$(printf '%s' "$OUT" | python3 -c '
import json, sys
d = json.load(sys.stdin)
ok = eval(sys.argv[1])
sys.exit(0 if ok else 3)' "$expr" 2>&1); then
        fail "$what (json: $expr)" "$(printf '%s\n' "$res"; last_details)"
        return 1
    fi
    pass
}

# A stable listing of a directory tree: type, mode, owner, mtime, size, link target per path,
# and the content hash of every regular file. Directory mtimes are included unless
# TREE_NO_DIR_MTIME=1.
tree_listing() {
    local dir=$1
    (
        cd "$dir" || exit 1
        if [ "${TREE_NO_DIR_MTIME:-0}" = 1 ]; then
            find . -mindepth 1 \( -type d -printf '%P %y %m %U %G - - %l\n' \) -o \
                -printf '%P %y %m %U %G %T@ %s %l\n'
        else
            find . -mindepth 1 -printf '%P %y %m %U %G %T@ %s %l\n'
        fi | LC_ALL=C sort
        find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum
    )
}

# Everything that says what state a pool is in: the files under it (except the SQLite files,
# whose pages may be rewritten without a change of state) and what dvol reports about every
# volume.
# The pool's own directory is left out: SQLite creates and removes its journal files there, so
# its mtime moves with every command.
pool_state() {
    local v
    echo "== list"
    dvol list 2>&1
    for v in $(dvol --json list 2>/dev/null | python3 -c 'import json,sys; [print(v["name"]) for v in json.load(sys.stdin)]'); do
        echo "== $v"
        dvol log "$v" 2>&1
        dvol branch "$v" 2>&1
        dvol status "$v" 2>&1
    done
    echo "== config"
    dvol config user.name 2>&1
    dvol config user.email 2>&1
    echo "== files"
    (
        cd "$DVOL_ROOT" || exit 1
        find . -mindepth 1 -path ./dvol.db\* -prune -o -printf '%P %y %m %U %G %T@ %s %l\n' | LC_ALL=C sort
        find . -mindepth 1 -path ./dvol.db\* -prune -o -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum
    )
}

finish() {
    if [ "$FAILURES" -gt 0 ]; then
        echo "$TEST_NAME: $FAILURES of $CHECKS checks FAILED:"
        local f
        for f in "${FAILED_CHECKS[@]}"; do echo "  - $f"; done
        exit 1
    fi
    echo "$TEST_NAME: $CHECKS checks passed"
    exit 0
}

# Writes N bytes of random data to FILE.
random_file() {
    head -c "$2" /dev/urandom >"$1"
}
