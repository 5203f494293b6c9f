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

if [ "$(id -u)" -ne 0 ]; then
    echo "SKIP: needs root (runs PostgreSQL as the postgres user on a dvol volume)"
    exit 77
fi

find_pgbin() {
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/pgbench" ] && [ -x "$d/psql" ] &&
            [ -x "$d/pg_isready" ]; then
            echo "$d"
            return 0
        fi
    done
    return 1
}

PGBIN=$(find_pgbin)
if [ -z "$PGBIN" ]; then
    echo "PostgreSQL is not installed; installing it with apt-get"
    if ! command -v apt-get >/dev/null; then
        echo "SKIP: PostgreSQL is not installed and there is no apt-get"
        exit 77
    fi
    apt_install postgresql postgresql-contrib
    PGBIN=$(find_pgbin)
    if [ -z "$PGBIN" ]; then
        echo "SKIP: apt-get could not install postgresql: $(apt_errors)"
        exit 77
    fi
fi
# pgbench moved between packages over versions; it must be there by now.
if ! id postgres >/dev/null 2>&1; then
    echo "SKIP: PostgreSQL is installed but there is no postgres user"
    exit 77
fi
echo "PostgreSQL: $("$PGBIN/postgres" --version) in $PGBIN"

T_START=$(date +%s)
PG_PID=""
PGPORT=$((40000 + $$ % 20000))
PGHOST="$TEST_TMP/sock"
PGLOG="$TEST_TMP/sock/postgres.log"

# Stop the postmaster this test started, and only it: by the pid its postmaster.pid gave when it
# started, checked to still be a postgres process on this test's data directory.
stop_our_postmaster() {
    [ -n "$PG_PID" ] || return 0
    if kill -0 "$PG_PID" 2>/dev/null &&
        tr '\0' ' ' <"/proc/$PG_PID/cmdline" 2>/dev/null | grep -qF -- "postgres -D $P"; then
        kill -QUIT "$PG_PID" 2>/dev/null # immediate shutdown
        for _ in $(seq 1 50); do
            kill -0 "$PG_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$PG_PID" 2>/dev/null && kill -KILL "$PG_PID" 2>/dev/null
    fi
    PG_PID=""
}
trap 'stop_our_postmaster; cleanup' EXIT

# The postgres user must reach the live directory through the test's private directory.
chmod 0711 "$TEST_TMP"
mkdir -p "$PGHOST"
chown postgres:postgres "$PGHOST"
chmod 0700 "$PGHOST"

as_pg() { (cd / && runuser -u postgres -- env HOME="$PGHOST" PGHOST="$PGHOST" PGPORT="$PGPORT" "$@"); }
psql_q() { as_pg "$PGBIN/psql" -X -A -t -q -v ON_ERROR_STOP=1 -d postgres -c "$1"; }

expect_ok dvol init pg || abort
P=$(dvol path)
d=$P
while [ "$d" != "$TEST_TMP" ] && [ "$d" != / ]; do
    d=$(dirname "$d")
    chmod o+x "$d"
done
chown postgres:postgres "$P"
chmod 0700 "$P"

pg_start() {
    run as_pg "$PGBIN/pg_ctl" -D "$P" -l "$PGLOG" -w -t 120 start
    if [ "$RC" -ne 0 ]; then
        fail "$1" "$(last_details; echo; echo '--- server log (tail)'; tail -30 "$PGLOG")"
        return 1
    fi
    pass
    PG_PID=$(head -1 "$P/postmaster.pid" 2>/dev/null)
    run as_pg "$PGBIN/pg_isready" -h "$PGHOST" -p "$PGPORT" -t 30
    if [ "$RC" -ne 0 ]; then
        fail "pg_isready after: $1" "$(last_details)"
        return 1
    fi
    pass
}

pg_stop() { # MODE
    expect_ok as_pg "$PGBIN/pg_ctl" -D "$P" -w -t 120 stop -m "$1"
    if [ "$RC" -eq 0 ]; then
        PG_PID=""
    else
        tail -30 "$PGLOG" >&2
    fi
}

# One line per table: name, row count, md5 of all rows in key order.
checksums() {
    psql_q "
        SELECT 'accounts', count(*), md5(string_agg(t::text, ',' ORDER BY aid)) FROM pgbench_accounts t
        UNION ALL
        SELECT 'branches', count(*), md5(string_agg(t::text, ',' ORDER BY bid)) FROM pgbench_branches t
        UNION ALL
        SELECT 'tellers', count(*), md5(string_agg(t::text, ',' ORDER BY tid)) FROM pgbench_tellers t
        UNION ALL
        SELECT 'history', count(*), md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM pgbench_history t
        UNION ALL
        SELECT 'notes', count(*), md5(string_agg(t::text, ',' ORDER BY id)) FROM notes t"
}

# The B-tree indexes agree with their tables (amcheck, from postgresql-contrib).
check_indexes() {
    run psql_q "SELECT count(*) FROM (SELECT bt_index_check(c.oid, true)
                  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                  JOIN pg_am a ON a.oid = c.relam
                  WHERE a.amname = 'btree' AND c.relnamespace = 'public'::regnamespace) s"
    if [ "$RC" -ne 0 ] || [ "$OUT" -lt 4 ]; then
        fail "$1" "$(last_details)"
        return 1
    fi
    pass
}

# --- a cluster in the live directory ------------------------------------------------------------------
expect_ok as_pg "$PGBIN/initdb" -D "$P" -U postgres -A trust -E UTF8 --locale=C --no-sync || abort
cat >>"$P/postgresql.conf" <<EOF

# dvol e2e test: a private socket, no TCP
listen_addresses = ''
unix_socket_directories = '$PGHOST'
port = $PGPORT
EOF
pg_start "PostgreSQL starts in the live directory" || abort
expect_ok as_pg "$PGBIN/pgbench" -i -s 5 -q -d postgres || abort
# A table with large (TOASTed) values and an index of its own, which pgbench also changes below.
expect_ok psql_q "CREATE EXTENSION amcheck;
    CREATE TABLE notes (id int PRIMARY KEY, body text);
    INSERT INTO notes SELECT g, repeat(md5(g::text), 100 + g % 300) FROM generate_series(1, 2000) g;
    CREATE INDEX notes_body ON notes (md5(body));" || abort
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

# A pgbench script that also changes the TOASTed table.
cat >"$PGHOST/notes.sql" <<'EOF'
\set id random(1, 2000)
UPDATE notes SET body = body || 'x' WHERE id = :id;
EOF
chown postgres "$PGHOST/notes.sql"

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
