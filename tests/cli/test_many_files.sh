#!/usr/bin/env bash
# A tree of 10,000 small files: commit, an unchanged commit, status naming exactly what changed,
# reset and checkout restoring exactly.
# shellcheck source=tests/cli/lib.sh disable=SC2016  # checks eval single-quoted tests on purpose
. "$(dirname "$0")/lib.sh"

NFILES=10000
expect_ok dvol init many || abort
P=$(dvol path)

# 10,000 files over 400 directories nested 3 deep, deterministic content: every 50th file is
# one line of text, the others that line and up to 4 KiB of random bytes.
python3 - "$P" "$NFILES" <<'EOF' || { echo "FAIL: could not generate the tree"; exit 1; }
import os, sys, random
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(1234)
for i in range(n):
    d = os.path.join(root, f"d{i % 10}", f"e{(i // 10) % 10}", f"f{(i // 100) % 4}")
    os.makedirs(d, exist_ok=True)
    size = rng.randrange(0, 4096) if i % 50 else 0
    with open(os.path.join(d, f"file{i:05d}.txt"), "wb") as f:
        f.write((f"file {i}\n".encode() + rng.randbytes(size)) if size else f"file {i}\n".encode())
EOF
expect_eq "the tree has $NFILES files" "$NFILES" "$(find "$P" -type f | wc -l)"
L1=$(tree_listing "$P")

SECONDS=0
expect_ok dvol commit -m "10k files" || abort
C1=$OUT
echo "first commit: ${SECONDS}s"
expect_eq "commit leaves the tree as it was" "$L1" "$(tree_listing "$P")"

SECONDS=0
expect_ok dvol status
expect_stdout_eq $'On branch master of volume many\nnothing to commit, live directory clean'
echo "status, nothing changed: ${SECONDS}s"

SECONDS=0
expect_ok dvol commit -m "nothing changed" || abort
C2=$OUT
echo "second commit, nothing changed: ${SECONDS}s"
expect_ok dvol --json log
json_check "the unchanged commit has the same tree" "d[0]['id'] == '$C2' and d[0]['tree'] == d[1]['tree']"

# A few changes.
echo "modified" >>"$P/d0/e5/f1/file01350.txt"
printf 'x' | dd of="$P/d9/e9/f3/file09999.txt" bs=1 seek=3 conv=notrunc status=none
rm "$P/d0/e0/f0/file00000.txt"
rm "$P/d5/e5/f1/file02555.txt"
echo "new" >"$P/d7/e7/f0/new.txt"
mkdir "$P/d1/newdir"
echo "new in new dir" >"$P/d1/newdir/inside.txt"
chmod 0600 "$P/d2/e2/f2/file02222.txt"
SECONDS=0
expect_ok dvol status
echo "status, a few changes: ${SECONDS}s"
expect_stdout_eq "On branch master of volume many
Changes not committed:
  deleted:    d0/e0/f0/file00000.txt
  modified:   d0/e5/f1/file01350.txt
  added:      d1/newdir
  added:      d1/newdir/inside.txt
  metadata:   d2/e2/f2/file02222.txt (mode 0644 -> 0600)
  deleted:    d5/e5/f1/file02555.txt
  added:      d7/e7/f0/new.txt
  modified:   d9/e9/f3/file09999.txt"
expect_ok dvol status --json
json_check "status --json names exactly the 8 changes" 'len(d["changes"]) == 8'
expect_ok dvol diff -- d0/e5/f1/file01350.txt
expect_stdout_contains "+modified"

SECONDS=0
expect_ok dvol reset --hard HEAD || abort
echo "reset --hard HEAD: ${SECONDS}s"
expect_eq "reset --hard HEAD restores the 10,000 files exactly" "$L1" "$(tree_listing "$P")"
expect_ok dvol status
expect_stdout_contains "nothing to commit"

# The same changes again, committed this time.
echo "modified" >>"$P/d0/e5/f1/file01350.txt"
printf 'x' | dd of="$P/d9/e9/f3/file09999.txt" bs=1 seek=3 conv=notrunc status=none
rm "$P/d0/e0/f0/file00000.txt" "$P/d5/e5/f1/file02555.txt"
echo "new" >"$P/d7/e7/f0/new.txt"
mkdir "$P/d1/newdir"
echo "new in new dir" >"$P/d1/newdir/inside.txt"
chmod 0600 "$P/d2/e2/f2/file02222.txt"
L2=$(tree_listing "$P")
expect_ok dvol commit -m "a few changes" || abort
C3=$OUT
expect_ok dvol status
expect_stdout_contains "nothing to commit"

# Branches: other changes on another branch, then back and forth.
expect_ok dvol checkout -b side
rm -r "$P/d4"
for i in 1 2 3 4 5; do echo "side $i" >"$P/d6/side$i.txt"; done
L_SIDE=$(tree_listing "$P")
expect_ok dvol commit -m "side" || abort
SECONDS=0
expect_ok dvol checkout master
echo "checkout master: ${SECONDS}s"
expect_eq "checkout master restores master's 10,000 files" "$L2" "$(tree_listing "$P")"
expect_ok dvol checkout side
expect_eq "checkout side restores side's files" "$L_SIDE" "$(tree_listing "$P")"
expect_ok dvol checkout master
expect_eq "and master again" "$L2" "$(tree_listing "$P")"
expect_ok dvol reset --hard "$C1"
expect_eq "reset --hard to the first commit restores the original tree" "$L1" "$(tree_listing "$P")"
expect_ok dvol status
expect_stdout_contains "nothing to commit"
expect_ok dvol reset --hard "$C3"
expect_eq "reset --hard to the third commit's id restores its tree" "$L2" "$(tree_listing "$P")"

finish
