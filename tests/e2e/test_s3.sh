#!/usr/bin/env bash
# The S3 remote against a real S3 server: a single-node Ceph RADOS Gateway started here on
# 127.0.0.1 (tests/e2e/rgw.sh), with a fresh user and bucket.
#
#   a. the server checks what the backend relies on: SigV4 enforced, the payload hash checked;
#   b. the S3 cases of the unit tests ($DVOL_UNIT_TESTS "[s3]") with DVOL_TEST_REMOTE_URL and
#      the AWS_* variables set: objects, ranges, listings past 1000 keys and with small pages,
#      create and compare-and-swap races, a 24 MiB streamed upload, refused credentials, a
#      missing bucket; none may print SKIP;
#   b2. the conformance suite every backend runs ($DVOL_UNIT_TESTS "[remote_backend]"), through
#      open_backend() as dvol opens a remote;
#   c. a bucket over its quota: no_space ("[.s3-quota]");
#   d. the gateway frozen (SIGSTOP): every operation is unavailable after the stall timeout,
#      not a hang ("[.s3-down]"); thawed, it serves again;
#   e. the gateway stopped: unavailable (connection refused), and no Ceph daemon is left;
#   f. no output of any step holds the access key or the secret.
# It also prints the gateway's start time and the latency of small requests on loopback
# through the backend (one kept-alive connection).
#
# Needs root; installs ceph-mon ceph-osd radosgw ceph-common with apt-get when missing. SKIPs
# (exit 77) when it cannot start the gateway, saying why. Everything the cluster writes stays
# under $TEST_TMP/rgw; its daemons are stopped by their pids when the test ends, however it ends.
# shellcheck source=tests/cli/lib.sh
. "$(dirname "$0")/../cli/lib.sh"
# shellcheck source=tests/e2e/rgw.sh
. "$(dirname "$0")/rgw.sh"

if [ -z "${DVOL_UNIT_TESTS:-}" ] || [ ! -x "$DVOL_UNIT_TESTS" ]; then
    echo "FAIL: set DVOL_UNIT_TESTS to the unit_tests binary under test" >&2
    exit 1
fi

T_START=$(date +%s)
RGW_DIR="$TEST_TMP/rgw"
# shellcheck disable=SC2317 # called by the trap
s3_cleanup() {
    rgw_stop "$RGW_DIR"
    cleanup
}
trap s3_cleanup EXIT

if ! rgw_start "$RGW_DIR"; then
    echo "SKIP: no Ceph RGW here: $RGW_SKIP_REASON"
    exit 77
fi
echo "Ceph RGW $(radosgw --version 2>/dev/null | awk '{print $3}') at $RGW_ENDPOINT, started in $RGW_START_SECONDS s"

rgw_client_env
BUCKET=dvol-test
export DVOL_TEST_REMOTE_URL="s3://$BUCKET/e2e"
LOGS="$TEST_TMP/logs"
mkdir -p "$LOGS"

# curl signing with the test user's keys (given in a config file, not on the command line).
printf 'user = "%s:%s"\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$TEST_TMP/curl.conf"
s3curl() {
    curl -s --max-time 30 -K "$TEST_TMP/curl.conf" --aws-sigv4 "aws:amz:$AWS_REGION:s3" "$@"
}
# HTTP status of a request, its body in $TEST_TMP/body.
s3status() {
    s3curl -o "$TEST_TMP/body" -w '%{http_code}' "$@"
}

# --- a. the server ---------------------------------------------------------------------------
echo "--- a. bucket, SigV4 and payload hash checks"
expect_eq "create bucket $BUCKET" 200 "$(s3status -X PUT -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$RGW_ENDPOINT/$BUCKET")"
printf hello >"$TEST_TMP/hello"
HELLO_SHA=$(sha256sum "$TEST_TMP/hello" | cut -d' ' -f1)
expect_eq "PUT with the payload's SHA-256" 200 \
    "$(s3status -X PUT -H "x-amz-content-sha256: $HELLO_SHA" --data-binary @"$TEST_TMP/hello" "$RGW_ENDPOINT/$BUCKET/probe")"
expect_eq "PUT with another payload's SHA-256 is refused" 400 \
    "$(s3status -X PUT -H "x-amz-content-sha256: $(printf x | sha256sum | cut -d' ' -f1)" --data-binary @"$TEST_TMP/hello" \
        "$RGW_ENDPOINT/$BUCKET/probe2")"
check "... as XAmzContentSHA256Mismatch" grep -q XAmzContentSHA256Mismatch "$TEST_TMP/body"
expect_eq "an unsigned request is refused" 403 "$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 "$RGW_ENDPOINT/$BUCKET/probe")"

# Runs the unit test binary with ARGS under a time limit; its output in $LOGS/NAME.
unit() { # NAME TIMEOUT ARGS...
    local name=$1 secs=$2
    shift 2
    LAST_CMD="$DVOL_UNIT_TESTS $*"
    timeout "$secs" "$DVOL_UNIT_TESTS" "$@" >"$LOGS/$name" 2>&1
    RC=$?
    OUT=$(tail -n 60 "$LOGS/$name")
    ERR=""
}
expect_unit_ok() { # WHAT NAME TIMEOUT ARGS...
    local what=$1
    shift
    unit "$@"
    if [ "$RC" -ne 0 ]; then
        fail "$what" "$(last_details)"
        return 1
    fi
    if grep -q 'SKIP:' "$LOGS/$1"; then
        fail "$what: no case may SKIP with a server" "$(grep -B2 -A3 'SKIP:' "$LOGS/$1" | head -20)"
        return 1
    fi
    pass
    echo "    $(grep -E '^All tests passed' "$LOGS/$1")"
}

# --- b. the backend's cases ------------------------------------------------------------------
echo "--- b. S3Backend against the gateway (unit_tests [s3])"
t0=$(date +%s.%N)
expect_unit_ok "unit_tests [s3] against RGW" s3 600 "[s3]" -d yes
echo "    $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b - a }'); slowest: $(grep -E '^[0-9.]+ s: ' "$LOGS/s3" | sort -rn | head -n 3 | tr '\n' ';')"
unit latency 120 "[.s3-latency]"
check "the latency probe ran" test "$RC" -eq 0 || echo "    $(last_details)" >&2
grep '^latency' "$LOGS/latency" | sed 's/^/    /'
races=$(grep -c 'http_status=500' "$RGW_DIR/log/client.rgw.a.log" 2>/dev/null)
echo "    RGW answered ${races:-0} racing conditional PUTs with 500 (settled by reading the ref back)"

echo "--- b2. the conformance suite every backend runs (unit_tests [remote_backend]) against the gateway"
expect_unit_ok "unit_tests [remote_backend] against RGW (through open_backend)" conformance 600 "[remote_backend]"

# --- c. quota -----------------------------------------------------------------------------------
echo "--- c. a bucket over its quota"
expect_eq "create bucket dvol-quota" 200 "$(s3status -X PUT -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$RGW_ENDPOINT/dvol-quota")"
if timeout 60 radosgw-admin -c "$RGW_DIR/ceph.conf" quota set --quota-scope=bucket --bucket=dvol-quota --max-size=1048576 \
    >"$LOGS/quota" 2>&1 &&
    timeout 60 radosgw-admin -c "$RGW_DIR/ceph.conf" quota enable --quota-scope=bucket --bucket=dvol-quota >>"$LOGS/quota" 2>&1; then
    pass
    export DVOL_TEST_S3_QUOTA_URL=s3://dvol-quota/q
    expect_unit_ok "a 2 MiB write into a 1 MiB quota is no_space" quota 120 "[.s3-quota]"
    unset DVOL_TEST_S3_QUOTA_URL
else
    fail "radosgw-admin quota set/enable" "$(tail -n 5 "$LOGS/quota")"
fi

# --- d. frozen --------------------------------------------------------------------------------
echo "--- d. the gateway frozen (SIGSTOP)"
if rgw_signal "$RGW_DIR" STOP; then
    pass
    t0=$(date +%s.%N)
    expect_unit_ok "a frozen gateway: every operation unavailable" down-frozen 300 "[.s3-down]"
    echo "    4 operations failed in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b - a }') (stall timeout 3 s each)"
    rgw_signal "$RGW_DIR" CONT
    expect_eq "the thawed gateway serves again" 200 "$(s3status -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$RGW_ENDPOINT/$BUCKET/probe")"
else
    fail "SIGSTOP to radosgw (pid file $RGW_DIR/run/client.rgw.a.pid)"
fi

# --- e. stopped -------------------------------------------------------------------------------
echo "--- e. the gateway stopped"
# Keep the logs for the secret check below; rgw_stop removes the directory.
cp "$RGW_DIR/log/client.rgw.a.log" "$LOGS/rgw.log" 2>/dev/null
rgw_stop "$RGW_DIR"
check "the cluster's directory is gone" test ! -e "$RGW_DIR"
left=$(pgrep -af -- "$RGW_DIR/ceph.conf")
expect_eq "no Ceph daemon of this test is left" "" "$left"
t0=$(date +%s.%N)
expect_unit_ok "a stopped gateway: every operation unavailable" down-stopped 120 "[.s3-down]"
echo "    4 operations failed in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f s", b - a }')"

# --- f. no credential in any output ------------------------------------------------------------
echo "--- f. no credential in any output"
# shellcheck disable=SC2317 # called through check
lacks() { ! grep -qF -- "$1" "$2"; } # STRING FILE
for f in "$LOGS"/*; do
    [ "$f" = "$LOGS/rgw.log" ] && continue
    check "$(basename "$f"): no secret key" lacks "$AWS_SECRET_ACCESS_KEY" "$f"
    check "$(basename "$f"): no access key" lacks "$AWS_ACCESS_KEY_ID" "$f"
done
check "the gateway's log has no secret key" lacks "$AWS_SECRET_ACCESS_KEY" "$LOGS/rgw.log"

echo "runtime: $(($(date +%s) - T_START)) s"
finish
