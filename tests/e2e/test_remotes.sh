#!/usr/bin/env bash
# Remotes end to end: push, fetch, pull and clone between stores through real remotes, every
# phase against every backend given (default: all of them):
#
#   test_remotes.sh [dir] [s3] [ssh]
#
#   dir   a directory remote (always available)
#   s3    a single-node Ceph RADOS Gateway on 127.0.0.1 (tests/e2e/rgw.sh), bucket dvol-e2e
#   ssh   an SSH server on 127.0.0.1 (tests/e2e/sshd.sh): SKIPs without it or ssh:// remotes
#
# Phases (DVOL_REMOTES_PHASES="walkthrough postgres faults races requests" by default):
#   walkthrough  store A: the fidelity tree (tests/e2e/fidelity_tree.sh), commit, push; store B:
#                clone, change, commit, push; A: pull. Both logs equal; both live directories
#                equal to the snapshot of B's, byte and metadata exact (compare_trees.py).
#   postgres     pgbench data (scale DVOL_REMOTES_PG_SCALE, default 2) committed and pushed from
#                A, cloned on B, PostgreSQL started on B: every table has A's checksums and
#                the indexes pass amcheck; then pgbench on B, pushed, pulled by A, started on A.
#   faults       the server stopped mid-push (frozen) and mid-clone (killed, then restarted):
#                one line of error, non-zero exit, the rerun completes; dvol killed with SIGKILL
#                at random instants of push and of clone (DVOL_REMOTES_KILLS each, default 8,
#                30 with DVOL_TEST_LONG=1) and at crash points (the Nth fsync, fdatasync,
#                rename or link, by strace: DVOL_REMOTES_CRASH_POINTS of each command's, default
#                12, all with DVOL_TEST_LONG=1): fsck passes, a fresh clone of the remote passes
#                fsck (no ref names a missing object), the rerun completes; a push killed with a
#                copy of a pack in the remote's tmp~ (strace): the copy goes once it is old; a
#                flipped byte in a remote data pack, a metadata pack and a pack index: clone
#                fails naming the corruption, nothing of it lands, fsck is clean, and the clone
#                completes once the file is repaired; a wrong secret key: refused, the message
#                without the secret; a directory remote on a full file system (a 16 MiB tmpfs):
#                a no-space error.
#   races        DVOL_REMOTES_RACES (default 20) rounds of two concurrent pushes of one branch
#                from two stores: exactly one winner each round (exit statuses and the remote
#                ref), the loser's message says rejected, both stores pass fsck.
#   requests     (S3) requests counted in RGW's log: a push and a pull with nothing to send
#                cost a handful; a clone of 72 MiB of random data costs far fewer requests than
#                it has chunks.
#
# DVOL_REMOTES_SEED replays the random kill instants and crash points of a run (each run prints
# its seed); DVOL_REMOTES_FAULTS picks some of the faults (server_stop kill_push kill_clone
# crash_points leftover corruption bad_secret full).
# Needs root for the S3 backend, PostgreSQL, the full file system and installing strace (each
# SKIPs without);
# the directory backend runs as any user. A phase or check that cannot run prints SKIP with
# its reason; when no backend can run at all the test exits 77.
# Phases, faults and backends are functions called by name (phase_$p, fault_$f, backend_$b).
# shellcheck disable=SC2317
# shellcheck source=tests/cli/lib.sh
. "$(dirname "$0")/../cli/lib.sh"
# shellcheck source=tests/e2e/rgw.sh
. "$(dirname "$0")/rgw.sh"
# shellcheck source=tests/e2e/fidelity_tree.sh
. "$(dirname "$0")/fidelity_tree.sh"
# shellcheck source=tests/e2e/pg_lib.sh
. "$(dirname "$0")/pg_lib.sh"

E2E=$(cd "$(dirname "$0")" && pwd)
CMP="$E2E/compare_trees.py"
command -v python3 >/dev/null || { echo "SKIP: python3 is needed for the tree comparator"; exit 77; }
# The crash points and the tmp~ leftover fault kill dvol through strace: installed when missing
# (as root; without it those two SKIP with the reason).
if ! command -v strace >/dev/null && [ "$(id -u)" = 0 ]; then apt_install strace; fi

LONG=${DVOL_TEST_LONG:-0}
if [ "$LONG" = 1 ]; then KILLS=${DVOL_REMOTES_KILLS:-30}; else KILLS=${DVOL_REMOTES_KILLS:-8}; fi
RACES=${DVOL_REMOTES_RACES:-20}
PG_SCALE=${DVOL_REMOTES_PG_SCALE:-2}
PHASES=${DVOL_REMOTES_PHASES:-walkthrough postgres faults races requests}
SEED=${DVOL_REMOTES_SEED:-$(((RANDOM << 15) | RANDOM))}
RANDOM=$SEED
T=300
T_START=$(date +%s)
echo "seed $SEED (DVOL_REMOTES_SEED=$SEED replays the kill instants); $KILLS kills of push and of clone, $RACES race rounds"

# --- helpers ------------------------------------------------------------------------------------

# sd STORE ARGS...: dvol on the store in directory STORE, under a time limit.
sd() {
    local s=$1
    shift
    timeout "$T" "$DVOL" --disable-docker-integration -p "$s" "$@"
}

# bg_dvol STORE OUT ERR ARGS...: dvol in the background, its pid in BG_PID: the dvol process
# itself (not a subshell or timeout around it), so that signals sent to BG_PID reach dvol.
bg_dvol() {
    local s=$1 out=$2 err=$3
    shift 3
    "$DVOL" --disable-docker-integration -p "$s" "$@" >"$out" 2>"$err" </dev/null &
    BG_PID=$!
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }
ms_since() { echo $(($(now_ms) - $1)); }
secs() { awk -v ms="$1" 'BEGIN { printf "%.1f s", ms / 1000 }'; }

# Evaluates a python3 expression over the JSON document on stdin (`d`) and prints its value.
json_get() {
    python3 -c 'import json, sys; d = json.load(sys.stdin); v = eval(sys.argv[1]); print("" if v is None else v)' "$1"
}

# The scratch store, for commands that read a remote without changing a store of the test.
SCRATCH="$TEST_TMP/scratch"
# A command that only reads makes no store: this one is made once, here.
sd "$SCRATCH" init scratch >/dev/null

# remote_tip URL VOLUME BRANCH: the commit the remote's branch names ("" when none).
remote_tip() {
    sd "$SCRATCH" remote show "$1" --json 2>/dev/null |
        json_get "next((b['tip'] for b in d if b['volume'] == '$2' and b['branch'] == '$3'), '')"
}

# local_tip STORE VOLUME: the tip of the volume's active branch.
local_tip() { sd "$1" --json log "$2" 2>/dev/null | json_get 'd[0]["id"] if d else ""'; }

# expect_fsck WHAT STORE: dvol fsck finds no problem.
expect_fsck() {
    run sd "$2" fsck
    if [ "$RC" -ne 0 ] || [[ "$OUT" != *"no problems found"* ]]; then
        fail "$1: fsck of $2" "$(last_details)"
        return 1
    fi
    pass
}

# snapshot DIR MANIFEST, compare_dir WHAT MANIFEST DIR (compare_trees.py).
snapshot() { python3 "$CMP" snapshot "$1" "$2" || { fail "snapshot of $1 into $2"; return 1; }; }
compare_dir() {
    run python3 "$CMP" compare "$2" "$3"
    if [ "$RC" -eq 0 ]; then
        pass
    else
        fail "$1" "$(printf '%s\n%s' "$OUT" "$ERR" | head -c 6000)"
        return 1
    fi
}

# check_ran WHAT: the last command (run by run) exited 0.
check_ran() {
    if [ "$RC" -ne 0 ] || crashed; then
        fail "$1 failed" "$(last_details)"
        return 1
    fi
    pass
}

# expect_error_line WHAT: the last command failed with exit status 1 and one line on stderr,
# "Error: ...", and no crash report.
expect_error_line() {
    if [ "$RC" -ne 1 ]; then
        fail "$1: exit status 1 expected" "$(last_details)"
        return 1
    fi
    expect_stderr_one_line || return 1
    if [[ "$ERR" != "Error: "* ]] || crashed; then
        fail "$1: an 'Error: ...' line expected" "$(last_details)"
        return 1
    fi
    pass
}

# random_data FILE MIB: MIB MiB of random bytes.
random_data() { head -c $(($2 * 1024 * 1024)) /dev/urandom >"$1"; }

# rand_below MAX: a random number in [0, MAX) into $R, from the seeded generator (in this shell:
# bash seeds a subshell's $RANDOM afresh, so $(...) would not replay).
rand_below() { R=$((((RANDOM << 15) | RANDOM) % ($1 > 0 ? $1 : 1))); }

# Removes a directory tree the test made, whatever modes it was left with.
wipe() {
    chmod -R u+rwX "$1" 2>/dev/null
    rm -rf "$1"
}

# --- backends -----------------------------------------------------------------------------------
# A backend is added by one function, backend_NAME, that starts its server if it needs one and
# calls add_backend (or skip_backend with the reason). Everything else is keyed by the name:
#   BACKEND_BASE[name]    a URL under which remote_url makes a fresh remote per test
#   BACKEND_LOCAL[name]   the local directory holding BACKEND_BASE's files, when the remote's
#                         files are on this machine (dir, ssh): the faults edit them there
#   BACKEND_FREEZE/THAW/KILL/RESTART[name]   functions that stop and start the server (faults)
#   BACKEND_BADCREDS[name]   a function that runs its arguments with a wrong secret
#   BACKEND_SECRETS[name]    strings no message may contain
declare -A BACKEND_BASE BACKEND_LOCAL BACKEND_SKIP BACKEND_FREEZE BACKEND_THAW BACKEND_KILL BACKEND_RESTART
declare -A BACKEND_BADCREDS BACKEND_SECRETS
BACKENDS=()

add_backend() { # NAME BASE_URL [LOCAL_DIR]
    BACKENDS+=("$1")
    BACKEND_BASE[$1]=$2
    BACKEND_LOCAL[$1]=${3:-}
}
skip_backend() { # NAME REASON
    BACKEND_SKIP[$1]=$2
    echo "SKIP: backend $1: $2"
}

backend_dir() {
    mkdir -p "$TEST_TMP/remotes"
    add_backend dir "$TEST_TMP/remotes" "$TEST_TMP/remotes"
}

RGW_DIR="$TEST_TMP/rgw"
BUCKET=dvol-e2e
backend_s3() {
    # Everything the phases write stays well under the memstore's size (see rgw.sh).
    export RGW_SIZE=${RGW_SIZE:-$((2 * 1024 * 1024 * 1024))}
    if ! rgw_start "$RGW_DIR"; then
        skip_backend s3 "no Ceph RGW here: $RGW_SKIP_REASON"
        return
    fi
    echo "Ceph RGW at $RGW_ENDPOINT, started in $RGW_START_SECONDS s"
    rgw_client_env
    printf 'user = "%s:%s"\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$TEST_TMP/curl.conf"
    local code
    code=$(s3curl -o /dev/null -w '%{http_code}' -X PUT -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$RGW_ENDPOINT/$BUCKET")
    if [ "$code" != 200 ]; then
        skip_backend s3 "cannot create bucket $BUCKET on the gateway (HTTP $code)"
        return
    fi
    add_backend s3 "s3://$BUCKET/e2e"
    BACKEND_FREEZE[s3]=s3_freeze
    BACKEND_THAW[s3]=s3_thaw
    BACKEND_KILL[s3]=s3_kill
    BACKEND_RESTART[s3]=s3_restart
    BACKEND_BADCREDS[s3]=s3_badcreds
    BACKEND_SECRETS[s3]="$AWS_SECRET_ACCESS_KEY"
}
s3curl() { curl -s --max-time 60 -K "$TEST_TMP/curl.conf" --aws-sigv4 "aws:amz:$AWS_REGION:s3" "$@"; }
s3_freeze() { rgw_signal "$RGW_DIR" STOP; }
s3_thaw() { rgw_signal "$RGW_DIR" CONT; }
s3_kill() { rgw_gateway_stop "$RGW_DIR"; }
s3_restart() { rgw_gateway_start "$RGW_DIR"; }
WRONG_SECRET="wrong${RANDOM}secret${RANDOM}key${RANDOM}x"
s3_badcreds() { AWS_SECRET_ACCESS_KEY=$WRONG_SECRET "$@"; }

SSHD_STARTED=""
# The SSH backend: ssh://USER@127.0.0.1:PORT/DIR, served by the test's own sshd
# (tests/e2e/sshd.sh: sshd_start DIR sets SSHD_PORT or SSHD_SKIP; sshd_ssh_command; sshd_stop),
# with this dvol as the remote-serve on the far side; the remote's files in a local directory.
backend_ssh() {
    if [ ! -f "$E2E/sshd.sh" ]; then
        skip_backend ssh "tests/e2e/sshd.sh (the test SSH server) is not there"
        return
    fi
    # shellcheck disable=SC1091
    . "$E2E/sshd.sh"
    if ! sshd_start "$TEST_TMP/sshd"; then
        skip_backend ssh "no SSH server here: $SSHD_SKIP"
        return
    fi
    SSHD_STARTED=1
    unset SSH_AUTH_SOCK SSH_AGENT_PID
    export DVOL_SSH_COMMAND DVOL_REMOTE_DVOL=$DVOL
    DVOL_SSH_COMMAND=$(sshd_ssh_command)
    mkdir -p "$TEST_TMP/ssh-remotes/probe"
    local base
    base="ssh://$(id -un)@127.0.0.1:$SSHD_PORT$TEST_TMP/ssh-remotes"
    run sd "$SCRATCH" remote show "$base/probe"
    if [[ "$ERR" == *"not supported"* ]]; then
        skip_backend ssh "this dvol does not open ssh:// remotes: $ERR"
        return
    fi
    add_backend ssh "$base" "$TEST_TMP/ssh-remotes"
}

# remote_url BACKEND NAME: the URL of a fresh, empty remote for one test.
remote_url() {
    local b=$1 name=$2
    [ -n "${BACKEND_LOCAL[$b]:-}" ] && mkdir -p "${BACKEND_LOCAL[$b]:-}/$name"
    echo "${BACKEND_BASE[$b]:-}/$name"
}

# The remote's files, for the faults: remote_keys URL PREFIX ("KEY SIZE" lines, sorted),
# remote_get URL KEY FILE, remote_put URL KEY FILE.
_local_of() { # URL: the local directory holding that remote, or nothing
    local b
    for b in "${BACKENDS[@]}"; do
        if [ -n "${BACKEND_LOCAL[$b]:-}" ] && [[ "$1" == "${BACKEND_BASE[$b]:-}"/* ]]; then
            echo "${BACKEND_LOCAL[$b]:-}${1#"${BACKEND_BASE[$b]:-}"}"
            return 0
        fi
    done
    return 1
}
_s3_path() { # URL KEY: /BUCKET/PREFIX/KEY
    local rest=${1#s3://}
    echo "/$rest/$2"
}
remote_keys() {
    local dir
    if dir=$(_local_of "$1"); then
        (cd "$dir" && find . -type f ! -path './tmp~/*' ! -name '*~lock' -path "./$2*" -printf '%P %s\n' | LC_ALL=C sort)
        return
    fi
    local rest=${1#s3://} bucket prefix
    bucket=${rest%%/*}
    prefix=${rest#*/}
    local q="$prefix/$2"
    s3curl -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$RGW_ENDPOINT/$bucket?list-type=2&prefix=${q//\//%2F}" |
        python3 -c '
import re, sys
body = sys.stdin.read()
cut = len(sys.argv[1]) + 1
for c in re.findall(r"<Contents>(.*?)</Contents>", body, re.S):
    key = re.search(r"<Key>(.*?)</Key>", c).group(1)
    size = re.search(r"<Size>(.*?)</Size>", c).group(1)
    print(key[cut:], size)' "$prefix" | LC_ALL=C sort
}
remote_get() {
    local dir
    if dir=$(_local_of "$1"); then cp "$dir/$2" "$3"; return; fi
    [ "$(s3curl -o "$3" -w '%{http_code}' -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$RGW_ENDPOINT$(_s3_path "$1" "$2")")" = 200 ]
}
remote_put() {
    local dir
    if dir=$(_local_of "$1"); then cat "$3" >"$dir/$2"; return; fi
    [ "$(s3curl -o /dev/null -w '%{http_code}' -X PUT -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' --data-binary @"$3" \
        "$RGW_ENDPOINT$(_s3_path "$1" "$2")")" = 200 ]
}

# --- phases -------------------------------------------------------------------------------------
# Each phase_NAME BACKEND WORKDIR runs its checks against one backend, in a work directory
# removed after it. phase_skip REASON says why (part of) a phase does not run.
declare -A RESULT
RESULT_ORDER=()
PHASE_NOTES=""
phase_skip() {
    echo "SKIP: $CUR_PHASE on $CUR_BACKEND: $1"
    PHASE_NOTES+="skipped: $1; "
}
phase_na() { # a check that does not apply to this backend
    echo "    (not on $CUR_BACKEND: $1)"
}
note() { # a measurement for the summary
    echo "    $1"
    PHASE_NOTES+="$1; "
}

run_phase() { # PHASE BACKEND
    local f0=$FAILURES c0=$CHECKS t0 w
    CUR_PHASE=$1
    CUR_BACKEND=$2
    PHASE_NOTES=""
    w="$TEST_TMP/work-$1-$2"
    mkdir -p "$w"
    echo "=== $1 on $2"
    t0=$(now_ms)
    "phase_$1" "$2" "$w"
    stop_our_postmaster
    wipe "$w"
    RESULT["$1 $2"]="$((CHECKS - c0)) checks, $((FAILURES - f0)) failed, $(secs "$(ms_since "$t0")")${PHASE_NOTES:+; $PHASE_NOTES}"
    RESULT_ORDER+=("$1 $2")
}

# 1. ------------------------------------------------------------------------------------------
phase_walkthrough() { # BACKEND WORKDIR
    local b=$1 w=$2 url A=$2/A B=$2/B t0
    url=$(remote_url "$b" walkthrough)
    expect_ok sd "$A" init fid || return 1
    P=$(sd "$A" path fid)
    fidelity_probe
    build_tree
    snapshot "$P" "$w/m1.json" || return 1
    echo "    the tree: $(python3 "$CMP" summary "$w/m1.json")"
    expect_ok sd "$A" commit -m "state 1" || return 1
    t0=$(now_ms)
    expect_ok sd "$A" push "$url" fid || return 1
    expect_stdout_contains "[new branch]"
    note "push of the fidelity tree: $(secs "$(ms_since "$t0")") ($(tail -n 1 <<<"$OUT"))"
    t0=$(now_ms)
    expect_ok sd "$B" clone "$url" fid || return 1
    note "clone: $(secs "$(ms_since "$t0")")"
    local PB
    PB=$(sd "$B" path fid)
    compare_dir "the clone's live directory is the pushed tree, exactly" "$w/m1.json" "$PB"
    expect_ok sd "$B" switch fid
    P=$PB
    change_other
    snapshot "$P" "$w/m2.json" || return 1
    expect_ok sd "$B" commit -m "other state, from B" || return 1
    expect_ok sd "$B" push "$url" fid
    expect_stdout_contains "fid/master -> fid/master"
    run sd "$A" push "$url" fid
    expect_error_line "A's push of its older tip, behind B's"
    expect_stderr_contains "rejected"
    t0=$(now_ms)
    expect_ok sd "$A" pull "$url" fid || return 1
    expect_stdout_contains "Fast-forward"
    note "pull: $(secs "$(ms_since "$t0")")"
    local logA logB
    logA=$(sd "$A" --json log fid)
    logB=$(sd "$B" --json log fid)
    expect_eq "A's and B's logs are equal (dvol log --json)" "$logB" "$logA"
    OUT=$logA
    json_check "the log holds both commits" 'len(d) == 2 and d[0]["message"] == "other state, from B"'
    compare_dir "A's live directory after the pull is B's, exactly" "$w/m2.json" "$(sd "$A" path fid)"
    compare_dir "B's live directory is as committed, exactly" "$w/m2.json" "$PB"
    expect_ok sd "$A" status fid
    expect_stdout_contains "nothing to commit"
    expect_fsck "walkthrough A" "$A"
    expect_fsck "walkthrough B" "$B"
}

# 2. ------------------------------------------------------------------------------------------
PG_READY=""
phase_postgres() { # BACKEND WORKDIR
    local b=$1 w=$2 url A=$2/A B=$2/B t0 before after
    if [ -z "$PG_READY" ]; then
        if pg_setup; then PG_READY=1; else PG_READY="$PG_SKIP_REASON"; fi
    fi
    if [ "$PG_READY" != 1 ]; then
        phase_skip "$PG_READY"
        return 0
    fi
    url=$(remote_url "$b" postgres)
    expect_ok sd "$A" init pg || return 1
    P=$(sd "$A" path pg)
    pg_prepare_dir "$P"
    pg_initdb || return 1
    pg_start "A: PostgreSQL starts in the live directory" || return 1
    pg_load_dataset "$PG_SCALE" || return 1
    before=$(checksums)
    check "A: checksums of five tables" test "$(grep -c '|' <<<"$before")" -eq 5
    check "A: pgbench_accounts has $((PG_SCALE * 100000)) rows" grep -q "^accounts|$((PG_SCALE * 100000))|" <<<"$before"
    pg_stop fast
    expect_ok sd "$A" commit -m "pgbench scale $PG_SCALE" || return 1
    t0=$(now_ms)
    expect_ok sd "$A" push "$url" pg || return 1
    note "push of a $(du -sh --apparent-size "$P" | cut -f1) data directory: $(secs "$(ms_since "$t0")") ($(tail -n 1 <<<"$OUT"))"

    t0=$(now_ms)
    expect_ok sd "$B" clone "$url" pg || return 1
    note "clone: $(secs "$(ms_since "$t0")")"
    P=$(sd "$B" path pg)
    expect_eq "B: the clone's live directory belongs to postgres, mode 0700" "postgres 700" "$(stat -c '%U %a' "$P")"
    pg_prepare_dir "$P"
    pg_start "B: PostgreSQL starts on the clone" || return 1
    after=$(checksums)
    expect_eq "B: every table has A's checksums" "$before" "$after"
    check_indexes "B: the indexes are consistent"

    # And back: pgbench on B, pushed, pulled by A.
    pg_write_notes_script
    expect_ok as_pg "$PGBIN/pgbench" -n -c 2 -j 2 -t 300 -d postgres -b tpcb-like@9 -f "$PGHOST/notes.sql@1"
    after=$(checksums)
    check "B: pgbench changed the tables" test "$after" != "$before"
    pg_stop fast
    expect_ok sd "$B" switch pg
    expect_ok sd "$B" commit -m "pgbench on B" || return 1
    expect_ok sd "$B" push "$url" pg || return 1
    P=$(sd "$A" path pg)
    expect_ok sd "$A" pull "$url" pg || return 1
    pg_start "A: PostgreSQL starts after the pull" || return 1
    expect_eq "A: every table has B's checksums after the pull" "$after" "$(checksums)"
    check_indexes "A: the indexes are consistent after the pull"
    pg_stop fast
    expect_fsck "postgres A" "$A"
    expect_fsck "postgres B" "$B"
}

# 3. ------------------------------------------------------------------------------------------
# wait_for_while_running CMD...: polls CMD until it succeeds (every 20 ms, at most 6000 times)
# while $BG_PID runs; 0 when CMD succeeded, 1 when the process ended first or the tries ran out.
wait_for_while_running() {
    local i
    for i in $(seq 1 6000); do
        "$@" && return 0
        kill -0 "$BG_PID" 2>/dev/null || return 1
        sleep 0.02
    done
    return 1
}
has_index() { [ -n "$(remote_keys "$1" index/ 2>/dev/null)" ]; }
has_staged() { # STORE: a staging pack of more than 16 MiB in STORE/tmp
    [ -n "$(find "$1/tmp" -maxdepth 1 -name '*.pack' -size +16M 2>/dev/null)" ]
}

fault_server_stop() { # BACKEND WORKDIR
    local b=$1 w=$2 url F=$2/F G=$2/G t0 tip rc
    if [ -z "${BACKEND_FREEZE[$b]:-}" ]; then
        phase_na "the server stopped mid-transfer: the $b backend has no server"
        return 0
    fi
    url=$(remote_url "$b" server-stop)
    echo "--- the server frozen mid-push"
    expect_ok sd "$F" init big || return 1
    P=$(sd "$F" path big)
    # Three data packs (64 MiB each at most): the push is still sending when the first index
    # lands.
    random_data "$P/big.bin" 150
    echo "small" >"$P/small.txt"
    expect_ok sd "$F" commit -m big || return 1
    tip=$OUT
    bg_dvol "$F" "$w/push.out" "$w/push.err" push "$url" big
    if wait_for_while_running has_index "$url"; then
        # dvol is held still while the server freezes, so that it is mid-push for sure.
        kill -STOP "$BG_PID"
        "${BACKEND_FREEZE[$b]:-}"
        kill -CONT "$BG_PID"
        t0=$(now_ms)
        wait "$BG_PID"
        rc=$?
        LAST_CMD="dvol push $url big (the server frozen after the first index)"
        RC=$rc OUT=$(cat "$w/push.out") ERR=$(cat "$w/push.err")
        note "push against the frozen server failed after $(secs "$(ms_since "$t0")"): $ERR"
        expect_error_line "push to a frozen server"
        expect_stderr_contains "$url"
        "${BACKEND_THAW[$b]:-}"
        expect_eq "the frozen push left the remote branch alone" "" "$(remote_tip "$url" big master)"
        expect_fsck "after the frozen push" "$F"
        t0=$(now_ms)
        expect_ok sd "$F" --json push "$url" big
        note "the push run again: $(secs "$(ms_since "$t0")"), $(json_get '"%d objects, %d bytes in %d packs" % (d["objects"], d["bytes"], d["packs"])' <<<"$OUT") sent"
        json_check "the push run again did not send the packs that had landed" 'd["bytes"] < 150 * 2**20'
        expect_eq "the remote branch after the rerun" "$tip" "$(remote_tip "$url" big master)"
    else
        wait "$BG_PID"
        "${BACKEND_THAW[$b]:-}"
        fail "the push ended before its first index appeared on the remote (it could not be stopped mid-push)" \
            "$(cat "$w/push.err")"
        return 1
    fi

    echo "--- the server killed mid-clone, then restarted"
    snapshot "$P" "$w/big.json" || return 1
    bg_dvol "$G" "$w/clone.out" "$w/clone.err" clone "$url" big
    if wait_for_while_running has_staged "$G"; then
        kill -STOP "$BG_PID"
        "${BACKEND_KILL[$b]:-}"
        kill -CONT "$BG_PID"
        t0=$(now_ms)
        wait "$BG_PID"
        rc=$?
        LAST_CMD="dvol clone $url big (the server killed after 16 MiB were received)"
        RC=$rc OUT=$(cat "$w/clone.out") ERR=$(cat "$w/clone.err")
        note "clone from the killed server failed after $(secs "$(ms_since "$t0")"): $ERR"
        expect_error_line "clone from a killed server"
        expect_stderr_contains "$url"
        expect_fsck "after the failed clone" "$G"
        if ! "${BACKEND_RESTART[$b]:-}"; then
            fail "the server does not start again: $RGW_SKIP_REASON"
            return 1
        fi
        pass
        t0=$(now_ms)
        expect_ok sd "$G" clone "$url" big
        expect_stdout_contains "an interrupted clone finished"
        note "the clone run again: $(secs "$(ms_since "$t0")")"
        compare_dir "the finished clone is the pushed tree" "$w/big.json" "$(sd "$G" path big)"
        expect_eq "the finished clone's tip" "$tip" "$(local_tip "$G" big)"
        expect_fsck "after the finished clone" "$G"
    else
        wait "$BG_PID"
        fail "the clone ended before 16 MiB were received (it could not be stopped mid-clone)" "$(cat "$w/clone.err")"
        return 1
    fi
}

# A push killed after it copied a pack into a directory remote's tmp~/ and before it linked the
# copy into place leaves that copy behind; a later write to the remote removes what has not
# been modified for an hour (its mtime is set two hours back here). Where to kill comes from
# strace, not from a race: a traced push of the same commit to a remote of its own shows which
# fsync is the one of the data pack's copy (the first fsync of a tmp~ file after a copy of more
# than 1 MiB), and the push proper is killed on entering that fsync. (Polling for the copy
# while the push ran missed it on a fast disk: copy_file_range copies 40 MiB in one call.)
# Over ssh the far side (remote-serve) spools a pack until it has all of it and only then
# writes it into tmp~/ and links it into place, whether or not its client is still there: a
# killed client leaves no copy to clean up.
has_copy_in_tmp() { [ -n "$(find "$1/tmp~" -type f -size +1M 2>/dev/null)" ]; }
fault_leftover() { # BACKEND WORKDIR
    local b=$1 w=$2 url L=$2/L dir left n
    url=$(remote_url "$b" leftover)
    if [ "$b" = ssh ]; then
        phase_na "a copy left in the remote's tmp~: remote-serve writes a pack there only once it has all of it"
        return 0
    fi
    if ! dir=$(_local_of "$url"); then
        phase_na "a copy left in the remote's tmp~: the $b remote's files are not on this machine"
        return 0
    fi
    if ! command -v strace >/dev/null; then
        phase_skip "a push killed with a copy in the remote's tmp~: strace is not installed"
        return 0
    fi
    echo "--- a push killed with a copy of a pack in the remote's tmp~, not yet linked into place"
    expect_ok sd "$L" init lv || return 1
    P=$(sd "$L" path lv)
    random_data "$P/a.bin" 40
    expect_ok sd "$L" commit -m a || return 1
    run strace -f -qq -y -o "$w/leftover.trace" -e trace=fsync,copy_file_range,sendfile \
        "$DVOL" --disable-docker-integration -p "$L" push "$(remote_url "$b" leftover-traced)" lv
    check_ran "the traced push" || return 1
    n=$(awk '/ (copy_file_range|sendfile)\(/ && $NF + 0 > 1048576 { big = 1 }
             / fsync\(/ { n++; if (big && /\/tmp~\//) { print n; exit } }' "$w/leftover.trace")
    if [ -z "$n" ]; then
        fail "the traced push copied no pack of more than 1 MiB into the remote's tmp~" "$(head -c 3000 "$w/leftover.trace")"
        return 1
    fi
    run crashed_at fsync "$n" "$DVOL" --disable-docker-integration -p "$L" push "$url" lv
    check "the push killed on entering fsync #$n did not finish" test "$RC" -ne 0
    if ! has_copy_in_tmp "$dir"; then
        fail "the killed push left no copy of more than 1 MiB in the remote's tmp~" "$(ls -la "$dir/tmp~" 2>&1)"
        return 1
    fi
    pass
    left=$(find "$dir/tmp~" -type f)
    note "the killed push left $(du -ck "$dir/tmp~"/* | tail -n 1 | cut -f1) KiB in the remote's tmp~"
    # Another volume pushed meanwhile leaves a recent file alone (a live writer's, for all it
    # knows).
    expect_ok sd "$L" init other || return 1
    echo other >"$(sd "$L" path other)/f"
    expect_ok sd "$L" switch other && expect_ok sd "$L" commit -m other
    expect_ok sd "$L" push "$url" other
    local f gone=1 kept=1
    while IFS= read -r f; do [ -e "$f" ] || kept=0; done <<<"$left"
    check "a push of another volume left the killed push's recent copy alone" test "$kept" = 1
    touch -d '2 hours ago' "$dir/tmp~"/*
    expect_ok sd "$L" push "$url" lv
    expect_eq "the push run again completes" "$(local_tip "$L" lv)" "$(remote_tip "$url" lv master)"
    while IFS= read -r f; do [ -e "$f" ] && gone=0; done <<<"$left"
    check "the next push removed the copy, two hours old, from the remote's tmp~" test "$gone" = 1
    expect_eq "the remote's tmp~ is empty" "" "$(find "$dir/tmp~" -type f)"
}

# SIGKILL at random instants. The volume gets a new commit of 2 MiB of new data before each
# push; the instant is uniform over [0, a full push's time).
fault_kill_push() { # BACKEND WORKDIR
    local b=$1 w=$2 url K=$2/K i t0 full="" prev tip at rc finished=0 c
    url=$(remote_url "$b" kill-push)
    echo "--- dvol push killed (SIGKILL) at $KILLS random instants"
    expect_ok sd "$K" init kv || return 1
    P=$(sd "$K" path kv)
    random_data "$P/base.bin" 4
    expect_ok sd "$K" commit -m base || return 1
    expect_ok sd "$K" push "$url" kv || return 1
    # A push's duration, the shorter of two (the instants are drawn from [0, that)).
    for i in 0 00; do
        random_data "$P/f$i.bin" 2
        expect_ok sd "$K" commit -m "commit $i" || return 1
        t0=$(now_ms)
        expect_ok sd "$K" push "$url" kv || return 1
        t0=$(ms_since "$t0")
        [ -n "$full" ] && [ "$full" -le "$t0" ] || full=$t0
    done
    note "a push of 2 MiB: $(secs "$full")"
    for i in $(seq 1 "$KILLS"); do
        prev=$(local_tip "$K" kv)
        random_data "$P/f$i.bin" 2
        echo "$i" >>"$P/base.bin"
        run sd "$K" commit -m "commit $i"
        tip=$OUT
        rand_below "$full"
        at=$R
        bg_dvol "$K" /dev/null "$w/kill.err" push "$url" kv
        sleep "$(awk -v ms="$at" 'BEGIN { printf "%.3f", ms / 1000 }')"
        kill -KILL "$BG_PID" 2>/dev/null
        wait "$BG_PID" 2>/dev/null
        rc=$?
        [ "$rc" -eq 0 ] && finished=$((finished + 1))
        expect_fsck "push killed at $at ms (round $i)" "$K"
        # What the remote holds now must clone whole: a fresh store, then fsck.
        c="$w/check-$i"
        run sd "$c" clone "$url" kv
        if [ "$RC" -ne 0 ]; then
            fail "push killed at $at ms (round $i): the remote does not clone" "$(last_details)"
        else
            pass
            expect_fsck "push killed at $at ms (round $i): a fresh clone of the remote" "$c"
            local got
            got=$(local_tip "$c" kv)
            check "push killed at $at ms (round $i): the remote branch is the old or the new tip" \
                test "$got" = "$prev" -o "$got" = "$tip"
        fi
        wipe "$c"
        expect_ok sd "$K" push "$url" kv
        expect_eq "push killed at $at ms (round $i): the push run again completes" "$tip" "$(remote_tip "$url" kv master)"
    done
    note "push: $KILLS kills, $finished of them after the push had finished"
    local dir
    if dir=$(_local_of "$url"); then
        note "the killed pushes left $(find "$dir/tmp~" -type f 2>/dev/null | grep -c '') files ($(du -sk "$dir/tmp~" 2>/dev/null | cut -f1) KiB) in the remote's tmp~"
    fi
}

fault_kill_clone() { # BACKEND WORKDIR
    local b=$1 w=$2 url S=$2/S i t0 full="" at rc c finished=0 tip
    url=$(remote_url "$b" kill-clone)
    echo "--- dvol clone killed (SIGKILL) at $KILLS random instants"
    expect_ok sd "$S" init cv || return 1
    P=$(sd "$S" path cv)
    random_data "$P/data.bin" 24
    mkdir -p "$P/dir/sub"
    seq 1 100000 >"$P/dir/sub/numbers"
    ln -s ../data.bin "$P/dir/link"
    expect_ok sd "$S" commit -m "one" || return 1
    random_data "$P/more.bin" 8
    expect_ok sd "$S" commit -m "two" || return 1
    tip=$OUT
    snapshot "$P" "$w/cv.json" || return 1
    expect_ok sd "$S" push "$url" cv || return 1
    for i in 1 2; do
        t0=$(now_ms)
        expect_ok sd "$w/full" clone "$url" cv || return 1
        t0=$(ms_since "$t0")
        [ -n "$full" ] && [ "$full" -le "$t0" ] || full=$t0
        wipe "$w/full"
    done
    note "a clone of 32 MiB: $(secs "$full")"
    for i in $(seq 1 "$KILLS"); do
        c="$w/clone-$i"
        rand_below "$full"
        at=$R
        bg_dvol "$c" /dev/null "$w/kill.err" clone "$url" cv
        sleep "$(awk -v ms="$at" 'BEGIN { printf "%.3f", ms / 1000 }')"
        kill -KILL "$BG_PID" 2>/dev/null
        wait "$BG_PID" 2>/dev/null
        rc=$?
        [ "$rc" -eq 0 ] && finished=$((finished + 1))
        if [ -e "$c/dvol.db" ]; then
            expect_fsck "clone killed at $at ms (round $i)" "$c"
        fi
        check_clone_rerun "clone killed at $at ms (round $i)" "$c" "$url" cv "$w/cv.json" "$tip"
        wipe "$c"
    done
    note "clone: $KILLS kills, $finished of them after the clone had finished"
}

# check_clone_rerun WHAT STORE URL VOLUME MANIFEST TIP: after a clone into STORE was killed,
# the clone run again completes (or says the volume exists, when the killed one had finished),
# and the volume is the remote's: its tip, its live directory exactly, fsck clean.
check_clone_rerun() {
    local what=$1 c=$2 url=$3 vol=$4 manifest=$5 tip=$6
    run sd "$c" clone "$url" "$vol"
    if [ "$RC" -ne 0 ] && [[ "$ERR" != *"volume $vol already exists"* ]]; then
        fail "$what: the clone run again failed" "$(last_details)"
        return 1
    fi
    pass
    compare_dir "$what: the clone run again gives the remote's tree" "$manifest" "$(sd "$c" path "$vol")"
    expect_eq "$what: the clone's tip" "$tip" "$(local_tip "$c" "$vol")"
    expect_fsck "$what, then run again" "$c"
}

# Crash points: dvol killed (SIGKILL, by strace) on entering its Nth call of each syscall that
# makes something durable or visible (fsync, fdatasync, rename, link), for every N a full run
# makes: a deterministic sweep of every point where a crash leaves a different state.
# Without DVOL_TEST_LONG=1, DVOL_REMOTES_CRASH_POINTS (default 12) of each command's points,
# chosen at random (the seed replays them).
CRASH_SYSCALLS="fsync fdatasync rename link"
if [ "$LONG" = 1 ]; then CRASH_POINTS=${DVOL_REMOTES_CRASH_POINTS:-all}; else CRASH_POINTS=${DVOL_REMOTES_CRASH_POINTS:-12}; fi
# crash_counts TRACE: "SYSCALL COUNT" for each of CRASH_SYSCALLS a run traced into TRACE made.
crash_counts() {
    local s
    for s in $CRASH_SYSCALLS; do
        echo "$s $(grep -cE "^[0-9]+ +$s\(" "$1")"
    done
}
crash_total() { crash_counts "$1" | awk '{ n += $2 } END { print n }'; }
# crash_points TRACE OUT: the points to crash at into OUT, "SYSCALL N" lines: all of them, or
# CRASH_POINTS of them at random.
crash_points() {
    local all=() s c n
    while read -r s c; do
        for n in $(seq 1 "$c"); do all+=("$s $n"); done
    done < <(crash_counts "$1")
    if [ "$CRASH_POINTS" = all ] || [ "${#all[@]}" -le "$CRASH_POINTS" ]; then
        printf '%s\n' "${all[@]}" >"$2"
        return
    fi
    : >"$2.tmp"
    for n in $(seq 1 "$CRASH_POINTS"); do
        rand_below "${#all[@]}"
        echo "${all[$R]}" >>"$2.tmp"
        all=("${all[@]:0:$R}" "${all[@]:$((R + 1))}")
    done
    sort -k1,1 -k2,2n "$2.tmp" >"$2"
}
# traced TRACE CMD...: CMD under strace, the crash syscalls written to TRACE.
traced() {
    local trace=$1
    shift
    strace -f -qq -o "$trace" -e trace="${CRASH_SYSCALLS// /,}" -- "$@"
}
# crashed_at SYSCALL N CMD...: CMD killed on entering its Nth SYSCALL (it may finish first).
crashed_at() {
    local s=$1 n=$2
    shift 2
    strace -f -qq -o /dev/null -e trace="$s" -e inject="$s:signal=KILL:when=$n" -- "$@"
}

fault_crash_points() { # BACKEND WORKDIR
    local b=$1 w=$2 url K=$2/K S=$2/S sys n i=0 prev tip c points=0
    if ! command -v strace >/dev/null; then
        phase_skip "crash points: strace is not installed"
        return 0
    fi
    echo "--- dvol push and clone killed at each of their fsync, fdatasync, rename and link calls"
    # The first push of a volume, to an empty remote, of its one branch "main": after the
    # rerun the remote has the branch, and HEAD names it (what a clone checks out).
    local F=$2/F j=0 u head
    expect_ok sd "$F" init fp || return 1
    expect_ok sd "$F" checkout -b main || return 1
    echo "first" >"$(sd "$F" path fp)/f"
    expect_ok sd "$F" commit -m first || return 1
    tip=$OUT
    run traced "$w/first.trace" "$DVOL" --disable-docker-integration -p "$F" push "$(remote_url "$b" first-push)" fp
    check_ran "the traced first push" || return 1
    echo "    a first push makes: $(crash_counts "$w/first.trace" | tr '\n' ' ')"
    crash_points "$w/first.trace" "$w/first.points"
    while read -r sys n <&3; do
        j=$((j + 1))
        points=$((points + 1))
        u=$(remote_url "$b" "first-push-$j")
        run crashed_at "$sys" "$n" "$DVOL" --disable-docker-integration -p "$F" push "$u" fp
        expect_fsck "first push killed at $sys #$n" "$F"
        expect_ok sd "$F" push "$u" fp
        head=$(sd "$SCRATCH" remote show "$u" --json 2>/dev/null | json_get '",".join(b["branch"] + ("*" if b["head"] else "") + "=" + b["tip"] for b in d)')
        expect_eq "first push killed at $sys #$n, run again: the remote's branches (* for HEAD)" "main*=$tip" "$head"
    done 3<"$w/first.points"

    url=$(remote_url "$b" crash-points)
    expect_ok sd "$K" init cp || return 1
    P=$(sd "$K" path cp)
    random_data "$P/base.bin" 2
    expect_ok sd "$K" commit -m base || return 1
    expect_ok sd "$K" push "$url" cp || return 1
    random_data "$P/f0.bin" 1
    expect_ok sd "$K" commit -m "commit 0" || return 1
    run traced "$w/push.trace" "$DVOL" --disable-docker-integration -p "$K" push "$url" cp
    check_ran "the traced push" || return 1
    echo "    a push makes: $(crash_counts "$w/push.trace" | tr '\n' ' ')"
    crash_points "$w/push.trace" "$w/push.points"
    while read -r sys n <&3; do
        {
            i=$((i + 1))
            points=$((points + 1))
            prev=$(local_tip "$K" cp)
            head -c 300000 /dev/urandom >"$P/f$i.bin"
            run sd "$K" commit -m "commit $i"
            tip=$OUT
            run crashed_at "$sys" "$n" "$DVOL" --disable-docker-integration -p "$K" push "$url" cp
            expect_fsck "push killed at $sys #$n" "$K"
            c="$w/check"
            run sd "$c" clone "$url" cp
            if check_ran "push killed at $sys #$n: a fresh clone of the remote"; then
                expect_fsck "push killed at $sys #$n: the fresh clone" "$c"
                local got
                got=$(local_tip "$c" cp)
                check "push killed at $sys #$n: the remote branch is the old or the new tip" test "$got" = "$prev" -o "$got" = "$tip"
            fi
            wipe "$c"
            expect_ok sd "$K" push "$url" cp
            expect_eq "push killed at $sys #$n: the push run again completes" "$tip" "$(remote_tip "$url" cp master)"
        }
    done 3<"$w/push.points"

    tip=$(local_tip "$K" cp)
    snapshot "$P" "$w/cp.json" || return 1
    run traced "$w/clone.trace" "$DVOL" --disable-docker-integration -p "$S" clone "$url" cp
    check_ran "the traced clone" || return 1
    wipe "$S"
    echo "    a clone makes: $(crash_counts "$w/clone.trace" | tr '\n' ' ')"
    crash_points "$w/clone.trace" "$w/clone.points"
    while read -r sys n <&3; do
        {
            points=$((points + 1))
            run crashed_at "$sys" "$n" "$DVOL" --disable-docker-integration -p "$S" clone "$url" cp
            [ -e "$S/dvol.db" ] && expect_fsck "clone killed at $sys #$n" "$S"
            check_clone_rerun "clone killed at $sys #$n" "$S" "$url" cp "$w/cp.json" "$tip"
            wipe "$S"
        }
    done 3<"$w/clone.points"
    note "crash points: $points of a first push's $(crash_total "$w/first.trace"), a push's $(crash_total "$w/push.trace") and a clone's $(crash_total "$w/clone.trace")"
}

# flip_byte URL KEY OFFSET: one byte of the remote's KEY inverted, in place.
flip_byte() {
    local f="$TEST_TMP/flip"
    remote_get "$1" "$2" "$f" || return 1
    python3 - "$f" "$3" <<'EOF' || return 1
import sys
path, at = sys.argv[1], int(sys.argv[2])
with open(path, "r+b") as f:
    f.seek(at)
    b = f.read(1)
    f.seek(at)
    f.write(bytes([b[0] ^ 0xFF]))
EOF
    remote_put "$1" "$2" "$f"
}

fault_corruption() { # BACKEND WORKDIR
    local b=$1 w=$2 url H=$2/H keys data meta size n kind key
    url=$(remote_url "$b" flipped)
    echo "--- a flipped byte in a remote pack (data, metadata) and in a pack index"
    expect_ok sd "$H" init cor || return 1
    P=$(sd "$H" path cor)
    random_data "$P/random.bin" 3
    mkdir -p "$P/d"
    for n in 1 2 3; do echo "file $n" >"$P/d/f$n"; done
    expect_ok sd "$H" commit -m "to corrupt" || return 1
    snapshot "$P" "$w/cor.json" || return 1
    expect_ok sd "$H" push "$url" cor || return 1
    keys=$(remote_keys "$url" packs/)
    # The packs by size: the largest holds the chunks, the smallest the trees and the commit.
    data=$(sort -k2,2n <<<"$keys" | tail -n 1 | cut -d' ' -f1)
    meta=$(sort -k2,2n <<<"$keys" | head -n 1 | cut -d' ' -f1)
    check "the push made a data pack and a metadata pack" test -n "$data" -a -n "$meta" -a "$data" != "$meta"
    for kind in "data pack" "metadata pack" "pack index"; do
        case $kind in
        "data pack") key=$data ;;
        "metadata pack") key=$meta ;;
        *) keys=$(remote_keys "$url" index/) key=$(head -n 1 <<<"$keys" | cut -d' ' -f1) ;;
        esac
        size=$(grep -F "$key " <<<"$keys" | cut -d' ' -f2)
        remote_get "$url" "$key" "$w/good.pack" || { fail "cannot read $key from the remote"; return 1; }
        # A byte in the middle of the file: of a pack, a record's header or payload, which a
        # clone reads.
        check "flip a byte of the $kind" flip_byte "$url" "$key" $((size / 2))
        local c="$w/clone-${kind// /-}"
        run sd "$c" clone "$url" cor
        expect_error_line "clone with a flipped byte in the $kind"
        # A pack's record is corrupt; an index is malformed (its checksum).
        if [[ "$ERR" == *" is corrupt: "* || "$ERR" == *": pack index is malformed: "* ]]; then pass; else
            fail "the message of the clone with a flipped byte in the $kind names the corruption" "$(last_details)"
        fi
        note "clone with a flipped byte in the $kind: $ERR"
        # Nothing of it landed: no volume, or one whose branches have no commit.
        run sd "$c" --json log cor
        if [ "$RC" -eq 0 ] && [ "$(json_get 'len(d)' <<<"$OUT")" != 0 ]; then
            fail "the failed clone ($kind) left commits" "$(last_details)"
        else
            pass
        fi
        [ -e "$c/dvol.db" ] && expect_fsck "after the clone of a corrupt $kind" "$c"
        remote_put "$url" "$key" "$w/good.pack" || { fail "cannot put the good $key back"; return 1; }
        expect_ok sd "$c" clone "$url" cor
        compare_dir "the clone with the $kind repaired gives the tree" "$w/cor.json" "$(sd "$c" path cor)"
        expect_fsck "after the repaired clone ($kind)" "$c"
        wipe "$c"
    done
}

fault_bad_secret() { # BACKEND WORKDIR
    local b=$1 w=$2 url E=$2/E s op
    if [ -z "${BACKEND_BADCREDS[$b]:-}" ]; then
        phase_na "a wrong secret: the $b backend has no credentials"
        return 0
    fi
    url=$(remote_url "$b" badcreds)
    echo "--- a wrong secret key"
    expect_ok sd "$E" init sec || return 1
    echo data >"$(sd "$E" path sec)/f"
    expect_ok sd "$E" commit -m "one" || return 1
    for op in push clone; do
        if [ "$op" = push ]; then
            run "${BACKEND_BADCREDS[$b]:-}" sd "$E" push "$url" sec
        else
            expect_ok sd "$E" push "$url" sec
            run "${BACKEND_BADCREDS[$b]:-}" sd "$w/other" clone "$url" sec
        fi
        expect_error_line "$op with a wrong secret key"
        note "$op with a wrong secret: $ERR"
        expect_stderr_contains "refused the credentials"
        for s in "$WRONG_SECRET" ${BACKEND_SECRETS[$b]:-}; do
            check "the message of $op with a wrong secret does not contain the secret" test "${ERR/"$s"/}" = "$ERR"
        done
    done
    if [ "$b" = s3 ]; then
        # A bucket that is not there is named so, not taken for a remote without dvol's marker.
        for op in clone fetch; do
            if [ "$op" = clone ]; then run sd "$w/other" clone "s3://no-such-bucket-$RANDOM/x" sec
            else run sd "$E" fetch "s3://no-such-bucket-$RANDOM/x" sec; fi
            expect_error_line "$op from a missing bucket"
            expect_stderr_contains "does not exist"
        done
    fi
}

FULL_MNT=""
fault_full() { # BACKEND WORKDIR
    local b=$1 w=$2 J=$2/J
    if [ "$b" != dir ]; then
        phase_na "a full file system: for the directory backend"
        return 0
    fi
    echo "--- a directory remote on a full file system (a 16 MiB tmpfs)"
    FULL_MNT="$w/full"
    mkdir -p "$FULL_MNT"
    if [ "$(id -u)" -ne 0 ]; then
        phase_skip "full file system: mounting a tmpfs needs root"
        FULL_MNT=""
        return 0
    fi
    if ! mount -t tmpfs -o size=16m,mode=0755 dvol-e2e-full "$FULL_MNT" 2>"$w/mount.err"; then
        phase_skip "full file system: cannot mount a tmpfs: $(head -c 200 "$w/mount.err" | tr '\n' ' ')"
        FULL_MNT=""
        return 0
    fi
    mkdir "$FULL_MNT/remote"
    expect_ok sd "$J" init full || return 1
    P=$(sd "$J" path full)
    random_data "$P/big.bin" 40
    expect_ok sd "$J" commit -m big || return 1
    run sd "$J" push "$FULL_MNT/remote" full
    expect_error_line "push to a full file system"
    note "push to a full file system: $ERR"
    if [[ "$ERR" != *"No space left"* && "$ERR" != *"no space"* && "$ERR" != *"full"* ]]; then
        fail "the message says the remote is out of space" "$(last_details)"
    else
        pass
    fi
    expect_eq "no branch on the full remote" "" "$(remote_tip "$FULL_MNT/remote" full master)"
    check "the failed push left no partial file on the remote's file system ($(du -sk "$FULL_MNT" | cut -f1) KiB used)" \
        test "$(du -sk "$FULL_MNT" | cut -f1)" -lt 8192
    expect_fsck "after the push to a full file system" "$J"
    umount "$FULL_MNT" && FULL_MNT=""
}

phase_faults() { # BACKEND WORKDIR
    local sub
    for sub in ${DVOL_REMOTES_FAULTS:-server_stop kill_push kill_clone crash_points leftover corruption bad_secret full}; do
        mkdir -p "$2/$sub"
        "fault_$sub" "$1" "$2/$sub"
        wipe "$2/$sub"
    done
}

# 4. ------------------------------------------------------------------------------------------
phase_races() { # BACKEND WORKDIR
    local b=$1 w=$2 url R1=$2/R1 R2=$2/R2 i rc1 rc2 t1 t2 winner loser wtip ltip remote err cas=0 early=0
    url=$(remote_url "$b" races)
    expect_ok sd "$R1" init race || return 1
    echo start >"$(sd "$R1" path race)/f"
    expect_ok sd "$R1" commit -m start || return 1
    expect_ok sd "$R1" push "$url" race || return 1
    expect_ok sd "$R2" clone "$url" race || return 1
    expect_ok sd "$R2" switch race || return 1
    local p1 p2
    p1=$(sd "$R1" path race)
    p2=$(sd "$R2" path race)
    for i in $(seq 1 "$RACES"); do
        echo "round $i from R1" >"$p1/f"
        head -c 100000 /dev/urandom >"$p1/r1"
        echo "round $i from R2" >"$p2/f"
        head -c 100000 /dev/urandom >"$p2/r2"
        run sd "$R1" commit -m "R1 round $i"
        t1=$OUT
        run sd "$R2" commit -m "R2 round $i"
        t2=$OUT
        sd "$R1" push "$url" race >"$w/o1" 2>"$w/e1" &
        local pid1=$!
        sd "$R2" push "$url" race >"$w/o2" 2>"$w/e2" &
        local pid2=$!
        wait "$pid1"
        rc1=$?
        wait "$pid2"
        rc2=$?
        remote=$(remote_tip "$url" race master)
        if [ "$rc1" -eq 0 ] && [ "$rc2" -ne 0 ]; then
            winner=$R1 loser=$R2 wtip=$t1 ltip=$t2 err=$(cat "$w/e2")
        elif [ "$rc2" -eq 0 ] && [ "$rc1" -ne 0 ]; then
            winner=$R2 loser=$R1 wtip=$t2 ltip=$t1 err=$(cat "$w/e1")
        else
            fail "round $i: exactly one push must win (exit statuses $rc1 and $rc2)" \
                "$(printf 'R1: %s\n%s\nR2: %s\n%s' "$(cat "$w/o1")" "$(cat "$w/e1")" "$(cat "$w/o2")" "$(cat "$w/e2")")"
            return 1
        fi
        pass
        expect_eq "round $i: the remote branch is the winner's commit" "$wtip" "$remote"
        if [[ "$err" == *rejected* ]] && [ "$(grep -c '' <<<"$err")" -eq 1 ]; then pass; else fail "round $i: the loser's one-line message says rejected" "$err"; fi
        [[ "$err" == *"changed while pushing"* ]] && cas=$((cas + 1))
        [[ "$err" == *"fetch first"* || "$err" == *"non-fast-forward"* ]] && [[ "$err" != *"changed while pushing"* ]] && early=$((early + 1))
        expect_fsck "round $i, winner" "$winner"
        expect_fsck "round $i, loser" "$loser"
        # The loser takes the winner's commit and drops its own.
        expect_ok sd "$loser" fetch "$url" race
        expect_ok sd "$loser" reset --hard "$wtip" || return 1
        check "round $i: the loser's commit is not on the remote" test "$ltip" != "$remote"
    done
    note "$RACES rounds: $cas lost at the compare-and-swap (both uploaded), $early refused before uploading"
}

# 5. ------------------------------------------------------------------------------------------
# RGW logs one "beast:" line per request; a request counts when its line names the bucket.
# Before each count, a marker request (to another bucket) goes through and its line must be in
# the log, twice, so that every earlier request's line is there too.
RGW_LOG="$RGW_DIR/log/client.rgw.a.log"
MARKS=0
rgw_flush_log() {
    local k i
    for k in 1 2; do
        MARKS=$((MARKS + 1))
        s3curl -o /dev/null -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$RGW_ENDPOINT/dvol-marks/mark-$$-$MARKS"
        for i in $(seq 1 600); do
            grep -q "mark-$$-$MARKS " "$RGW_LOG" && break
            sleep 0.05
        done
    done
}
# bucket_requests BUCKET: RGW's log lines of the requests to BUCKET so far, into $REQ_LINES.
bucket_requests() {
    rgw_flush_log
    grep -E "beast: .*\"[A-Z]+ /$1[/? ]" "$RGW_LOG" | sed -E 's/.*"([A-Z]+ [^ ]+) HTTP[^"]*" ([0-9]+).*/\1 \2/' >"$REQ_LINES"
}
# counted BUCKET CMD...: runs CMD (as run does) and sets N to the requests it made, listed in
# $REQ_LIST.
counted() {
    local bucket=$1 before
    shift
    bucket_requests "$bucket"
    before=$(grep -c '' "$REQ_LINES")
    run "$@"
    bucket_requests "$bucket"
    N=$(($(grep -c '' "$REQ_LINES") - before))
    tail -n "$N" "$REQ_LINES" | sed "s|/$bucket/r/||; s|/$bucket?|?|" >"$REQ_LIST"
}

# What the requests in $REQ_LIST were, in short.
request_kinds() {
    awk '{ k = "other" }
         $2 ~ /^\?/ { k = "listings" }
         $1 == "GET" && $2 ~ /^(refs\/|dvol-remote)/ { k = "ref and marker reads" }
         $1 == "GET" && $2 ~ /^index\// { k = "index reads" }
         $1 == "GET" && $2 ~ /^packs\// { k = "pack reads" }
         $1 == "PUT" && $2 ~ /^refs\// { k = "ref writes" }
         $1 == "PUT" && $2 ~ /^(packs|index)\// { k = "pack and index writes" }
         $1 == "PUT" && $2 == "dvol-remote" { k = "marker writes" }
         { n[k]++ } END { for (k in n) printf "%d %s, ", n[k], k }' "$REQ_LIST" | sed 's/, $//'
}

# expect_requests WHAT MAX: the last counted command succeeded with at most MAX requests.
expect_requests() {
    check_ran "$1" || return 1
    note "$1: $N requests ($(request_kinds))"
    if [ "$N" -gt "$2" ]; then
        fail "$1: at most $2 requests expected, it made $N" "$(cat "$REQ_LIST")"
        return 1
    fi
    pass
}

phase_requests() { # BACKEND WORKDIR
    local b=$1 w=$2 bucket=dvol-count url Q=$2/Q B=$2/B C=$2/C objects packs code
    if [ "$b" != s3 ]; then
        phase_na "request counts: RGW's log, on the s3 backend"
        return 0
    fi
    REQ_LINES="$w/requests.log"
    REQ_LIST="$w/requests"
    code=$(s3curl -o /dev/null -w '%{http_code}' -X PUT -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$RGW_ENDPOINT/$bucket")
    expect_eq "create bucket $bucket" 200 "$code" || return 1
    url="s3://$bucket/r"
    check "RGW logs its requests (beast lines in $RGW_LOG)" grep -q 'beast: ' "$RGW_LOG" || return 1
    expect_ok sd "$Q" init rq || return 1
    P=$(sd "$Q" path rq)
    random_data "$P/a.bin" 8
    expect_ok sd "$Q" commit -m "8 MiB" || return 1
    # Bounds: what was measured (Ceph 16 RGW, this version) and a little more.
    # Measured 10: the marker (read, written), the branch, the index listing, a data and a
    # metadata pack with their indexes, HEAD, the branch.
    counted "$bucket" sd "$Q" push "$url" rq
    expect_requests "the first push (8 MiB)" 12
    # Measured 2: the marker, the branch.
    counted "$bucket" sd "$Q" push "$url" rq
    expect_stdout_eq "Everything up-to-date"
    expect_requests "a push with nothing to send" 3
    # Measured 9: the marker, the refs listing, HEAD and the branch, the index listing, 2
    # indexes, 2 packs.
    counted "$bucket" sd "$B" clone "$url" rq
    expect_requests "a clone of 8 MiB" 11
    # Measured 4: the marker, the refs listing, HEAD, the branch.
    counted "$bucket" sd "$B" pull "$url" rq
    expect_stdout_contains "Already up to date"
    expect_requests "a pull with nothing to fetch" 5

    random_data "$P/b.bin" 64
    expect_ok sd "$Q" commit -m "64 MiB more" || return 1
    # Measured 8: the marker, the branch, the index listing, a data and a metadata pack with
    # their indexes, the branch.
    counted "$bucket" sd "$Q" push "$url" rq
    expect_requests "a push of 64 MiB more" 10
    packs=$(remote_keys "$url" index/ | grep -c '')
    # Measured 17 (4 packs): the 4 requests of the refs, the index listing, 4 indexes, the 2
    # metadata packs whole, the small data pack, the 64 MiB data pack in 5 ranged reads of at
    # most 16 MiB.
    counted "$bucket" sd "$C" --json clone "$url" rq
    objects=$(json_get 'd["objects"]' <<<"$OUT")
    expect_requests "a clone of 72 MiB of random data ($objects objects, $packs packs)" 20
    check "the clone's $N requests are far fewer than its $objects objects" test $((N * 2)) -le "$objects"
    # Measured 13: the 4 of the refs, the index listing, 2 new indexes, the metadata pack, 5
    # ranged reads.
    counted "$bucket" sd "$B" pull "$url" rq
    expect_requests "a pull of 64 MiB" 15
}

# --- main ---------------------------------------------------------------------------------------
# shellcheck disable=SC2317 # called by the trap
remotes_cleanup() {
    stop_our_postmaster
    [ -n "$FULL_MNT" ] && umount "$FULL_MNT" 2>/dev/null
    [ -n "$SSHD_STARTED" ] && sshd_stop
    rgw_stop "$RGW_DIR"
    cleanup
}
trap remotes_cleanup EXIT

WANTED=("$@")
[ ${#WANTED[@]} -eq 0 ] && WANTED=(dir s3 ssh)
for b in "${WANTED[@]}"; do
    case "$b" in
    dir | s3 | ssh) "backend_$b" ;;
    *) echo "FAIL: unknown backend '$b' (dir, s3, ssh)" >&2; exit 2 ;;
    esac
done
if [ ${#BACKENDS[@]} -eq 0 ]; then
    echo "SKIP: no backend can run here: $(for b in "${WANTED[@]}"; do printf '%s: %s; ' "$b" "${BACKEND_SKIP[$b]:-}"; done)"
    exit 77
fi
echo "backends: ${BACKENDS[*]}; phases: $PHASES"

for phase in $PHASES; do
    for b in "${BACKENDS[@]}"; do
        run_phase "$phase" "$b"
    done
done

echo
echo "summary (seed $SEED):"
for k in "${RESULT_ORDER[@]}"; do echo "  $k: ${RESULT[$k]}"; done
for b in "${WANTED[@]}"; do
    [ -n "${BACKEND_SKIP[$b]:-}" ] && echo "  SKIP: backend $b: ${BACKEND_SKIP[$b]:-}"
done
echo "runtime: $(($(date +%s) - T_START)) s"
finish
