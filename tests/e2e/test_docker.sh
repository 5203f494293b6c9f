#!/usr/bin/env bash
# Docker for real: a private dockerd, the dvol volume plugin ($DVOL_PLUGIN) and the CLI's Docker
# integration ($DVOL without --disable-docker-integration), all on one fresh store.
#
#   a. the original dvol demo: a container writes through `-v frob_mysql:/data
#      --volume-driver=dvol`, `dvol commit`, another write, `dvol reset --hard HEAD`, and a new
#      container reads the committed content back;
#   b. `docker volume create/ls/inspect/rm -d dvol` against `dvol list/init/path/branch`, with
#      the options branch= (honoured) and an unknown one (refused, naming it); from= (a clone);
#      from= with lazy=true (a lazy clone: a container reads the right bytes through the FUSE
#      mount the plugin starts, the cache stays within its bound, a container's write is
#      committed and pushed and a full clone has it, the
#      plugin killed and restarted under a running container that then reads what it had not,
#      the mount process killed and brought back by the next Mount, `docker volume rm` unmounts
#      and frees the cache; skipped without /dev/fuse);
#   c. `-o exclusive=true`: a second container cannot mount the volume while the first runs;
#   d. two running containers on one volume: `dvol list` (text and --json) names them, `commit`
#      pauses and unpauses them (docker events), `checkout` and `reset --hard` restart them on
#      the new data;
#   e. `dvol rm` refuses a volume in use (even answered "y"); `rm -f` removes its containers too;
#   f. the plugin killed with SIGKILL and restarted: a running container keeps its volume, the
#      new plugin still knows it is mounted (exclusive), and its stop (Unmount) reaches it;
#   g. malformed requests straight to the plugin's socket (bad JSON, no Name, "../x", "a/b",
#      2 MiB body) each get a JSON "Err", create nothing, and leave the plugin serving; the
#      Capabilities, Get and List answers; the socket is root-only;
#   h. with no Docker reachable the CLI works on the data alone, with one "note:" line.
#
# It runs its own dockerd (no bridge, no iptables, data and exec roots and API socket under
# $TEST_TMP) and its own plugin on /run/docker/plugins/dvol.sock (the one place dockerd looks
# for legacy plugins), and stops only those, by the pids it started, when it ends, whatever the
# way. Containers run a static busybox imported as the image "busybox", always with
# `--network none`. Needs root; docker.io, busybox-static and curl (and apparmor, on a kernel with
# AppArmor enabled) are installed with apt-get when missing, without recommended packages. The
# only reason to SKIP (exit 77) beyond those is a dockerd that cannot start
# here, or another dvol plugin already serving the socket.
# shellcheck source=tests/cli/lib.sh
. "$(dirname "$0")/../cli/lib.sh"

if [ "$(id -u)" -ne 0 ]; then
    echo "SKIP: needs root (runs its own dockerd)"
    exit 77
fi
if [ -z "${DVOL_PLUGIN:-}" ] || [ ! -x "$DVOL_PLUGIN" ]; then
    echo "FAIL: set DVOL_PLUGIN to the dvol-docker-plugin binary under test" >&2
    exit 1
fi
command -v python3 >/dev/null || { echo "FAIL: python3 is needed to read JSON answers" >&2; exit 1; }

T_START=$(date +%s)

# --- packages ---------------------------------------------------------------------------------
need_pkgs=()
command -v dockerd >/dev/null && command -v docker >/dev/null || need_pkgs+=(docker.io)
# The image needs a static busybox (Debian's plain busybox package is dynamically linked).
if [ ! -x /bin/busybox ] || { command -v dpkg-query >/dev/null &&
    [ "$(dpkg-query -W -f '${Status}' busybox-static 2>/dev/null)" != "install ok installed" ]; }; then
    need_pkgs+=(busybox-static)
fi
command -v curl >/dev/null || need_pkgs+=(curl)
# docker.io only recommends apparmor (recommended packages are not installed), but on a kernel
# with AppArmor enabled, as Debian's is, dockerd 20.10 gives every container its docker-default
# profile, loaded with apparmor_parser: without it no container starts ("AppArmor enabled on
# system but the docker-default profile could not be loaded"; dockerd checks for the parser only
# from 23.0 on).
if [ "$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)" = Y ] && [ -d /sys/kernel/security/apparmor ] &&
    ! command -v apparmor_parser >/dev/null && [ ! -x /sbin/apparmor_parser ] && [ ! -x /usr/sbin/apparmor_parser ]; then
    need_pkgs+=(apparmor)
fi
if [ "${#need_pkgs[@]}" -gt 0 ]; then
    echo "installing ${need_pkgs[*]} with apt-get"
    if ! command -v apt-get >/dev/null; then
        echo "SKIP: ${need_pkgs[*]} missing and there is no apt-get"
        exit 77
    fi
    apt_install "${need_pkgs[@]}"  # without starting the system's docker service
    if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null || [ ! -x /bin/busybox ] ||
        ! command -v curl >/dev/null; then
        echo "SKIP: apt-get could not install ${need_pkgs[*]}: $(apt_errors)"
        exit 77
    fi
fi

# --- our own dockerd ---------------------------------------------------------------------------
DK="$TEST_TMP/docker"
DOCKERD_LOG="$DK/dockerd.log"
DOCKERD_PID=""
PLUGIN_PID=""
PLUGIN_DIR=/run/docker/plugins
SOCK="$PLUGIN_DIR/dvol.sock"
OWN_SOCK=0
PLUGIN_LOG="$TEST_TMP/plugin.log"
FETCH_LOG="$TEST_TMP/fetch.log"
export DOCKER_HOST="unix://$DK/docker.sock"
mkdir -p "$DK"
echo '{}' >"$DK/daemon.json"  # never the system's /etc/docker/daemon.json

is_our_dockerd() { # PID
    [ -n "$1" ] && kill -0 "$1" 2>/dev/null &&
        tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "--data-root $DK/root"
}

is_our_plugin() { # PID
    [ -n "$1" ] && kill -0 "$1" 2>/dev/null &&
        tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "$DVOL_PLUGIN --socket $SOCK"
}

# Sends SIG to PID, waits up to SECS for it to go, then SIGKILLs it.
stop_pid() { # PID SIG SECS
    local pid=$1 _
    kill "-$2" "$pid" 2>/dev/null
    for _ in $(seq 1 $(($3 * 10))); do
        kill -0 "$pid" 2>/dev/null || break
        # a child of this shell stays a zombie until waited for
        [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] && break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] &&
        kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}

stop_dockerd() {
    if is_our_dockerd "$DOCKERD_PID"; then
        local ctr_pid
        ctr_pid=$(cat "$DK/exec/containerd/containerd.pid" 2>/dev/null)
        stop_pid "$DOCKERD_PID" TERM 30
        # The containerd it supervised goes with it, unless dockerd had to be killed.
        if [ -n "$ctr_pid" ] && kill -0 "$ctr_pid" 2>/dev/null &&
            tr '\0' ' ' <"/proc/$ctr_pid/cmdline" 2>/dev/null | grep -qF -- "$DK/exec/"; then
            stop_pid "$ctr_pid" TERM 10
        fi
    fi
    DOCKERD_PID=""
}

stop_plugin() {
    is_our_plugin "$PLUGIN_PID" && stop_pid "$PLUGIN_PID" TERM 15
    PLUGIN_PID=""
}

# Everything still mounted under $TEST_TMP (overlays, shm, netns, a volume left mounted).
umount_leftovers() {
    local m
    awk '{print $5}' /proc/self/mountinfo | grep -F -- "$TEST_TMP/" | LC_ALL=C sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null
    done
}

docker_cleanup() {
    if is_our_dockerd "$DOCKERD_PID"; then
        local ids
        ids=$(timeout 30 docker ps -aq 2>/dev/null)
        # shellcheck disable=SC2086
        [ -n "$ids" ] && timeout 60 docker rm -f $ids >/dev/null 2>&1
    fi
    stop_dockerd
    stop_plugin
    [ "$OWN_SOCK" = 1 ] && rm -f "$SOCK"
    umount_leftovers
    cleanup
}
trap docker_cleanup EXIT

# Starts dockerd with the extra arguments given; 0 when its API answers within 60 s.
start_dockerd() {
    mkdir -p "$DK/root" "$DK/exec"
    dockerd --config-file "$DK/daemon.json" --bridge=none --iptables=false --ip6tables=false \
        --data-root "$DK/root" --exec-root "$DK/exec" -H "$DOCKER_HOST" --pidfile "$DK/docker.pid" \
        "$@" >>"$DOCKERD_LOG" 2>&1 </dev/null &
    DOCKERD_PID=$!
    local _
    for _ in $(seq 1 120); do
        timeout 10 docker version >/dev/null 2>&1 && return 0
        kill -0 "$DOCKERD_PID" 2>/dev/null || break
        sleep 0.5
    done
    return 1
}

# Starts dockerd again from scratch with the vfs storage driver, or SKIPs.
restart_dockerd_vfs() {
    stop_dockerd
    umount_leftovers
    rm -rf "$DK/root" "$DK/exec"
    if ! start_dockerd --storage-driver vfs; then
        echo "SKIP: dockerd cannot start here: $(tail -n 5 "$DOCKERD_LOG" | tr '\n' ' ')"
        exit 77
    fi
}

if ! start_dockerd; then
    echo "dockerd did not come up; trying again with --storage-driver vfs"
    restart_dockerd_vfs
fi

D_T=120 # seconds before a hung docker command counts as a failure
dk() { timeout "$D_T" docker "$@"; }
# dvol with its Docker integration, under a time limit.
dv() { timeout "$T" "$DVOL" "$@"; }

# --- the image: a static busybox and a link for each applet -------------------------------------
IMG="$TEST_TMP/image"
mkdir -p "$IMG/bin" "$IMG/tmp" "$IMG/etc" "$IMG/data"
cp /bin/busybox "$IMG/bin/busybox"
for a in $(/bin/busybox --list); do
    [ "$a" = busybox ] || ln -sf busybox "$IMG/bin/$a"
done
echo 'root:x:0:0:root:/:/bin/sh' >"$IMG/etc/passwd"
tar -C "$IMG" -cf "$TEST_TMP/image.tar" .
import_image() { dk import -c 'ENV PATH=/bin' "$TEST_TMP/image.tar" busybox >/dev/null; }
run import_image
if [ "$RC" -ne 0 ]; then
    fail "docker import of the busybox image" "$(last_details; echo; tail -n 20 "$DOCKERD_LOG")"
    abort
fi

# A first container tells whether the storage driver works for real (overlay2 can start and
# still fail to mount, on some file systems); vfs then.
run dk run --rm --network none busybox sh -c 'echo ok'
if [ "$RC" -ne 0 ] || [ "$OUT" != ok ]; then
    echo "a container does not run with $(dk info -f '{{.Driver}}' 2>/dev/null): $ERR"
    echo "restarting dockerd with --storage-driver vfs"
    restart_dockerd_vfs
    run import_image
    run dk run --rm --network none busybox sh -c 'echo ok'
fi
if [ "$RC" -ne 0 ] || [ "$OUT" != ok ]; then
    fail "a busybox container runs" "$(last_details; echo; echo '--- dockerd log (tail)'; tail -n 20 "$DOCKERD_LOG")"
    abort
fi
pass
echo "dockerd $(dk version -f '{{.Server.Version}}' 2>/dev/null), storage driver $(dk info -f '{{.Driver}}' 2>/dev/null)"

# --- the plugin ---------------------------------------------------------------------------------
# plugin_req PATH BODY_FILE: POST to the plugin socket; the answer's body lands in $OUT and the
# HTTP status in $HTTP (000: no answer).
HTTP=""
plugin_req() {
    LAST_CMD="POST $1 <<< $(head -c 200 "$2")"
    : >"$OUT_FILE"
    HTTP=$(curl -s --max-time 30 --unix-socket "$SOCK" -X POST "http://localhost$1" \
        -H 'Content-Type: application/json' --data-binary "@$2" -o "$OUT_FILE" -w '%{http_code}' 2>"$ERR_FILE")
    RC=$?
    OUT=$(cat "$OUT_FILE" 2>/dev/null)
    ERR="http $HTTP; $(cat "$ERR_FILE")"
    return 0
}
# plugin_post PATH JSON: the same with the body given as a string.
plugin_post() {
    printf '%s' "$2" >"$TEST_TMP/.req"
    plugin_req "$1" "$TEST_TMP/.req"
}

activated() {
    plugin_post /Plugin.Activate '{}'
    [ "$RC" -eq 0 ] && printf '%s' "$OUT" | python3 -c '
import json, sys
sys.exit(0 if "VolumeDriver" in json.load(sys.stdin).get("Implements", []) else 1)' 2>/dev/null
}

# Starts the plugin (logging to LOG) and waits up to 30 s for it to answer Plugin.Activate.
start_plugin() { # LOG
    # The lazy volumes' mount processes (started by the plugin through $DVOL) log what the remote
    # served to $FETCH_LOG.
    DVOL_TEST_FETCH_LOG="$FETCH_LOG" "$DVOL_PLUGIN" --socket "$SOCK" --dvol "$DVOL" >>"$1" 2>&1 </dev/null &
    PLUGIN_PID=$!
    local _
    for _ in $(seq 1 60); do
        activated && return 0
        kill -0 "$PLUGIN_PID" 2>/dev/null || break
        sleep 0.5
    done
    return 1
}

mkdir -p "$PLUGIN_DIR"
if [ -e "$SOCK" ]; then
    if activated; then
        echo "SKIP: another dvol plugin is serving $SOCK"
        exit 77
    fi
    echo "removing a stale $SOCK (nothing answers on it)"
    rm -f "$SOCK"
fi
OWN_SOCK=1
if ! start_plugin "$PLUGIN_LOG"; then
    fail "the plugin answers Plugin.Activate on $SOCK" "$(last_details; echo; echo '--- plugin log'; tail -n 30 "$PLUGIN_LOG")"
    abort
fi
pass
# $OUT's JSON in one compact line, keys sorted, an empty "Err" left out (Docker ignores it).
canon_json() {
    printf '%s' "$OUT" | python3 -c '
import json, sys
d = json.load(sys.stdin)
if isinstance(d, dict) and d.get("Err") == "":
    del d["Err"]
print(json.dumps(d, separators=(",", ":"), sort_keys=True))' 2>&1
}
expect_eq "Plugin.Activate" '{"Implements":["VolumeDriver"]}' "$(canon_json)"

# Shows the plugin's and dockerd's logs after a failed check, once.
LOGS_SHOWN=0
show_logs() {
    [ "$LOGS_SHOWN" = 1 ] && return 0
    LOGS_SHOWN=1
    {
        echo "--- plugin log (tail)"
        tail -n 40 "$PLUGIN_LOG" "$PLUGIN_LOG.2" 2>/dev/null
        echo "--- dockerd log (tail, plugin and volume lines)"
        grep -v 'io\.containerd' "$DOCKERD_LOG" | grep -iE 'plugin|volume|dvol' | tail -n 20
    } >&2
}

# Helpers over docker.
LONG=(sh -c 'trap "exit 0" TERM; sleep 600 & wait') # a container that stops at once on SIGTERM
start_long() { # NAME VOLUME
    expect_ok dk run -d --name "$1" --network none -v "$2:/data" --volume-driver=dvol busybox "${LONG[@]}"
}
state() { dk container inspect -f '{{.State.Status}}' "$1" 2>&1; }
started_at() { dk container inspect -f '{{.State.StartedAt}}' "$1" 2>&1; }
dvol_names() { dv --disable-docker-integration --json list | python3 -c 'import json,sys; [print(v["name"]) for v in json.load(sys.stdin)]'; }
docker_vols() { dk volume ls --format '{{.Name}} {{.Driver}}'; }
has_line() { grep -qxF -- "$1" <<<"$2"; }
lacks_line() { ! grep -qxF -- "$1" <<<"$2"; }
# The CONTAINERS column of VOLUME's row in `dvol list` (empty when it has none).
list_containers() { # VOLUME
    dv list | awk -v v="$1" '{ off = ($1 == "*") ? 1 : 0; if ($(1 + off) == v) { print $(3 + off); exit } }'
}
# Container STATE for each NAME.
expect_running() { # WHAT NAME...
    local what=$1 n
    shift
    for n in "$@"; do expect_eq "$what: $n is running" running "$(state "$n")"; done
}

# --- a. the original dvol demo ------------------------------------------------------------------
echo "--- a. demo: write, commit, overwrite, reset --hard, read"
drun() { dk run --rm --network none -v frob_mysql:/data --volume-driver=dvol busybox "$@"; }
expect_ok drun sh -c 'echo hello > /data/file' || { show_logs; abort; }
expect_ok dv commit -m hello frob_mysql || show_logs
expect_ok drun sh -c 'echo world > /data/file'
expect_ok dv path frob_mysql
FROB=$OUT
check "the container wrote into dvol's live directory" grep -qx world "$FROB/file"
expect_ok dv reset --hard HEAD frob_mysql
expect_ok drun cat /data/file
expect_stdout_eq hello
check "the live directory holds hello after the reset" grep -qx hello "$FROB/file"
expect_ok dv log frob_mysql
expect_stdout_contains hello
expect_ok dv --json log frob_mysql
json_check "frob_mysql has one commit, 'hello'" 'len(d) == 1 and d[0]["message"].strip() == "hello"'

# --- b. docker volume create / ls / inspect / rm ------------------------------------------------
echo "--- b. docker volume commands"
expect_ok dk volume create -d dvol vol2 || show_logs
check "dvol list shows vol2" has_line vol2 "$(dvol_names)"
run docker_vols
check "docker volume ls lists vol2 with driver dvol" has_line "vol2 dvol" "$OUT"
check "docker volume ls lists frob_mysql with driver dvol" has_line "frob_mysql dvol" "$OUT"
expect_ok dv init initvol
run docker_vols
check "docker volume ls lists initvol (made by dvol init)" has_line "initvol dvol" "$OUT"
expect_ok dk volume inspect vol2 --format '{{.Mountpoint}}'
MP=$OUT
expect_ok dv path vol2
expect_eq "docker's Mountpoint of vol2 is dvol path vol2" "$OUT" "$MP"
expect_ok dk volume rm vol2
check "dvol list no longer shows vol2" lacks_line vol2 "$(dvol_names)"
run docker_vols
check "docker volume ls no longer lists vol2" lacks_line "vol2 dvol" "$OUT"
expect_ok dk volume create -d dvol -o branch=dev vol3
expect_ok dv branch vol3
check "vol3 is on branch dev" grep -qx '\* dev' <<<"$OUT"
expect_fail 1 dk volume create -d dvol -o bogus=1 vol4
expect_stderr_contains bogus
check "vol4 was not created" lacks_line vol4 "$(dvol_names)"

# --- b2. from=: a volume cloned from a remote -------------------------------------------------------
echo "--- b2. docker volume create -o from=REMOTE/VOLUME[/BRANCH]: cloned in the background"
REMOTE_DIR="$TEST_TMP/remote"
mkdir -p "$REMOTE_DIR"
expect_ok dv init shared_src
expect_ok sh -c "echo from-master > '$DVOL_ROOT/volumes/shared_src/data/f'"
expect_ok dv commit -m m shared_src
expect_ok dv checkout -b dev shared_src
expect_ok sh -c "echo from-dev > '$DVOL_ROOT/volumes/shared_src/data/f'"
expect_ok dv commit -m d shared_src
expect_ok dv remote add team "$REMOTE_DIR"
expect_ok dv push team shared_src master
expect_ok dv push team shared_src dev
expect_ok dk volume create -d dvol -o from=team/shared_src/dev cloned
expect_ok dk run --rm --network none -v cloned:/data busybox cat /data/f
expect_stdout_eq from-dev
expect_ok dv branch cloned
check "the clone is on branch dev" grep -qx '\* dev' <<<"$OUT"
expect_ok dv log cloned
check "the clone has the remote's history" grep -q '^    d$' <<<"$OUT"
check "the plugin logged the clone" grep -q "clone of cloned from team/shared_src: done" "$PLUGIN_LOG"
expect_fail 1 dk volume create -d dvol -o from=team/nosuch missing
expect_stderr_contains "no volume nosuch"
check "a volume from a missing remote volume is not created" lacks_line missing "$(dvol_names)"
expect_ok dk volume rm cloned

# --- b3. lazy=true: a lazy clone the plugin mounts ------------------------------------------------
echo "--- b3. docker volume create -o from=REMOTE/VOLUME -o lazy=true: a FUSE mount fetching on first read"
MIB=$((1024 * 1024))
# The pid in a lazy volume's mount.lock: its mount process (started by our plugin).
mount_pid() { sed -n 1p "$DVOL_ROOT/volumes/$1/cache/mount.lock" 2>/dev/null; }
# The file system type of the topmost mount on DIR (empty when none).
fstype_of() { awk -v d="$1" '$5 == d { for (i = 7; i <= NF; i++) if ($i == "-") { t = $(i + 1); break } } END { print t }' /proc/self/mountinfo; }
if [ ! -c /dev/fuse ]; then
    echo "skipped (the rest of the test runs): no /dev/fuse here"
else
    expect_ok dv init lazy_src
    LSRC="$DVOL_ROOT/volumes/lazy_src/data"
    head -c $((24 * MIB)) /dev/urandom >"$LSRC/big"
    head -c $((6 * MIB)) /dev/urandom >"$LSRC/later"
    SUM_BIG=$(sha256sum <"$LSRC/big" | cut -d' ' -f1)
    SUM_LATER=$(sha256sum <"$LSRC/later" | cut -d' ' -f1)
    expect_ok dv commit -m data lazy_src
    expect_ok dv push team lazy_src master
    : >"$FETCH_LOG"
    expect_ok dk volume create -d dvol -o from=team/lazy_src -o lazy=true -o cache-size=8M lz || show_logs
    expect_ok dk volume inspect lz --format '{{json .Status}}'
    check "docker volume inspect: lz is lazy, with an 8 MiB cache" \
        python3 -c 'import json,sys; s=json.loads(sys.argv[1]); sys.exit(0 if s.get("lazy") is True and s.get("cache-size") == str(8 << 20) else 1)' "$OUT"
    LZ=$(dk volume inspect lz --format '{{.Mountpoint}}')
    expect_ok dk run --rm --network none -v lz:/data busybox sha256sum /data/big || show_logs
    expect_stdout_eq "$SUM_BIG  /data/big"
    expect_eq "the live directory of lz is a dvol FUSE mount" fuse.dvol "$(fstype_of "$LZ")"
    check "the mount process fetched from the remote (fetch log)" grep -q '^read ' "$FETCH_LOG"
    check "the chunk cache stayed within 8 MiB + one chunk" test "$(du -sb "$DVOL_ROOT/volumes/lz/cache/chunks" | cut -f1)" -le $((12 * MIB + 4096))
    # Writable: a container's write goes to the volume's write layer; committed and pushed, a
    # full clone of the remote has it.
    expect_ok dk run --rm --network none -v lz:/data busybox sh -c 'echo from-container > /data/new && sync' || show_logs
    expect_eq "the container's write is in lz's live directory" from-container "$(cat "$LZ/new" 2>&1)"
    expect_ok dv status lz
    expect_stdout_contains "new"
    expect_ok dv commit -m "written in a container" lz
    expect_ok dv push team lz
    expect_ok dv clone team lazy_src lz_full
    expect_eq "a full clone of what lz pushed has the container's file" from-container "$(cat "$DVOL_ROOT/volumes/lz_full/data/new" 2>&1)"
    expect_ok dv rm -f lz_full

    # The plugin killed under a running container: the mount process is not the plugin's, the
    # container goes on reading, also what it never read before (fetched after the restart).
    start_long lz1 lz
    MPID=$(mount_pid lz)
    check "lz has a mount process" test -n "$MPID"
    OLD_PID=$PLUGIN_PID
    kill -KILL "$OLD_PID"
    wait "$OLD_PID" 2>/dev/null
    PLUGIN_PID=""
    if ! start_plugin "$PLUGIN_LOG.lazy"; then
        fail "the restarted plugin answers Plugin.Activate" "$(last_details; echo; tail -n 30 "$PLUGIN_LOG.lazy")"
        abort
    fi
    check "the mount process outlived the plugin" kill -0 "$MPID"
    READS_BEFORE=$(grep -c '^read ' "$FETCH_LOG")
    expect_ok dk exec lz1 sha256sum /data/later
    expect_stdout_eq "$SUM_LATER  /data/later"
    check "that read was fetched after the restart" test "$(grep -c '^read ' "$FETCH_LOG")" -gt "$READS_BEFORE"
    expect_ok dk stop lz1
    expect_ok dk rm lz1

    # The mount process gone (a crash, a reboot): the next Mount mounts the volume again.
    kill -KILL "$MPID"
    for _ in $(seq 1 100); do kill -0 "$MPID" 2>/dev/null || break; sleep 0.1; done
    expect_ok dk run --rm --network none -v lz:/data busybox sha256sum /data/big || show_logs
    expect_stdout_eq "$SUM_BIG  /data/big"
    MPID2=$(mount_pid lz)
    check "a new mount process serves lz" test -n "$MPID2" -a "$MPID2" != "$MPID"
    check "and it runs" kill -0 "$MPID2"

    # docker volume rm: unmounted, its process ended, the cache gone with the volume.
    expect_ok dk volume rm lz || show_logs
    expect_eq "rm unmounted lz's live directory" "" "$(fstype_of "$LZ")"
    for _ in $(seq 1 100); do kill -0 "$MPID2" 2>/dev/null || break; sleep 0.1; done
    check "rm ended lz's mount process" bash -c "! kill -0 $MPID2 2>/dev/null"
    check "rm freed the cache" test ! -e "$DVOL_ROOT/volumes/lz"
    check "dvol list no longer shows lz" lacks_line lz "$(dvol_names)"
    expect_ok dv rm -f lazy_src
fi

# --- c. exclusive -------------------------------------------------------------------------------
echo "--- c. exclusive=true"
expect_ok dk volume create -d dvol -o exclusive=true excl
start_long ex1 excl
expect_running "exclusive volume, first container" ex1
run dk run -d --name ex2 --network none -v excl:/data busybox "${LONG[@]}"
check "a second container cannot mount an exclusive volume in use" test "$RC" -ne 0
check "and docker says why (exclusive)" grep -qi exclusive <<<"$ERR" || echo "    docker said: $ERR" >&2
check "ex2 is not running" test "$(state ex2)" != running
run dk rm -f ex2
expect_ok dk stop ex1
expect_ok dk run --rm --network none -v excl:/data busybox sh -c 'echo free > /data/x && cat /data/x'
expect_stdout_eq free
expect_ok dk rm ex1

# --- d. two containers on one volume: list, commit, checkout, reset ------------------------------
echo "--- d. containers follow commit, checkout and reset"
start_long c1 shared
start_long c2 shared
expect_running "two containers on shared" c1 c2
expect_eq "dvol list: CONTAINERS of shared" "c1,c2" "$(list_containers shared)"
expect_eq "dvol list: no CONTAINERS for frob_mysql" "" "$(list_containers frob_mysql)"
expect_ok dv --json list
json_check "dvol --json list: containers of shared" '[v["containers"] for v in d if v["name"] == "shared"] == [["c1", "c2"]]'
json_check "dvol --json list: containers of frob_mysql" '[v["containers"] for v in d if v["name"] == "frob_mysql"] == [[]]'

expect_ok dk exec c1 sh -c 'echo master-data > /data/f'
t0=$(date +%s.%N)
expect_ok dv commit -m m shared
t1=$(date +%s.%N)
expect_running "after commit" c1 c2
run dk events --since "$t0" --until "$t1" --filter type=container --filter event=pause --filter event=unpause \
    --format '{{.Actor.Attributes.name}} {{.Action}}'
for n in c1 c2; do
    check "commit paused $n (docker events)" has_line "$n pause" "$OUT"
    check "commit unpaused $n (docker events)" has_line "$n unpause" "$OUT"
done

# restarts_both WHAT EXPECTED_DATA CMD...: CMD restarts c1 and c2 (their StartedAt changes), both
# run afterwards, and (when EXPECTED_DATA is not empty) both see it in /data/f.
restarts_both() {
    local what=$1 data=$2 s1 s2 c
    shift 2
    s1=$(started_at c1)
    s2=$(started_at c2)
    expect_ok "$@"
    expect_running "after $what" c1 c2
    check "$what restarted c1" test "$(started_at c1)" != "$s1"
    check "$what restarted c2" test "$(started_at c2)" != "$s2"
    if [ -n "$data" ]; then
        for c in c1 c2; do
            expect_ok dk exec "$c" cat /data/f
            expect_stdout_eq "$data"
        done
    fi
}

# checkout -b changes no data: the containers keep running, untouched.
s1=$(started_at c1)
s2=$(started_at c2)
expect_ok dv checkout -b dev shared
expect_running "after checkout -b" c1 c2
check "checkout -b left c1 running as it was" test "$(started_at c1)" = "$s1"
check "checkout -b left c2 running as it was" test "$(started_at c2)" = "$s2"
expect_ok dk exec c1 sh -c 'echo dev-data > /data/f'
expect_ok dv commit -m d shared
expect_running "after the commit on dev" c1 c2
restarts_both "checkout master" master-data dv checkout master shared
restarts_both "checkout dev" dev-data dv checkout dev shared
restarts_both "reset --hard HEAD^" master-data dv reset --hard HEAD^ shared
expect_eq "dvol list still names both containers" "c1,c2" "$(list_containers shared)"

# --- e. rm of a volume in use ---------------------------------------------------------------
echo "--- e. rm refuses a volume in use; rm -f removes its containers"
run_input $'y\n' dv rm shared
check "rm (answered y) refuses a volume used by containers: exit 1" test "$RC" -eq 1 ||
    echo "    $(last_details)" >&2
expect_stderr_one_line
check "rm names container c1" grep -q c1 <<<"$ERR"
check "rm names container c2" grep -q c2 <<<"$ERR"
check "shared is still listed after the refused rm" has_line shared "$(dvol_names)"
expect_running "after the refused rm" c1 c2
expect_ok dv rm -f shared
run dk ps -a --format '{{.Names}}'
check "rm -f removed c1" lacks_line c1 "$OUT"
check "rm -f removed c2" lacks_line c2 "$OUT"
check "rm -f removed the volume" lacks_line shared "$(dvol_names)"
run docker_vols
check "docker volume ls no longer lists shared" lacks_line "shared dvol" "$OUT"

# --- f. plugin restart ------------------------------------------------------------------------
echo "--- f. the plugin killed (SIGKILL) and restarted under a running container"
# keep is exclusive, so that what the plugin remembers of p1's mount across its restart shows:
# a second container is still refused, and p1's Unmount (sent to the new plugin) frees it.
expect_ok dk volume create -d dvol -o exclusive=true keep
start_long p1 keep
expect_ok dk exec p1 sh -c 'echo before > /data/g'
OLD_PID=$PLUGIN_PID
kill -KILL "$OLD_PID"
wait "$OLD_PID" 2>/dev/null
PLUGIN_PID=""
if ! start_plugin "$PLUGIN_LOG.2"; then
    fail "the restarted plugin answers Plugin.Activate (stale socket from the killed one)" \
        "$(last_details; echo; echo '--- plugin log after restart'; tail -n 30 "$PLUGIN_LOG.2")"
else
    pass
fi
expect_ok dk exec p1 sh -c 'echo after > /data/g && cat /data/g'
expect_stdout_eq after
run dk run -d --name p2 --network none -v keep:/data busybox "${LONG[@]}"
check "after its restart the plugin still refuses a second mount of the exclusive keep" test "$RC" -ne 0
check "and docker says why (exclusive)" grep -qi exclusive <<<"$ERR" || echo "    docker said: $ERR" >&2
run dk rm -f p2
expect_ok dk stop p1
expect_ok dk rm p1
expect_ok dk run --rm --network none -v keep:/data --volume-driver=dvol busybox cat /data/g
expect_stdout_eq after
expect_ok dv commit -m k keep
check "the restarted plugin handled p1's Unmount of keep (its log)" grep -qE 'Unmount.*keep' "$PLUGIN_LOG.2"

# --- g. malformed requests to the socket --------------------------------------------------------
echo "--- g. the plugin's socket: malformed requests, Capabilities, Get, List"
expect_eq "the socket is root-only" "srw-------" "$(stat -c %A "$SOCK")"
# What exists outside the volumes' own directories, to see that no request created anything.
outside() {
    (cd "$TEST_TMP" && find . -path ./docker -prune -o -path ./pool/volumes -prune -o -path './pool/dvol.db*' -prune \
        -o -path ./pool/tmp -prune -o -path ./.stdout -prune -o -path ./.stderr -prune -o -path ./.req -prune -o -print | LC_ALL=C sort)
    ls -A "$DVOL_ROOT/volumes"
    ls -A "$PLUGIN_DIR"
}
BEFORE_OUTSIDE=$(outside)
VOLS_BEFORE=$(dvol_names)

expect_err() { # WHAT
    if [ "$RC" -ne 0 ] || ! printf '%s' "$OUT" | python3 -c '
import json, sys
d = json.load(sys.stdin)
sys.exit(0 if isinstance(d, dict) and isinstance(d.get("Err"), str) and d["Err"] != "" else 1)' 2>/dev/null; then
        fail "$1: the answer is JSON with a non-empty Err" "$(last_details)"
        return 1
    fi
    pass
}
plugin_post /VolumeDriver.Create '{"Name": "x", "Opts": {'
expect_err "Create with bad JSON"
plugin_post /VolumeDriver.Create 'not json at all'
expect_err "Create with a body that is not JSON"
plugin_post /VolumeDriver.Create '{}'
expect_err "Create without Name"
plugin_post /VolumeDriver.Create '{"Name": 42}'
expect_err "Create with a Name that is not a string"
plugin_post /VolumeDriver.Create '{"Name": "../x", "Opts": {}}'
expect_err "Create ../x"
plugin_post /VolumeDriver.Create '{"Name": "a/b", "Opts": {}}'
expect_err "Create a/b"
plugin_post /VolumeDriver.Create '{"Name": ".."}'
expect_err "Create .."
plugin_post /VolumeDriver.Mount '{"Name": "../x", "ID": "abc"}'
expect_err "Mount ../x"
plugin_post /VolumeDriver.Remove '{"Name": "../objects"}'
expect_err "Remove ../objects"
python3 -c '
import json, sys
json.dump({"Name": "big", "Opts": {"branch": "b" * (2 * 1024 * 1024)}}, open(sys.argv[1], "w"))' "$TEST_TMP/big.json"
plugin_req /VolumeDriver.Create "$TEST_TMP/big.json"
expect_err "Create with a 2 MiB body"
rm -f "$TEST_TMP/big.json"

check "the plugin still answers Plugin.Activate" activated
expect_ok dk volume ls
expect_eq "no volume was created by the malformed requests" "$VOLS_BEFORE" "$(dvol_names)"
expect_eq "nothing appeared outside the volumes' directories" "$BEFORE_OUTSIDE" "$(outside)"
check "no x next to the store" test ! -e "$DVOL_ROOT/x" -a ! -e "$TEST_TMP/x" -a ! -e "$DVOL_ROOT/volumes/x"

plugin_post /VolumeDriver.Capabilities '{}'
expect_eq "Capabilities" '{"Capabilities":{"Scope":"local"}}' "$(canon_json)"
plugin_post /VolumeDriver.Get '{"Name": "nosuchvolume"}'
expect_err "Get of an unknown volume"
plugin_post /VolumeDriver.Get '{"Name": "frob_mysql"}'
json_check "Get frob_mysql: its Mountpoint is dvol path" \
    "not d.get('Err') and d['Volume']['Name'] == 'frob_mysql' and d['Volume']['Mountpoint'] == '$FROB'"
plugin_post /VolumeDriver.List '{}'
json_check "List includes frob_mysql and initvol" \
    "not d.get('Err') and {'frob_mysql', 'initvol'} <= {v['Name'] for v in d['Volumes']}"
plugin_post /VolumeDriver.Path '{"Name": "frob_mysql"}'
json_check "Path of frob_mysql (not mounted)" "not d.get('Err')"

# --- h. no Docker -------------------------------------------------------------------------------
echo "--- h. no Docker reachable"
echo more >"$FROB/h"
run env DOCKER_HOST="unix://$TEST_TMP/nonexistent.sock" timeout "$T" "$DVOL" commit -m x frob_mysql
check "commit without any Docker socket succeeds" test "$RC" -eq 0 || echo "    $(last_details)" >&2
check "and says nothing of Docker (there is none)" test -z "$ERR" || echo "    stderr: $ERR" >&2
# A socket file nobody listens on: a Docker that is down, where containers may be expected.
python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$TEST_TMP/dead.sock"
echo again >"$FROB/h"
run env DOCKER_HOST="unix://$TEST_TMP/dead.sock" timeout "$T" "$DVOL" commit -m y frob_mysql
check "commit with a Docker that does not answer succeeds" test "$RC" -eq 0 || echo "    $(last_details)" >&2
expect_stderr_one_line
check "its one stderr line is a note:" grep -q '^note: no Docker daemon answers' <<<"$ERR"
expect_ok dv --disable-docker-integration list
expect_stdout_contains frob_mysql

[ "$FAILURES" -gt 0 ] && show_logs
echo "runtime: $(($(date +%s) - T_START)) s"
finish
