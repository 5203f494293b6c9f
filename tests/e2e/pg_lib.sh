# A private PostgreSQL cluster in a dvol live directory, for the end-to-end tests
# (test_postgres.sh, test_remotes.sh). Source it after tests/cli/lib.sh.
#
#   pg_setup                  finds PostgreSQL's binaries (installs postgresql and
#                             postgresql-contrib with apt-get when missing), makes the private
#                             socket directory; 0 with PGBIN set, else 1 with PG_SKIP_REASON
#                             (one line). The caller's EXIT trap must call stop_our_postmaster.
#   pg_prepare_dir DIR        lets the postgres user reach DIR (o+x on its parents up to
#                             $TEST_TMP) and gives it DIR (owner postgres, mode 0700)
#   pg_initdb                 initdb in $P, configured for the private socket and no TCP
#   pg_start WHAT             starts the postmaster on $P (a check named WHAT)
#   pg_stop MODE              stops it (fast, immediate, smart)
#   pg_load_dataset SCALE     pgbench -i -s SCALE, the amcheck extension and a table "notes"
#                             with large (TOASTed) values and an index of its own
#   checksums                 one line per table: name, row count, md5 of all rows in key order
#   check_indexes WHAT        every B-tree index agrees with its table (amcheck)
#   stop_our_postmaster       stops the postmaster this test started, and only it
#   as_pg CMD..., psql_q SQL  run as the postgres user against the private socket
#
# $P is the data directory the functions act on (a volume's live directory). The postmaster
# listens only on a unix socket in $PGHOST (under $TEST_TMP), port $PGPORT, never on TCP; it
# runs as the postgres user, never the system's cluster or service; it is killed only by the pid
# its postmaster.pid gave, checked to still be a postgres process on the directory it started on.
# shellcheck disable=SC2034 # PG_SKIP_REASON is for the callers

PG_PID=""
PG_RUNNING_DIR=""
PGBIN=""
PG_SKIP_REASON=""
PGPORT=$((40000 + $$ % 20000))
PGHOST="$TEST_TMP/sock"
PGLOG="$TEST_TMP/sock/postgres.log"

_pg_find_bin() {
    local d
    for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r); do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/pgbench" ] && [ -x "$d/psql" ] &&
            [ -x "$d/pg_isready" ]; then
            echo "$d"
            return 0
        fi
    done
    return 1
}

pg_setup() {
    if [ "$(id -u)" -ne 0 ]; then
        PG_SKIP_REASON="needs root (runs PostgreSQL as the postgres user on a dvol volume)"
        return 1
    fi
    PGBIN=$(_pg_find_bin)
    if [ -z "$PGBIN" ]; then
        echo "PostgreSQL is not installed; installing it with apt-get"
        if ! command -v apt-get >/dev/null; then
            PG_SKIP_REASON="PostgreSQL is not installed and there is no apt-get"
            return 1
        fi
        apt_install postgresql postgresql-contrib
        PGBIN=$(_pg_find_bin)
        if [ -z "$PGBIN" ]; then
            PG_SKIP_REASON="apt-get could not install postgresql: $(apt_errors)"
            return 1
        fi
    fi
    # pgbench moved between packages over versions; it must be there by now.
    if ! id postgres >/dev/null 2>&1; then
        PG_SKIP_REASON="PostgreSQL is installed but there is no postgres user"
        return 1
    fi
    echo "PostgreSQL: $("$PGBIN/postgres" --version) in $PGBIN"
    # The postgres user must reach the live directories through the test's private directory.
    chmod 0711 "$TEST_TMP"
    mkdir -p "$PGHOST"
    chown postgres:postgres "$PGHOST"
    chmod 0700 "$PGHOST"
    return 0
}

# Stop the postmaster this test started, and only it: by the pid its postmaster.pid gave when it
# started, checked to still be a postgres process on the data directory it started on.
stop_our_postmaster() {
    [ -n "$PG_PID" ] || return 0
    if kill -0 "$PG_PID" 2>/dev/null &&
        tr '\0' ' ' <"/proc/$PG_PID/cmdline" 2>/dev/null | grep -qF -- "postgres -D $PG_RUNNING_DIR"; then
        kill -QUIT "$PG_PID" 2>/dev/null # immediate shutdown
        for _ in $(seq 1 50); do
            kill -0 "$PG_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$PG_PID" 2>/dev/null && kill -KILL "$PG_PID" 2>/dev/null
    fi
    PG_PID=""
}

as_pg() { (cd / && runuser -u postgres -- env HOME="$PGHOST" PGHOST="$PGHOST" PGPORT="$PGPORT" "$@"); }
psql_q() { as_pg "$PGBIN/psql" -X -A -t -q -v ON_ERROR_STOP=1 -d postgres -c "$1"; }

pg_prepare_dir() { # DIR
    local d=$1
    while [ "$d" != "$TEST_TMP" ] && [ "$d" != / ]; do
        d=$(dirname "$d")
        chmod o+x "$d"
    done
    chown postgres:postgres "$1"
    chmod 0700 "$1"
}

pg_initdb() {
    expect_ok as_pg "$PGBIN/initdb" -D "$P" -U postgres -A trust -E UTF8 --locale=C --no-sync || return 1
    cat >>"$P/postgresql.conf" <<EOF

# dvol e2e test: a private socket, no TCP
listen_addresses = ''
unix_socket_directories = '$PGHOST'
port = $PGPORT
EOF
}

pg_start() { # WHAT
    run as_pg "$PGBIN/pg_ctl" -D "$P" -l "$PGLOG" -w -t 120 start
    if [ "$RC" -ne 0 ]; then
        fail "$1" "$(last_details; echo; echo '--- server log (tail)'; tail -30 "$PGLOG")"
        return 1
    fi
    pass
    PG_PID=$(head -1 "$P/postmaster.pid" 2>/dev/null)
    PG_RUNNING_DIR=$P
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

pg_load_dataset() { # SCALE
    expect_ok as_pg "$PGBIN/pgbench" -i -s "$1" -q -d postgres || return 1
    # A table with large (TOASTed) values and an index of its own, which pgbench can also change.
    expect_ok psql_q "CREATE EXTENSION amcheck;
        CREATE TABLE notes (id int PRIMARY KEY, body text);
        INSERT INTO notes SELECT g, repeat(md5(g::text), 100 + g % 300) FROM generate_series(1, 2000) g;
        CREATE INDEX notes_body ON notes (md5(body));"
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
check_indexes() { # WHAT
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

# A pgbench script that also changes the TOASTed table: $PGHOST/notes.sql.
pg_write_notes_script() {
    cat >"$PGHOST/notes.sql" <<'EOF'
\set id random(1, 2000)
UPDATE notes SET body = body || 'x' WHERE id = :id;
EOF
    chown postgres "$PGHOST/notes.sql"
}
