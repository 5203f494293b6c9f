#!/usr/bin/env bash
# Two dvol processes on one store at once must serialise safely: two commits on one volume, a
# commit on one volume while another resets, gc during a long commit (and a commit during gc),
# status/log/diff/fsck during a commit, a reset or checkout racing a commit, and several volumes
# committing side by side. The outcome must always be one that running the same commands one
# after the other could give. Every command runs under `timeout`, so a hang fails the test.
# shellcheck source=tests/cli/lib.sh disable=SC2016,SC2317,SC2031  # eval-ed single-quoted checks; case_* run by run_cases, in subshells
. "$(dirname "$0")/lib.sh"

avail_kib=$(df -Pk "$TEST_TMP" | awk 'NR == 2 { print $4 }')
if [ "$avail_kib" -lt $((2500 * 1024)) ]; then
    echo "SKIP: needs 2500 MiB free in ${TMPDIR:-/tmp}, has $((avail_kib / 1024)) MiB"
    exit 77
fi

# start NAME CMD...: runs CMD in the background, its output in files; finish it with `join`.
declare -A PIDS CMDS
start() {
    local name=$1
    shift
    CMDS[$name]=$(show_cmd "$@")
    "$@" >"$TEST_TMP/bg.$name.out" 2>"$TEST_TMP/bg.$name.err" </dev/null &
    PIDS[$name]=$!
}
# join NAME: waits for it and sets OUT, ERR, RC and LAST_CMD as `run` does.
join() {
    local name=$1
    wait "${PIDS[$name]}"
    RC=$?
    OUT=$(cat "$TEST_TMP/bg.$name.out")
    ERR=$(cat "$TEST_TMP/bg.$name.err")
    LAST_CMD="${CMDS[$name]} (in the background)"
}
# join_ok NAME: joins it and checks that it succeeded (a timeout is exit code 124).
join_ok() {
    join "$1"
    if [ "$RC" -ne 0 ]; then
        fail "expected success: $LAST_CMD" "$(last_details)"
        return 1
    fi
    if crashed; then
        fail "crash report on stderr: $LAST_CMD" "$(last_details)"
        return 1
    fi
    pass
}
running() { kill -0 "${PIDS[$1]}" 2>/dev/null; }

# wipe VOL: empties the live directory, so that a reset must read everything back from the store.
wipe() { find "$(tdvol path "$1")" -mindepth 1 -maxdepth 1 -exec rm -rf {} +; }

# restores VOL REF MANIFEST WHAT: from an emptied live directory, reset --hard REF gives MANIFEST.
restores() {
    local vol=$1 ref=$2 want=$3 what=$4
    wipe "$vol"
    expect_ok tdvol reset --hard "$ref" "$vol" || return 1
    expect_eq "$what: reset --hard ${ref:0:12} in $vol restores it exactly" "$want" "$(manifest "$(tdvol path "$vol")")"
}

head_of() { tdvol log --json "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d[0]["id"] if d else "")'; }
tip_of() {  # tip_of VOL BRANCH
    tdvol branch --json "$1" | python3 -c 'import json,sys; print(next((b["tip"] or "") for b in json.load(sys.stdin) if b["name"] == sys.argv[1]))' "$2"
}

# small_files DIR N: N small files in a few directories.
small_files() {
    local dir=$1 n=$2 i
    mkdir -p "$dir/d0" "$dir/d1" "$dir/d2"
    for i in $(seq 1 "$n"); do echo "file $i $RANDOM" >"$dir/d$((i % 3))/f$i.txt"; done
}

# --- shared set-up -------------------------------------------------------------------------------
# Each group of checks below is a case of its own (run_cases in lib.sh): they run side by side,
# each on its own copy of this store, which holds volume g (50 small files, one commit) for the
# cases that race commands on it.
section "set-up: volume g"
expect_ok tdvol init g || abort
small_files "$(tdvol path g)" 50
expect_ok tdvol commit -m "g0" g || abort
MG0=$(manifest "$(tdvol path g)")

# --- two commits on one volume at the same time ----------------------------------------------------
case_two_commits() {
    expect_ok tdvol init c || abort
    C=$(tdvol path c)
    small_files "$C" 200
    random_file "$C/big.bin" $((80 * MIB))
    MC=$(manifest "$C")
    start one tdvol commit -m "one" c
    start two tdvol commit -m "two" c
    join_ok one
    ID_ONE=$OUT
    join_ok two
    ID_TWO=$OUT
    check "both commits printed an id" test ${#ID_ONE} = 64 -a ${#ID_TWO} = 64
    check "two distinct commits" test "$ID_ONE" != "$ID_TWO"
    expect_ok tdvol log --json c
    json_check "the log holds exactly the two commits, one on top of the other" \
        "len(d) == 2 and set(e['id'] for e in d) == {'$ID_ONE', '$ID_TWO'} and d[0]['parents'] == [d[1]['id']] and d[1]['parents'] == []"
    json_check "both record the same tree (nothing changed between them)" "d[0]['tree'] == d[1]['tree']"
    expect_ok tdvol fsck
    restores c "$ID_ONE" "$MC" "commit one"
    restores c "$ID_TWO" "$MC" "commit two"
}

# --- a commit on volume A while volume B resets ------------------------------------------------------
case_commit_while_reset() {
    expect_ok tdvol init a || abort
    expect_ok tdvol init b || abort
    A=$(tdvol path a)
    B=$(tdvol path b)
    small_files "$A" 100
    expect_ok tdvol commit -m "a0" a || abort
    small_files "$B" 100
    random_file "$B/data.bin" $((100 * MIB))
    expect_ok tdvol commit -m "b1" b || abort
    B1=$OUT
    MB1=$(manifest "$B")
    random_file "$B/data.bin" $((100 * MIB))
    echo "b2" >"$B/d0/f3.txt"
    expect_ok tdvol commit -m "b2" b || abort
    random_file "$A/new.bin" $((120 * MIB))
    echo "a1" >"$A/d1/f1.txt"
    MA1=$(manifest "$A")
    start acommit tdvol commit -m "a1" a
    start breset tdvol reset --hard "$B1" b
    join_ok acommit
    A1=$OUT
    join_ok breset
    expect_eq "B holds b1 after its reset" "$MB1" "$(manifest "$B")"
    expect_eq "B's branch is at b1" "$B1" "$(head_of b)"
    expect_eq "A's branch is at the new commit" "$A1" "$(head_of a)"
    expect_ok tdvol fsck
    restores a "$A1" "$MA1" "A's commit made while B reset"
    expect_ok tdvol status --json b
    json_check "B is clean after its reset" 'd["clean"] is True'
}

# --- gc during a long commit ---------------------------------------------------------------------------
case_gc_during_commit() {
    G=$(tdvol path g)
    expect_ok tdvol gc   # nothing to collect yet: the gc below removes exactly one commit
    random_file "$G/garbage.bin" $((20 * MIB))
    expect_ok tdvol commit -m "garbage" g || abort
    expect_ok tdvol reset --hard HEAD~1 g   # the garbage commit is now unreachable
    random_file "$G/huge.bin" $((300 * MIB))
    MG=$(manifest "$G")
    start gcommit tdvol commit -m "300 MiB" g
    sleep 0.2
    was_running=0
    running gcommit && was_running=1
    start gc tdvol gc
    join_ok gcommit
    G1=$OUT
    join_ok gc
    echo "gc: $OUT"
    [ "$was_running" = 1 ] || echo "note: the commit had finished before gc started"
    expect_stdout_contains "Removed 1 commit(s)"
    expect_eq "the commit landed" "$G1" "$(head_of g)"
    expect_ok tdvol fsck
    restores g "$G1" "$MG" "the commit made while gc ran"
    restores g HEAD~1 "$MG0" "its parent"
    expect_ok tdvol reset --hard "$G1" g
}

# --- a commit during gc ----------------------------------------------------------------------------------
# gc rewriting a big, mostly-garbage pack takes a while; a commit started meanwhile waits for it
# (or runs first) and lands intact.
case_commit_during_gc() {
    G=$(tdvol path g)
    random_file "$TEST_TMP/work/live90" $((90 * MIB))
    expect_ok tdvol init p1 || abort
    expect_ok tdvol init p2 || abort
    P1=$(tdvol path p1)
    P2=$(tdvol path p2)
    random_file "$P1/dead.bin" $((150 * MIB))
    cp "$TEST_TMP/work/live90" "$P1/live.bin"
    expect_ok tdvol commit -m "p1" p1 || abort
    cp "$TEST_TMP/work/live90" "$P2/live.bin"
    expect_ok tdvol commit -m "p2" p2 || abort
    MP2=$(manifest "$P2")
    expect_ok tdvol rm -f p1
    random_file "$G/during-gc.bin" $((60 * MIB))
    MG2=$(manifest "$G")
    start gc2 tdvol gc
    sleep 0.1
    start gcommit2 tdvol commit -m "during gc" g
    join_ok gc2
    echo "gc: $OUT"
    expect_stdout_contains "rewrote 1"
    join_ok gcommit2
    G2=$OUT
    expect_eq "the commit made during gc landed" "$G2" "$(head_of g)"
    expect_ok tdvol fsck
    restores g "$G2" "$MG2" "the commit made during gc"
    restores p2 HEAD "$MP2" "p2, whose pack gc rewrote"
}

# --- status, log, diff, fsck during a commit -------------------------------------------------------
case_readers_during_commit() {
    G=$(tdvol path g)
    random_file "$G/more.bin" $((250 * MIB))
    echo "changed" >"$G/d0/f3.txt"
    MG3=$(manifest "$G")
    start gcommit3 tdvol commit -m "readers" g
    sleep 0.1
    was_running=0
    running gcommit3 && was_running=1
    expect_ok tdvol status g
    check "status during a commit says something sensible: $OUT" eval '[[ "$OUT" == *"more.bin"* || "$OUT" == *"nothing to commit"* ]]'
    expect_ok tdvol log g
    expect_ok tdvol list
    expect_ok tdvol branch g
    expect_ok tdvol status --json g
    expect_ok tdvol diff --volume g -- d0
    expect_ok tdvol fsck
    join_ok gcommit3
    G3=$OUT
    [ "$was_running" = 1 ] || echo "note: the commit had finished before the readers started"
    expect_eq "the commit landed" "$G3" "$(head_of g)"
    expect_ok tdvol status --json g
    json_check "clean after the commit" 'd["clean"] is True'
    restores g "$G3" "$MG3" "the commit made while others read"
}

# --- reset --hard HEAD while a commit runs ------------------------------------------------------------
# Run one after the other, either order leaves the branch at the new commit (reset first: it
# discards nothing, then the commit; commit first: HEAD is the new commit). The branch must not
# end at the commit before.
case_reset_during_commit() {
    G=$(tdvol path g)
    G_BEFORE=$(head_of g)
    random_file "$G/race.bin" $((300 * MIB))
    MG4=$(manifest "$G")
    start gcommit4 tdvol commit -m "raced by a reset" g
    sleep 0.15
    was_running=0
    running gcommit4 && was_running=1
    start greset tdvol reset --hard HEAD g
    join_ok gcommit4
    G4=$OUT
    join_ok greset
    [ "$was_running" = 1 ] || echo "note: the commit had finished before the reset started"
    expect_eq "reset --hard HEAD during a commit leaves the branch at the new commit (not at the one before, ${G_BEFORE:0:12})" \
        "$G4" "$(head_of g)"
    expect_eq "and the live directory holds the committed data" "$MG4" "$(manifest "$G")"
    expect_ok tdvol fsck
    expect_ok tdvol reset --hard "$G4" g
}

# --- a commit racing a checkout ------------------------------------------------------------------------
# A long checkout switches g from master to branch other; a commit is started while it runs. Run
# one after the other: checkout then commit puts the commit on other (with other's content);
# commit then checkout puts it on master (with master's content). Either way the commit's parent is
# the tip of the branch it lands on, and its content is what that branch had.
case_commit_during_checkout() {
    G=$(tdvol path g)
    expect_ok tdvol checkout -b other g || abort
    rm -f "$G/race.bin" "$G/more.bin" "$G/huge.bin"
    random_file "$G/other.bin" $((300 * MIB))
    expect_ok tdvol commit -m "other" g || abort
    O1=$OUT
    MO1=$(manifest "$G")
    expect_ok tdvol checkout master g || abort
    M_TIP=$(head_of g)
    MM=$(manifest "$G")
    start checkout tdvol checkout other g
    sleep 0.1
    was_running=0
    running checkout && was_running=1
    start gcommit5 tdvol commit -m "raced by a checkout" g
    join_ok checkout
    join_ok gcommit5
    G5=$OUT
    [ "$was_running" = 1 ] || echo "note: the checkout had finished before the commit started"
    OTHER_TIP=$(tip_of g other)
    MASTER_TIP=$(tip_of g master)
    if [ "$OTHER_TIP" = "$G5" ]; then
        echo "the commit ran after the checkout"
        expect_eq "master is unchanged" "$M_TIP" "$MASTER_TIP"
        restores g "$G5" "$MO1" "a commit after a checkout records the checked-out branch's content"
        expect_ok tdvol log --json g
        json_check "its parent is other's previous tip" "d[0]['parents'] == ['$O1']"
    elif [ "$MASTER_TIP" = "$G5" ]; then
        echo "the commit ran before the checkout (or landed on master)"
        expect_eq "other is unchanged" "$O1" "$OTHER_TIP"
        expect_ok tdvol checkout --force master g
        expect_ok tdvol log --json g
        json_check "the commit on master has master's previous tip as parent" "d[0]['parents'] == ['$M_TIP']"
        restores g "$G5" "$MM" "a commit that landed on master records master's content (not other's)"
    else
        fail "the commit made during a checkout is on no branch" "master $MASTER_TIP, other $OTHER_TIP, commit $G5"
    fi
    expect_ok tdvol fsck
    expect_ok tdvol checkout --force master g
}

# --- several volumes committing side by side ----------------------------------------------------------
case_side_by_side() {
    for v in w1 w2 w3 w4; do
        expect_ok tdvol init "$v" || abort
        small_files "$(tdvol path "$v")" 30
    done
    for v in w1 w2 w3 w4; do
        start "$v" bash -c '
            set -e
            dir=$(timeout 120 "$DVOL" --disable-docker-integration path "$1")
            for i in 1 2 3 4 5; do
                head -c $((3 * 1048576 + RANDOM)) /dev/urandom >"$dir/r$i.bin"
                echo "$1 $i" >>"$dir/d0/log.txt"
                id=$(timeout 120 "$DVOL" --disable-docker-integration commit -m "$1 $i" "$1")
                mkdir -p "$2/$1"
                ( cd "$dir" && find . -mindepth 1 \( -type f -printf "%y %m %s %T@ %p\n" \) -o -printf "%y %m %p -> %l\n" | LC_ALL=C sort
                  find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum ) >"$2/$1/$id"
                echo "$id"
            done' _ "$v" "$TEST_TMP/manifests"
    done
    for v in w1 w2 w3 w4; do
        join_ok "$v"
        check "$v made five commits" test "$(printf '%s\n' "$OUT" | grep -c '^[0-9a-f]\{64\}$')" = 5
    done
    expect_ok tdvol fsck
    for v in w1 w2 w3 w4; do
        expect_ok tdvol log --json "$v"
        json_check "$v's log has its five commits" "len(d) == 5"
        for f in "$TEST_TMP/manifests/$v"/*; do
            restores "$v" "${f##*/}" "$(cat "$f")" "$v's commit"
        done
    done
    expect_ok tdvol fsck
}

# The longest first, so that the last to end are short ones.
run_cases commit_during_checkout reset_during_commit readers_during_commit commit_during_gc gc_during_commit \
    commit_while_reset side_by_side two_commits

finish
