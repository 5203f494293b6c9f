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
#   section NAME                  starts a named part of the test: prints "== NAME" and, for the
#                                 part before, how long it took (to see where the time goes;
#                                 never checked)
#   run_cases NAME...             runs the functions case_NAME side by side, each on its own copy
#                                 of the store (see "Cases run side by side" below)
#   long_or SHORT LONG            SHORT, or LONG when DVOL_TEST_LONG=1 (loop counts)
#   is_mounted DIR                a dvol FUSE mount is on DIR
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
declare -A CASE_PID=() CASE_START=()  # run_cases: the running cases' pids and start times
CHECKS=0
FAILURES=0
FAILED_CHECKS=()

TEST_TMP=$(mktemp -d "${TMPDIR:-/tmp}/dvol-$TEST_NAME.XXXXXX")
cleanup() {
    # Cases of run_cases still running (the test was interrupted): they go first.
    local pid
    for pid in "${CASE_PID[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${CASE_PID[@]}"; do wait "$pid" 2>/dev/null; done
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

# python3 (for reading dvol's JSON) is Debian's, which scripts/setup.sh installs, when it is there:
# a python3 found first on PATH may be a version manager's shim that costs several times the
# interpreter's own start-up, and the tests start python3 thousands of times.
if [ -x /usr/bin/python3 ]; then
    python3() { /usr/bin/python3 "$@"; }
fi

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

# is_mounted DIR: a dvol FUSE mount is on DIR (/proc/self/mountinfo: field 5 the mount point, the
# type after the " - " separator).
is_mounted() {
    awk -v d="$1" '$5 == d { for (i = 6; i <= NF; i++) if ($i == "-") { if ($(i + 1) == "fuse.dvol") f = 1; break } }
                   END { exit !f }' /proc/self/mountinfo
}

# unmount_dvol_mounts DIR...: ends the dvol mounts on these directories (dvol umount, else a lazy
# detach), for the EXIT traps of tests that mount.
unmount_dvol_mounts() {
    local d
    for d in "$@"; do
        if is_mounted "$d"; then
            "$DVOL" umount "$d" >/dev/null 2>&1 || umount -l "$d" 2>/dev/null || fusermount3 -u -z "$d" 2>/dev/null
        fi
    done
}

# use_store NAME: a fresh store under the test's directory.
use_store() {
    export DVOL_ROOT="$TEST_TMP/$1"
    mkdir -p "$DVOL_ROOT"
}

# refs_state VOLUME: the volume's log, branches and reflog, to compare before and after.
refs_state() {
    tdvol log --json "$1" 2>&1
    tdvol branch --json "$1" 2>&1
    tdvol reflog --json "$1" 2>&1
}

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

# Runs CMD... (a script that checks something and exits 0 when it holds): pass, or fail with
# what it printed.
expect_script_ok() {
    local what=$1
    shift
    run "$@"
    if [ "$RC" -ne 0 ]; then
        fail "$what" "$(last_details)"
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
    if [ -n "${CASE:-}" ]; then  # the end of one case of run_cases: hand its counts back
        {
            echo "$CHECKS $FAILURES"
            [ "$FAILURES" -gt 0 ] && printf '%s\n' "${FAILED_CHECKS[@]}"
        } >"$TEST_TMP/.result"
        exit $((FAILURES > 0))
    fi
    section_end
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

# --- timing -----------------------------------------------------------------------------------------
# section NAME: "== NAME" on stdout; the part before it gets a line with its wall time. Only for
# reading a test's log (where did the time go?): no check ever depends on it.
SECTION="" SECTION_START=$EPOCHREALTIME
section_end() {
    [ -n "$SECTION" ] || return 0
    local ms=$(((${EPOCHREALTIME/./} - ${SECTION_START/./}) / 1000))
    printf '   (%s: %d.%01d s)\n' "$SECTION" $((ms / 1000)) $((ms % 1000 / 100))
}
section() {
    section_end
    SECTION=$1 SECTION_START=$EPOCHREALTIME
    echo "== $1"
}

# long_or SHORT LONG: loop counts. CI runs the short form; DVOL_TEST_LONG=1 gives the long one
# (what the test ran before it was cut down for CI), for a thorough run by hand.
long_or() { if [ "${DVOL_TEST_LONG:-0}" = 1 ]; then echo "$2"; else echo "$1"; fi; }

# --- cases run side by side -----------------------------------------------------------------------
# run_cases NAME...: runs the functions case_NAME at the same time, at most $DVOL_TEST_JOBS at once
# (default: the number of CPUs plus one, at least 3: the cases wait on fsync and on each other's
# processes as much as they compute), and returns when all have ended.
#
# Each case runs in a subshell of its own, in the background, with
#   - its own copy of the store as it is when run_cases is called: what the script set up before
#     is shared, not made again, and cases cannot see each other's changes;
#   - its own $TEST_TMP ($TEST_TMP/case.NAME), holding that store as $DVOL_ROOT, its $OUT/$ERR
#     files and a work/ directory; paths computed before run_cases point into the shared store,
#     so a case computes its own (V1=$DVOL_ROOT/volumes/..., $(dvol path VOL));
#   - CASE=NAME, its own check counts, and `finish` (or `abort`) ending just the case;
#   - after case_NAME returns, the function case_done, when the script defines one.
# The output of each case is kept and printed whole when the case ends, between "=== case NAME"
# and "=== case NAME: N checks passed|FAILED ..., T s" lines, so that the log reads as if the
# cases had run one after the other, and a failure names its case ([NAME] in the summary).
DVOL_TEST_JOBS=${DVOL_TEST_JOBS:-$(($(nproc 2>/dev/null || echo 2) + 1))}
[ "$DVOL_TEST_JOBS" -ge 3 ] 2>/dev/null || DVOL_TEST_JOBS=3

# shellcheck disable=SC2030,SC2031  # the case's own counts and paths live in its subshell on purpose
start_case() {
    local name=$1 dir="$TEST_TMP/case.$1"
    rm -rf "$dir"
    mkdir -p "$dir/work"
    cp -a "$DVOL_ROOT" "$dir/pool"
    (
        CASE=$name
        TEST_TMP=$dir
        DVOL_ROOT=$dir/pool
        export DVOL_ROOT
        OUT_FILE="$dir/.stdout" ERR_FILE="$dir/.stderr" APT_LOG="$dir/apt.log"
        CHECKS=0 FAILURES=0 FAILED_CHECKS=()
        SECTION="" SECTION_START=$EPOCHREALTIME
        "case_$name"
        if declare -F case_done >/dev/null; then case_done; fi
        section_end
        finish
    ) >"$dir/.log" 2>&1 </dev/null &
    CASE_PID[$name]=$!
    CASE_START[$name]=$EPOCHREALTIME
}

# Prints a finished case's output and adds its counts to the test's.
# shellcheck disable=SC2031
end_case() {
    local name=$1 status=$2 dir="$TEST_TMP/case.$1" ms checks=0 failures=0 line first=1
    ms=$(((${EPOCHREALTIME/./} - ${CASE_START[$name]/./}) / 1000))
    echo "=== case $name"
    cat "$dir/.log"
    if [ -f "$dir/.result" ]; then
        while IFS= read -r line; do
            if [ "$first" = 1 ]; then
                read -r checks failures <<<"$line"
                first=0
            else
                FAILED_CHECKS+=("[$name] $line")
            fi
        done <"$dir/.result"
    else
        checks=1 failures=1
        FAILED_CHECKS+=("[$name] the case ended (exit status $status) without reaching its end")
    fi
    CHECKS=$((CHECKS + checks))
    FAILURES=$((FAILURES + failures))
    if [ "$failures" -gt 0 ]; then
        echo "=== case $name: $failures of $checks checks FAILED, $((ms / 1000)).$((ms % 1000 / 100)) s"
    else
        echo "=== case $name: $checks checks passed, $((ms / 1000)).$((ms % 1000 / 100)) s"
    fi
    # Its store goes now: the cases' copies would add up.
    chmod -R u+rwX "$dir" 2>/dev/null
    rm -rf "$dir"
}

run_cases() {
    local -a queue=("$@")
    local name ended status
    section_end
    SECTION=""
    for name in "$@"; do
        if ! declare -F "case_$name" >/dev/null; then
            fail "run_cases: there is no function case_$name"
            return 1
        fi
    done
    while [ ${#queue[@]} -gt 0 ] || [ ${#CASE_PID[@]} -gt 0 ]; do
        while [ ${#queue[@]} -gt 0 ] && [ ${#CASE_PID[@]} -lt "$DVOL_TEST_JOBS" ]; do
            start_case "${queue[0]}"
            queue=("${queue[@]:1}")
        done
        # A poll, not `wait -n`: bash's wait -n misses a job that ended before it was called.
        ended=""
        for name in "${!CASE_PID[@]}"; do
            if ! kill -0 "${CASE_PID[$name]}" 2>/dev/null; then
                ended=$name
                break
            fi
        done
        if [ -z "$ended" ]; then
            sleep 0.1
            continue
        fi
        wait "${CASE_PID[$ended]}"
        status=$?
        unset "CASE_PID[$ended]"
        end_case "$ended" "$status"
    done
}
