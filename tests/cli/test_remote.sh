#!/usr/bin/env bash
# Remotes as a user types them, on a directory remote (a path, and file:// URLs): dvol remote
# add/list/show/remove, push, fetch, pull and clone between two stores; their output, --json
# shapes, exit statuses and one-line errors; a full file system under the remote (root only:
# a small tmpfs); and dvol push and dvol clone killed (SIGKILL) at random instants, after which
# the store passes fsck, every remote ref names a commit whose objects the remote holds, and the
# rerun completes without sending again what landed.
#
# DVOL_TEST_LONG=1 runs 30 kill rounds of each instead of 8; DVOL_REMOTE_SEED=N replays a run's
# choices (timing still varies).
# shellcheck source=tests/cli/lib.sh disable=SC2016  # checks eval single-quoted tests on purpose
. "$(dirname "$0")/lib.sh"

SEED=${DVOL_REMOTE_SEED:-$(( ($(date +%s%N) / 1000) % 32768 ))}
ROUNDS=8
[ "${DVOL_TEST_LONG:-0}" = 1 ] && ROUNDS=30
echo "seed: $SEED (replay with DVOL_REMOTE_SEED=$SEED), $ROUNDS kill rounds"
RANDOM=$SEED

HEX64='^[0-9a-f]{64}$'
B=$TEST_TMP/poolB             # the second store ($DVOL_ROOT is the first)
R=$TEST_TMP/remote            # the remote, a directory
mkdir -p "$B" "$R"
dvolb() { DVOL_ROOT=$B "$DVOL" --disable-docker-integration "$@"; }

# The files of a store (for "nothing changed"), but its SQLite files, whose pages a command that
# only reads may rewrite.
dir_state() { (cd "$1" && find . -mindepth 1 -path ./dvol.db\* -prune -o -printf '%P %y %s %T@\n' | LC_ALL=C sort); }

# Every object of the remote, once: what a pack index names, counted over all indexes (an
# object sent twice shows up twice), and checks that each index's pack is there in full.
remote_index_check() {
    python3 - "$1" <<'EOF'
import os, struct, sys
root = sys.argv[1]
seen = {}
problems = []
idx_dir = os.path.join(root, "index")
for name in sorted(os.listdir(idx_dir)) if os.path.isdir(idx_dir) else []:
    data = open(os.path.join(idx_dir, name), "rb").read()
    pack_size, count = struct.unpack_from("<QI", data, 16)
    pack = os.path.join(root, "packs", name + ".pack")
    if not os.path.exists(pack) or os.path.getsize(pack) != pack_size:
        problems.append("index %s names a pack that is not there in full" % name)
    for i in range(count):
        oid = data[28 + 48 * i: 28 + 48 * i + 32]
        seen[oid] = seen.get(oid, 0) + 1
twice = sum(1 for n in seen.values() if n > 1)
if twice:
    problems.append("%d objects are held twice" % twice)
print("\n".join(problems))
sys.exit(1 if problems else 0)
EOF
}

# check_remote WHERE [DIR]: every volume on the remote clones into a fresh store that passes
# fsck (so no ref names a commit whose objects the remote lacks), and no index names a missing
# pack. A directory without the marker is one a first push was killed on before its first write
# (the marker is written just before the first object): it must hold nothing at all.
check_remote() {
    local where=$1 dir=${2:-$R} pool vols v ok=1
    if [ ! -e "$dir/dvol-remote" ]; then
        expect_eq "a remote without its marker holds nothing ($where)" "" "$(ls -A "$dir")"
        return
    fi
    pool=$(mktemp -d "$TEST_TMP/check.XXXXXX")
    # A store to read the remote from (a command that only reads does not make one).
    DVOL_ROOT=$pool tdvol remote add checked "$dir" >/dev/null
    if ! vols=$(DVOL_ROOT=$pool tdvol --json remote show "$dir" | python3 -c 'import json,sys; print(" ".join(sorted({b["volume"] for b in json.load(sys.stdin)})))'); then
        fail "remote show of $dir works ($where)"
        ok=0
    fi
    for v in $vols; do
        if ! DVOL_ROOT=$pool tdvol clone "$dir" "$v" >"$pool.out" 2>&1; then
            fail "volume $v of the remote clones ($where)" "$(cat "$pool.out")"
            ok=0
        fi
    done
    if ! DVOL_ROOT=$pool tdvol fsck >"$pool.out" 2>&1; then
        fail "a clone of the remote passes fsck ($where)" "$(cat "$pool.out")"
        ok=0
    fi
    local problems
    if ! problems=$(remote_index_check "$dir"); then
        fail "the remote's indexes name packs that are there, each object once ($where)" "$problems"
        ok=0
    fi
    [ "$ok" = 1 ] && pass
    rm -rf "$pool" "$pool.out"
}

expect_ok dvol config user.name "Remote Tester" || abort
expect_ok dvolb config user.name "Other Tester" || abort

# --- remote add / list / show / remove ----------------------------------------------------------------
expect_ok dvol remote add origin "$R"
expect_stdout_eq ""
expect_ok dvol remote list
expect_stdout_eq "origin	$R"
expect_ok dvol remote ls --json
json_check "remote list --json" 'd == [{"name": "origin", "url": "'"$R"'"}]'
# A relative path is kept absolute.
expect_ok bash -c "cd '$TEST_TMP' && '$DVOL' --disable-docker-integration remote add rel remote"
expect_ok dvol remote list
expect_stdout_eq "origin	$R
rel	$R"
expect_ok dvol remote remove rel
expect_stdout_eq ""
expect_ok dvol remote list
expect_stdout_eq "origin	$R"

before=$(dir_state "$DVOL_ROOT")
expect_fail 1 dvol remote add origin "$TEST_TMP"
expect_stderr_one_line
expect_stdout_eq ""
expect_stderr_contains "Error: remote origin already exists"
expect_fail 1 dvol remote add "bad/name" "$R"
expect_stderr_one_line
expect_stderr_contains "bad/name is not a valid remote name"
expect_fail 1 dvol remote add ".." "$R"
expect_stderr_one_line
expect_fail 1 dvol remote add missing "$TEST_TMP/no/such/dir"
expect_stderr_one_line
expect_stderr_contains "$TEST_TMP/no/such/dir"
expect_fail 1 dvol remote add missing2 "file://$TEST_TMP/no/such/dir"
expect_stderr_one_line
expect_fail 1 dvol remote remove nosuch
expect_stderr_one_line
expect_stderr_contains "no such remote: nosuch"
expect_fail 2 dvol remote add onlyname
expect_ok dvol remote list
expect_stdout_eq "origin	$R"
expect_fail 1 dvol remote show origin
expect_stderr_one_line
expect_stderr_contains "is not a dvol remote"
expect_fail 1 dvol remote show nosuch
expect_stderr_one_line
expect_stderr_contains "no remote named nosuch"
expect_eq "failed remote commands changed no file of the store" "$before" "$(dir_state "$DVOL_ROOT")"
check "nor the remote directory" test -z "$(ls -A "$R")"

# --- push -----------------------------------------------------------------------------------------------
expect_ok dvol init vol || abort
LA=$(dvol path vol)
expect_fail 1 dvol push origin
expect_stderr_one_line
expect_stderr_contains "Error: branch master of vol has no commits to push"
check "a refused push leaves the remote directory empty" test -z "$(ls -A "$R")"
expect_fail 1 dvol push origin vol nobranch
expect_stderr_one_line
expect_stderr_contains "branch nobranch does not exist in volume vol"
expect_fail 1 dvol push origin novol
expect_stderr_one_line
expect_stderr_contains "volume 'novol' does not exist"

mkdir -p "$LA/dir/sub" "$LA/empty"
echo one >"$LA/a.txt"
echo inner >"$LA/dir/sub/inner.txt"
random_file "$LA/big.bin" $((3 * MIB))
ln -s a.txt "$LA/link"
expect_ok dvol commit -m one || abort
C1=$OUT
check "commit prints the id" grep -Eq "$HEX64" <<<"$C1"
expect_fail 1 dvol push nope
expect_stderr_one_line
expect_stderr_contains "no remote named nope"
check "a push to an unknown remote leaves the remote directory empty" test -z "$(ls -A "$R")"
expect_ok dvol push origin || abort
check "push output" grep -qxE 'To origin' <<<"$OUT"
expect_stdout_contains " * [new branch]      vol/master -> vol/master"
check "push says how much it sent" grep -qE '^[0-9]+ objects sent, [0-9.]+ MiB in 2 packs$' <<<"$OUT"
check "the remote holds its marker" test "$(cat "$R/dvol-remote")" = "dvol remote 1"
expect_eq "the branch's ref on the remote" "$(printf 'dvol ref 1\ncommit %s' "$C1")" "$(cat "$R/refs/vol/branches/master")"
expect_ok dvol push origin
expect_stdout_eq "Everything up-to-date"
expect_ok dvol push origin vol master --json
json_check "push --json, nothing to send" \
    'd["result"] == "up-to-date" and d["remote"] == "origin" and d["volume"] == "vol" and d["remote_volume"] == "vol" and d["branch"] == "master" and d["new"] == d["old"] == "'"$C1"'" and d["objects"] == 0 and d["packs"] == 0 and d["bytes"] == 0'
# The remote named by its URL.
expect_ok dvol push "file://$R"
expect_stdout_eq "Everything up-to-date"
expect_ok dvol push "$R" --json
json_check "push to a path" 'd["result"] == "up-to-date" and d["remote"] == "'"$R"'"'

expect_ok dvol remote show origin
expect_stdout_eq "  BRANCH      COMMIT
* vol/master  ${C1:0:12}"
expect_ok dvol remote show origin --json
json_check "remote show --json" 'd == [{"volume": "vol", "branch": "master", "tip": "'"$C1"'", "head": True}]'

# --- clone ----------------------------------------------------------------------------------------------
expect_fail 1 dvolb clone origin vol
expect_stderr_one_line
expect_stderr_contains "no remote named origin"
expect_ok dvolb clone "$R" vol || abort
expect_stdout_eq "Cloning volume vol from $R into vol...
$(sed -n 2p <<<"$OUT")
Created volume vol on branch master at ${C1:0:12}"
check "clone says what it received" grep -qE '^[0-9]+ objects received, [0-9.]+ MiB$' <<<"$(sed -n 2p <<<"$OUT")"
LB=$(dvolb path vol)
expect_eq "the clone's live directory is the commit's" "$(tree_listing "$LA")" "$(tree_listing "$LB")"
expect_ok dvolb log vol
check "the clone has the history" grep -q "$C1" <<<"$OUT"
expect_ok dvolb status vol
expect_stdout_contains "nothing to commit"
expect_ok dvolb fsck

bstate=$(dir_state "$B")
expect_fail 1 dvolb clone "$R" vol
expect_stderr_one_line
expect_stderr_contains "Error: volume vol already exists"
expect_fail 1 dvolb clone "$R" novol
expect_stderr_one_line
expect_stderr_contains "has no volume novol"
mkdir -p "$TEST_TMP/notremote"
echo hello >"$TEST_TMP/notremote/file"
expect_fail 1 dvolb clone "$TEST_TMP/notremote" vol x
expect_stderr_one_line
expect_stderr_contains "is not a dvol remote"
expect_fail 1 dvolb clone "$TEST_TMP/missing" vol x
expect_stderr_one_line
expect_stderr_contains "does not exist"
expect_fail 1 dvolb clone "file://$TEST_TMP/missing" vol x
expect_stderr_one_line
expect_fail 1 dvolb clone "$R" "../vol" x
expect_stderr_one_line
expect_stderr_contains "is not a valid volume name"
expect_eq "failed clones created nothing" "$bstate" "$(dir_state "$B")"

expect_ok dvolb clone "file://$R" vol copy --json || abort
json_check "clone --json" \
    'd["volume"] == "copy" and d["branch"] == "master" and d["commit"] == "'"$C1"'" and d["resumed"] is False and d["remote_volume"] == "vol" and d["objects"] == 0 and isinstance(d["updates"], list) and d["updates"][0]["branch"] == "master" and d["updates"][0]["new"] == "'"$C1"'" and d["updates"][0]["old"] == ""'
expect_ok dvolb remote add origin "$R" || abort

# --- change in B, push; fetch and pull in A -----------------------------------------------------------------
echo "from b" >"$LB/b.txt"
rm "$LB/a.txt"
expect_ok dvolb commit -m two vol || abort
C2=$OUT
expect_ok dvolb push origin vol || abort
expect_stdout_contains "   ${C1:0:7}..${C2:0:7}  vol/master -> vol/master"
expect_ok dvol fetch origin
expect_stdout_eq "From origin
   ${C1:0:7}..${C2:0:7}  vol/master -> origin/vol/master
$(sed -n 3p <<<"$OUT")"
check "fetch says what it received" grep -qE '^[0-9]+ objects? received, [0-9.]+ MiB$' <<<"$(sed -n 3p <<<"$OUT")"
check "fetch leaves the live directory" test -f "$LA/a.txt"
expect_ok dvol fetch origin --json
json_check "fetch --json, nothing new" 'd["updates"] == [] and d["objects"] == 0 and d["remote"] == "origin" and d["volume"] == "vol"'
expect_ok dvol pull origin
expect_stdout_eq "Updating ${C1:0:7}..${C2:0:7}
Fast-forward"
expect_eq "after pull, A's live directory is B's" "$(tree_listing "$LB")" "$(tree_listing "$LA")"
expect_ok dvol pull origin
expect_stdout_eq "Already up to date."
expect_ok dvol pull origin vol master --json
json_check "pull --json, up to date" \
    'd["result"] == "up-to-date" and d["branch"] == "master" and d["new"] == d["old"] == "'"$C2"'" and d["updates"] == []'

# --- rejected push, --force, diverged pull, uncommitted changes ----------------------------------------------
echo "a's change" >"$LA/a2.txt"
expect_ok dvol commit -m "three (a)" || abort
C3A=$OUT
echo "b's change" >"$LB/b2.txt"
expect_ok dvolb commit -m "three (b)" vol || abort
C3B=$OUT
expect_ok dvolb push origin vol || abort
ref_before=$(cat "$R/refs/vol/branches/master")
expect_fail 1 dvol push origin
expect_stderr_one_line
expect_stderr_contains "rejected"
expect_stderr_contains "fetch first"
expect_eq "a rejected push leaves the remote branch" "$ref_before" "$(cat "$R/refs/vol/branches/master")"
expect_ok dvol fetch origin
expect_fail 1 dvol push origin
expect_stderr_one_line
expect_stderr_contains "non-fast-forward"
expect_eq "a rejected push leaves the remote branch" "$ref_before" "$(cat "$R/refs/vol/branches/master")"
astate=$(tree_listing "$LA")
expect_fail 1 dvol pull origin
expect_stderr_one_line
expect_stderr_contains "diverged"
expect_stderr_contains "reset --hard origin/vol/master to take theirs"
# The remote-tracking branch is a revision: B's commit, against A's.
expect_ok dvol diff origin/vol/master HEAD
expect_stdout_contains "a2.txt"
expect_stdout_contains "b2.txt"
expect_fail 1 dvol diff origin/vol/nope HEAD
expect_stderr_contains "unknown revision 'origin/vol/nope'"
expect_eq "a refused pull leaves the live directory" "$astate" "$(tree_listing "$LA")"
expect_ok dvol log --json
json_check "a refused pull leaves the branch" 'd[0]["id"] == "'"$C3A"'"'
expect_ok dvol push --force origin
expect_stdout_eq "To origin
 + ${C3B:0:7}...${C3A:0:7} vol/master -> vol/master (forced update)
$(sed -n 3p <<<"$OUT")"
expect_eq "the forced ref" "$(printf 'dvol ref 1\ncommit %s' "$C3A")" "$(cat "$R/refs/vol/branches/master")"

# B, back at a commit the remote's branch descends from, with a change in its live directory:
# the pull is refused.
expect_ok dvolb reset --hard "$C2" vol || abort
echo "wip" >"$LB/wip.txt"
bstate=$(tree_listing "$LB")
expect_fail 1 dvolb pull origin vol
expect_stderr_one_line
expect_stderr_contains "uncommitted changes"
# The fetch before the refusal is told (A forced the branch since B's last fetch).
expect_stdout_contains "   ${C3B:0:7}..${C3A:0:7}  vol/master -> origin/vol/master"
expect_eq "a refused pull leaves the live directory" "$bstate" "$(tree_listing "$LB")"
rm "$LB/wip.txt"
expect_ok dvolb pull origin vol --json
json_check "pull --json, fast-forward" 'd["result"] == "fast-forward" and d["old"] == "'"$C2"'" and d["new"] == "'"$C3A"'"'
expect_eq "after pull, B is A" "$(tree_listing "$LA")" "$(tree_listing "$LB")"

# --- branches: push another, delete it ------------------------------------------------------------------------
expect_ok dvol checkout -b feature || abort
echo feature >"$LA/feature.txt"
expect_ok dvol commit -m feature || abort
F1=$OUT
expect_ok dvol push origin || abort
expect_stdout_contains " * [new branch]      vol/feature -> vol/feature"
expect_ok dvolb fetch origin vol
expect_stdout_contains " * [new branch]      vol/feature -> origin/vol/feature"
expect_ok dvolb pull origin vol feature
expect_stdout_eq "Branch feature created at ${F1:0:7}"
expect_ok dvolb branch vol
expect_stdout_contains "feature"
expect_ok dvol push --delete origin vol feature
expect_stdout_eq "To origin
 - [deleted]         vol/feature"
expect_eq "a deleted branch leaves a tombstone" "$(printf 'dvol ref 1\ndeleted')" "$(cat "$R/refs/vol/branches/feature")"
expect_ok dvol remote show origin
expect_stdout_eq "  BRANCH      COMMIT
* vol/master  ${C3A:0:12}"
expect_fail 1 dvol push --delete origin vol feature
expect_stderr_one_line
expect_stderr_contains "has no branch vol/feature"
expect_ok dvolb fetch origin vol
expect_stdout_eq "From origin
 - [deleted]         (none) -> origin/vol/feature"
expect_ok dvolb fetch origin vol --json
json_check "fetch --json after the delete" 'd["updates"] == []'
expect_fail 1 dvolb pull origin vol feature
expect_stderr_one_line
expect_stderr_contains "has no branch vol/feature"
expect_ok dvol push origin vol feature
expect_stdout_contains " * [new branch]      vol/feature -> vol/feature"
expect_ok dvol checkout master || abort
expect_ok dvol fsck
expect_ok dvolb fsck
check_remote "after the walkthrough"

# --- a full file system under the remote ----------------------------------------------------------------------
if [ "$(id -u)" -ne 0 ]; then
    echo "SKIP (full file system): not root, so no tmpfs can be mounted"
else
    SMALL=$TEST_TMP/small
    mkdir -p "$SMALL"
    if ! mount -t tmpfs -o size=2m tmpfs "$SMALL" 2>"$TEST_TMP/mount.err"; then
        echo "SKIP (full file system): cannot mount a tmpfs: $(cat "$TEST_TMP/mount.err")"
    else
        trap 'umount "$SMALL" 2>/dev/null || umount -l "$SMALL" 2>/dev/null; cleanup' EXIT
        expect_ok dvol init fat || abort
        LF=$(dvol path fat)
        echo small >"$LF/small.txt"
        expect_ok dvol commit -m small fat || abort
        expect_ok dvol remote add small "$SMALL" || abort
        expect_ok dvol push small fat || abort
        random_file "$LF/big.bin" $((4 * MIB))
        expect_ok dvol commit -m big fat || abort
        SMALL_REF=$(cat "$SMALL/refs/fat/branches/master")
        expect_fail 1 dvol push small fat
        expect_stderr_one_line
        expect_stderr_contains "No space left on device"
        expect_stderr_contains "$SMALL"
        expect_eq "a push that ran out of space leaves the remote branch" "$SMALL_REF" "$(cat "$SMALL/refs/fat/branches/master")"
        check "a push that ran out of space leaves no file being written" test -z "$(ls -A "$SMALL/tmp~" 2>/dev/null)"
        check_remote "after running out of space" "$SMALL"
        expect_ok dvol fsck
        mkdir -p "$TEST_TMP/big-remote"
        expect_ok dvol remote add big "$TEST_TMP/big-remote"
        expect_ok dvol push big fat
        expect_stdout_contains "[new branch]"
        check_remote "a bigger remote" "$TEST_TMP/big-remote"
        umount "$SMALL" 2>/dev/null || umount -l "$SMALL"
        trap cleanup EXIT
    fi
fi

# --- dvol push killed at random instants ---------------------------------------------------------------------------
# Each round: a new commit of a few MiB, a push killed after 0 to 400 ms (or finished), then the
# store passes fsck, the remote is consistent, and the rerun completes with nothing sent twice.
KR=$TEST_TMP/kill-remote
mkdir -p "$KR"
expect_ok dvol remote add kill "$KR" || abort
expect_ok dvol init killed || abort
LK=$(dvol path killed)
KILLED=0
for ((i = 0; i < ROUNDS; i++)); do
    random_file "$LK/f$((i % 5)).bin" $(((RANDOM % 6 + 1) * MIB))
    mkdir -p "$LK/d$i"
    echo "round $i" >"$LK/d$i/note.txt"
    expect_ok tdvol commit -m "round $i" killed || abort
    TIP=$OUT
    "$DVOL" --disable-docker-integration push kill killed >/dev/null 2>&1 &
    pid=$!
    sleep "0.$(printf '%03d' $((RANDOM % 400)))"
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    [ $? -eq 137 ] && KILLED=$((KILLED + 1))
    expect_ok tdvol fsck
    check_remote "push killed in round $i" "$KR"
    expect_ok tdvol push kill killed --json
    json_check "the rerun of round $i's push lands the tip" '"'"$TIP"'" == d["new"]'
    check_remote "push rerun in round $i" "$KR"
done
echo "$KILLED of $ROUNDS pushes were killed before they finished"

# --- dvol clone killed at random instants ---------------------------------------------------------------------------
# Each round: a clone of the volume into a fresh store killed after 0 to 600 ms (or finished);
# then the store passes fsck, and the rerun finishes the clone (or, when the kill came after the
# clone's last step, refuses the existing volume, which must then be complete).
KILLED=0
for ((i = 0; i < ROUNDS; i++)); do
    C=$TEST_TMP/clone-$i
    mkdir -p "$C"
    DVOL_ROOT=$C "$DVOL" --disable-docker-integration clone "$KR" killed >/dev/null 2>&1 &
    pid=$!
    # Every other round within its first 100 ms, where it makes the volume.
    if ((i % 2)); then sleep "0.$(printf '%03d' $((RANDOM % 100)))"; else sleep "0.$(printf '%03d' $((RANDOM % 600)))"; fi
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    [ $? -eq 137 ] && KILLED=$((KILLED + 1))
    run env DVOL_ROOT="$C" timeout "$T" "$DVOL" --disable-docker-integration fsck
    if [ "$RC" -eq 0 ] || { [ ! -e "$C/dvol.db" ] && [[ "$ERR" == "Error: no dvol store at $C "* ]]; }; then
        pass # killed before it made the store: there is none, and fsck says so
    else
        fail "round $i: the store of a killed clone passes fsck" "$(last_details)"
    fi
    run env DVOL_ROOT="$C" timeout "$T" "$DVOL" --disable-docker-integration clone "$KR" killed --json
    if [ "$RC" -eq 0 ]; then
        pass
        json_check "the rerun of round $i's clone finishes it" 'd["commit"] == "'"$TIP"'"'
    elif [[ "$ERR" == "Error: volume killed already exists" ]]; then
        # Killed after its last step: the clone was complete (checked below), and a clone into
        # an existing volume is refused.
        pass
    else
        fail "the rerun of round $i's clone succeeds, or says a finished clone exists" "$(last_details)"
    fi
    expect_ok env DVOL_ROOT="$C" timeout "$T" "$DVOL" --disable-docker-integration log --json killed
    json_check "round $i: the clone is at the remote's tip" 'd[0]["id"] == "'"$TIP"'"'
    expect_eq "round $i: the clone's live directory" "$(tree_listing "$LK")" "$(tree_listing "$C/volumes/killed/data")"
    expect_ok env DVOL_ROOT="$C" timeout "$T" "$DVOL" --disable-docker-integration fsck
    rm -rf "$C"
done
echo "$KILLED of $ROUNDS clones were killed before they finished"

finish
