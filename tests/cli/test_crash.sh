#!/usr/bin/env bash
# Crash safety: dvol killed (SIGKILL) at random moments must leave the store consistent and every
# committed state intact. Each iteration picks one of commit (after random changes), reset --hard
# (HEAD~1, HEAD, an earlier commit, sometimes a dropped one), checkout of the other branch, gc,
# branch -D / checkout -b, and now and then rm -f of a second volume that shares data with the
# first; runs it in the background and kills it after 0-300 ms (or lets it finish). Then: fsck is clean, every branch names a commit this script saw made, reset --hard
# HEAD gives exactly the content recorded for that commit, and a few reachable commits (all of
# them at the end) restore exactly. A killed commit may or may not land; if it did, it holds
# what the live directory held when it started.
#
# After a shared set-up, DVOL_CRASH_RUNS (default 2) runs of the iterations go side by side, each on
# its own copy of the store (run_cases in lib.sh) and with its own random choices: per run
# DVOL_CRASH_ITERATIONS iterations, by default 12 (30 with DVOL_TEST_LONG=1, the 60 iterations in
# all this test used to make in CI). DVOL_CRASH_SEED=N replays the set-up's and every run's
# choices (the seed is printed first; timing still varies, so the kills land elsewhere).
# shellcheck source=tests/cli/lib.sh disable=SC2016,SC2317,SC2031  # eval-ed single-quoted checks; case_* run by run_cases, in subshells
. "$(dirname "$0")/lib.sh"

SEED=${DVOL_CRASH_SEED:-$(( ($(date +%s%N) / 1000) % 32768 ))}
RUNS=${DVOL_CRASH_RUNS:-2}
ITERATIONS=${DVOL_CRASH_ITERATIONS:-$(long_or 12 30)}
echo "seed: $SEED (replay with DVOL_CRASH_SEED=$SEED), $RUNS runs of $ITERATIONS iterations side by side"
RANDOM=$SEED

KIB=1024
VOL=crash
MAN="$TEST_TMP/manifests"  # one file per commit id: the manifest of its content
mkdir -p "$MAN"

# R=random number in [0, $1). No subshell, so the sequence follows the seed.
rnd() { R=$((RANDOM % $1)); }

# Current state, from dvol: HEAD (active branch's tip), ACTIVE, and the branches with their tips.
declare -A TIPS
read_state() {
    HEAD="" ACTIVE=""
    TIPS=()
    local json name tip active
    json=$(tdvol branch --json "$VOL") || { fail "dvol branch --json failed"; return 1; }
    while read -r name tip active; do
        TIPS[$name]=$tip
        if [ "$active" = True ]; then ACTIVE=$name HEAD=$tip; fi
    done < <(printf '%s' "$json" | python3 -c '
import json, sys
for b in json.load(sys.stdin):
    print(b["name"], b["tip"] or "-", b["active"])')
}

# The active branch's history, newest first, into LOG (ids).
read_log() {
    mapfile -t LOG < <(tdvol log --json "$VOL" | python3 -c '
import json, sys
d = json.load(sys.stdin)
for i, e in enumerate(d):
    assert i + 1 == len(d) or e["parents"][:1] == [d[i + 1]["id"]], "log is not a chain"
    print(e["id"])')
}

other_branch() { if [ "$ACTIVE" = master ]; then echo side; else echo master; fi; }

# A second volume, twin, holding copies of some of crash's files (so the two share chunks).
TWIN=twin
make_twin() {
    local tl
    tl=$(tdvol path "$TWIN")
    cp -a "$LIVE/big" "$LIVE/d1" "$tl/" 2>/dev/null
    echo "twin $RANDOM" >"$tl/own.txt"
    manifest "$tl" >"$TEST_TMP/pending-twin"
    expect_ok tdvol commit -m "twin" "$TWIN" || return 1
    cp "$TEST_TMP/pending-twin" "$MAN/$OUT"
}
twin_exists() { tdvol list --json | python3 -c 'import json,sys; sys.exit(0 if any(v["name"] == sys.argv[1] for v in json.load(sys.stdin)) else 1)' "$TWIN"; }
# The twin's HEAD restores exactly (from an emptied live directory).
verify_twin() {
    local where=$1 tl head now
    tl=$(tdvol path "$TWIN")
    head=$(tdvol log --json "$TWIN" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d[0]["id"] if d else "")')
    if [ ! -f "$MAN/$head" ]; then
        fail "twin's HEAD (${head:0:12}) is a commit this test saw made (after: $where)"
        return 1
    fi
    find "$tl" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
    expect_ok tdvol reset --hard HEAD "$TWIN" || return 1
    now=$(manifest "$tl")
    if [ "$now" = "$(cat "$MAN/$head")" ]; then
        pass
    else
        fail "twin's HEAD does not restore exactly (after: $where)" "$(diff <(cat "$MAN/$head") <(printf '%s\n' "$now") | head -20)"
    fi
}

# --- the volume ------------------------------------------------------------------------------------
LIVE=""
big_files() { (cd "$LIVE" && find . -name 'big*' -type f | LC_ALL=C sort); }
small_list() { (cd "$LIVE" && find . -path ./big -prune -o -type f -print | LC_ALL=C sort); }

pick() {  # pick from the lines of $1 into P ("" if none)
    local -a arr
    mapfile -t arr <<<"$1"
    P=""
    if [ -n "$1" ] && [ ${#arr[@]} -gt 0 ]; then
        rnd ${#arr[@]}
        P=${arr[$R]}
    fi
}

random_changes() {
    local n i what files
    rnd 12
    n=$((R + 1))
    for ((i = 0; i < n; i++)); do
        rnd 10
        what=$R
        files=$(small_list)
        case $what in
            0 | 1 | 2)  # rewrite a small file
                pick "$files"
                [ -n "$P" ] && { rnd 3000; head -c $((R + 1)) /dev/urandom | base64 >"$LIVE/$P"; } ;;
            3 | 4)  # append to one
                pick "$files"
                [ -n "$P" ] && echo "appended $RANDOM" >>"$LIVE/$P" ;;
            5)  # delete one
                pick "$files"
                [ -n "$P" ] && rm -f "$LIVE/$P" ;;
            6)  # a new file, maybe in a new directory
                rnd 12
                local nd="$LIVE/d$R/n$((RANDOM % 3))"
                mkdir -p "$nd"
                echo "new $RANDOM" >"$nd/new$RANDOM.txt" ;;
            7)  # a mode change
                pick "$files"
                [ -n "$P" ] && { rnd 2; if [ "$R" = 0 ]; then chmod 600 "$LIVE/$P"; else chmod 755 "$LIVE/$P"; fi; } ;;
            8)  # a symlink, or a removed directory
                rnd 2
                if [ "$R" = 0 ]; then
                    ln -sfn "target$RANDOM" "$LIVE/d$((RANDOM % 10))/link$((RANDOM % 4))"
                else
                    rm -rf "$LIVE/d$((RANDOM % 12))/n$((RANDOM % 3))"
                fi ;;
            9)  # an empty directory
                mkdir -p "$LIVE/empty$((RANDOM % 4))" ;;
        esac
    done
    # The big files: change a range in one, sometimes add or remove one.
    local bigs count
    bigs=$(big_files)
    count=$(printf '%s' "$bigs" | grep -c .)
    rnd 10
    if [ "$R" -lt 5 ] && [ "$count" -gt 0 ]; then
        pick "$bigs"
        local size off len
        size=$(stat -c %s "$LIVE/$P")
        rnd 16
        len=$(((R + 1) * 64 * KIB))
        rnd $((size / (64 * KIB) + 1))
        off=$((R * 64 * KIB))
        head -c "$len" /dev/urandom | dd of="$LIVE/$P" bs=64K seek=$((off / (64 * KIB))) conv=notrunc iflag=fullblock status=none
    elif [ "$R" -lt 7 ] && [ "$count" -lt 6 ]; then
        rnd 4
        mkdir -p "$LIVE/big"
        random_file "$LIVE/big/big$RANDOM.bin" $(((R + 2) * MIB + RANDOM))
    elif [ "$R" -lt 8 ] && [ "$count" -gt 2 ]; then
        pick "$bigs"
        rm -f "$LIVE/$P"
    fi
}

# --- running a command that may be killed ------------------------------------------------------------
# killrun ARGS...: runs dvol ARGS in the background and SIGKILLs it after 0-300 ms, or (one run in
# five) lets it finish under a time limit. Sets OUT, ERR, RC, LAST_CMD, KILLED (1 when the kill
# hit it), DELAY.
KILLS=0 FINISHED=0
killrun() {
    LAST_CMD=$(show_cmd dvol "$@")
    rnd 5
    if [ "$R" = 0 ]; then
        DELAY=none
        timeout -s KILL "$T" "$DVOL" --disable-docker-integration "$@" >"$OUT_FILE" 2>"$ERR_FILE" </dev/null
        RC=$?
        KILLED=0
        [ "$RC" = 137 ] && fail "hung (killed after $T s): $LAST_CMD"
    else
        # Most dvol commands here take 20-150 ms, so half the delays are short.
        rnd 2
        if [ "$R" = 0 ]; then rnd 60; else rnd 301; fi
        DELAY=$R
        "$DVOL" --disable-docker-integration "$@" >"$OUT_FILE" 2>"$ERR_FILE" </dev/null &
        local pid=$!
        sleep "$(printf '0.%03d' "$DELAY")"
        kill -KILL "$pid" 2>/dev/null
        { wait "$pid"; } 2>/dev/null
        RC=$?
        KILLED=0
        [ "$RC" = 137 ] && KILLED=1
    fi
    OUT=$(cat "$OUT_FILE")
    ERR=$(cat "$ERR_FILE")
    if [ "$KILLED" = 1 ]; then KILLS=$((KILLS + 1)); else FINISHED=$((FINISHED + 1)); fi
}

# A command that was not killed must have succeeded.
finished_ok() {
    if [ "$KILLED" = 1 ]; then return 0; fi
    if [ "$RC" -ne 0 ] || crashed; then
        fail "expected success (not killed): $LAST_CMD" "$(last_details)"
        return 1
    fi
    pass
}

# --- verification ---------------------------------------------------------------------------------------
# restores REF_ID WHAT: reset --hard to the commit gives exactly its recorded manifest.
restores() {
    local id=$1 what=$2
    if [ ! -f "$MAN/$id" ]; then
        fail "$what: ${id:0:12} is not a commit this test saw made"
        return 1
    fi
    expect_ok tdvol reset --hard "$id" "$VOL" || return 1
    local now
    now=$(manifest "$LIVE")
    if [ "$now" = "$(cat "$MAN/$id")" ]; then
        pass
    else
        fail "$what: reset --hard ${id:0:12} does not give the content committed" \
            "$(diff <(cat "$MAN/$id") <(printf '%s\n' "$now") | head -20)"
    fi
}

verify() {
    local where=$1
    expect_ok tdvol fsck || echo "    (after: $where)" >&2
    read_state || return 1
    local b
    for b in "${!TIPS[@]}"; do
        [ "${TIPS[$b]}" = - ] && continue
        check "branch $b names a commit this test saw made (${TIPS[$b]:0:12}) after: $where" test -f "$MAN/${TIPS[$b]}"
    done
    if [ -z "$HEAD" ] || [ "$HEAD" = - ]; then
        fail "the active branch $ACTIVE has no commit after: $where"
        return 1
    fi
    # Sometimes from an emptied live directory, so everything is read back from the store.
    rnd 8
    [ "$R" = 0 ] && find "$LIVE" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
    expect_ok tdvol reset --hard HEAD "$VOL"
    local now
    now=$(manifest "$LIVE")
    if [ "$now" = "$(cat "$MAN/$HEAD" 2>/dev/null)" ]; then
        pass
    else
        fail "reset --hard HEAD does not give HEAD's (${HEAD:0:12}) content after: $where" \
            "$(diff <(cat "$MAN/$HEAD" 2>/dev/null) <(printf '%s\n' "$now") | head -20)"
    fi
    expect_ok tdvol status --json "$VOL"
    json_check "the live directory is clean after reset --hard HEAD (after: $where)" 'd["clean"] is True'
    read_log
    expect_eq "dvol log's first entry is the active branch's tip (after: $where)" "$HEAD" "${LOG[0]:-}"
    local id
    for id in "${LOG[@]}"; do
        [ -f "$MAN/$id" ] || fail "commit ${id:0:12} in the log of $ACTIVE was never made by this test (after: $where)"
    done
    # A couple of earlier commits of the active branch, then back to HEAD.
    if [ ${#LOG[@]} -gt 1 ]; then
        local k
        for ((k = 0; k < 2; k++)); do
            rnd $((${#LOG[@]} - 1))
            restores "${LOG[$((R + 1))]}" "an earlier commit of $ACTIVE (after: $where)"
        done
        restores "$HEAD" "back to HEAD (after: $where)"
    fi
}

# --- setup ---------------------------------------------------------------------------------------------
section "set-up"
expect_ok tdvol init "$VOL" || abort
LIVE=$(tdvol path "$VOL")
for d in $(seq 0 9); do
    mkdir -p "$LIVE/d$d/sub"
    for f in $(seq 0 24); do echo "file $d/$f $RANDOM" >"$LIVE/d$d/f$f.txt"; done
    for f in 0 1 2 3 4; do head -c $((RANDOM % 20000)) /dev/urandom >"$LIVE/d$d/sub/b$f.dat"; done
done
ln -s d0/f0.txt "$LIVE/link"
mkdir -p "$LIVE/big"
random_file "$LIVE/big/big1.bin" $((4 * MIB))
random_file "$LIVE/big/big2.bin" $((3 * MIB + 12345))
random_file "$LIVE/big/big3.bin" $((2 * MIB))
dd if=/dev/zero of="$LIVE/big/zeros.bin" bs=1M count=2 status=none  # a hole
echo "setup: $(small_list | wc -l) files, $(du -sh "$LIVE" | cut -f1)"
manifest "$LIVE" >"$TEST_TMP/pending"
expect_ok tdvol commit -m "initial" "$VOL" || abort
cp "$TEST_TMP/pending" "$MAN/$OUT"
expect_ok tdvol init "$TWIN" || abort
make_twin || abort
verify "setup"
verify_twin "setup"

# --- the iterations -------------------------------------------------------------------------------------
# crash_run N: one run of the iterations and the checks at the end, as case run_N of run_cases,
# on its own copy of the set-up store, seeded with SEED + N.
crash_run() {
    local run=$1 STARTED
    STARTED=$(date +%s)
    RANDOM=$((SEED + run))
    # What the set-up recorded, into this case's own directory; the live directory of its store.
    cp -a "$MAN" "$TEST_TMP/manifests"
    MAN="$TEST_TMP/manifests"
    LIVE=$(tdvol path "$VOL")
    section "iterations"
    declare -A OPS
    for ((it = 1; it <= ITERATIONS; it++)); do
        read_state
        PRE_HEAD=$HEAD PRE_ACTIVE=$ACTIVE
        OTHER=$(other_branch)
        rnd 100
        if [ "$R" -lt 35 ]; then op=commit
        elif [ "$R" -lt 55 ]; then op=reset
        elif [ "$R" -lt 75 ]; then op=checkout
        elif [ "$R" -lt 88 ]; then op=gc
        elif [ "$R" -lt 96 ]; then op=branch
        else op="rm"
        fi
        [ "$op" = checkout ] && [ -z "${TIPS[$OTHER]:-}" ] && op=branch

        case $op in
            commit)
                random_changes
                manifest "$LIVE" >"$TEST_TMP/pending"
                killrun commit -m "iteration $it" "$VOL"
                finished_ok
                read_state
                if [ "$KILLED" = 0 ] && [ "$RC" = 0 ]; then
                    expect_eq "the commit's printed id is the new HEAD" "$OUT" "$HEAD"
                    cp "$TEST_TMP/pending" "$MAN/$OUT"
                    what="commit finished"
                elif [ "$HEAD" = "$PRE_HEAD" ]; then
                    what="commit killed, did not land"
                else
                    # It landed: on top of the previous HEAD, with the content it started with.
                    expect_ok tdvol log --json "$VOL"
                    json_check "a killed commit that landed sits on the previous HEAD" "d[0]['id'] == '$HEAD' and d[0]['parents'] == ['$PRE_HEAD']"
                    check "a killed commit that landed is new" test ! -f "$MAN/$HEAD"
                    cp "$TEST_TMP/pending" "$MAN/$HEAD"
                    what="commit killed, landed"
                fi ;;
            reset)
                read_log
                rnd 10
                if [ "$R" -lt 3 ] && [ ${#LOG[@]} -gt 1 ]; then ref=HEAD~1 target=${LOG[1]}
                elif [ "$R" -lt 5 ]; then ref=HEAD target=$HEAD
                elif [ "$R" -lt 9 ]; then rnd ${#LOG[@]}; target=${LOG[$R]} ref=$target
                else
                    # Any commit ever made here; one that gc already removed is an unknown revision.
                    mapfile -t ALL < <(ls "$MAN")
                    rnd ${#ALL[@]}
                    target=${ALL[$R]} ref=$target
                    rnd 2
                    [ "$R" = 0 ] && ref=${target:0:12}
                fi
                # Uncommitted changes are discarded by a reset; make some.
                rnd 2
                [ "$R" = 0 ] && random_changes
                killrun reset --hard "$ref" "$VOL"
                if [ "$KILLED" = 0 ] && [ "$RC" = 1 ] && [[ "$ERR" == *"unknown revision"* ]] && [ "$ref" != HEAD ] && [ "$ref" != HEAD~1 ]; then
                    what="reset to a removed commit refused"
                    pass
                else
                    finished_ok
                    what="reset --hard $ref"
                fi
                read_state
                check "after a reset the branch is where it was or at the target (${HEAD:0:12})" \
                    test "$HEAD" = "$PRE_HEAD" -o "$HEAD" = "$target"
                [ "$KILLED" = 0 ] && [ "$RC" = 0 ] && expect_eq "a finished reset moved the branch to its target" "$target" "$HEAD"
                ;;
            checkout)
                killrun checkout "$OTHER" "$VOL"
                finished_ok
                read_state
                check "after a checkout the active branch is the old or the new one ($ACTIVE)" \
                    test "$ACTIVE" = "$PRE_ACTIVE" -o "$ACTIVE" = "$OTHER"
                [ "$KILLED" = 0 ] && expect_eq "a finished checkout switched" "$OTHER" "$ACTIVE"
                what="checkout $OTHER" ;;
            gc)
                killrun gc
                finished_ok
                [ "$KILLED" = 0 ] && [ "$RC" = 0 ] && [[ ! "$OUT" =~ ^Removed\ [0-9]+\ commit ]] && fail "gc's summary: $OUT"
                what="gc" ;;
            rm)
                killrun rm -f "$TWIN"
                finished_ok
                if twin_exists; then
                    check "a finished rm removed the volume" test "$KILLED" = 1
                    verify_twin "rm -f $TWIN killed"
                    what="rm -f $TWIN killed before it removed the volume"
                else
                    # Removed (perhaps half-way): a new volume of that name starts empty.
                    expect_ok tdvol init "$TWIN"
                    check "a volume made again after rm starts empty" test -z "$(ls -A "$(tdvol path "$TWIN")")"
                    make_twin
                    verify_twin "rm -f $TWIN, init again"
                    what="rm -f $TWIN"
                fi ;;
            branch)
                if [ -n "${TIPS[$OTHER]:-}" ]; then
                    killrun branch -D "$OTHER" "$VOL"
                    finished_ok
                    what="branch -D $OTHER"
                else
                    killrun checkout -b "$OTHER" "$VOL"
                    finished_ok
                    what="checkout -b $OTHER"
                fi ;;
        esac
        [ "$KILLED" = 1 ] && what="$what (killed after ${DELAY} ms)"
        [ "$KILLED" = 0 ] && [ "$DELAY" != none ] && what="$what (finished before the kill at ${DELAY} ms)"
        OPS[$op]=$((${OPS[$op]:-0} + 1))
        echo "iteration $it: $what"
        verify "iteration $it: $what"
    done

    # --- at the end: every commit reachable from a branch restores exactly --------------------------------
    section "every reachable commit"
    final_check() {
        local label=$1 b id
        read_state
        local -A tips=()
        for b in "${!TIPS[@]}"; do tips[$b]=${TIPS[$b]}; done
        for b in "${!tips[@]}"; do
            [ "${tips[$b]}" = - ] && continue
            expect_ok tdvol checkout --force "$b" "$VOL" || continue
            read_log
            echo "$label: branch $b, ${#LOG[@]} commit(s)"
            for id in "${LOG[@]}"; do restores "$id" "$label: commit of branch $b"; done
            restores "${tips[$b]}" "$label: back to the tip of $b"
        done
    }
    final_check "before gc"
    verify_twin "the end, before gc"
    expect_ok tdvol fsck
    expect_ok tdvol gc
    echo "gc: $OUT"
    expect_ok tdvol fsck
    final_check "after gc"
    verify_twin "the end, after gc"

    # Leftovers of killed writers: once old enough, the next writing command removes them, and every
    # pack file left is registered.
    find "$DVOL_ROOT/tmp" -mindepth 1 -maxdepth 1 -exec touch -h -d "5 minutes ago" {} +
    echo "leftovers in tmp/: $(find "$DVOL_ROOT/tmp" -mindepth 1 -maxdepth 1 | wc -l)"
    expect_ok tdvol commit -m "after the leftovers aged" "$VOL"
    LEFT=$(find "$DVOL_ROOT/tmp" -mindepth 1 -maxdepth 1 -printf '%f\n')
    check "the next writing command removed the aged leftovers in tmp/: $LEFT" test -z "$LEFT"
    unregistered=$(python3 - "$DVOL_ROOT" <<'EOF'
import os, sqlite3, sys
root = sys.argv[1]
db = sqlite3.connect('file:%s/dvol.db?mode=ro' % root, uri=True)
registered = {r[0] for r in db.execute('SELECT name FROM packs')}
files = {f[:-5] for f in os.listdir(root + '/objects/packs') if f.endswith('.pack')}
print(' '.join(sorted(files - registered)), '|', ' '.join(sorted(registered - files)))
EOF
    )
    expect_eq "every pack file is registered and every registered pack exists" " | " "$unregistered"
    expect_ok tdvol fsck

    ops=""
    for op in "${!OPS[@]}"; do ops+="$op ${OPS[$op]}, "; done
    echo "run $run (seed $SEED + $run): $ITERATIONS iterations (${ops%, }); $KILLS killed, $FINISHED finished; $(($(date +%s) - STARTED)) s"
}
for ((r = 1; r <= RUNS; r++)); do eval "case_run_$r() { crash_run $r; }"; done
mapfile -t RUN_CASES < <(seq -f 'run_%g' 1 "$RUNS")
run_cases "${RUN_CASES[@]}"

finish
