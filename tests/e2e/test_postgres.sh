#!/usr/bin/env bash
# PostgreSQL for real: a cluster whose data directory is a dvol volume's live directory.
# initdb, pgbench -i, checksums of every pgbench table, stop, `dvol commit`; then pgbench
# transactions, a stop (clean in one round, `-m immediate` - a data directory that needs crash
# recovery - in another), `dvol reset --hard HEAD`: `dvol status` must be clean, PostgreSQL
# must start cleanly and every table must have the checksum it had before the commit, with its
# indexes consistent (amcheck).
#
# It runs its own postmaster as the postgres user (never the system cluster or service), on a
# unix socket in a private directory with a non-default port number and no TCP at all, and kills
# only that postmaster (by the pid in its postmaster.pid) when it ends, whatever the way.
# Needs root (initdb runs as postgres, the live directory is chowned to it); PostgreSQL is
# installed with apt-get when missing (postgresql and postgresql-contrib, for pgbench and amcheck;
# without their recommended packages, sysstat, logrotate and e2fsprogs, which the test does not use).
# shellcheck source=tests/cli/lib.sh
. "$(dirname "$0")/../cli/lib.sh"

# shellcheck source=tests/e2e/pg_lib.sh
. "$(dirname "$0")/pg_lib.sh"
trap 'stop_our_postmaster; cleanup' EXIT

if ! pg_setup; then
    echo "SKIP: $PG_SKIP_REASON"
    exit 77
fi

T_START=$(date +%s)
expect_ok dvol init pg || abort
P=$(dvol path)
pg_prepare_dir "$P"

# --- a cluster in the live directory ------------------------------------------------------------------
pg_initdb || abort
pg_start "PostgreSQL starts in the live directory" || abort
pg_load_dataset 5 || abort
BEFORE=$(checksums)
echo "before the commit:"
sed "s/^/  /" <<<"$BEFORE"
check "checksums of five tables" test "$(grep -c '|' <<<"$BEFORE")" -eq 5
check "pgbench_accounts has 500000 rows" grep -q '^accounts|500000|' <<<"$BEFORE"
check_indexes "the indexes are consistent before the commit"
pg_stop fast

t0=$(date +%s)
expect_ok dvol commit -m before || abort
COMMIT=$OUT
echo "commit of $(du -sh "$P" | cut -f1): $(($(date +%s) - t0)) s"
expect_ok dvol status
expect_stdout_contains "nothing to commit"

pg_write_notes_script

round() { # NAME STOP_MODE
    local name=$1 mode=$2
    echo "--- round $name: pgbench, stop -m $mode, reset --hard HEAD"
    pg_start "$name: PostgreSQL starts for pgbench" || return 1
    expect_ok as_pg "$PGBIN/pgbench" -n -c 2 -j 2 -T 8 -d postgres \
        -b tpcb-like@9 -f "$PGHOST/notes.sql@1"
    grep -E '^(number of transactions actually processed|tps)' <<<"$OUT" | sed 's/^/  /'
    local during
    during=$(checksums)
    check "$name: pgbench changed the accounts, history and notes" \
        test "$(grep -E '^(accounts|history|notes)\|' <<<"$during")" != "$(grep -E '^(accounts|history|notes)\|' <<<"$BEFORE")"
    pg_stop "$mode"
    if [ "$mode" = immediate ]; then
        run "$PGBIN/pg_controldata" "$P"
        check "$name: the stopped cluster needs crash recovery" grep -q 'Database cluster state: *in production' <<<"$OUT"
    fi
    expect_ok dvol status
    expect_stdout_contains "Changes not committed"

    t0=$(date +%s)
    expect_ok dvol reset --hard HEAD || return 1
    echo "reset --hard HEAD: $(($(date +%s) - t0)) s"
    expect_stdout_eq "HEAD is now at ${COMMIT:0:12} before"
    expect_ok dvol status
    expect_stdout_eq "$(printf 'On branch master of volume pg\nnothing to commit, live directory clean')"
    check "$name: no postmaster.pid after the reset" test ! -e "$P/postmaster.pid"
    run "$PGBIN/pg_controldata" "$P"
    check "$name: the reset cluster is cleanly shut down" grep -q 'Database cluster state: *shut down$' <<<"$OUT"

    # The server log of this start alone, to look for crash recovery in it.
    cat "$PGLOG" >>"$PGLOG.keep"
    : >"$PGLOG"
    pg_start "$name: PostgreSQL starts cleanly after reset --hard HEAD" || return 1
    if grep -qE 'database system was (interrupted|not properly shut down)|redo starts' "$PGLOG"; then
        fail "$name: the start after the reset went through crash recovery" "$(tail -20 "$PGLOG")"
    else
        pass
    fi
    local after
    after=$(checksums)
    expect_eq "$name: every table has its checksum from before the commit" "$BEFORE" "$after"
    check_indexes "$name: the indexes are consistent after the reset"
    pg_stop fast
}

round "clean stop" fast
round "immediate stop" immediate

# After both rounds the branch is still the one commit, and the data directory as committed.
expect_ok dvol --json log
json_check "one commit on master" 'len(d) == 1'

echo "runtime: $(($(date +%s) - T_START)) s"
stop_our_postmaster
finish
