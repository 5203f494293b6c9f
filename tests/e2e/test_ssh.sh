#!/usr/bin/env bash
# ssh:// remotes for real: an OpenSSH server of the test's own on 127.0.0.1 (tests/e2e/sshd.sh)
# and the system's ssh client, the far side being the dvol under test ($DVOL, named with
# DVOL_REMOTE_DVOL, since this machine is the server too).
#
#   a. the conformance suite of remote backends ($DVOL_UNIT_TESTS '[remote_backend]': listings,
#      ranges, a 21 MiB write_file, invalid keys, refs' compare-and-swap, 20 rounds of 4 racing
#      threads and of 4 racing processes) against ssh://root@127.0.0.1:PORT/DIR, the ssh
#      command given as BackendOptions::ssh_command (DVOL_TEST_REMOTE_SSH_COMMAND);
#   b. with remote_probe ($DVOL_REMOTE_PROBE) and the ssh command in DVOL_SSH_COMMAND: a round
#      trip; the ssh process killed under a connection (the next call is unavailable, the one
#      after reconnects; through the retries nothing shows); a missing directory (not_found)
#      and --create (made by the first write);
#   c. refusals, each with its own message and nothing written: an unknown host key (empty
#      known_hosts, StrictHostKeyChecking left at its default), a changed host key, a client key
#      the server does not accept, a server without dvol (a path and a name that do not exist);
#   d. figures (printed, never checked): a round trip per request, a 64 MiB write, write_file
#      and read_all;
#   e. sshd stopped: unavailable once the retries give up, not a hang.
#
# Needs root; installs openssh-server and openssh-client with apt-get when missing. SKIPs (exit
# 77) when it cannot run an sshd here. Stops only the sshd it started, by its pid.
# shellcheck source=tests/cli/lib.sh
. "$(dirname "$0")/../cli/lib.sh"
# shellcheck source=tests/e2e/sshd.sh
. "$(dirname "$0")/sshd.sh"

for v in DVOL_UNIT_TESTS DVOL_REMOTE_PROBE; do
    if [ -z "${!v:-}" ] || [ ! -x "${!v}" ]; then
        echo "FAIL: set $v (the unit test binary, and tests/e2e/remote_probe, of the build under test)" >&2
        exit 1
    fi
done

T_START=$(date +%s)
trap 'sshd_stop; cleanup' EXIT

if ! sshd_start "$TEST_TMP/sshd"; then
    echo "SKIP: $SSHD_SKIP"
    exit 77
fi
echo "sshd $("$SSHD_BIN" -V 2>&1 | head -n 1; ssh -V 2>&1) on 127.0.0.1:$SSHD_PORT (pid $SSHD_PID)"

# Nothing of the caller's ssh setup: no agent, no DVOL_* settings.
unset SSH_AUTH_SOCK SSH_AGENT_PID DVOL_SSH_COMMAND DVOL_REMOTE_DVOL DVOL_TEST_REMOTE_URL DVOL_TEST_REMOTE_SSH_COMMAND
export DVOL_REMOTE_DVOL="$DVOL"
SSH_CMD=$(sshd_ssh_command)
USER_NAME=$(id -un)
REMOTE="$TEST_TMP/remote"
mkdir -p "$REMOTE"
URL="ssh://$USER_NAME@127.0.0.1:$SSHD_PORT$REMOTE"
probe() { timeout "$T" "$DVOL_REMOTE_PROBE" "$@"; }

# The test's own ssh setup works before dvol is asked to use it.
# shellcheck disable=SC2086
run timeout 60 ssh -F "$SSH_CONFIG" -i "$SSH_KEY" -o IdentitiesOnly=yes -o UserKnownHostsFile="$SSH_KNOWN_HOSTS" \
    -o GlobalKnownHostsFile=/dev/null -o BatchMode=yes -p "$SSHD_PORT" "$USER_NAME@127.0.0.1" echo logged-in
if [ "$RC" -ne 0 ] || [ "$OUT" != logged-in ]; then
    fail "plain ssh logs in to the test's sshd" "$(last_details; echo; echo '--- sshd log'; sshd_log_tail)"
    abort
fi
pass

# --- a. the conformance suite --------------------------------------------------------------------
echo "--- a. conformance suite [remote_backend] over $URL"
START=$(date +%s)
run env DVOL_TEST_REMOTE_URL="$URL" DVOL_TEST_REMOTE_SSH_COMMAND="$SSH_CMD" timeout 900 "$DVOL_UNIT_TESTS" '[remote_backend]'
SUMMARY=$(grep -E '^(All tests passed|test cases:|assertions:)' <<<"$OUT" | tr '\n' ' ')
if [ "$RC" -ne 0 ] || ! grep -q '^All tests passed' <<<"$OUT"; then
    fail "the conformance suite passes over ssh" "$(printf '%s\n' "$OUT" | tail -n 60; echo "$ERR" | tail -n 20; echo '--- sshd log'; sshd_log_tail)"
else
    pass
fi
echo "conformance suite over ssh: $SUMMARY($(($(date +%s) - START)) s)"
expect_eq "the suite left no key behind" "" "$(cd "$REMOTE" && find . -type f ! -path './tmp~/*' | head)"

# --- b. round trip, reconnect, --create ----------------------------------------------------------
echo "--- b. remote_probe: round trip, reconnect, --create"
export DVOL_SSH_COMMAND="$SSH_CMD"
expect_ok probe "$URL" roundtrip
expect_stdout_contains "ok roundtrip"
expect_ok probe "$URL" reconnect
expect_stdout_contains "ok reconnect"
check "the lost connection was reported as unavailable" grep -q '^lost: unavailable: ' <<<"$OUT"

expect_fail 1 probe "$URL/new" list
expect_stderr_contains "error not_found: "
expect_stderr_contains "does not exist"
check "no directory was made without --create" test ! -e "$REMOTE/new"
expect_ok probe --create "$URL/new" list
check "a listing with --create makes nothing" test ! -e "$REMOTE/new"
expect_ok probe --create "$URL/new" roundtrip
check "the first write with --create made the directory" test -d "$REMOTE/new"
expect_fail 1 probe --create "$URL/no/such/parent" roundtrip
expect_stderr_contains "parent directory does not exist"
check "its parents are never made" test ! -e "$REMOTE/no"

# --- c. refusals ---------------------------------------------------------------------------------
echo "--- c. refusals: host keys, client keys, no dvol on the server"
BEFORE=$(cd "$REMOTE" && find . | LC_ALL=C sort)
refused() { # WHAT EXPECTED-CODE EXPECTED-TEXT ENV...
    local what=$1 code=$2 text=$3
    shift 3
    run env "$@" timeout "$T" "$DVOL_REMOTE_PROBE" "$URL" roundtrip
    if [ "$RC" -ne 1 ] || [[ "$ERR" != "error $code: "* ]] || [[ "$ERR" != *"$text"* ]]; then
        fail "$what: error $code saying '$text'" "$(last_details; echo; echo '--- sshd log'; sshd_log_tail 5)"
        return 1
    fi
    pass
    echo "  $what: $ERR"
}

: >"$TEST_TMP/empty_known_hosts"
refused "an unknown host key" denied "is not known" DVOL_SSH_COMMAND="$(sshd_ssh_command "$TEST_TMP/empty_known_hosts")"
expect_eq "ssh recorded no host key on its own" "" "$(cat "$TEST_TMP/empty_known_hosts")"
check "the unknown-key message names the server and how to check it" grep -q "127.0.0.1:$SSHD_PORT.*ssh -p $SSHD_PORT" <<<"$ERR"

echo "[127.0.0.1]:$SSHD_PORT $(cut -d' ' -f1,2 "$SSH_OTHER_HOST_KEY")" >"$TEST_TMP/changed_known_hosts"
refused "a changed host key" denied "has CHANGED" DVOL_SSH_COMMAND="$(sshd_ssh_command "$TEST_TMP/changed_known_hosts")"

refused "a client key the server does not accept" denied "refused the credentials" \
    DVOL_SSH_COMMAND="$(sshd_ssh_command "" "$SSH_OTHER_KEY")"
check "the message quotes ssh's reason" grep -q "Permission denied (publickey)" <<<"$ERR"

refused "a server where dvol is not at the path given" unsupported "dvol must be installed on the server" \
    DVOL_REMOTE_DVOL=/nonexistent/bin/dvol
refused "a server where dvol is not in the PATH" unsupported "command not found" DVOL_REMOTE_DVOL=dvol-not-installed-here
check "the message says how to name dvol's path" grep -q "DVOL_REMOTE_DVOL=/path/to/dvol" <<<"$ERR"

expect_eq "none of the refused connections wrote anything" "$BEFORE" "$(cd "$REMOTE" && find . | LC_ALL=C sort)"

# --- d. figures ----------------------------------------------------------------------------------
echo "--- d. figures over loopback (not checked)"
expect_ok probe "$URL" bench 500 64
echo "  $OUT"

# --- e. sshd stopped -----------------------------------------------------------------------------
echo "--- e. sshd stopped"
sshd_stop
START=$(date +%s)
expect_fail 1 probe "$URL" list
expect_stderr_contains "error unavailable: "
expect_stderr_contains "Connection refused"
expect_stderr_contains "gave up after"
echo "  gave up after $(($(date +%s) - START)) s: $ERR"

echo "runtime: $(($(date +%s) - T_START)) s"
finish
