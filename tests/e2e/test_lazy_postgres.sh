#!/usr/bin/env bash
# PostgreSQL on a lazy clone, for real (issue 16): the pgbench data set is committed and pushed
# from store A to a remote (the argument: dir, a directory; s3, a Ceph RGW started by
# tests/e2e/rgw.sh), cloned with --lazy into store B, and a postmaster started on B's live
# directory (the FUSE mount, whose chunks come from the remote on first read):
#   - it answers the checksum query with A's checksums, having fetched part of the data only
#     (the mount's $DVOL_TEST_FETCH_LOG counts what the remote served; reported, and checked to
#     be less than the whole);
#   - pgbench transactions run on it (its writes land in the volume's local layer);
#   - stopped, `dvol status` and `dvol diff` see the changes; `dvol commit` records them; status is
#     clean after;
#   - `dvol push` sends only what the commit stored (the chunks the transactions changed, which
#     are all B's store holds) and the commit's trees: less than the first push, and never the
#     base's chunks;
#   - a full clone into store C starts and has B's checksums, its indexes consistent (amcheck);
#   - B's postmaster starts again on the same mount after the commit, with the same checksums;
#   - fsck passes on the three stores.
# Needs root, /dev/fuse and PostgreSQL (installed with apt-get when missing); s3 also Ceph. SKIP
# otherwise. It ends only what it started: its postmaster (by the pid in postmaster.pid), the mount
# processes (dvol umount, by their live directories), the RGW (rgw.sh).
# shellcheck source=tests/cli/lib.sh
. "$(dirname "$0")/../cli/lib.sh"
# shellcheck source=tests/e2e/pg_lib.sh
. "$(dirname "$0")/pg_lib.sh"
# shellcheck source=tests/e2e/rgw.sh
. "$(dirname "$0")/rgw.sh"

BACKEND=${1:-dir}
SCALE=${DVOL_LAZY_PG_SCALE:-5}
[ -c /dev/fuse ] || { echo "SKIP: no /dev/fuse here (FUSE is not available: load the fuse module; in a container, --device /dev/fuse)"; exit 77; }
command -v fusermount3 >/dev/null || apt_install fuse3

MOUNTED=()
# shellcheck disable=SC2317  # run by the EXIT trap
finish_all() {
    stop_our_postmaster
    unmount_dvol_mounts "${MOUNTED[@]}"
    [ "$BACKEND" = s3 ] && rgw_stop "$TEST_TMP/rgw"
}
trap 'finish_all; cleanup' EXIT

if ! pg_setup; then
    echo "SKIP: $PG_SKIP_REASON"
    exit 77
fi

case "$BACKEND" in
dir)
    REMOTE="$TEST_TMP/remote"
    mkdir -p "$REMOTE"
    ;;
s3)
    export RGW_SIZE=${RGW_SIZE:-$((1024 * 1024 * 1024))}
    if ! rgw_start "$TEST_TMP/rgw"; then
        echo "SKIP: no Ceph RGW here: $RGW_SKIP_REASON"
        exit 77
    fi
    echo "Ceph RGW at $RGW_ENDPOINT, started in $RGW_START_SECONDS s"
    rgw_client_env
    rgw_make_bucket dvol-lazy-pg || { echo "SKIP: $RGW_SKIP_REASON"; exit 77; }
    REMOTE="s3://dvol-lazy-pg/e2e"
    ;;
*)
    echo "usage: test_lazy_postgres.sh dir|s3" >&2
    exit 2
    ;;
esac

# "N objects sent, X MiB in K packs" -> bytes (rounded to the KiB).
sent_bytes() {
    python3 -c '
import re, sys
m = re.search(r"([0-9.]+) (B|KiB|MiB|GiB) in [0-9]+ packs?", sys.stdin.read())
print(int(float(m.group(1)) * {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[m.group(2)]) if m else -1)'
}

# --- A: the data set, pushed ------------------------------------------------------------------------------
section "A: pgbench -i -s $SCALE, committed and pushed"
use_store A
expect_ok dvol init pg || abort
P=$(dvol path pg)
pg_prepare_dir "$P"
pg_initdb || abort
pg_start "A: PostgreSQL starts in the live directory" || abort
pg_load_dataset "$SCALE" || abort
BEFORE=$(checksums)
check "A: checksums of five tables" test "$(grep -c '|' <<<"$BEFORE")" -eq 5
pg_stop fast
expect_ok dvol commit -m "pgbench scale $SCALE" pg || abort
DATA_BYTES=$(du -sb --apparent-size "$P" | cut -f1)
expect_ok tdvol push "$REMOTE" pg || abort
FIRST_PUSH=$(sent_bytes <<<"$OUT")
echo "first push: $OUT"
check "A: the first push says what it sent" test "$FIRST_PUSH" -gt 0

# --- B: a lazy clone, PostgreSQL on it -------------------------------------------------------------------
section "B: lazy clone; PostgreSQL starts on it and answers"
use_store B
export DVOL_TEST_FETCH_LOG="$TEST_TMP/fetch.log"
fetched_bytes() { awk '$1 == "read" && $2 ~ /^packs\// { s += $5 } END { print s + 0 }' "$DVOL_TEST_FETCH_LOG" 2>/dev/null; }
expect_ok tdvol clone --lazy --cache-size 512M "$REMOTE" pg || abort
P=$(dvol path pg)
MOUNTED+=("$P")
check "B: the live directory is a FUSE mount" is_mounted "$P"
expect_eq "B: the live directory belongs to postgres, mode 0700" "postgres 700" "$(stat -c '%U %a' "$P")"
pg_prepare_dir "$P"
: >"$DVOL_TEST_FETCH_LOG"
pg_start "B: PostgreSQL starts on the lazy clone" || abort
check "B: postmaster.pid was written into the lazy volume" test -s "$P/postmaster.pid"
expect_eq "B: every table has A's checksums" "$BEFORE" "$(checksums)"
FIRST_QUERY_BYTES=$(fetched_bytes)
echo "B: fetched for the start and the checksum query: $FIRST_QUERY_BYTES bytes of records (the data set: $DATA_BYTES bytes, $FIRST_PUSH bytes on the remote)"
check "B: less than the whole remote was fetched for the first query" test "$FIRST_QUERY_BYTES" -lt "$FIRST_PUSH"
check_indexes "B: the indexes are consistent"

pg_write_notes_script
expect_ok as_pg "$PGBIN/pgbench" -n -c 2 -j 2 -t 300 -d postgres -b tpcb-like@9 -f "$PGHOST/notes.sql@1" || abort
AFTER=$(checksums)
check "B: pgbench changed the tables" test "$AFTER" != "$BEFORE"
check "B: pgbench's history has rows" grep -q '^history|[1-9]' <<<"$AFTER"
pg_stop fast

section "B: status, diff, commit, push"
expect_ok dvol status pg
expect_stdout_contains "Changes not committed"
# The old sides of the changed files come from the remote (not the mount's cache).
expect_ok dvol diff --volume pg
expect_stdout_contains "Binary files a/base/"
expect_ok dvol commit -m "pgbench on the lazy clone" pg || abort
expect_ok dvol status pg
expect_stdout_contains "nothing to commit"
expect_ok tdvol push "$REMOTE" pg || abort
echo "second push: $OUT"
SECOND_PUSH=$(sent_bytes <<<"$OUT")
# What B's store holds is the chunks its commit cut from the layer (a lazy clone stores none):
# the push sends those and the commit's trees, never the base's chunks, which the remote has.
B_PACKS=$(du -sb --apparent-size "$DVOL_ROOT/objects/packs" | cut -f1)
echo "B: the store's packs (the commit's new chunks): $B_PACKS bytes; sent: $SECOND_PUSH bytes; first push: $FIRST_PUSH bytes"
check "B: the push sent something" test "$SECOND_PUSH" -gt 0
check "B: the push sent no more than the commit's new chunks and 1 MiB of trees ($SECOND_PUSH <= $B_PACKS + 1 MiB)" \
    test "$SECOND_PUSH" -le "$((B_PACKS + 1048576))"
check "B: the push sent less than the first push did ($SECOND_PUSH < $FIRST_PUSH bytes)" test "$SECOND_PUSH" -lt "$FIRST_PUSH"

section "B: PostgreSQL starts again on the mount after the commit"
pg_start "B: PostgreSQL starts again" || abort
expect_eq "B: the tables are as pgbench left them" "$AFTER" "$(checksums)"
pg_stop fast

# --- C: a full clone has B's rows ---------------------------------------------------------------------------
section "C: a full clone holds the new rows"
use_store C
expect_ok tdvol clone "$REMOTE" pg || abort
P=$(dvol path pg)
pg_prepare_dir "$P"
pg_start "C: PostgreSQL starts on the full clone" || abort
expect_eq "C: every table has B's checksums" "$AFTER" "$(checksums)"
check_indexes "C: the indexes are consistent"
pg_stop fast

for s in A B C; do
    use_store "$s"
    expect_ok dvol fsck
done

finish
