#!/usr/bin/env bash
# Every error a user can run into: a clear one-line message on stderr, the right exit code
# (1 for an error the user can act on, 2 for bad usage), and nothing changed on disk.
#
# After a shared set-up (two volumes, one with history and two branches), each group of checks
# is a case of its own (run_cases in lib.sh): the cases run side by side, each on its own copy of
# the set-up store.
# shellcheck source=tests/cli/lib.sh disable=SC2016,SC2317,SC2031  # eval-ed single-quoted checks; case_* run by run_cases, in subshells
. "$(dirname "$0")/lib.sh"

LONG200=$(printf 'a%.0s' $(seq 200))
LONG129=$(printf 'b%.0s' $(seq 129))
LONG128=$(printf 'c%.0s' $(seq 128))
BAD_NAMES=("foo/bar" ".." "" "$LONG200" "$LONG129" "." ".hidden" "_under" "a b" "foo:bar" "../etc" "é" "a..b")

# pool_state runs dvol some twenty times, and every expect_error needs it before and after the
# command. "Before" is the previous check's "after" when nothing can have changed since: dvol has
# not run (the dvol function counts its runs in a file: it also runs in subshells) and no file
# under the store has changed (name, inode, size, mtime, ctime; the SQLite files only change when
# dvol runs). Were this ever wrong, "before" would be stale and the check would fail, never pass.
dvol() { printf . >>"$TEST_TMP/.dvol-runs"; "$DVOL" --disable-docker-integration "$@"; }
STATE="" STATE_STAMP="" STATES_TAKEN=0 STATES_REUSED=0
state_stamp() {
    echo "$DVOL_ROOT $(stat -c %s "$TEST_TMP/.dvol-runs" 2>/dev/null)"
    find "$DVOL_ROOT" -path "$DVOL_ROOT/dvol.db*" -prune -o -printf '%P %i %s %T@ %C@\n'
}
state_before() {
    if [ -n "$STATE_STAMP" ] && [ "$(state_stamp)" = "$STATE_STAMP" ]; then
        STATES_REUSED=$((STATES_REUSED + 1))
    else
        STATE=$(pool_state)
        STATES_TAKEN=$((STATES_TAKEN + 1))
    fi
}
state_after() {
    STATE=$(pool_state)
    STATES_TAKEN=$((STATES_TAKEN + 1))
    STATE_STAMP=$(state_stamp)
}

# expect_error CODE MESSAGE CMD...: CMD fails with CODE, its stderr contains MESSAGE, and the
# pool (files, checksums, and what list/log/branch/status report) is the same afterwards.
# Errors (code 1) must be one line; usage errors (code 2) may add a line pointing at --help.
expect_error() {
    local code=$1 message=$2 before after
    shift 2
    state_before
    before=$STATE
    local failed_right=1
    expect_fail "$code" "$@" || failed_right=0
    local ran="$LAST_CMD" out="$OUT" err="$ERR" rc="$RC"
    if [ "$failed_right" = 1 ]; then  # else the message checks would only repeat the failure
        expect_stderr_contains "$message"
        if [ "$code" -eq 1 ]; then
            expect_stderr_one_line
        else
            check "usage error starts with 'Error: ': $ran" eval '[[ "$(head -n1 <<<"$err")" == "Error: "* ]]'
        fi
    fi
    state_after
    after=$STATE
    expect_eq "nothing changed on disk after: $ran" "$before" "$after"
    OUT=$out ERR=$err RC=$rc LAST_CMD=$ran
    return $((1 - failed_right))
}

# expect_error_line CODE LINE CMD...: as expect_error, and stderr is exactly LINE.
expect_error_line() {
    local code=$1 line=$2
    shift 2
    expect_error "$code" "$line" "$@" || return 1
    [[ "$ERR" == *"$line"* ]] || return 1  # already reported
    if [ "$ERR" != "$line" ]; then
        fail "stderr should be exactly '$line'" "$(last_details)"
    else
        pass
    fi
}

name_message() { printf '%s is not a valid %s' "${1:-''}" "$2"; }

# --- no store yet, no active volume --------------------------------------------------------------
case_nostore() {
    DVOL_ROOT="$TEST_TMP/empty-pool"  # not the set-up store: an empty directory
    mkdir -p "$DVOL_ROOT"
    # Only commands that write make a store; the others say there is none and make nothing.
    for cmd in path log status "commit -m x" branch "reset --hard HEAD" "checkout -b x" diff list reflog fsck gc; do
        # shellcheck disable=SC2086
        expect_error 1 "no dvol store at $DVOL_ROOT" dvol $cmd
    done
    check "no command above made a store" test ! -e "$DVOL_ROOT/dvol.db"
    expect_ok dvol config user.name
    check "reading the configuration made no store either" test ! -e "$DVOL_ROOT/dvol.db"
    # A store without an active volume.
    expect_ok dvol config user.name "Err Tester"
    expect_error 1 "no active volume" dvol path
    expect_error 1 "no active volume" dvol log
    expect_error 1 "no active volume" dvol status
    expect_error 1 "no active volume" dvol commit -m x
    expect_error 1 "no active volume" dvol branch
    expect_error 1 "no active volume" dvol reset --hard HEAD
    expect_error 1 "no active volume" dvol checkout -b x
    expect_error 1 "no active volume" dvol diff

    # A pool path that cannot be a store.
    echo "not a directory" >"$TEST_TMP/afile"
    expect_error 1 "$TEST_TMP/afile" dvol -p "$TEST_TMP/afile" list
    expect_eq "the file named as a pool is untouched" "not a directory" "$(cat "$TEST_TMP/afile")"
    expect_error 1 "$TEST_TMP/afile/sub" dvol -p "$TEST_TMP/afile/sub" init x
}

# --- setup: vol1 with history and two branches, vol2 without commits ---------------------------
# Shared by every case below (each gets a copy of this store); the ids are the same in each copy.
section "setup"
expect_ok dvol config user.name "Err Tester" || abort
expect_ok dvol config user.email "err@example.com" || abort
expect_ok dvol init vol2 || abort
expect_ok dvol checkout -b tmp vol2 || abort   # takes (and so creates) vol2's lock file
expect_ok dvol checkout master vol2 || abort
expect_ok dvol branch -d tmp vol2 || abort
expect_ok dvol init vol1 || abort
V1=$DVOL_ROOT/volumes/vol1/data
echo one >"$V1/file.txt"
mkdir "$V1/dir"
echo inner >"$V1/dir/inner.txt"
expect_ok dvol commit -m "c1" || abort
C1=$OUT
echo two >"$V1/file.txt"
expect_ok dvol commit -m "c2" || abort
echo three >"$V1/file.txt"
expect_ok dvol commit -m "c3" || abort
C3=$OUT
expect_ok dvol checkout -b dev || abort
echo dev >"$V1/dev.txt"
expect_ok dvol commit -m "on dev" || abort
expect_ok dvol checkout master || abort
check "setup: vol1 is clean" eval '[[ "$(dvol status --json)" == *"\"clean\": true"* ]]'
# vol1's live directory in a case's own copy of the store.
v1_in_case() { V1=$DVOL_ROOT/volumes/vol1/data; }

# --- init -------------------------------------------------------------------------------------------
case_init() {
    expect_error_line 1 "Error: volume vol1 already exists" dvol init vol1
    expect_error_line 1 "Error: volume vol2 already exists" dvol init vol2
    for n in "${BAD_NAMES[@]}"; do
        expect_error 1 "$(name_message "$n" name)" dvol init "$n"
        check "init '$n' wrote nothing under volumes/" test "$(ls "$DVOL_ROOT/volumes")" = "$(printf 'vol1\nvol2')"
    done
    # The message keeps the "Error: " prefix whatever the name looks like.
    expect_error_line 1 "Error: $(name_message "Foo/bar" name) (a letter or digit, then letters, digits, '_', '.' or '-', no '..'; at most 128 characters)" dvol init "Foo/bar"
    expect_error 2 "Error:" dvol init
    expect_error 2 "Error:" dvol init a b
}

# --- switch ------------------------------------------------------------------------------------------
case_switch() {
    expect_error_line 1 "Error: volume 'nope' does not exist" dvol switch nope
    expect_error_line 1 "Error: volume 'Nope' does not exist" dvol switch Nope
    for n in "${BAD_NAMES[@]}"; do
        expect_error 1 "$(name_message "$n" name)" dvol switch "$n"
    done
    expect_error 2 "Error:" dvol switch
}

# --- rm -----------------------------------------------------------------------------------------------
case_rm() {
    expect_error_line 1 "Error: Volume 'nope' does not exist, cannot remove it" dvol rm nope
    expect_error_line 1 "Error: Volume 'nope' does not exist, cannot remove it" dvol rm -f nope
    for n in "${BAD_NAMES[@]}"; do
        expect_error 1 "$(name_message "$n" name)" dvol rm -f "$n"
    done
    # Declined (stdin at EOF): nothing deleted.
    expect_error 1 "not deleting volume 'vol1'" dvol rm vol1
    expect_error 2 "Error:" dvol rm
}

# --- commands taking a VOLUME argument -----------------------------------------------------------
case_volume_argument() {
    local cmd
    for cmd in path log status branch; do
        expect_error_line 1 "Error: volume 'nope' does not exist" dvol "$cmd" nope
        expect_error 1 "$(name_message "../vol1" name)" dvol "$cmd" ../vol1
    done
    expect_error_line 1 "Error: volume 'nope' does not exist" dvol commit -m x nope
    expect_error_line 1 "Error: volume 'nope' does not exist" dvol reset --hard HEAD nope
    expect_error_line 1 "Error: volume 'nope' does not exist" dvol checkout -b x nope
    expect_error_line 1 "Error: volume 'nope' does not exist" dvol diff --volume nope
    expect_error 2 "Error:" dvol log vol1 vol2
}

# --- commit -----------------------------------------------------------------------------------------------
case_commit() {
    v1_in_case
    echo "uncommitted" >"$V1/wip.txt"
    expect_error_line 2 "Error: You must provide a commit message" dvol commit
    expect_error_line 2 "Error: You must provide a commit message" dvol commit vol1
    expect_error_line 2 "Error: You must provide a commit message" dvol commit -m ""
    expect_error 2 "Error:" dvol commit -m
    expect_error 2 "Error:" dvol commit --bogus -m x
    rm "$V1/wip.txt"
}

# --- reset ---------------------------------------------------------------------------------------------------
case_reset_revisions() {
    local ref
    expect_error 2 "--hard" dvol reset HEAD^
    expect_error 2 "--hard" dvol reset "$C1"
    expect_error 2 "Error:" dvol reset --hard
    expect_error 2 "Error:" dvol reset --soft HEAD
    for ref in nosuchbranch HEAD~10 HEAD~3 'HEAD^^^' HEAD^2 deadbeef abc 0 'HEAD@{1}' HEAD~99999999999999999999 \
        "${C3:0:3}" "${C3}0" ":/c1" "vol2" "master~4" "dev~4" '~1' '^'; do
        expect_error 1 "$ref" dvol reset --hard "$ref"
    done
    expect_error 1 "unknown revision ''" dvol reset --hard ""
}

case_reset_malformed() {
    local ref
    # Malformed suffixes are not HEAD~N: they must be refused, not taken as some other commit.
    for ref in 'HEAD~x' 'HEAD^x' 'HEAD~-1' 'HEAD~1x' 'master~~z'; do
        expect_error 1 "unknown revision '$ref'" dvol reset --hard "$ref"
        dvol reset --hard "$C3" >/dev/null 2>&1  # should be a no-op; undoes the damage if not
    done
}

case_reset_other_volume() {
    # A commit of another volume is not a revision of this one.
    echo v2 >"$DVOL_ROOT/volumes/vol2/data/v2.txt"
    expect_ok dvol commit -m "vol2 c1" vol2 || abort
    V2C1=$OUT
    expect_error 1 "unknown revision '$V2C1'" dvol reset --hard "$V2C1"
    expect_error 1 "unknown revision '${V2C1:0:12}'" dvol reset --hard "${V2C1:0:12}" vol1
    expect_ok dvol reset --hard "$V2C1" vol2

    # A volume without commits has no HEAD.
    expect_ok dvol init empty || abort
    expect_ok dvol switch vol1
    expect_error 1 "no commits yet" dvol reset --hard HEAD empty
    expect_error 1 "no commits yet" dvol diff HEAD --volume empty
}

case_reset_ambiguous() {
    # An ambiguous id prefix: make commits until two share their first 4 hex digits.
    local -A SEEN=()
    local AMB="" i id p
    expect_ok dvol init amb || abort
    expect_ok dvol switch vol1
    for i in $(seq 1 3000); do
        id=$(dvol commit -m "amb $i" amb) || { fail "commit $i in volume amb failed"; break; }
        p=${id:0:4}
        if [ -n "${SEEN[$p]:-}" ]; then
            AMB=$p
            break
        fi
        SEEN[$p]=1
    done
    echo "commit $i shares its 4-digit prefix $AMB with an earlier one"
    if [ -n "$AMB" ]; then
        expect_error 1 "ambiguous" dvol reset --hard "$AMB" amb
        expect_stderr_contains "'$AMB'"
    else
        fail "no two commits of 3000 shared a 4-digit prefix (impossible unless ids are not random-looking)"
    fi
}

# --- diff ---------------------------------------------------------------------------------------------------------
case_diff() {
    expect_error 1 "unknown revision 'nosuchref'" dvol diff nosuchref
    expect_error 1 "unknown revision 'nosuchref'" dvol diff HEAD nosuchref
    expect_error 2 "Error:" dvol diff HEAD HEAD^ HEAD^^
    expect_error 2 "at most one PATH" dvol diff -- a b
}

# --- branch -d -----------------------------------------------------------------------------------------------------
case_branch_delete() {
    expect_error_line 1 "Error: Cannot delete the active branch master; check out another branch first" dvol branch -d master
    expect_error 1 "branch nob does not exist in volume vol1" dvol branch -d nob
    expect_error 1 "branch dev does not exist in volume vol2" dvol branch -d dev vol2
    for n in "${BAD_NAMES[@]}"; do
        expect_error 1 "$(name_message "$n" "branch name")" dvol branch -d "$n"
    done
    expect_error 2 "Error:" dvol branch -d
}

# --- checkout -------------------------------------------------------------------------------------------------------
case_checkout_names() {
    expect_error_line 1 "Error: Cannot create existing branch dev" dvol checkout -b dev
    expect_error_line 1 "Error: Cannot create existing branch master" dvol checkout -b master
    expect_error_line 1 "Error: Cannot switch to a non-existing branch nob" dvol checkout nob
    expect_error_line 1 "Error: Cannot switch to a non-existing branch nob" dvol checkout -f nob
    for n in "${BAD_NAMES[@]}"; do
        expect_error 1 "$(name_message "$n" "branch name")" dvol checkout -b "$n"
        expect_error 1 "$(name_message "$n" "branch name")" dvol checkout "$n"
    done
    expect_error 2 "Error:" dvol checkout
    expect_error 2 "Error:" dvol checkout -b
}

case_checkout_uncommitted() {
    v1_in_case
    # Uncommitted changes of every kind block a switch.
    echo "changed" >"$V1/file.txt"
    expect_error 1 "uncommitted changes" dvol checkout dev
    expect_stderr_contains "--force"
    expect_eq "the modified file is kept" "changed" "$(cat "$V1/file.txt")"
    expect_ok dvol reset --hard HEAD
    echo "new" >"$V1/untracked.txt"
    expect_error 1 "uncommitted changes" dvol checkout dev
    check "the new file is kept" test -e "$V1/untracked.txt"
    rm "$V1/untracked.txt"
    rm "$V1/dir/inner.txt"
    expect_error 1 "uncommitted changes" dvol checkout dev
    check "the deleted file stays deleted" test ! -e "$V1/dir/inner.txt"
    expect_ok dvol reset --hard HEAD
    chmod 600 "$V1/file.txt"
    expect_error 1 "uncommitted changes" dvol checkout dev
    expect_eq "the mode change is kept" 600 "$(stat -c %a "$V1/file.txt")"
    expect_ok dvol reset --hard HEAD
    mkdir "$V1/emptydir"
    expect_error 1 "uncommitted changes" dvol checkout dev
    rmdir "$V1/emptydir"
    ln -s file.txt "$V1/link"
    expect_error 1 "uncommitted changes" dvol checkout dev
    rm "$V1/link"
}

# --- config ---------------------------------------------------------------------------------------------------------
case_config() {
    expect_error 2 "unknown configuration key 'user.foo'" dvol config user.foo
    expect_error 2 "unknown configuration key 'core.editor'" dvol config core.editor vi
    expect_error 1 "user.name must be non-empty" dvol config user.name ""
    expect_error 1 "user.name must be non-empty" dvol config user.name "a <b>"
    expect_error 1 "user.email must be non-empty" dvol config user.email $'x\ny'
    expect_error 2 "Error:" dvol config
}

# --- general usage ------------------------------------------------------------------------------------------------------
case_usage() {
    expect_error 2 "Error:" dvol
    expect_error 2 "Error:" dvol bogus
    expect_stderr_contains "bogus"
    expect_error 2 "Error:" dvol comit -m x
    expect_stderr_contains "comit"
    expect_error 2 "Error:" dvol --bogus list
    expect_error 2 "Error:" dvol list --bogus
    expect_error 2 "Error:" dvol -p
}

# --- names at the limit are fine -------------------------------------------------------------------------------------------
case_names_at_the_limit() {
    expect_ok dvol init "$LONG128"
    expect_ok dvol checkout -b "$LONG128"
    expect_ok dvol init "A1_b.c-D"
    expect_ok dvol switch vol1
    expect_ok dvol list --json
    json_check "the 128-character volume exists" "'$LONG128' in [v['name'] for v in d]"
}

case_done() { echo "pool_state taken $STATES_TAKEN times, reused $STATES_REUSED times"; }
# The longest first, so that the last to end are short ones.
run_cases reset_ambiguous checkout_names reset_revisions init rm switch branch_delete checkout_uncommitted \
    volume_argument nostore reset_malformed reset_other_volume config usage diff commit names_at_the_limit
finish
