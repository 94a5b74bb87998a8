#!/bin/sh
# shellcheck shell=dash
# Helpers for driving QEMU 10.0.2 inside the vm/ guest (vm/run.sh --qemu-in-guest) through its
# human monitor: each QEMU reads HMP commands from a FIFO and writes the answers to a file, so a
# script can send a command and wait for a line of the answer. Sourced by vm/qemu/scenario.sh.

QEMU=${QEMU:-qemu-system-x86_64}
# Nested TCG: a small machine, no devices but the VFIO ones, a small translation cache.
QEMU_BASE="-machine q35 -accel tcg,tb-size=32 -nodefaults -nographic -m 64 -monitor stdio"
QDIR=${QDIR:-/tmp/qemu}
mkdir -p "$QDIR"
# A monitor command to a QEMU that has gone fails (EPIPE) instead of killing the script.
trap '' PIPE

# vfio_dev UUID [EXTRA]: the -device argument for an mdev. Dirty-page tracking by the device
# is off (DMA_LOGGING_REPORT is EOPNOTSUPP on Debian's 6.12: QEMU would fail the migration),
# and migration is enabled explicitly (without device dirty tracking QEMU otherwise blocks it).
vfio_dev() { echo "vfio-pci,sysfsdev=/sys/bus/mdev/devices/$1,x-device-dirty-page-tracking=off,enable-migration=on${2:+,$2}"; }

# qstart NAME FD ARGS...: starts a QEMU whose monitor reads $QDIR/NAME.in (kept open on fd FD)
# and answers into $QDIR/NAME.out.
qstart() {
	_n=$1 _fd=$2
	shift 2
	rm -f "$QDIR/$_n.in" "$QDIR/$_n.out"
	mkfifo "$QDIR/$_n.in"
	# QEMU_TRACE=1: QEMU's own VFIO migration trace events into $QDIR/NAME.trace (the
	# recorder's fidelity test compares them with the recording).
	set -- "$@"
	[ "${QEMU_TRACE:-0}" = 1 ] && set -- "$@" -trace 'vfio_migration*' -trace 'vfio_save*' -trace 'vfio_load*' -D "$QDIR/$_n.trace"
	# shellcheck disable=SC2086 # QEMU_BASE is a list of words
	$QEMU $QEMU_BASE "$@" <"$QDIR/$_n.in" >"$QDIR/$_n.out" 2>&1 &
	eval "${_n}_pid=\$!"
	eval "exec $_fd>\"$QDIR/$_n.in\""
	qwait "$_n" '(qemu)' 30
}

# hmp NAME FD COMMAND: sends one monitor command.
hmp() { echo "$3" >&"$2"; echo "[$(cut -d' ' -f1 /proc/uptime)] $1: $3" >>"$QDIR/hmp.log"; }

# qwait NAME PATTERN SECS: waits until PATTERN (fixed string) appears in NAME's answers.
qwait() {
	_i=0
	while [ $_i -lt $(($3 * 10)) ]; do
		grep -qF -- "$2" "$QDIR/$1.out" 2>/dev/null && return 0
		usleep 100000
		_i=$((_i + 1))
	done
	echo "qemu/lib.sh: timeout: no '$2' from $1 within $3 s" >&2
	tail -n 20 "$QDIR/$1.out" | tr -d '\r' >&2
	return 1
}

# qmigrated NAME FD SECS: polls `info migrate` until the migration ends; prints its status.
qmigrated() {
	_i=0
	while [ $_i -lt $(($3 * 4)) ]; do
		hmp "$1" "$2" "info migrate"
		usleep 250000
		_s=$(tr -d '\r' <"$QDIR/$1.out" | sed -n 's/^Migration status: //p' | tail -n 1)
		# "failed (Sibling indicated error 1)": the first word is the status.
		case $_s in completed* | failed* | cancelled*) echo "${_s%% *}"; return 0 ;; esac
		_i=$((_i + 1))
	done
	echo "timeout"
	return 1
}

# qquit NAME FD: asks QEMU to quit and waits for it.
qquit() {
	hmp "$1" "$2" quit
	eval "wait \$${1}_pid"
	_rc=$?
	eval "exec $2>&-"
	return $_rc
}

# qbar NAME: the I/O address of BAR0 of the first VFIO device, from `info pci`.
qbar() { tr -d '\r' <"$QDIR/$1.out" | sed -n 's/.*BAR0: I\/O at \(0x[0-9a-f]*\).*/\1/p' | head -n 1; }
