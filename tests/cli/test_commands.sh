#!/usr/bin/env bash
# Every command's success path and output format, as a user sees it.
# shellcheck source=tests/cli/lib.sh disable=SC2016  # checks eval single-quoted tests on purpose
. "$(dirname "$0")/lib.sh"

HEX64='^[0-9a-f]{64}$'
DATE_RE='^Date:   (Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ 1-3][0-9] [0-2][0-9]:[0-5][0-9]:[0-6][0-9] [0-9]{4} [+-][0-9]{4}$'

# Lines of $OUT without trailing blanks (the list table pads its last column).
trimmed_out() { printf '%s\n' "$OUT" | sed 's/[[:space:]]*$//'; }

expect_ok "$DVOL" --version
expect_stdout_contains "0."

# --- init, path, list ---------------------------------------------------------------------
expect_ok dvol init foo || abort
expect_stdout_eq $'Created volume foo\nCreated branch foo/master'
expect_ok dvol path
expect_stdout_eq "$DVOL_ROOT/volumes/foo/data"
FOO=$OUT
check "the live directory of a new volume exists" test -d "$FOO"
check "the live directory of a new volume is empty" test -z "$(ls -A "$FOO")"

expect_ok dvol list
expect_eq "list table" $'  VOLUME  BRANCH  CONTAINERS\n* foo     master' "$(trimmed_out)"
expect_ok dvol ls
expect_eq "ls is list" $'  VOLUME  BRANCH  CONTAINERS\n* foo     master' "$(trimmed_out)"

expect_ok dvol init barbazquux
expect_stdout_eq $'Created volume barbazquux\nCreated branch barbazquux/master'
BAR=$DVOL_ROOT/volumes/barbazquux/data
expect_ok dvol list
expect_eq "the new volume becomes active; columns widen to the longest name" \
    $'  VOLUME      BRANCH  CONTAINERS\n* barbazquux  master\n  foo         master' "$(trimmed_out)"
expect_ok dvol path
expect_stdout_eq "$BAR"
expect_ok dvol path foo
expect_stdout_eq "$FOO"

expect_ok dvol switch foo
expect_stdout_eq ""
expect_ok dvol list
expect_eq "switch makes foo active" \
    $'  VOLUME      BRANCH  CONTAINERS\n  barbazquux  master\n* foo         master' "$(trimmed_out)"
expect_ok dvol path
expect_stdout_eq "$FOO"

for form in "--json list" "list --json" "--json ls"; do
    # shellcheck disable=SC2086
    expect_ok dvol $form
    json_check "$form: an array of two volumes" 'isinstance(d, list) and len(d) == 2'
    json_check "$form: fields name, branch, active, containers" \
        'all(set(v) >= {"name", "branch", "active", "containers"} for v in d)'
    json_check "$form: foo is the one active volume" \
        '[v["name"] for v in d if v["active"] is True] == ["foo"] and all(v["active"] in (True, False) for v in d)'
    json_check "$form: branches and containers" \
        'all(v["branch"] == "master" and isinstance(v["containers"], list) for v in d)'
done

# --- status, commit, log -------------------------------------------------------------------
expect_ok dvol status
expect_stdout_eq $'On branch master of volume foo\nnothing to commit, live directory clean'
expect_ok dvol --json status
json_check "status --json of a clean volume" \
    'd["volume"] == "foo" and d["branch"] == "master" and d["clean"] is True and d["changes"] == []'

mkdir -p "$FOO/sub/deep"
echo alpha >"$FOO/a.txt"
echo beta >"$FOO/sub/b.txt"
printf 'gamma\n' >"$FOO/c.txt"
expect_ok dvol status
expect_stdout_eq "On branch master of volume foo
Changes not committed:
  added:      a.txt
  added:      c.txt
  added:      sub
  added:      sub/b.txt
  added:      sub/deep"
expect_ok dvol status --json
json_check "status --json lists the added paths" \
    'd["clean"] is False and sorted(c["path"] for c in d["changes"]) == ["a.txt", "c.txt", "sub", "sub/b.txt", "sub/deep"]'
json_check "status --json: every change is 'added' and has details" \
    'all(c["status"] == "added" and isinstance(c["details"], list) for c in d["changes"])'

expect_ok dvol commit -m "first commit" || abort
check "commit prints the 64-hex commit id and nothing else" grep -Eq "$HEX64" <<<"$OUT"
expect_eq "commit prints one line" 1 "$(printf '%s\n' "$OUT" | wc -l)"
C1=$OUT
expect_ok dvol status
expect_stdout_eq $'On branch master of volume foo\nnothing to commit, live directory clean'
expect_ok dvol status --json
json_check "status --json after commit is clean" 'd["clean"] is True and d["changes"] == []'

# Identity: config set/get round trip, then it appears in log.
expect_ok dvol config user.name "Ada Lovelace"
expect_stdout_eq ""
expect_ok dvol config user.email "ada@example.org"
expect_ok dvol config user.name
expect_stdout_eq "Ada Lovelace"
expect_ok dvol config user.email
expect_stdout_eq "ada@example.org"
expect_ok dvol config user.name "Ada King"
expect_ok dvol config user.name
expect_stdout_eq "Ada King"

echo "alpha 2" >>"$FOO/a.txt"
rm "$FOO/sub/b.txt"
chmod 600 "$FOO/c.txt"
echo new >"$FOO/sub/deep/new.txt"
expect_ok dvol status
expect_stdout_eq "On branch master of volume foo
Changes not committed:
  modified:   a.txt
  metadata:   c.txt (mode 0644 -> 0600)
  deleted:    sub/b.txt
  added:      sub/deep/new.txt"
expect_ok dvol status --json
json_check "status --json kinds" \
    '{c["path"]: c["status"] for c in d["changes"]} == {"a.txt": "modified", "c.txt": "metadata", "sub/b.txt": "deleted", "sub/deep/new.txt": "added"}'
json_check "status --json details of a metadata change name the mode" \
    'any("mode" in x for c in d["changes"] if c["path"] == "c.txt" for x in c["details"])'

# diff of the live directory against HEAD
expect_ok dvol diff
expect_stdout_contains "--- a/a.txt"
expect_stdout_contains "+++ b/a.txt"
expect_stdout_contains "+alpha 2"
expect_stdout_contains "metadata of c.txt: mode 0644 -> 0600"
expect_stdout_contains "-beta"
expect_stdout_contains "+new"
expect_ok dvol diff -- sub
check "diff -- sub leaves out a.txt" eval '[[ "$OUT" != *a.txt* ]]'
expect_stdout_contains "sub/b.txt"
expect_stdout_contains "sub/deep/new.txt"
expect_ok dvol diff -- a.txt
expect_stdout_contains "+alpha 2"
check "diff -- a.txt shows only a.txt" eval '[[ "$OUT" != *sub/* && "$OUT" != *c.txt* ]]'

expect_ok dvol commit -m $'second commit\n\nwith a body line' || abort
C2=$OUT
check "second commit id is 64 hex" grep -Eq "$HEX64" <<<"$C2"
check "second commit id differs from the first" test "$C1" != "$C2"

expect_ok dvol diff HEAD^ HEAD
expect_stdout_contains "+alpha 2"
expect_stdout_contains "metadata of c.txt: mode 0644 -> 0600"
expect_ok dvol diff "$C1" "$C2" -- a.txt
expect_stdout_contains "+alpha 2"
expect_ok dvol diff HEAD
expect_stdout_eq ""
expect_ok dvol diff HEAD^
expect_stdout_contains "+alpha 2"

# diff gives each file's mode as git does, 100755 when an execute bit is set and 100644
# otherwise, for the live directory and between commits (on a volume of its own).
# The line after PATH's "diff --git" line in $OUT.
header_after() { sed -n "\|^diff --git a/$1 b/$1\$|{n;p;}" <<<"$OUT"; }
expect_ok dvol init modes || abort
expect_ok dvol switch foo
MODES=$DVOL_ROOT/volumes/modes/data
printf 'run\n' >"$MODES/run.sh"
chmod 755 "$MODES/run.sh"
printf 'secret\n' >"$MODES/key"
chmod 600 "$MODES/key"
expect_ok dvol diff --volume modes
expect_eq "diff: a new 0755 file is 100755" "new file mode 100755" "$(header_after run.sh)"
expect_eq "diff: a new 0600 file is 100644" "new file mode 100644" "$(header_after key)"
expect_ok dvol commit -m "modes" modes
echo more >>"$MODES/key"
chmod 700 "$MODES/key"
expect_ok dvol diff --volume modes
expect_eq "diff: a changed file made 0700 shows both modes" $'old mode 100644\nnew mode 100755' \
    "$(sed -n "\|^diff --git a/key b/key\$|{n;N;p;}" <<<"$OUT")"
rm "$MODES/key" "$MODES/run.sh"
expect_ok dvol diff --volume modes
expect_eq "diff: a deleted 0755 file is 100755" "deleted file mode 100755" "$(header_after run.sh)"
expect_eq "diff: a deleted 0600 file is 100644" "deleted file mode 100644" "$(header_after key)"
expect_ok dvol commit -m "no files" modes
expect_ok dvol diff --volume modes HEAD^ HEAD
expect_eq "diff A B: a deleted 0755 file is 100755" "deleted file mode 100755" "$(header_after run.sh)"
expect_eq "diff A B: a deleted 0600 file is 100644" "deleted file mode 100644" "$(header_after key)"
expect_ok dvol diff --volume modes HEAD HEAD^
expect_eq "diff A B: a new 0755 file is 100755" "new file mode 100755" "$(header_after run.sh)"
expect_eq "diff A B: a new 0600 file is 100644" "new file mode 100644" "$(header_after key)"
expect_ok dvol rm -f modes

expect_ok dvol log
LOG=$OUT
expect_eq "log line 1: the newest commit" "commit $C2" "$(sed -n 1p <<<"$LOG")"
expect_eq "log line 2: the author from config" "Author: Ada King <ada@example.org>" "$(sed -n 2p <<<"$LOG")"
check "log line 3: a git-style Date line" grep -Eq "$DATE_RE" <<<"$(sed -n 3p <<<"$LOG")"
expect_eq "log: a blank line, then the message indented by 4" \
    $'\n    second commit\n\n    with a body line\n\ncommit '"$C1" "$(sed -n 4,9p <<<"$LOG")"
check "log: the older commit's author line" grep -Eq '^Author: .+ <.+>$' <<<"$(sed -n 10p <<<"$LOG")"
check "log: the older commit's Date line" grep -Eq "$DATE_RE" <<<"$(sed -n 11p <<<"$LOG")"
expect_eq "log: the first message, last" $'\n    first commit' "$(sed -n '12,$p' <<<"$LOG")"
expect_eq "log shows two commits" 2 "$(grep -c '^commit ' <<<"$LOG")"

for form in "--json log" "log --json"; do
    # shellcheck disable=SC2086
    expect_ok dvol $form
    json_check "$form: newest first" "[e['id'] for e in d] == ['$C2', '$C1']"
    json_check "$form: fields" \
        'all(set(e) >= {"id", "tree", "parents", "author", "date", "time", "message"} for e in d)'
    json_check "$form: parents" "d[0]['parents'] == ['$C1'] and d[1]['parents'] == []"
    json_check "$form: author" \
        'd[0]["author"] == {"name": "Ada King", "email": "ada@example.org"}'
    json_check "$form: message kept whole" \
        'd[0]["message"] == "second commit\n\nwith a body line" and d[1]["message"] == "first commit"'
    json_check "$form: tree ids are 64 hex and differ" \
        'all(len(e["tree"]) == 64 and all(ch in "0123456789abcdef" for ch in e["tree"]) for e in d) and d[0]["tree"] != d[1]["tree"]'
    json_check "$form: date is ISO 8601 with an offset, time is an integer" \
        '__import__("re").fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", d[0]["date"]) is not None and isinstance(d[0]["time"], int) and d[0]["time"] >= d[1]["time"]'
done

# A commit with nothing changed is still a commit.
expect_ok dvol commit -m "third, nothing changed"
C3=$OUT
check "an unchanged commit gets a new id" test "$C3" != "$C2"
expect_ok dvol --json log
json_check "the unchanged commit has the same tree as its parent" \
    "len(d) == 3 and d[0]['tree'] == d[1]['tree'] and d[0]['parents'] == ['$C2']"

# --- volume argument vs active volume --------------------------------------------------------
echo "bar data" >"$BAR/bar.txt"
expect_ok dvol status barbazquux
expect_stdout_eq $'On branch master of volume barbazquux\nChanges not committed:\n  added:      bar.txt'
expect_ok dvol commit -m "bar first" barbazquux
B1=$OUT
expect_ok dvol log barbazquux
expect_eq "log VOLUME shows that volume's history" "commit $B1" "$(sed -n 1p <<<"$OUT")"
expect_eq "log VOLUME has one commit" 1 "$(grep -c '^commit ' <<<"$OUT")"
expect_ok dvol log
expect_eq "log without VOLUME is still the active volume's" "commit $C3" "$(sed -n 1p <<<"$OUT")"
expect_ok dvol list --json
json_check "committing to another volume does not change the active one" \
    '[v["name"] for v in d if v["active"]] == ["foo"]'
expect_ok dvol branch barbazquux
expect_stdout_eq "* master"
expect_ok dvol status barbazquux --json
json_check "status VOLUME --json" 'd["volume"] == "barbazquux" and d["clean"] is True'
echo more >>"$BAR/bar.txt"
expect_ok dvol diff --volume barbazquux
expect_stdout_contains "+more"
expect_ok dvol diff
expect_stdout_eq ""
expect_ok dvol reset --hard HEAD barbazquux
expect_stdout_eq "HEAD is now at ${B1:0:12} bar first"
expect_eq "reset VOLUME restored that volume" "bar data" "$(cat "$BAR/bar.txt")"

# --- reset --hard ----------------------------------------------------------------------------
expect_ok dvol reset --hard HEAD^
expect_stdout_eq "HEAD is now at ${C2:0:12} second commit"
expect_ok dvol reset --hard HEAD~1
expect_stdout_eq "HEAD is now at ${C1:0:12} first commit"
expect_eq "reset to the first commit restores a.txt" "alpha" "$(cat "$FOO/a.txt")"
expect_eq "reset to the first commit restores sub/b.txt" "beta" "$(cat "$FOO/sub/b.txt" 2>&1)"
check "reset removes a file the target lacks" test ! -e "$FOO/sub/deep/new.txt"
expect_eq "reset restores the mode" 644 "$(stat -c %a "$FOO/c.txt")"
expect_ok dvol log --json
json_check "later commits leave the branch" "[e['id'] for e in d] == ['$C1']"
expect_ok dvol status
expect_stdout_eq $'On branch master of volume foo\nnothing to commit, live directory clean'

# A commit that left the branch can still be named by its id (full or a prefix).
expect_ok dvol reset --hard "$C3"
expect_stdout_eq "HEAD is now at ${C3:0:12} third, nothing changed"
expect_ok dvol log --json
json_check "reset to a later id brings the history back" "[e['id'] for e in d] == ['$C3', '$C2', '$C1']"
expect_ok dvol reset --hard HEAD^^
expect_stdout_eq "HEAD is now at ${C1:0:12} first commit"
expect_ok dvol reset --hard "${C3:0:10}"
expect_stdout_eq "HEAD is now at ${C3:0:12} third, nothing changed"
expect_ok dvol reset --hard "$(tr a-f A-F <<<"${C2:0:8}")"
expect_stdout_eq "HEAD is now at ${C2:0:12} second commit"
expect_ok dvol reset --hard HEAD~0
expect_stdout_eq "HEAD is now at ${C2:0:12} second commit"
expect_ok dvol reset --hard "$C3~2"
expect_stdout_eq "HEAD is now at ${C1:0:12} first commit"
expect_ok dvol reset --hard "$C3"
echo "uncommitted" >"$FOO/a.txt"
expect_ok dvol reset --hard HEAD
expect_stdout_eq "HEAD is now at ${C3:0:12} third, nothing changed"
expect_eq "reset --hard HEAD discards an uncommitted change" $'alpha\nalpha 2' "$(cat "$FOO/a.txt")"

# --- branch, checkout ------------------------------------------------------------------------
expect_ok dvol branch
expect_stdout_eq "* master"
expect_ok dvol checkout -b dev
expect_stdout_eq "Switched to a new branch 'dev'"
expect_ok dvol branch
expect_stdout_eq $'* dev\n  master'
expect_ok dvol list
expect_eq "list shows the active branch" \
    $'  VOLUME      BRANCH  CONTAINERS\n  barbazquux  master\n* foo         dev' "$(trimmed_out)"
expect_ok dvol status
expect_stdout_eq $'On branch dev of volume foo\nnothing to commit, live directory clean'
echo "dev only" >"$FOO/dev.txt"
expect_ok dvol commit -m "on dev"
D1=$OUT
expect_ok dvol branch --json
json_check "branch --json" \
    "sorted((b['name'], b['active'], b['tip']) for b in d) == [('dev', True, '$D1'), ('master', False, '$C3')]"
expect_ok dvol --json branch foo
json_check "--json branch VOLUME" "len(d) == 2"

expect_ok dvol checkout master
expect_stdout_eq "Switched to branch 'master'"
check "checkout master removes the dev-only file" test ! -e "$FOO/dev.txt"
expect_ok dvol branch
expect_stdout_eq $'  dev\n* master'
expect_ok dvol checkout master
expect_stdout_eq "Already on branch 'master'"
expect_ok dvol checkout dev foo
expect_stdout_eq "Switched to branch 'dev'"
expect_eq "checkout dev brings the dev-only file back" "dev only" "$(cat "$FOO/dev.txt" 2>&1)"
expect_ok dvol log --json
json_check "log follows the active branch" "[e['id'] for e in d] == ['$D1', '$C3', '$C2', '$C1']"

# --force discards uncommitted changes.
echo "scratch" >"$FOO/scratch.txt"
expect_ok dvol checkout --force master
check "checkout --force discards an untracked file" test ! -e "$FOO/scratch.txt"
echo "scratch" >"$FOO/a.txt"
expect_ok dvol checkout -f dev
expect_eq "checkout -f discards a modification" $'alpha\nalpha 2' "$(cat "$FOO/a.txt")"
expect_ok dvol checkout master

# reset --hard to a branch name
expect_ok dvol reset --hard dev
expect_stdout_eq "HEAD is now at ${D1:0:12} on dev"
expect_eq "reset --hard BRANCH brings that branch's data" "dev only" "$(cat "$FOO/dev.txt" 2>&1)"
expect_ok dvol branch --json
json_check "reset moved master to dev's tip" "{b['name']: b['tip'] for b in d} == {'dev': '$D1', 'master': '$D1'}"

expect_ok dvol branch -d dev
expect_stdout_eq "Deleted branch dev"
expect_ok dvol branch
expect_stdout_eq "* master"
expect_ok dvol checkout -b feature barbazquux
expect_stdout_eq "Switched to a new branch 'feature'"
expect_ok dvol branch barbazquux
expect_stdout_eq $'* feature\n  master'
expect_ok dvol branch -d master barbazquux
expect_stdout_eq "Deleted branch master"
expect_ok dvol branch barbazquux
expect_stdout_eq "* feature"
expect_ok dvol branch
expect_stdout_eq "* master"

# --- rm ----------------------------------------------------------------------------------------
expect_ok dvol init gone
expect_ok dvol rm -f gone
expect_stdout_eq "Deleting volume 'gone'"
check "rm -f removes the volume's directory" test ! -e "$DVOL_ROOT/volumes/gone"
expect_ok dvol list --json
json_check "rm -f removes the volume from list" '"gone" not in [v["name"] for v in d]'

expect_ok dvol init asked
run_input $'n\n' dvol rm asked
expect_eq "rm answered 'n' exits 1" 1 "$RC"
expect_stdout_contains "[y/N]"
check "rm answered 'n' keeps the volume" test -d "$DVOL_ROOT/volumes/asked/data"
run_input '' dvol rm asked
expect_eq "rm with no answer (EOF) exits 1" 1 "$RC"
check "rm with no answer keeps the volume" test -d "$DVOL_ROOT/volumes/asked/data"
run_input $'y\n' dvol rm asked
expect_eq "rm answered 'y' exits 0" 0 "$RC"
expect_stdout_contains "Deleting volume 'asked'"
check "rm answered 'y' removes the volume" test ! -e "$DVOL_ROOT/volumes/asked"
expect_ok dvol list --json
json_check "volumes left after rm" 'sorted(v["name"] for v in d) == ["barbazquux", "foo"]'
json_check "after the active volume is removed none is active" 'not any(v["active"] for v in d)'
expect_ok dvol switch foo
run dvol rm --force barbazquux
expect_eq "rm --force works" 0 "$RC"
expect_ok dvol list --json
json_check "the active volume stays after another volume is removed" \
    '[(v["name"], v["active"]) for v in d] == [("foo", True)]'

# A removed volume can be created again, empty.
expect_ok dvol init barbazquux
expect_ok dvol log barbazquux
expect_stdout_eq ""
check "a re-created volume starts empty" test -z "$(ls -A "$BAR")"
expect_ok dvol switch foo

# --- -p/--store (--pool) and $DVOL_ROOT ---------------------------------------------------------
POOL2=$TEST_TMP/pool2
expect_ok dvol -p "$POOL2" init other
check "-p creates the volume in the given store" test -d "$POOL2/volumes/other/data"
check "-p leaves \$DVOL_ROOT alone" test ! -e "$DVOL_ROOT/volumes/other"
expect_ok dvol --pool "$POOL2" list --json
json_check "--pool (the original dvol's name) lists the other store" '[v["name"] for v in d] == ["other"]'
expect_ok dvol --store "$POOL2" list --json
json_check "--store lists the other store" '[v["name"] for v in d] == ["other"]'
expect_ok dvol --pool "$POOL2" path
expect_stdout_eq "$POOL2/volumes/other/data"
expect_ok dvol list --json
json_check "\$DVOL_ROOT still names the first pool" 'sorted(v["name"] for v in d) == ["barbazquux", "foo"]'
expect_ok env DVOL_ROOT="$POOL2" "$DVOL" --disable-docker-integration list --json
json_check "\$DVOL_ROOT chooses the pool" '[v["name"] for v in d] == ["other"]'
expect_ok env DVOL_ROOT="$POOL2" "$DVOL" --disable-docker-integration -p "$DVOL_ROOT" list --json
json_check "-p wins over \$DVOL_ROOT" 'sorted(v["name"] for v in d) == ["barbazquux", "foo"]'
echo x >"$POOL2/volumes/other/data/x"
expect_ok dvol -p "$POOL2" commit -m "in pool 2"
expect_ok dvol -p "$POOL2" log --json
json_check "a commit in the other pool" 'len(d) == 1 and d[0]["message"] == "in pool 2"'

# --- identity falls back to git's ---------------------------------------------------------------
printf '[user]\n\tname = Grace Hopper\n\temail = grace@example.net\n' >"$HOME/.gitconfig"
POOL3=$TEST_TMP/pool3
expect_ok dvol -p "$POOL3" config user.name
expect_stdout_eq "Grace Hopper"
expect_ok dvol -p "$POOL3" config user.email
expect_stdout_eq "grace@example.net"
expect_ok dvol -p "$POOL3" init g
echo g >"$POOL3/volumes/g/data/g"
expect_ok dvol -p "$POOL3" commit -m "by git identity"
expect_ok dvol -p "$POOL3" log
expect_eq "log shows the git identity" "Author: Grace Hopper <grace@example.net>" "$(sed -n 2p <<<"$OUT")"
expect_ok dvol -p "$POOL3" config user.name "Dvol Name"
expect_ok dvol -p "$POOL3" config user.name
expect_stdout_eq "Dvol Name"
expect_ok dvol -p "$POOL3" config user.email
expect_stdout_eq "grace@example.net"
expect_ok dvol config user.name
expect_stdout_eq "Ada King"

# --- without --disable-docker-integration ---------------------------------------------------------
# With no Docker daemon reachable the CLI works on the data alone.
if [ ! -S /var/run/docker.sock ]; then
    expect_ok "$DVOL" list
    expect_stdout_contains "* foo"
    expect_ok "$DVOL" status
fi

# --- branch -d keeps commits that only the branch holds; -D deletes anyway ------------------------
expect_ok dvol init brdel || abort
BP=$(dvol path brdel)
echo base >"$BP/f"
expect_ok dvol commit -m base brdel
expect_ok dvol checkout -b topic brdel
echo topic >"$BP/f"
expect_ok dvol commit -m "only on topic" brdel
expect_ok dvol checkout master brdel
expect_fail 1 dvol branch -d topic brdel
expect_stderr_contains "has commits that no other branch holds"
expect_ok dvol branch brdel
expect_stdout_contains "topic"
expect_ok dvol branch -D topic brdel
expect_stdout_eq "Deleted branch topic"
expect_ok dvol checkout -b merged brdel
expect_ok dvol checkout master brdel
expect_ok dvol branch -d merged brdel
expect_stdout_eq "Deleted branch merged"

# --- --json only where the output is data ----------------------------------------------------------
expect_fail 2 dvol commit --json -m x brdel
expect_stderr_contains "--json is not supported by 'commit'"

finish
