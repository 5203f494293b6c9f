# An OpenSSH server of the test's own on 127.0.0.1, for the tests of ssh:// remotes. Source it
# (it defines functions and variables only, and changes no shell option), then:
#
#   sshd_start DIR   makes DIR (keys, known_hosts, configs, log) and starts sshd on a free port
#                    of 127.0.0.1; returns 0, or 1 with the reason in $SSHD_SKIP (the caller
#                    prints "SKIP: $SSHD_SKIP" and exits 77). Needs root; installs
#                    openssh-server and openssh-client with apt-get when missing (nothing else,
#                    and no service is started: see sshd_install).
#   sshd_stop        stops the sshd that sshd_start started, by its pid; safe to call twice
#   sshd_ssh_command prints an ssh command line (for DVOL_SSH_COMMAND) that uses only the
#                    test's files: its client key, its known_hosts, an empty ssh_config
#   sshd_log_tail    the last lines of sshd's log, for a failure message
#
# After sshd_start: SSHD_PORT, SSHD_PID, SSH_KEY (the authorized client key), SSH_OTHER_KEY (a
# key the server does not know), SSH_KNOWN_HOSTS (the server's host key for
# [127.0.0.1]:PORT), SSH_OTHER_HOST_KEY (the public half of a host key the server does not
# have), SSH_CONFIG (an empty client configuration, so that the ~/.ssh/config of whoever runs
# the test does not apply), SSHD_LOG.
#
# The server: `sshd -D` (not detached: it is this shell's child, stopped by its pid), its own
# config with ListenAddress 127.0.0.1, its HostKey, PidFile and AuthorizedKeysFile inside DIR,
# public keys only (PasswordAuthentication and KbdInteractiveAuthentication no, UsePAM no),
# StrictModes no (DIR is under /tmp), AllowUsers the current user. OpenSSH needs its
# privilege separation directory, /run/sshd, which is created if missing.

SSHD_BIN=/usr/sbin/sshd  # sshd re-executes itself, so it must be started by its absolute path
SSHD_PID=""
SSHD_PORT=""
SSHD_SKIP=""

# Installs the OpenSSH server and client (--no-install-recommends). openssh-server's
# maintainer scripts would start the system's sshd on port 22: a policy-rc.d that forbids
# starting services is in place meanwhile (unless one is already there). apt-get's output goes
# to $1, shown by the caller only when this fails.
sshd_install() { # LOG
    local log=$1 policy=/usr/sbin/policy-rc.d added=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 0755 "$policy" && added=1
    fi
    local rc=0
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openssh-server openssh-client \
        >"$log" 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get update >>"$log" 2>&1
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openssh-server openssh-client \
            >>"$log" 2>&1 || rc=1
    fi
    [ "$added" = 1 ] && rm -f "$policy"
    return "$rc"
}

# A port nothing listens on now (another process may take it before sshd does: sshd_start
# tries again then).
sshd_free_port() {
    if command -v python3 >/dev/null; then
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
    else
        echo $((20000 + RANDOM % 40000))
    fi
}

# Whether an SSH server answers on 127.0.0.1:PORT (its banner starts with "SSH-").
sshd_answers() { # PORT
    local banner
    banner=$(timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && head -c 4 <&3' _ "$1" 2>/dev/null)
    [ "$banner" = "SSH-" ]
}

sshd_log_tail() { tail -n "${1:-15}" "$SSHD_LOG" 2>/dev/null; }

sshd_start() { # DIR
    local dir=$1 user
    SSHD_SKIP=""
    if [ "$(id -u)" -ne 0 ]; then
        SSHD_SKIP="needs root (an sshd of its own, logging in as the current user with a test key)"
        return 1
    fi
    mkdir -p "$dir" || { SSHD_SKIP="cannot create $dir"; return 1; }
    if [ ! -x "$SSHD_BIN" ] || ! command -v ssh >/dev/null || ! command -v ssh-keygen >/dev/null; then
        if ! command -v apt-get >/dev/null; then
            SSHD_SKIP="OpenSSH (server and client) is not installed and there is no apt-get to install it"
            return 1
        fi
        echo "installing openssh-server and openssh-client with apt-get"
        if ! sshd_install "$dir/apt.log" || [ ! -x "$SSHD_BIN" ] || ! command -v ssh >/dev/null; then
            echo "--- apt-get output (tail)"
            tail -n 20 "$dir/apt.log"
            SSHD_SKIP="apt-get could not install openssh-server and openssh-client: $(grep -E '^(E|W):' "$dir/apt.log" | tail -n 2 | tr '\n' ' ')"
            return 1
        fi
    fi
    mkdir -p /run/sshd && chmod 0755 /run/sshd

    user=$(id -un)
    SSH_KEY="$dir/client_key"
    SSH_OTHER_KEY="$dir/other_key"
    SSH_KNOWN_HOSTS="$dir/known_hosts"
    SSH_CONFIG="$dir/ssh_config"
    SSHD_LOG="$dir/sshd.log"
    local k
    for k in host_key host_key_other client_key other_key; do
        if ! ssh-keygen -q -t ed25519 -N '' -C "dvol-test-$k" -f "$dir/$k" >"$dir/keygen.log" 2>&1; then
            SSHD_SKIP="ssh-keygen failed: $(tr '\n' ' ' <"$dir/keygen.log")"
            return 1
        fi
    done
    SSH_OTHER_HOST_KEY="$dir/host_key_other.pub"
    cp "$dir/client_key.pub" "$dir/authorized_keys"
    : >"$SSH_CONFIG"

    local attempt
    for attempt in 1 2 3; do
        SSHD_PORT=$(sshd_free_port)
        cat >"$dir/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $SSHD_PORT
HostKey $dir/host_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers $user
UsePAM no
StrictModes no
PrintMotd no
LogLevel VERBOSE
MaxStartups 100:30:200
Subsystem sftp internal-sftp
EOF
        if ! "$SSHD_BIN" -t -f "$dir/sshd_config" >"$dir/sshd-t.log" 2>&1; then
            SSHD_SKIP="sshd refuses its configuration: $(tr '\n' ' ' <"$dir/sshd-t.log")"
            return 1
        fi
        "$SSHD_BIN" -D -f "$dir/sshd_config" -E "$SSHD_LOG" </dev/null >/dev/null 2>&1 &
        SSHD_PID=$!
        local _
        for _ in $(seq 1 100); do
            if ! kill -0 "$SSHD_PID" 2>/dev/null; then break; fi
            if sshd_answers "$SSHD_PORT"; then
                echo "[127.0.0.1]:$SSHD_PORT $(cut -d' ' -f1,2 "$dir/host_key.pub")" >"$SSH_KNOWN_HOSTS"
                return 0
            fi
            sleep 0.2
        done
        sshd_stop
        if ! grep -q 'Address already in use' "$SSHD_LOG" 2>/dev/null; then break; fi
    done
    SSHD_SKIP="sshd did not start on 127.0.0.1: $(sshd_log_tail 5 | tr '\n' ' ')"
    return 1
}

sshd_stop() {
    [ -n "$SSHD_PID" ] || return 0
    local pid=$SSHD_PID _
    SSHD_PID=""
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] && break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}

# KNOWN_HOSTS (default: the server's key) and KEY (default: the authorized one) may be given.
sshd_ssh_command() { # [KNOWN_HOSTS [KEY]]
    printf "ssh -F '%s' -i '%s' -o IdentitiesOnly=yes -o UserKnownHostsFile='%s' -o GlobalKnownHostsFile=/dev/null" \
        "$SSH_CONFIG" "${2:-$SSH_KEY}" "${1:-$SSH_KNOWN_HOSTS}"
}
