#!/usr/bin/env bash
# Damaged packs: a flipped byte, a truncated pack, a deleted pack. Each runs on a fresh store
# holding two commits, the second one's new data in its own pack, so the damage hits the second
# commit and not the first. fsck must report the damaged objects by id and kind with the volume
# and commit they affect; a reset (or checkout) that needs them must fail with one line naming
# one of them and change nothing (live directory, branch tip, active branch); a reset to the
# unaffected commit must still work. A corrupt dvol.db is out of scope.
# shellcheck source=tests/cli/lib.sh disable=SC2016  # checks eval single-quoted tests on purpose
. "$(dirname "$0")/lib.sh"

packs() { find "$DVOL_ROOT/objects/packs" -maxdepth 1 -name '*.pack' -printf '%f\n' | LC_ALL=C sort; }

# pack_records PACK: one line per record: "offset record-length stored-length object-id", from the
# pack format in docs/FORMAT.md (16-byte header; 48-byte record headers "DVR1" codec 000 raw stored id).
pack_records() {
    python3 - "$1" <<'EOF'
import struct, sys
data = open(sys.argv[1], 'rb').read()
assert data[:8] == b'DVOLPACK', 'not a pack'
off = 16
while off < len(data):
    assert data[off:off + 4] == b'DVR1', 'bad record magic at %d' % off
    raw, stored = struct.unpack_from('<II', data, off + 8)
    oid = data[off + 16:off + 48].hex()
    print(off, 48 + stored, stored, oid)
    off += 48 + stored
EOF
}

# The JSON of the last `fsck --json`, checked with python: fsck_reports ID KINDS VOLUME COMMIT [PATH]
# passes when a problem about object ID, of one of the comma-separated KINDS, affects VOLUME at
# COMMIT (and at PATH when given).
fsck_reports() {
    local id=$1 kinds=$2 vol=$3 commit=$4 path=${5-}
    json_check "fsck reports object ${id:0:12} ($kinds) affecting $vol@${commit:0:12}${path:+ path $path}" \
        "any(p['object'] == '$id' and p['kind'] in '$kinds'.split(',') and any(a['volume'] == '$vol' and a['commit'] == '$commit' and ('$path' == '' or a['path'] == '$path') for a in p['affects']) for p in d['problems'])"
}

# expect_problems CMD...: CMD (an fsck) exits 1, listing problems on stdout, and does not crash.
expect_problems() {
    run "$@"
    if [ "$RC" -ne 1 ] || crashed; then
        fail "expected exit code 1 (problems found): $LAST_CMD" "$(last_details)"
        return 1
    fi
    pass
}

state() {
    manifest "$LIVE"
    echo "== log"
    tdvol log --json "$VOL" 2>&1
    echo "== branch"
    tdvol branch --json "$VOL" 2>&1
    echo "== reflog"
    tdvol reflog --json "$VOL" 2>&1
}

# expect_refused DAMAGED_IDS CMD...: CMD fails with exit 1 and one line naming one of the damaged
# objects (full id or its first 12 digits), and the live directory, log, branches and reflog are as
# before.
expect_refused() {
    local ids=$1 before after named=0 id
    shift
    before=$(state)
    expect_fail 1 "$@"
    expect_stderr_one_line
    echo "refused as expected: $ERR"
    for id in $ids; do
        if [[ "$ERR" == *"${id:0:12}"* ]]; then named=1; break; fi
    done
    local ran=$LAST_CMD err=$ERR
    check "the message names a damaged object: $ran: $err" test "$named" = 1
    after=$(state)
    expect_eq "nothing changed (live directory byte for byte, log, branches) after: $ran" "$before" "$after"
}

# setup NAME: a fresh store with volume v: commit C1 (a.bin 2 MiB, small files, a directory),
# branch keep at C1, then on master commit C2 adding b.bin (1.5 MiB) and c.txt. Sets LIVE, C1,
# C2, M1 (C1's manifest) and PACK2 (the pack that holds only C2's new objects).
setup() {
    export DVOL_ROOT="$TEST_TMP/$1"
    mkdir -p "$DVOL_ROOT"
    VOL=v
    expect_ok tdvol init "$VOL" || abort
    LIVE=$(tdvol path "$VOL")
    random_file "$LIVE/a.bin" $((2 * MIB))
    mkdir -p "$LIVE/dir/sub"
    for i in 1 2 3 4 5; do echo "small $i" >"$LIVE/dir/s$i.txt"; done
    echo "deep" >"$LIVE/dir/sub/deep.txt"
    ln -s dir/s1.txt "$LIVE/link"
    expect_ok tdvol commit -m c1 "$VOL" || abort
    C1=$OUT
    M1=$(manifest "$LIVE")
    local before after
    before=$(packs)
    expect_ok tdvol checkout -b keep "$VOL" || abort
    expect_ok tdvol checkout master "$VOL" || abort
    random_file "$LIVE/b.bin" $((3 * MIB / 2))
    echo "only in c2" >"$LIVE/c.txt"
    echo "changed in c2" >"$LIVE/dir/s2.txt"
    expect_ok tdvol commit -m c2 "$VOL" || abort
    C2=$OUT
    after=$(packs)
    PACK2=$(comm -13 <(printf '%s\n' "$before") <(printf '%s\n' "$after"))
    check "the second commit wrote exactly one new pack: [$PACK2]" test "$(printf '%s\n' "$PACK2" | grep -c .)" = 1 || abort
    PACK2="$DVOL_ROOT/objects/packs/$PACK2"
    expect_ok tdvol fsck || abort
}

# Checks shared by every kind of damage. DAMAGED: the ids of the damaged objects; KINDS: the kinds
# fsck may give them.
after_damage() {
    local damaged=$1 kinds=$2 id
    expect_problems tdvol fsck
    expect_stderr_contains "fsck found"
    local first
    first=${damaged%%[[:space:]]*}
    expect_stdout_contains "$first"
    expect_problems tdvol fsck --json
    json_check "fsck --json says not ok" 'd["ok"] is False and len(d["problems"]) > 0'
    # Every damaged object is reported. Objects below a damaged tree cannot be attributed to a
    # commit (the walk cannot reach them), but at least one problem must name the damaged commit.
    for id in $damaged; do
        json_check "fsck reports damaged object ${id:0:12} ($kinds)" \
            "any(p['object'] == '$id' and p['kind'] in '$kinds'.split(',') for p in d['problems'])"
    done
    json_check "a problem affects volume $VOL commit ${C2:0:12}" \
        "any(a['volume'] == '$VOL' and a['commit'] == '$C2' for p in d['problems'] for a in p['affects'])"
    json_check "no problem affects the first commit ${C1:0:12}" \
        "all(a['commit'] != '$C1' for p in d['problems'] for a in p['affects'])"
    json_check "every problem names an object and a kind" \
        "all(len(p['object']) == 64 and p['kind'] in ('corrupt-object', 'missing-object') for p in d['problems'])"

    # HEAD is C2, whose data is damaged; the live directory holds an uncommitted change and lacks
    # b.bin, so a reset to C2 must read damaged data: refused, nothing changes.
    rm -f "$LIVE/b.bin"
    echo "uncommitted" >"$LIVE/dir/s3.txt"
    expect_refused "$damaged" tdvol reset --hard HEAD "$VOL"
    expect_refused "$damaged" tdvol reset --hard "$C2" "$VOL"

    # The unaffected branch (keep, at C1) can be checked out and restores exactly.
    expect_ok tdvol checkout --force keep "$VOL"
    expect_eq "checkout of the unaffected branch gives the first commit's content" "$M1" "$(manifest "$LIVE")"

    # From there, with a local change, going back to the damaged commit is refused, whether by
    # checkout of its branch or by a reset to its id.
    echo "junk" >"$LIVE/junk.txt"
    expect_refused "$damaged" tdvol checkout --force master "$VOL"
    expect_refused "$damaged" tdvol reset --hard "$C2" "$VOL"
    expect_refused "$damaged" tdvol reset --hard "${C2:0:10}" "$VOL"
    expect_refused "$damaged" tdvol reset --hard master "$VOL"

    # A reset to the unaffected commit works.
    expect_ok tdvol reset --hard "$C1" "$VOL"
    expect_eq "reset --hard to the unaffected commit gives its content" "$M1" "$(manifest "$LIVE")"
    expect_ok tdvol status --json "$VOL"
    json_check "and the live directory is clean" 'd["clean"] is True'

    # gc on a damaged store must not lose anything that is still intact.
    run tdvol gc
    check "gc on a damaged store does not crash: $(last_details)" eval '! crashed && [ "$RC" -le 1 ]'
    expect_ok tdvol reset --hard "$C1" "$VOL"
    expect_eq "after gc, the unaffected commit still restores exactly" "$M1" "$(manifest "$LIVE")"
    expect_problems tdvol fsck --json
    json_check "after gc, fsck still reports the damage and nothing about c1" \
        "all(a['commit'] != '$C1' for p in d['problems'] for a in p['affects'])"
}

# --- a flipped byte inside a chunk of b.bin ---------------------------------------------------------
section "flipped byte"
setup flip
# The chunks of b.bin are the records of PACK2 that are big (random data is stored raw); pick the
# first one of at least 16 KiB, flip a byte in the middle of its stored bytes.
read -r off _ stored FLIP_ID < <(pack_records "$PACK2" | awk '$3 >= 16384' | head -n1)
check "found a chunk record in the new pack" test -n "${FLIP_ID:-}" || abort
pos=$((off + 48 + stored / 2))
python3 - "$PACK2" "$pos" <<'EOF'
import sys
path, pos = sys.argv[1], int(sys.argv[2])
with open(path, 'r+b') as f:
    f.seek(pos)
    b = f.read(1)
    f.seek(pos)
    f.write(bytes([b[0] ^ 0x5a]))
EOF
expect_problems tdvol fsck --json
json_check "exactly one damaged object after one flipped byte" "len(d['problems']) == 1"
fsck_reports "$FLIP_ID" corrupt-object "$VOL" "$C2" b.bin
expect_problems tdvol fsck
expect_stdout_contains "corrupt-object"
expect_stdout_contains "affects volume $VOL commit ${C2:0:12} path b.bin"
after_damage "$FLIP_ID" corrupt-object

# --- a truncated pack -----------------------------------------------------------------------------
section "truncated pack"
setup trunc
size=$(stat -c %s "$PACK2")
cut=$((size / 2))
# The records that end past the cut are damaged.
TRUNC_IDS=$(pack_records "$PACK2" | awk -v cut="$cut" '$1 + $2 > cut { print $4 }')
check "the cut damages some records" test -n "$TRUNC_IDS"
truncate -s "$cut" "$PACK2"
after_damage "$TRUNC_IDS" corrupt-object,missing-object

# --- a deleted pack ---------------------------------------------------------------------------------
section "deleted pack"
setup gone
GONE_IDS=$(pack_records "$PACK2" | awk '{ print $4 }')
rm -f "$PACK2"
after_damage "$GONE_IDS" corrupt-object,missing-object

# --- a damaged record header (its stored length) ------------------------------------------------
section "damaged record header"
setup header
read -r off _ stored HDR_ID < <(pack_records "$PACK2" | tail -n1)
# Overwrite the record's length fields with a huge stored length.
printf '\xff\xff\xff\x7f' | dd of="$PACK2" bs=1 seek=$((off + 12)) conv=notrunc status=none
expect_problems tdvol fsck --json
json_check "fsck reports the object whose record header is damaged" \
    "any(p['object'] == '$HDR_ID' and p['kind'] in ('corrupt-object', 'missing-object') for p in d['problems'])"
json_check "no problem affects the first commit" "all(a['commit'] != '$C1' for p in d['problems'] for a in p['affects'])"
expect_ok tdvol reset --hard "$C1" "$VOL"
expect_eq "reset --hard to the unaffected commit gives its content" "$M1" "$(manifest "$LIVE")"

# --- a damaged pack header (issue 17) ----------------------------------------------------------
# A flipped byte in a pack's 16-byte header went unseen by fsck. Every byte of it, one at a time:
# fsck reports the pack's objects, a reset that needs them refuses and changes nothing, and the
# first commit (in another pack) still restores.
echo "== damaged pack header, each of its 16 bytes"
setup packheader
HDR_IDS=$(pack_records "$PACK2" | awk '{ print $4 }' | tr '\n' ' ')
expect_ok tdvol reset --hard "$C1" "$VOL"
for pos in $(seq 0 15); do
    python3 - "$PACK2" "$pos" <<'PY'
import sys
with open(sys.argv[1], 'r+b') as f:
    f.seek(int(sys.argv[2]))
    b = f.read(1)
    f.seek(int(sys.argv[2]))
    f.write(bytes([b[0] ^ 0x01]))
PY
    expect_problems tdvol fsck --json
    json_check "byte $pos of the header flipped: fsck reports the pack's objects as corrupt" \
        "all(any(p['object'] == i and p['kind'] == 'corrupt-object' and 'header' in p['message'] for p in d['problems']) for i in '$HDR_IDS'.split())"
    if [ "$pos" = 0 ]; then expect_refused "$HDR_IDS" tdvol reset --hard "$C2" "$VOL"; fi
    python3 - "$PACK2" "$pos" <<'PY'
import sys
with open(sys.argv[1], 'r+b') as f:
    f.seek(int(sys.argv[2]))
    b = f.read(1)
    f.seek(int(sys.argv[2]))
    f.write(bytes([b[0] ^ 0x01]))
PY
done
expect_ok tdvol fsck

finish
