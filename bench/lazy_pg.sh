#!/usr/bin/env bash
# Issue 16's "PostgreSQL on a lazy clone of the PostgreSQL set: first query answered in < 1/3 of
# the time of a full clone + start, having fetched < 30% of the bytes", side by side in one run:
# bench.py's PostgreSQL set (the `pg` / `remote-pg` data directory, pgbench -i -s 30 at --size full)
# committed once and pushed to a Ceph RGW (bluestore) and to a directory remote, then for each
# round and each remote, in fresh stores, the page cache dropped before each:
#   - full: `dvol clone URL` + `pg_ctl start -w` + the first query;
#   - lazy: `dvol clone --lazy URL` + `pg_ctl start -w` + the first query, and the bytes the
#     remote served for it (the mount's $DVOL_TEST_FETCH_LOG), against the volume's bytes (the data
#     directory's apparent size) and the remote's stored bytes (what the push sent);
#   - then, on the lazy clone, a scan of the largest table (what a query that reads everything
#     costs: the fetched bytes after it);
# with the load average before each, since the machine may be shared. The first query is a point
# lookup through the primary key (`SELECT abalance FROM pgbench_accounts WHERE aid = N`), what an
# application asks first; the order of full and lazy alternates from round to round.
#
#   bench/lazy_pg.sh [DVOL]     (default: build-bench/cli/dvol, else build/cli/dvol; ROUNDS=3,
#                                SIZE=full or small, REMOTES="s3 dir"; needs root, FUSE, PostgreSQL)
#
# The data set is made under $BENCH_DIR/data (default /var/tmp/dvol-bench) by bench.py's own
# generator, once (bench/run.sh's runs reuse it); everything else under $BENCH_DIR/lazy-pg,
# deleted after. PostgreSQL writes its pid file and WAL into the lazy volume's write layer.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lazy_lib.sh
. "$ROOT/bench/lazy_lib.sh"
lazy_find_dvol "${1:-}"
[ -c /dev/fuse ] || { echo "no /dev/fuse: lazy volumes need FUSE" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root (Ceph, PostgreSQL as the postgres user, dropping the page cache)" >&2; exit 1; }
PGBIN=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r | head -n 1)
[ -x "$PGBIN/pg_ctl" ] || { echo "PostgreSQL is not installed (/usr/lib/postgresql/*/bin)" >&2; exit 1; }
ROUNDS=${ROUNDS:-3}
SIZE=${SIZE:-full}
REMOTES=${REMOTES:-s3 dir}
BENCH_DIR=${BENCH_DIR:-/var/tmp/dvol-bench}
W=$BENCH_DIR/lazy-pg
MIB=$((1024 * 1024))
rm -rf "$W"
mkdir -p "$W/sock"
chown postgres:postgres "$W/sock"
chmod 0711 "$W"
PORT=$((40000 + $$ % 20000))
RGW_UP=0
PG_DIR=""
d() { "$DVOL" --disable-docker-integration "$@"; }
as_pg() { (cd / && runuser -u postgres -- "$@"); }
pg_stop() { [ -n "$PG_DIR" ] && as_pg "$PGBIN/pg_ctl" -D "$PG_DIR" -w -t 60 stop -m "${1:-fast}" >/dev/null 2>&1; PG_DIR=""; }
cleanup() {
    pg_stop immediate
    for s in "$W"/store-*; do [ -d "$s" ] && DVOL_ROOT=$s d rm -f pg >/dev/null 2>&1; done
    [ "$RGW_UP" = 1 ] && rgw_stop "$W/rgw"
    rm -rf "$W"
}
trap cleanup EXIT
load() { uptime | sed 's/.*load average: //'; }
cold() { sync; echo 3 >/proc/sys/vm/drop_caches; }
now() { echo "$EPOCHREALTIME"; }
secs() { python3 -c "print('%.2f' % ($2 - $1))"; }

echo "dvol: $DVOL; PostgreSQL: $("$PGBIN/postgres" --version)"
echo "(load: $(load))"
python3 - "$ROOT/bench" "$BENCH_DIR" "$SIZE" <<'EOF' || exit 1
import sys
sys.path.insert(0, sys.argv[1])
import bench
bench.prepare(sys.argv[2], "pg", sys.argv[3], bench.SIZES[sys.argv[3]])
EOF
SET=$BENCH_DIR/data/pg-$SIZE/s1
VOLUME_BYTES=$(du -sb --apparent-size "$SET" | cut -f1)
ROWS=$(python3 -c "print({'full': 30, 'small': 5}['$SIZE'] * 100000)")
AID=$((ROWS * 7 / 10 + 1234))
echo "the set: $SET, $((VOLUME_BYTES / MIB)) MiB (apparent size); first query: SELECT abalance FROM pgbench_accounts WHERE aid = $AID"

export DVOL_ROOT=$W/store-src
d init pg >/dev/null
cp -a "$SET/." "$(d path pg)/"
rm -f "$(d path pg)/postmaster.pid"
d commit -m "pg set" pg >/dev/null || { echo "commit failed"; exit 1; }
# "N objects sent, X MiB in K packs" -> bytes
sent_bytes() {
    python3 -c '
import re, sys
m = re.search(r"([0-9.]+) (B|KiB|MiB|GiB) in [0-9]+ packs?", sys.stdin.read())
print(int(float(m.group(1)) * {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[m.group(2)]) if m else -1)'
}
declare -A URL STORED
for r in $REMOTES; do
    case $r in
    dir)
        mkdir -p "$W/remote"
        URL[dir]=$W/remote
        ;;
    s3)
        lazy_rgw_up "$W/rgw" $((8 * 1024)) lazypg
        URL[s3]=s3://lazypg/x
        ;;
    *) echo "unknown remote $r (s3, dir)" >&2; exit 2 ;;
    esac
    out=$(d push "${URL[$r]}" pg 2>&1) || { echo "push to $r failed: $out"; exit 1; }
    STORED[$r]=$(sent_bytes <<<"$out")
    echo "pushed to $r: $out"
done

# The lazy clone's scan of the largest table, then stop and remove it.
lazy_scan() {
    local r=$1 t0 t1 fb fn
    t0=$(now)
    as_pg "$PGBIN/psql" -X -A -t -q -h "$W/sock" -p "$PORT" -U postgres -d postgres \
        -c "SELECT count(*), sum(abalance) FROM pgbench_accounts" >/dev/null || { echo "scan ($r) failed"; exit 1; }
    t1=$(now)
    read -r fb fn < <(awk '$1 == "read" && $2 ~ /^packs\// { s += $5; n++ } END { printf "%d %d", s, n }' "$DVOL_TEST_FETCH_LOG")
    SCANS+=("$r: then a scan of pgbench_accounts in $(secs "$t0" "$t1") s; fetched in all $(python3 -c "print('%.1f MiB = %.1f%% of the volume, %.1f%% of the stored bytes' % ($fb / 2**20, 100 * $fb / $VOLUME_BYTES, 100 * $fb / ${STORED[$r]}))")")
    pg_stop fast
    d rm -f pg >/dev/null
}

# One measured start: $1 full|lazy, $2 the remote. Prints a table row; on the lazy clone, then
# scans the largest table (noted in SCANS). Stops PostgreSQL and removes the volume after.
run_one() {
    local kind=$1 r=$2 t0 t1 t2 t3 l live got fb fn clone_flag=""
    export DVOL_ROOT=$W/store-$kind DVOL_TEST_FETCH_LOG=$W/fetch-$kind.log
    rm -rf "$DVOL_ROOT"
    [ "$kind" = lazy ] && clone_flag="--lazy --cache-size 1G"
    : >"$DVOL_TEST_FETCH_LOG"
    cold
    l=$(load)
    t0=$(now)
    # shellcheck disable=SC2086
    d clone $clone_flag "${URL[$r]}" pg >/dev/null || { echo "clone ($kind, $r) failed"; exit 1; }
    t1=$(now)
    live=$(d path pg)
    chmod 0711 "$DVOL_ROOT" "$DVOL_ROOT/volumes" "$DVOL_ROOT/volumes/pg" 2>/dev/null
    chown postgres:postgres "$live"
    chmod 0700 "$live"
    as_pg "$PGBIN/pg_ctl" -D "$live" -l "$W/sock/pg-$kind.log" -w -t 300 \
        -o "-k $W/sock -p $PORT -c listen_addresses=''" start >/dev/null || { echo "pg_ctl start ($kind, $r) failed"; tail "$W/sock/pg-$kind.log"; exit 1; }
    PG_DIR=$live
    t2=$(now)
    got=$(as_pg "$PGBIN/psql" -X -A -t -q -h "$W/sock" -p "$PORT" -U postgres -d postgres \
        -c "SELECT abalance FROM pgbench_accounts WHERE aid = $AID") || { echo "query ($kind, $r) failed"; exit 1; }
    t3=$(now)
    [ "$got" = 0 ] || echo "  (the query answered '$got', expected 0)"
    read -r fb fn < <(awk '$1 == "read" && $2 ~ /^packs\// { s += $5; n++ } END { printf "%d %d", s, n }' "$DVOL_TEST_FETCH_LOG")
    if [ "$kind" = lazy ]; then
        LAZY_T=$(secs "$t0" "$t3")
        LAZY_FB=$fb
        printf '| %s | lazy | %s | %s | %s | %s | **%s** | %.1f MiB in %d reads = %.2f%% of the volume, %.1f%% of the stored bytes |\n' \
            "$r" "$l" "$(secs "$t0" "$t1")" "$(secs "$t1" "$t2")" "$(secs "$t2" "$t3")" "$LAZY_T" \
            "$(python3 -c "print($fb / 2**20)")" "$fn" "$(python3 -c "print(100 * $fb / $VOLUME_BYTES)")" "$(python3 -c "print(100 * $fb / ${STORED[$r]})")"
        lazy_scan "$r"
    else
        FULL_T=$(secs "$t0" "$t3")
        printf '| %s | full | %s | %s | %s | %s | **%s** | everything: %.1f MiB |\n' \
            "$r" "$l" "$(secs "$t0" "$t1")" "$(secs "$t1" "$t2")" "$(secs "$t2" "$t3")" "$FULL_T" "$(python3 -c "print(${STORED[$r]} / 2**20)")"
        pg_stop fast
        d rm -f pg >/dev/null
    fi
}

SCANS=()
VERDICTS=()
echo
echo "| remote | clone | load before | clone s | pg_ctl start s | first query s | total s | fetched from the remote |"
echo "|---|---|---|---:|---:|---:|---:|---|"
for round in $(seq 1 "$ROUNDS"); do
    for r in $REMOTES; do
        if [ $((round % 2)) = 1 ]; then
            run_one full "$r"
            run_one lazy "$r"
        else
            run_one lazy "$r"
            run_one full "$r"
        fi
        VERDICTS+=("$(python3 -c "
t, f, b, v = $LAZY_T, $FULL_T, $LAZY_FB, $VOLUME_BYTES
print('round $round, $r: lazy %.2f s vs full %.2f s = %.2f of it (target < 1/3: %s); fetched %.2f%% of the volume (target < 30%%: %s)' %
      (t, f, t / f, 'PASS' if t < f / 3 else 'MISS', 100 * b / v, 'PASS' if b < 0.3 * v else 'MISS'))")")
    done
done
echo
printf '%s\n' "${SCANS[@]}"
echo
echo "## targets"
printf '%s\n' "${VERDICTS[@]}"
echo "(load at the end: $(load))"
