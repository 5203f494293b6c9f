#!/usr/bin/env bash
# What a newcomer meets first: help and version, usage errors, stores that are missing or not
# theirs, volume names in messages, the rm prompt, log's short forms, diff of a path that is
# not there, and the Docker note.
. "$(dirname "$0")/lib.sh"

# --- a bare dvol, help and version -----------------------------------------------------------
run "$DVOL"
expect_eq "a bare dvol exits 2 (usage)" 2 "$RC"
check "... and prints a short usage, not the whole help" grep -q '^usage: dvol' <<<"$ERR"
check "... of a few lines" test "$(wc -l <<<"$ERR")" -le 8
check "... naming the commands" grep -q 'commit' <<<"$ERR"
expect_ok "$DVOL" help
check "dvol help lists the commands" grep -q 'clone' <<<"$OUT"
expect_ok "$DVOL" help commit
check "dvol help commit shows commit's options" grep -q -- '--message' <<<"$OUT"
expect_fail 2 "$DVOL" help nosuch
expect_stderr_contains "unknown command 'nosuch'"
expect_ok "$DVOL" --version
check "--version says dvol VERSION and the schema" grep -Eq '^dvol [0-9]+\.[0-9]+\.[0-9]+ \(store schema version [0-9]+\)$' <<<"$OUT"
V=$OUT
expect_ok "$DVOL" version
expect_eq "dvol version says the same as --version" "$V" "$OUT"

# --- usage errors: exit 2, one rule ----------------------------------------------------------
expect_fail 2 "$DVOL" init -x
expect_stderr_contains "unknown option -x"
expect_fail 2 "$DVOL" -z list
expect_stderr_contains "unknown option -z"
expect_fail 2 "$DVOL" frobnicate
expect_stderr_contains "unknown command 'frobnicate'"
expect_fail 2 dvol init
check "a missing argument starts with Error:" grep -q '^Error: ' <<<"$ERR"

# --- read-only commands make no store ----------------------------------------------------------
TYPO="$TEST_TMP/typo-store"
expect_fail 1 env DVOL_ROOT="$TYPO" "$DVOL" --disable-docker-integration list
expect_stderr_contains "no dvol store at $TYPO"
expect_stderr_one_line
check "list made nothing at a mistyped DVOL_ROOT" test ! -e "$TYPO"
expect_fail 1 "$DVOL" -p "$TYPO" status
check "status made nothing there either" test ! -e "$TYPO"
expect_ok dvol init v
check "init makes the store" test -e "$DVOL_ROOT/dvol.db"

# --- the store's path is always absolute ------------------------------------------------------
cd "$TEST_TMP" || abort
expect_ok "$DVOL" --disable-docker-integration -p pool path v
expect_stdout_eq "$DVOL_ROOT/volumes/v/data"
expect_ok env DVOL_ROOT=./pool/ "$DVOL" --disable-docker-integration path v
expect_stdout_eq "$DVOL_ROOT/volumes/v/data"
cd - >/dev/null || abort

# --- messages name what is missing -----------------------------------------------------------
expect_fail 1 dvol log experiment
expect_eq "log of a missing volume" "Error: volume 'experiment' does not exist" "$ERR"
expect_fail 1 dvol switch experiment
expect_eq "switch to a missing volume" "Error: volume 'experiment' does not exist" "$ERR"
expect_fail 1 dvol status experiment
expect_eq "status of a missing volume" "Error: volume 'experiment' does not exist" "$ERR"

# --- commit without a message: a usage error, as the man page says ----------------------------
expect_fail 2 dvol commit
expect_eq "commit without -m" "Error: You must provide a commit message" "$ERR"
expect_fail 2 dvol commit -m ""
expect_ok "$DVOL" help commit
check "commit's --help marks -m as required" grep -q 'required' <<<"$OUT"

# --- rm's prompt ends its line before the refusal ----------------------------------------------
expect_ok dvol init doomed
run_input "n"$'\n' dvol rm doomed
expect_eq "rm answered n exits 1" 1 "$RC"
check "the prompt's line is ended on stdout" test "$(tail -c 1 "$OUT_FILE" | od -An -c | tr -d ' ')" = '\n'
check "the refusal is its own line on stderr" grep -q "^Error: not deleting volume 'doomed'" <<<"$ERR"

# --- log -n and --oneline ----------------------------------------------------------------------
for i in 1 2 3; do
    echo "$i" >"$DVOL_ROOT/volumes/v/data/f"
    expect_ok dvol commit -m "change $i" v
done
expect_ok dvol log -n 2 --json v
json_check "log -n 2 shows two commits" 'len(d) == 2 and d[0]["message"] == "change 3"'
expect_ok dvol log --oneline v
check "log --oneline: one line per commit" test "$(wc -l <<<"$OUT")" -eq 3
check "log --oneline: short id and subject" grep -Eq '^[0-9a-f]{12} change 3$' <<<"$(head -n1 <<<"$OUT")"
expect_ok dvol log --oneline -n 1 v
check "log --oneline -n 1: one line" test "$(wc -l <<<"$OUT")" -eq 1

# --- diff of a path that matches nothing ---------------------------------------------------------
expect_fail 1 dvol diff HEAD --volume v -- nosuchpath
expect_stderr_contains "path 'nosuchpath' matches nothing"
expect_ok dvol diff HEAD --volume v -- f
expect_stdout_eq ""

# --- Docker: quiet without any Docker, a note when its socket does not answer ------------------
echo 4 >"$DVOL_ROOT/volumes/v/data/f"
run env DOCKER_HOST="unix://$TEST_TMP/no-docker.sock" "$DVOL" commit -m quiet v
expect_eq "commit without Docker succeeds" 0 "$RC"
expect_eq "and says nothing about Docker" "" "$ERR"
python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$TEST_TMP/dead.sock"
echo 5 >"$DVOL_ROOT/volumes/v/data/f"
run env DOCKER_HOST="unix://$TEST_TMP/dead.sock" "$DVOL" commit -m noted v
expect_eq "commit with a Docker that does not answer succeeds" 0 "$RC"
check "and notes it in one line" grep -q "^note: no Docker daemon answers at $TEST_TMP/dead.sock" <<<"$ERR"
run env DOCKER_HOST="unix://$TEST_TMP/dead.sock" "$DVOL" reset --hard nosuchref v
check "no note before the command's own refusal" test "$(grep -c '^note:' <<<"$ERR")" -eq 0

# --- a store that is not yours -------------------------------------------------------------------
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then
    chmod 755 "$TEST_TMP" "$DVOL_ROOT"
    run setpriv --reuid=65534 --regid=65534 --clear-groups "$DVOL" --disable-docker-integration -p "$DVOL_ROOT" list
    expect_eq "list on a store that is not yours exits 1" 1 "$RC"
    check "and says whose it is and what to do" grep -q "is not writable by you (it belongs to root): run dvol as root, or use -p DIR or DVOL_ROOT=DIR" <<<"$ERR"
    check "not SQLite's 'readonly database'" test "$(grep -c 'readonly database' <<<"$ERR")" -eq 0
else
    echo "SKIP: the store-of-another-user case needs root and setpriv"
fi

finish
