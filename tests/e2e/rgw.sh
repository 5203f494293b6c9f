#!/usr/bin/env bash
# A real S3 server for tests: a single-node Ceph cluster (one ceph-mon, one ceph-osd, one
# radosgw) bound to 127.0.0.1 only, with everything it writes (config, data, logs, pid files,
# admin sockets) under one directory the caller gives.
#
# Source it and call the functions, or run it:
#
#   . tests/e2e/rgw.sh
#   rgw_start DIR || { echo "SKIP: $RGW_SKIP_REASON"; exit 77; }
#   ... use $RGW_ENDPOINT, $RGW_ACCESS_KEY, $RGW_SECRET_KEY ...
#   rgw_stop DIR
#
#   rgw_signal DIR STOP|CONT     # freeze / thaw the gateway
#   rgw_gateway_stop DIR         # stop the gateway alone (the objects stay in the OSD)
#   rgw_gateway_start DIR        # and start it again, on the same port
#   rgw_client_env               # export AWS_* for a client (dvol, curl) of this gateway
#   rgw_make_bucket NAME         # create a bucket; return 1 with RGW_SKIP_REASON if it cannot
#
#   tests/e2e/rgw.sh start DIR   # prints RGW_* assignments for eval; exit 77 when it cannot
#   tests/e2e/rgw.sh stop DIR
#
# rgw_start sets, on success (return 0):
#   RGW_ENDPOINT     http://127.0.0.1:PORT (path-style S3, any region string is accepted)
#   RGW_ACCESS_KEY   a fresh random access key of the user "test"
#   RGW_SECRET_KEY   its random secret
#   RGW_START_SECONDS  how long the start took (packages excluded)
# and on failure (return 1) RGW_SKIP_REASON, one line saying why (not root, packages that
# cannot be installed, a daemon that did not come up, with the tail of its log), after
# stopping whatever it had started.
#
# Settings (environment, read by rgw_start):
#   RGW_STORE  memstore (default): objects held in the OSD's RAM, about twice their size; it
#              starts in about a second, but past ~97% of RGW_SIZE it drops writes silently and
#              PUTs hang, so keep what a test writes well under RGW_SIZE.
#              bluestore: a sparse file of RGW_SIZE bytes under DIR, RAM bounded; for anything
#              over a few hundred MB. Starts in a few seconds more.
#   RGW_SIZE   bytes of the store (default 1 GiB for memstore, 20 GiB for bluestore).
#
# Packages: ceph-mon ceph-osd radosgw ceph-common (and curl), installed with apt-get when
# missing (needs root; the output goes to DIR/apt.log and is shown only on failure). No systemd unit is used:
# each daemon is started here and forks into the background with its pid file under DIR/run.
# rgw_stop sends TERM to each daemon whose pid file is under DIR, and only when that process's
# command line names DIR's ceph.conf (it never touches another cluster), waits for it (KILL
# after 30 s), then removes DIR.
#
# Facts this depends on (Ceph 16 as in Debian 12, checked on a 2-core machine):
# - Without cephx (auth none) radosgw's default ms_mon_client_mode "secure" cannot work: it
#   waits 300 s ("get_initial_auth_request returned -13"); "crc" is set. S3 signatures are
#   still enforced by radosgw itself.
# - With the default paxos intervals radosgw takes ~10 s to create its pools; 0.05 s is set.
# - bluestore_block_path must not be "$osd_data/block" (ELOOP): the file lives beside it.
# - No ceph-mgr is needed for the OSD, the pools or S3.
# - beast's tcp_nodelay=1: without it radosgw sends a small GET's body after its headers only
#   once they are acknowledged, and the client's delayed ACK makes every small GET take ~45 ms
#   on loopback instead of ~1 ms.

_rgw_log() { echo "rgw: $*" >&2; }

# A TCP port that nothing on this machine uses right now (none of /proc/net/tcp{,6}'s local
# ports), from 20000-59999. Another process may take it before our daemon binds it; the daemon
# then fails to start and rgw_start says so.
_rgw_free_port() {
    local used port _
    used=$(awk 'NR > 1 { split($2, a, ":"); print a[2] }' /proc/net/tcp /proc/net/tcp6 2>/dev/null | sort -u)
    for _ in $(seq 1 200); do
        port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        grep -qx "$(printf '%04X' "$port")" <<<"$used" || { echo "$port"; return 0; }
    done
    return 1
}

# N random characters from SET.
_rgw_random() { # N SET
    LC_ALL=C tr -dc "$2" </dev/urandom | head -c "$1"
}

_rgw_uuid() { cat /proc/sys/kernel/random/uuid; }

_rgw_have_packages() {
    local c
    for c in ceph-mon ceph-osd radosgw radosgw-admin ceph monmaptool curl; do
        command -v "$c" >/dev/null || return 1
    done
    return 0
}

# Installs the packages (without letting their services start); 0 when they are there after.
_rgw_install() { # LOG
    local log=$1 policy=/usr/sbin/policy-rc.d added=0 pkgs=(ceph-mon ceph-osd radosgw ceph-common)
    command -v curl >/dev/null || pkgs+=(curl)
    command -v apt-get >/dev/null || { echo "no apt-get" >"$log"; return 1; }
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 0755 "$policy" && added=1
    fi
    _rgw_log "installing ${pkgs[*]} with apt-get (log: $log)"
    # Another apt-get (a colleague's, on a shared machine) may hold the lock for a while.
    local apt=(apt-get -o DPkg::Lock::Timeout=300)
    if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y --no-install-recommends "${pkgs[@]}" >"$log" 2>&1; then
        DEBIAN_FRONTEND=noninteractive "${apt[@]}" update >>"$log" 2>&1
        DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y --no-install-recommends "${pkgs[@]}" >>"$log" 2>&1
    fi
    [ "$added" = 1 ] && rm -f "$policy"
    _rgw_have_packages
}

# The pid in a pid file when that process runs with this cluster's ceph.conf, else nothing.
_rgw_our_pid() { # PIDFILE CONF
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2" || return 1
    echo "$pid"
}

# Runs the ceph CLI on this cluster, never waiting more than 20 s.
_rgw_ceph() { # DIR ARGS...
    local dir=$1
    shift
    timeout 20 ceph -c "$dir/ceph.conf" --connect-timeout 15 "$@"
}

# Fails rgw_start: sets the reason, stops what was started.
_rgw_fail() { # DIR REASON
    RGW_SKIP_REASON=$2
    _rgw_stop_daemons "$1"
    return 1
}

# The last lines of a log, on one line.
_rgw_tail() { tail -n "${2:-5}" "$1" 2>/dev/null | tr '\n' ' ' | cut -c 1-600; }

rgw_start() { # DIR
    local dir=${1:?rgw_start DIR}
    local store=${RGW_STORE:-memstore} size=${RGW_SIZE:-} t0 mon_port rgw_port fsid osd_uuid osd_id i c
    RGW_SKIP_REASON=""
    RGW_ENDPOINT=""
    RGW_ACCESS_KEY=""
    RGW_SECRET_KEY=""
    RGW_START_SECONDS=""
    if [ "$(id -u)" -ne 0 ]; then
        RGW_SKIP_REASON="starting Ceph needs root (it installs packages and runs daemons)"
        return 1
    fi
    case "$store" in
    memstore) size=${size:-$((1024 * 1024 * 1024))} ;;
    bluestore) size=${size:-$((20 * 1024 * 1024 * 1024))} ;;
    *)
        RGW_SKIP_REASON="RGW_STORE=$store: use memstore or bluestore"
        return 1
        ;;
    esac
    mkdir -p "$dir" || { RGW_SKIP_REASON="cannot create $dir"; return 1; }
    dir=$(cd "$dir" && pwd)
    if ! _rgw_have_packages && ! _rgw_install "$dir/apt.log"; then
        RGW_SKIP_REASON="cannot install ceph-mon ceph-osd radosgw ceph-common: $(grep -E '^(E|W):' "$dir/apt.log" | tail -n 3 | tr '\n' ' ')"
        sed 's/^/    apt: /' "$dir/apt.log" | tail -n 20 >&2
        return 1
    fi
    command -v timeout >/dev/null || { RGW_SKIP_REASON="timeout (coreutils) is missing"; return 1; }

    t0=$(date +%s.%N)
    if ! mon_port=$(_rgw_free_port) || ! rgw_port=$(_rgw_free_port); then
        RGW_SKIP_REASON="no free TCP port found"
        return 1
    fi
    [ "$mon_port" != "$rgw_port" ] || rgw_port=$(_rgw_free_port)
    fsid=$(_rgw_uuid)
    mkdir -p "$dir/run" "$dir/log" "$dir/mon" "$dir/osd" "$dir/rgw" "$dir/crash"
    cat >"$dir/ceph.conf" <<EOF
# A throw-away single-node cluster for tests, on 127.0.0.1 only (tests/e2e/rgw.sh).
[global]
fsid = $fsid
mon_host = v2:127.0.0.1:$mon_port
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
ms_bind_msgr1 = false
ms_bind_ipv6 = false
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
ms_mon_client_mode = crc
client_mount_timeout = 60
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
osd_pool_default_pg_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_max_pg_per_osd = 1000
mon_data_avail_crit = 0
mon_data_avail_warn = 0
run_dir = $dir/run
pid_file = $dir/run/\$name.pid
admin_socket = $dir/run/\$name.asok
log_file = $dir/log/\$name.log
mon_cluster_log_file = $dir/log/cluster.log
crash_dir = $dir/crash
mon_data = $dir/mon/\$name
osd_data = $dir/osd/\$name
rgw_data = $dir/rgw/\$name
keyring = $dir/keyring
osd_objectstore = $store
memstore_device_bytes = $size
bluestore_block_path = $dir/osd/\$name.block
bluestore_block_size = $size
bluestore_block_create = true
bluestore_block_db_create = false
bluestore_block_wal_create = false
[mon]
paxos_propose_interval = 0.05
paxos_min_wait = 0.01
[client]
# Short-lived CLI clients run side by side: one admin socket and no pid file each.
admin_socket = $dir/run/\$name.\$pid.asok
[client.rgw.a]
admin_socket = $dir/run/\$name.asok
pid_file = $dir/run/\$name.pid
rgw_frontends = beast endpoint=127.0.0.1:$rgw_port tcp_nodelay=1
rgw_gc_obj_min_wait = 60
rgw_gc_processor_period = 60
EOF
    : >"$dir/keyring"

    # The monitor.
    timeout 30 monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" "$dir/monmap" >"$dir/log/setup.log" 2>&1 ||
        { _rgw_fail "$dir" "monmaptool failed: $(_rgw_tail "$dir/log/setup.log")"; return 1; }
    timeout 60 ceph-mon -c "$dir/ceph.conf" --mkfs -i a --monmap "$dir/monmap" >>"$dir/log/setup.log" 2>&1 ||
        { _rgw_fail "$dir" "ceph-mon --mkfs failed: $(_rgw_tail "$dir/log/setup.log")"; return 1; }
    ceph-mon -c "$dir/ceph.conf" -i a >>"$dir/log/setup.log" 2>&1 ||
        { _rgw_fail "$dir" "ceph-mon did not start: $(_rgw_tail "$dir/log/mon.a.log")"; return 1; }

    # The OSD: its id from the monitor, then its store.
    osd_uuid=$(_rgw_uuid)
    osd_id=$(_rgw_ceph "$dir" osd new "$osd_uuid" 2>>"$dir/log/setup.log") ||
        { _rgw_fail "$dir" "the monitor did not answer 'ceph osd new': $(_rgw_tail "$dir/log/setup.log") $(_rgw_tail "$dir/log/mon.a.log" 3)"; return 1; }
    mkdir -p "$dir/osd/osd.$osd_id"
    timeout 120 ceph-osd -c "$dir/ceph.conf" -i "$osd_id" --mkfs --osd-uuid "$osd_uuid" >>"$dir/log/setup.log" 2>&1 ||
        { _rgw_fail "$dir" "ceph-osd --mkfs failed: $(_rgw_tail "$dir/log/setup.log") $(_rgw_tail "$dir/log/osd.$osd_id.log" 3)"; return 1; }
    ceph-osd -c "$dir/ceph.conf" -i "$osd_id" >>"$dir/log/setup.log" 2>&1 ||
        { _rgw_fail "$dir" "ceph-osd did not start: $(_rgw_tail "$dir/log/osd.$osd_id.log")"; return 1; }
    for i in $(seq 1 240); do
        _rgw_ceph "$dir" osd dump 2>/dev/null | grep -q "^osd\.$osd_id up" && break
        [ -n "$(_rgw_our_pid "$dir/run/osd.$osd_id.pid" "$dir/ceph.conf")" ] || [ "$i" -lt 20 ] ||
            { _rgw_fail "$dir" "ceph-osd exited: $(_rgw_tail "$dir/log/osd.$osd_id.log")"; return 1; }
        sleep 0.25
    done
    _rgw_ceph "$dir" osd dump 2>/dev/null | grep -q "^osd\.$osd_id up" ||
        { _rgw_fail "$dir" "osd.$osd_id is not up after 60 s: $(_rgw_tail "$dir/log/osd.$osd_id.log")"; return 1; }

    # The gateway: it creates its pools and the default zone on first start.
    radosgw -c "$dir/ceph.conf" -n client.rgw.a >>"$dir/log/setup.log" 2>&1 ||
        { _rgw_fail "$dir" "radosgw did not start: $(_rgw_tail "$dir/log/client.rgw.a.log")"; return 1; }
    local code=000
    for i in $(seq 1 480); do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$rgw_port/" 2>/dev/null)
        [ "$code" != 000 ] && break
        [ -n "$(_rgw_our_pid "$dir/run/client.rgw.a.pid" "$dir/ceph.conf")" ] || [ "$i" -lt 20 ] ||
            { _rgw_fail "$dir" "radosgw exited: $(_rgw_tail "$dir/log/client.rgw.a.log")"; return 1; }
        sleep 0.25
    done
    [ "$code" != 000 ] ||
        { _rgw_fail "$dir" "radosgw does not answer on 127.0.0.1:$rgw_port after 120 s: $(_rgw_tail "$dir/log/client.rgw.a.log")"; return 1; }

    # A user with fresh random keys.
    local access secret
    access=$(_rgw_random 20 'A-Z0-9')
    secret=$(_rgw_random 40 'A-Za-z0-9')
    timeout 60 radosgw-admin -c "$dir/ceph.conf" user create --uid=test --display-name=test \
        --access-key="$access" --secret-key="$secret" >"$dir/log/user.log" 2>&1 ||
        { _rgw_fail "$dir" "radosgw-admin user create failed: $(grep -v -e "$secret" "$dir/log/user.log" | _rgw_tail /dev/stdin)"; return 1; }
    rm -f "$dir/log/user.log"  # it holds the secret

    RGW_ENDPOINT="http://127.0.0.1:$rgw_port"
    RGW_ACCESS_KEY=$access
    RGW_SECRET_KEY=$secret
    RGW_START_SECONDS=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    export RGW_ENDPOINT RGW_ACCESS_KEY RGW_SECRET_KEY RGW_START_SECONDS
    _rgw_log "Ceph RGW ($store, $size bytes) at $RGW_ENDPOINT, started in $RGW_START_SECONDS s"
    return 0
}

# TERM each daemon of the cluster in DIR (gateway first, monitor last), wait, KILL after 30 s.
_rgw_stop_daemons() { # DIR
    local dir=$1 f pid _
    [ -f "$dir/ceph.conf" ] || return 0
    for f in "$dir"/run/client.rgw.*.pid "$dir"/run/osd.*.pid "$dir"/run/mon.*.pid; do
        [ -e "$f" ] || continue
        pid=$(_rgw_our_pid "$f" "$dir/ceph.conf") || continue
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 1 300); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            _rgw_log "$(basename "$f" .pid) (pid $pid) still runs 30 s after TERM; killing it"
            kill -KILL "$pid" 2>/dev/null
        fi
    done
    return 0
}

# Sends SIG (STOP, CONT, ...) to the cluster's radosgw; for tests of a server that hangs.
rgw_signal() { # DIR SIG
    local pid
    pid=$(_rgw_our_pid "$1/run/client.rgw.a.pid" "$1/ceph.conf") || return 1
    kill "-$2" "$pid"
}

# Stops the cluster's radosgw alone (TERM, KILL after 30 s), leaving the monitor and the OSD,
# which keep the objects: for tests of a gateway that goes away. 1 when it was not running.
rgw_gateway_stop() { # DIR
    local pid _
    pid=$(_rgw_our_pid "$1/run/client.rgw.a.pid" "$1/ceph.conf") || return 1
    kill -CONT "$pid" 2>/dev/null  # a stopped process cannot act on TERM
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    return 0
}

# Starts the radosgw of the cluster in DIR again, on the same port, after rgw_gateway_stop;
# 0 once it answers, else 1 with RGW_SKIP_REASON.
rgw_gateway_start() { # DIR
    local dir=$1 port code=000 i
    port=${RGW_ENDPOINT##*:}
    radosgw -c "$dir/ceph.conf" -n client.rgw.a >>"$dir/log/setup.log" 2>&1 ||
        { RGW_SKIP_REASON="radosgw did not start again: $(_rgw_tail "$dir/log/client.rgw.a.log")"; return 1; }
    for i in $(seq 1 480); do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$port/" 2>/dev/null)
        [ "$code" != 000 ] && return 0
        [ -n "$(_rgw_our_pid "$dir/run/client.rgw.a.pid" "$dir/ceph.conf")" ] || [ "$i" -lt 20 ] ||
            { RGW_SKIP_REASON="radosgw exited: $(_rgw_tail "$dir/log/client.rgw.a.log")"; return 1; }
        sleep 0.25
    done
    RGW_SKIP_REASON="radosgw does not answer on 127.0.0.1:$port after 120 s"
    return 1
}

# The environment of an S3 client (dvol, curl) of the gateway rgw_start started: its endpoint
# and keys, and nothing from the caller's own AWS configuration.
rgw_client_env() {
    export AWS_ENDPOINT_URL=$RGW_ENDPOINT AWS_ACCESS_KEY_ID=$RGW_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$RGW_SECRET_KEY AWS_REGION=us-east-1
    unset AWS_SESSION_TOKEN AWS_PROFILE AWS_ENDPOINT_URL_S3 AWS_DEFAULT_REGION AWS_SHARED_CREDENTIALS_FILE AWS_CONFIG_FILE
}

rgw_make_bucket() { # NAME (after rgw_client_env)
    local code
    code=$(curl -s --max-time 60 -o /dev/null -w '%{http_code}' --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
        --aws-sigv4 "aws:amz:$AWS_REGION:s3" -X PUT -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$RGW_ENDPOINT/${1:?rgw_make_bucket NAME}")
    [ "$code" = 200 ] && return 0
    RGW_SKIP_REASON="cannot create bucket $1 on the gateway (HTTP $code)"
    return 1
}

rgw_stop() { # DIR
    local dir=${1:?rgw_stop DIR}
    [ -d "$dir" ] || return 0
    rgw_signal "$dir" CONT 2>/dev/null  # a stopped process cannot act on TERM
    _rgw_stop_daemons "$dir"
    rm -rf "$dir"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    case "${1:-}" in
    start)
        [ -n "${2:-}" ] || { echo "usage: $0 start DIR" >&2; exit 2; }
        if ! rgw_start "$2"; then
            echo "SKIP: $RGW_SKIP_REASON"
            exit 77
        fi
        printf 'RGW_ENDPOINT=%q\nRGW_ACCESS_KEY=%q\nRGW_SECRET_KEY=%q\nRGW_START_SECONDS=%q\n' \
            "$RGW_ENDPOINT" "$RGW_ACCESS_KEY" "$RGW_SECRET_KEY" "$RGW_START_SECONDS"
        ;;
    stop)
        [ -n "${2:-}" ] || { echo "usage: $0 stop DIR" >&2; exit 2; }
        rgw_stop "$2"
        ;;
    *)
        echo "usage: $0 start DIR | stop DIR" >&2
        exit 2
        ;;
    esac
fi
