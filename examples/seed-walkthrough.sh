#!/bin/sh
# shellcheck disable=SC2016  # the commands shown are single-quoted on purpose, then eval-ed
# A guided tour of dvol on plain data, no Docker needed: create a volume, commit, break the
# data, reset it back, look at log/status/diff, and try a branch.
#
#   ./examples/seed-walkthrough.sh
#
# DVOL       the dvol binary (default: ./build/cli/dvol of this checkout)
# DVOL_ROOT  the store to use (default: dvol's own default, /var/lib/dvol)
# VOLUME     the volume to play with (default: demo); an existing volume of that name is
#            deleted first, so the tour can be run again and again.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DVOL=${DVOL:-$ROOT/build/cli/dvol}
VOLUME=${VOLUME:-demo}

if [ ! -x "$DVOL" ]; then
    echo "seed-walkthrough: $DVOL not found; build dvol first (./scripts/setup.sh)" >&2
    exit 1
fi
# The default store belongs to root: another user needs a store of their own.
if [ -z "${DVOL_ROOT:-}" ] && [ "$(id -u)" -ne 0 ]; then
    store=/var/lib/dvol
    if { [ -e "$store" ] && ! [ -w "$store" ]; } || { [ -e "$store/dvol.db" ] && ! [ -w "$store/dvol.db" ]; } ||
        { ! [ -e "$store" ] && ! [ -w "$(dirname "$store")" ]; }; then
        echo "seed-walkthrough: the default store $store is root's; as $(id -un), run the tour on a store of your own:" >&2
        echo "  DVOL_ROOT=\$HOME/dvol-store $0" >&2
        exit 1
    fi
fi

# Show each command like a tutorial, then run it.
quote() {
    for a in "$@"; do
        case $a in
            '' | *[!A-Za-z0-9_./:=@%+^~-]*) printf " '%s'" "$a" ;;
            *) printf ' %s' "$a" ;;
        esac
    done
}
run() {
    echo
    echo "\$ dvol$(quote "$@")"
    "$DVOL" "$@"
}
# So that the shell commands shown below read as a user would type them.
dvol() {
    "$DVOL" "$@"
}
# A plain shell command, shown as written and run with eval.
sh_run() {
    echo
    echo "\$ $1"
    eval "$1"
}
say() {
    echo
    echo "# $*"
}
fail() {
    echo "seed-walkthrough: FAILED: $*" >&2
    exit 1
}

say "Store: ${DVOL_ROOT:-/var/lib/dvol (the default store)}"

if "$DVOL" path "$VOLUME" >/dev/null 2>&1; then
    say "A volume '$VOLUME' is left from an earlier run: remove it"
    run rm -f "$VOLUME"
fi

say "Create a volume; it becomes the active one"
run init "$VOLUME"
run list

say "Its live directory is what a container would mount; put some data there"
run path
sh_run 'DATA=$(dvol path)'
sh_run 'echo "balance=100" > "$DATA/accounts.txt"'
sh_run 'mkdir "$DATA/logs" && echo "started" > "$DATA/logs/app.log"'

run status
echo
echo "\$ dvol commit -m 'Known good state'      # prints the new commit's id"
GOOD=$("$DVOL" commit -m "Known good state")
echo "$GOOD"
run status

say "Now something goes wrong: the data gets overwritten"
sh_run 'echo "balance=0!!" > "$DATA/accounts.txt"'
run status
run diff

say "Throw the change away: back to the last commit"
run reset --hard HEAD
sh_run 'cat "$DATA/accounts.txt"'
[ "$(cat "$DATA/accounts.txt")" = "balance=100" ] || fail "accounts.txt does not hold the committed content after reset --hard HEAD"
run status

say "Record a second state and look at the history"
sh_run 'echo "balance=150" > "$DATA/accounts.txt"'
run commit -m "Deposit 50"
run log
run diff HEAD^ HEAD

say "Experiment on a branch; master is not affected"
run checkout -b experiment
sh_run 'echo "feature=on" > "$DATA/experiment.conf"'
run commit -m "Try the experimental feature"
run branch
run checkout master
[ ! -e "$DATA/experiment.conf" ] || fail "experiment.conf is still there after checkout master"
[ "$(cat "$DATA/accounts.txt")" = "balance=150" ] || fail "accounts.txt is wrong after checkout master"
sh_run 'ls "$DATA"'
run diff master experiment

say "Go back to the very first state by its commit id (a unique prefix is enough)"
run reset --hard "$(echo "$GOOD" | cut -c1-12)"
[ "$(cat "$DATA/accounts.txt")" = "balance=100" ] || fail "accounts.txt is wrong after reset --hard to the first commit"
run log

say "Done. The volume '$VOLUME' stays in the store; remove it with: dvol rm -f $VOLUME"
