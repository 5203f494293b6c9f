#!/usr/bin/env bash
# dvol gc: reclaims what no branch of any volume reaches (a commit dropped by reset, a deleted
# branch, a removed volume), rewrites packs that are mostly garbage, never removes what is still
# reachable, and drops the commits it removed from what `reset` can find. Also: the reflog finds
# a dropped commit before gc; gc on an empty store and twice in a row; gc after an interrupted
# reset left files in the live directory whose commit is gone.
# shellcheck source=tests/cli/lib.sh disable=SC2016  # checks eval single-quoted tests on purpose
. "$(dirname "$0")/lib.sh"

avail_kib=$(df -Pk "$TEST_TMP" | awk 'NR == 2 { print $4 }')
if [ "$avail_kib" -lt $((1200 * 1024)) ]; then
    echo "SKIP: needs 1200 MiB free in ${TMPDIR:-/tmp}, has $((avail_kib / 1024)) MiB"
    exit 77
fi

objects_size() { du -sb "$DVOL_ROOT/objects" | cut -f1; }
mib() { awk -v b="$1" 'BEGIN { printf "%.2f MiB", b / 1048576 }'; }

# run_gc: runs dvol gc and parses its summary into GC_COMMITS GC_OBJECTS GC_DELETED GC_REWROTE
# GC_BYTES.
GC_RE='^Removed ([0-9]+) commit\(s\) and ([0-9]+) object\(s\); deleted ([0-9]+) pack\(s\), rewrote ([0-9]+); reclaimed [0-9.]+ (bytes|KiB|MiB|GiB) \(([0-9]+) bytes\)$'
run_gc() {
    GC_COMMITS=-1 GC_OBJECTS=-1 GC_DELETED=-1 GC_REWROTE=-1 GC_BYTES=-1
    expect_ok tdvol gc || return 1
    if [[ "$OUT" =~ $GC_RE ]]; then
        GC_COMMITS=${BASH_REMATCH[1]} GC_OBJECTS=${BASH_REMATCH[2]} GC_DELETED=${BASH_REMATCH[3]}
        GC_REWROTE=${BASH_REMATCH[4]} GC_BYTES=${BASH_REMATCH[6]}
        pass
        echo "gc: $OUT"
    else
        fail "gc's summary has the documented form" "$(last_details)"
        return 1
    fi
}

# wipe VOL: empties the live directory, so that a reset must read everything back from the store.
wipe() {
    local live
    live=$(tdvol path "$1")
    find "$live" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
}

# restores VOL REF MANIFEST WHAT: from an emptied live directory, reset --hard REF gives MANIFEST.
restores() {
    local vol=$1 ref=$2 want=$3 what=$4
    wipe "$vol"
    expect_ok tdvol reset --hard "$ref" "$vol" || return 1
    expect_eq "$what: reset --hard ${ref:0:12} in $vol restores it exactly" "$want" "$(manifest "$(tdvol path "$vol")")"
}

# shrank_by WHAT BEFORE AFTER EXPECTED: objects/ shrank by about EXPECTED bytes (-4% .. +6%;
# random data does not compress, and trees and record headers add a little).
shrank_by() {
    local what=$1 before=$2 after=$3 expected=$4
    local drop=$((before - after))
    echo "$what: objects/ $(mib "$before") -> $(mib "$after") (-$(mib "$drop"), expected about -$(mib "$expected"))"
    check "$what: objects/ shrinks by about $(mib "$expected") (it shrank by $(mib "$drop"))" \
        test "$drop" -ge $((expected * 96 / 100)) -a "$drop" -le $((expected * 106 / 100))
}

# --- gc on an empty store ---------------------------------------------------------------------------
section "empty store"
EMPTY_SUMMARY="Removed 0 commit(s) and 0 object(s); deleted 0 pack(s), rewrote 0; reclaimed 0 bytes (0 bytes)"
# Where there is no store, gc says so and makes none.
expect_fail 1 tdvol -p "$TEST_TMP/fresh" gc
expect_stderr_contains "no dvol store at $TEST_TMP/fresh"
check "gc makes no store where there is none" test ! -e "$TEST_TMP/fresh/dvol.db"
# A store whose only volume was removed.
expect_ok tdvol -p "$TEST_TMP/fresh" init gone
expect_ok tdvol -p "$TEST_TMP/fresh" rm -f gone
expect_ok tdvol -p "$TEST_TMP/fresh" gc
expect_stdout_eq "$EMPTY_SUMMARY"
expect_ok tdvol -p "$TEST_TMP/fresh" gc
expect_stdout_eq "$EMPTY_SUMMARY"
expect_ok tdvol -p "$TEST_TMP/fresh" fsck
# A volume without commits.
expect_ok tdvol -p "$TEST_TMP/fresh" init nocommits
echo data >"$TEST_TMP/fresh/volumes/nocommits/data/uncommitted.txt"
expect_ok tdvol -p "$TEST_TMP/fresh" gc
expect_stdout_eq "$EMPTY_SUMMARY"
expect_eq "gc leaves uncommitted data alone" "data" "$(cat "$TEST_TMP/fresh/volumes/nocommits/data/uncommitted.txt")"
expect_ok tdvol -p "$TEST_TMP/fresh" fsck

# --- a commit dropped by reset: reflog, restore by id, then gc ---------------------------------------
section "dropped commit"
expect_ok tdvol init g || abort
G=$(tdvol path g)
mkdir -p "$G/db/sub"
random_file "$G/db/base.bin" $((32 * MIB))
for i in $(seq 1 40); do echo "row $i" >"$G/db/sub/t$i.txt"; done
ln -s db/base.bin "$G/current"
expect_ok tdvol commit -m "base" g || abort
C1=$OUT
M1=$(manifest "$G")
random_file "$G/db/big50.bin" $((50 * MIB))
echo "row changed" >"$G/db/sub/t1.txt"
expect_ok tdvol commit -m "add 50 MiB" g || abort
C2=$OUT
M2=$(manifest "$G")
expect_ok tdvol reset --hard HEAD~1 g
expect_eq "reset --hard HEAD~1 gives the first commit" "$M1" "$(manifest "$G")"

expect_ok tdvol reflog g
expect_stdout_contains "${C2:0:12}"
expect_ok tdvol reflog --json g
json_check "the reflog's newest entry is the reset, from the dropped commit to the first" \
    "d[0]['old'] == '$C2' and d[0]['new'] == '$C1' and d[0]['branch'] == 'master' and d[0]['action'].startswith('reset')"
json_check "the reflog lists the dropped commit's creation" \
    "any(e['new'] == '$C2' and e['action'].startswith('commit') for e in d)"
# Before gc, the dropped commit can be restored by its id (full, and a prefix).
restores g "$C2" "$M2" "the dropped commit, before gc"
expect_ok tdvol log --json g
json_check "reset to the dropped commit's id puts it back on the branch" "d[0]['id'] == '$C2'"
restores g "$C1" "$M1" "the first commit"
restores g "${C2:0:16}" "$M2" "the dropped commit by prefix, before gc"
expect_ok tdvol reset --hard HEAD~1 g
expect_eq "dropped again" "$M1" "$(manifest "$G")"

BEFORE=$(objects_size)
run_gc
AFTER=$(objects_size)
expect_eq "gc removed one commit" 1 "$GC_COMMITS"
check "gc removed objects ($GC_OBJECTS)" test "$GC_OBJECTS" -gt 0
check "gc reports about 50 MiB reclaimed ($GC_BYTES bytes)" test "$GC_BYTES" -ge $((50 * MIB * 96 / 100)) -a "$GC_BYTES" -le $((50 * MIB * 106 / 100))
shrank_by "after dropping a 50 MiB commit" "$BEFORE" "$AFTER" $((50 * MIB))
expect_ok tdvol fsck
expect_fail 1 tdvol reset --hard "$C2" g
expect_stderr_contains "unknown revision"
expect_stderr_one_line
expect_fail 1 tdvol reset --hard "${C2:0:16}" g
expect_stderr_contains "unknown revision"
expect_eq "the failed reset changed nothing" "$M1" "$(manifest "$G")"
expect_ok tdvol reflog g
check "the reflog still works after gc" test -n "$OUT"
expect_ok tdvol reflog --json g
json_check "after gc the reflog no longer offers the removed commit as a place to go back to" \
    "all(e['new'] != '$C2' for e in d)"
restores g HEAD "$M1" "the kept commit after gc"

# A second gc right away finds nothing and changes nothing.
LISTING=$(ls -l "$DVOL_ROOT/objects/packs")
run_gc
expect_stdout_eq "$EMPTY_SUMMARY"
expect_eq "a second gc leaves the packs as they were" "$LISTING" "$(ls -l "$DVOL_ROOT/objects/packs")"
run_gc
expect_stdout_eq "$EMPTY_SUMMARY"

# --- a dropped commit that shares most of its data with the kept one -------------------------------
section "dropped commit sharing chunks"
head -c "$MIB" /dev/urandom | dd of="$G/db/base.bin" bs="$MIB" seek=16 conv=notrunc status=none
expect_ok tdvol commit -m "1 MiB changed" g || abort
C3=$OUT
expect_ok tdvol reset --hard HEAD^ g
run_gc
expect_eq "gc removed the one dropped commit" 1 "$GC_COMMITS"
# Chunks average 1 MiB (at most 4 MiB): the chunks the change touches and a few after it.
check "and only about the changed MiB of 32 (reclaimed $GC_BYTES bytes)" test "$GC_BYTES" -le $((8 * MIB))
expect_ok tdvol fsck
restores g HEAD "$M1" "the kept commit whose chunks the dropped one shared"
expect_fail 1 tdvol reset --hard "$C3" g
expect_stderr_contains "unknown revision"

# --- a deleted branch holding unique data ------------------------------------------------------------
section "deleted branch"
expect_ok tdvol checkout -b tmp g || abort
random_file "$G/db/branch30.bin" $((30 * MIB))
expect_ok tdvol commit -m "branch data" g || abort
CB=$OUT
expect_ok tdvol checkout master g || abort
expect_eq "master is back" "$M1" "$(manifest "$G")"
# Another branch at master's tip holds nothing unique: gc with it present removes nothing.
expect_ok tdvol checkout -b same g || abort
expect_ok tdvol checkout master g || abort
run_gc
expect_stdout_eq "$EMPTY_SUMMARY"
expect_fail 1 tdvol branch -d tmp g
expect_ok tdvol branch -D tmp g
BEFORE=$(objects_size)
run_gc
AFTER=$(objects_size)
expect_eq "gc removed the deleted branch's commit" 1 "$GC_COMMITS"
shrank_by "after deleting a branch with 30 MiB of its own" "$BEFORE" "$AFTER" $((30 * MIB))
expect_ok tdvol fsck
expect_fail 1 tdvol reset --hard "$CB" g
expect_stderr_contains "unknown revision"
restores g HEAD "$M1" "master after the branch was deleted and gc"
expect_ok tdvol checkout same g
restores g HEAD "$M1" "the remaining branch 'same'"
expect_ok tdvol checkout master g

# --- a removed volume whose data no other volume shares ---------------------------------------------
section "removed volume"
expect_ok tdvol init r || abort
R=$(tdvol path r)
random_file "$R/own20.bin" $((20 * MIB))
expect_ok tdvol commit -m "r1" r || abort
echo "more" >"$R/more.txt"
expect_ok tdvol commit -m "r2" r || abort
BEFORE=$(objects_size)
expect_ok tdvol rm -f r
run_gc
AFTER=$(objects_size)
# rm deletes the volume's commits itself; gc finds their objects.
check "gc removed the removed volume's objects ($GC_OBJECTS) and packs ($GC_DELETED)" test "$GC_OBJECTS" -gt 0 -a "$GC_DELETED" -gt 0
shrank_by "after removing a volume with 20 MiB of its own" "$BEFORE" "$AFTER" $((20 * MIB))
expect_ok tdvol fsck
restores g HEAD "$M1" "volume g after another volume was removed"

# --- two volumes sharing content: remove one, the other keeps everything ---------------------------
section "shared content"
random_file "$TEST_TMP/work/shared20" $((20 * MIB))
random_file "$TEST_TMP/work/shared8" $((8 * MIB))
expect_ok tdvol init s1 || abort
expect_ok tdvol init s2 || abort
S1=$(tdvol path s1)
S2=$(tdvol path s2)
cp "$TEST_TMP/work/shared20" "$S1/data.bin"
echo "s1 only" >"$S1/s1.txt"
expect_ok tdvol commit -m "s1 a" s1 || abort
mkdir "$S1/more"
cp "$TEST_TMP/work/shared8" "$S1/more/extra.bin"
echo "s1 only, changed" >"$S1/s1.txt"
expect_ok tdvol commit -m "s1 b" s1 || abort
mkdir -p "$S2/deep/er"
cp "$TEST_TMP/work/shared20" "$S2/deep/er/copy.bin"
echo "s2 only" >"$S2/s2.txt"
expect_ok tdvol commit -m "s2 a" s2 || abort
SA=$OUT
MSA=$(manifest "$S2")
cp "$TEST_TMP/work/shared8" "$S2/extra-copy.bin"
echo "s2 second" >"$S2/s2.txt"
expect_ok tdvol commit -m "s2 b" s2 || abort
SB=$OUT
MSB=$(manifest "$S2")
BEFORE=$(objects_size)
expect_ok tdvol rm -f s1
run_gc
AFTER=$(objects_size)
check "gc removed s1's own objects ($GC_OBJECTS)" test "$GC_OBJECTS" -gt 0
check "gc kept the shared data: objects/ shrank by $(mib $((BEFORE - AFTER))), under 1 MiB" test $((BEFORE - AFTER)) -lt "$MIB"
expect_ok tdvol fsck
restores s2 "$SA" "$MSA" "s2's first commit, its data shared with the removed s1"
restores s2 "$SB" "$MSB" "s2's second commit"
expect_ok tdvol log --json s2
json_check "s2's history is intact" "[e['id'] for e in d] == ['$SB', '$SA']"

# --- a pack that is mostly garbage is rewritten --------------------------------------------------------
section "mostly garbage pack"
random_file "$TEST_TMP/work/keep4" $((4 * MIB))
expect_ok tdvol init m1 || abort
expect_ok tdvol init m2 || abort
M1DIR=$(tdvol path m1)
M2DIR=$(tdvol path m2)
random_file "$M1DIR/garbage40.bin" $((40 * MIB))
cp "$TEST_TMP/work/keep4" "$M1DIR/keep.bin"
PACKS_BEFORE=$(ls "$DVOL_ROOT/objects/packs")
expect_ok tdvol commit -m "m1" m1 || abort
NEW_PACKS=$(comm -13 <(printf '%s\n' "$PACKS_BEFORE") <(ls "$DVOL_ROOT/objects/packs"))
check "m1's commit wrote one pack holding both files" test "$(printf '%s\n' "$NEW_PACKS" | grep -c .)" = 1
cp "$TEST_TMP/work/keep4" "$M2DIR/keep-too.bin"
echo "m2" >"$M2DIR/m2.txt"
expect_ok tdvol commit -m "m2" m2 || abort
MM2=$(manifest "$M2DIR")
BEFORE=$(objects_size)
expect_ok tdvol rm -f m1
run_gc
AFTER=$(objects_size)
check "gc rewrote the mostly-garbage pack (rewrote $GC_REWROTE)" test "$GC_REWROTE" -gt 0
check "the old pack file is gone" test ! -e "$DVOL_ROOT/objects/packs/$NEW_PACKS"
shrank_by "after removing a volume whose pack was 90% its own" "$BEFORE" "$AFTER" $((40 * MIB))
expect_ok tdvol fsck
restores m2 HEAD "$MM2" "the live objects of a rewritten pack"
run_gc
expect_stdout_eq "$EMPTY_SUMMARY"

# --- gc after an interrupted reset ------------------------------------------------------------------
# A reset moves the branch tip before it rewrites the live directory. Killed in between, the live
# directory still holds files of the commit the branch left, with their stat-cache rows. gc then
# removes that commit's unique chunks; the next commit must store those files again, not reuse
# chunks that are gone.
section "gc after an interrupted reset"
expect_ok tdvol init k || abort
K=$(tdvol path k)
mkdir -p "$K/a" "$K/z"
random_file "$K/a/big.bin" $((120 * MIB))
echo "keep" >"$K/z/keep.txt"
expect_ok tdvol commit -m "k1" k || abort
K1=$OUT
MK1=$(manifest "$K")
random_file "$K/a/big.bin" $((120 * MIB))   # entirely new content: a reset back rewrites it all
random_file "$K/z/unique.bin" $((6 * MIB))  # only in k2; z/ comes after a/, so a reset removes it late
expect_ok tdvol commit -m "k2" k || abort
K2=$OUT
caught=0
for attempt in 1 2 3; do
    "$DVOL" --disable-docker-integration reset --hard "$K1" k >/dev/null 2>&1 &
    pid=$!
    # Wait for the branch to move, then stop the reset at once and kill it.
    for _ in $(seq 1 2000); do
        tip=$("$DVOL" --disable-docker-integration log k 2>/dev/null | head -n1)
        tip=${tip#commit }
        if [ "$tip" = "$K1" ] || ! kill -0 "$pid" 2>/dev/null; then break; fi
    done
    kill -STOP "$pid" 2>/dev/null
    if [ -e "$K/z/unique.bin" ] && [ "$tip" = "$K1" ]; then caught=1; fi
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    [ "$caught" = 1 ] && break
    # Too late: put k2 back and try again.
    expect_ok tdvol reset --hard "$K2" k
done
if [ "$caught" = 1 ]; then
    echo "caught the reset between moving the branch and removing z/unique.bin (attempt $attempt)"
    expect_ok tdvol log --json k
    json_check "the branch is at k1 after the interrupted reset" "d[0]['id'] == '$K1'"
    run_gc
    expect_eq "gc removed k2" 1 "$GC_COMMITS"
    expect_ok tdvol fsck
    check "z/unique.bin, whose chunks gc just removed, is still in the live directory" test -f "$K/z/unique.bin"
    # Whatever the live directory holds now is committed; it must restore exactly.
    MK=$(manifest "$K")
    expect_ok tdvol commit -m "after the interrupted reset" k || abort
    KC=$OUT
    expect_ok tdvol fsck
    restores k "$K1" "$MK1" "k1 after gc"
    restores k "$KC" "$MK" "a commit of the live directory left by an interrupted reset, after gc"
else
    echo "note: the reset finished before it could be interrupted; that part was not exercised"
fi

# --- everything still reachable restores, and the store is clean --------------------------------------
section "final"
expect_ok tdvol fsck
restores g HEAD "$M1" "volume g at the end"
restores s2 HEAD "$MSB" "volume s2 at the end"
restores m2 HEAD "$MM2" "volume m2 at the end"
run_gc
expect_stdout_eq "$EMPTY_SUMMARY"

finish
