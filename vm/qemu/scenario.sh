#!/bin/sh
# shellcheck shell=dash
# One QEMU 10.0.2 migration scenario with the guest's mtty devices, run inside the vm/ guest
# (vm/run.sh --qemu-in-guest): the command `vfio-mig-conform record` wraps to produce
# fixtures/recorded/qemu-10.0/*.yaml (.ci/vm-qemu-guest.sh). Every QEMU it starts is a child of
# this script, so one recording holds the source and the destination.
#
#   sh vm/qemu/scenario.sh NAME
#
# Devices (mdev UUIDs): SRC, DST, SRC2, DST2 (mtty of one type), XDST (an mtty of another type),
# from VMC_DEV0..4_UUID unless set. Monitor commands and answers are kept in $QDIR.
# Exit status 0 when the scenario went as intended (a migration that is meant to fail failed).
set -u
. "$(dirname "$0")/lib.sh"
SRC=${SRC:-${VMC_DEV0_UUID:-}} DST=${DST:-${VMC_DEV1_UUID:-}}
SRC2=${SRC2:-${VMC_DEV2_UUID:-}} DST2=${DST2:-${VMC_DEV3_UUID:-}} XDST=${XDST:-${VMC_DEV4_UUID:-}}
SOCK=$QDIR/mig.sock
IMG=$QDIR/vm.bin

die() { echo "scenario: $*" >&2; exit 1; }
# Whatever happens, no QEMU outlives the scenario (the recorder waits for every process).
cleanup() {
	for p in ${src_pid:-} ${dst_pid:-}; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
}
trap cleanup EXIT

# uart NAME FD [N] [BAR] [SCR]: programs the UART behind BAR (0, or 1 for mtty-2's second
# port) of the N-th (1-based) mtty in `info pci`, so the device holds a state worth migrating:
# divisor 0x0c, LCR 0x1b, IER 0x05, SCR SCR + BAR (default 0x5a: 0x5a, 0x5b behind BAR1) and
# two bytes ("hi") looped back into the receive FIFO.
uart() {
	b=${4:-0}
	# SeaBIOS maps the BARs a moment after QEMU starts: ask until the BAR has an address.
	i=0
	until tr -d '\r' <"$QDIR/$1.out" | grep -q "BAR$b: I/O at"; do
		[ $i -lt 60 ] || die "BAR$b of $1 is not mapped after 30 s"
		hmp "$1" "$2" "info pci"
		usleep 500000
		i=$((i + 1))
	done
	usleep 300000
	bar=$(tr -d '\r' <"$QDIR/$1.out" | sed -n "s/.*BAR$b: I\/O at \(0x[0-9a-f]*\).*/\1/p" | sed -n "${3:-1}p")
	[ -n "$bar" ] || die "no BAR$b address for device ${3:-1}"
	scr=$((${5:-0x5a} + b))
	for w in "3 0x83" "0 0x0c" "1 0x00" "3 0x1b" "7 $scr" "1 0x05" "0 0x68" "0 0x69"; do
		hmp "$1" "$2" "o /b $((bar + ${w% *})) ${w#* }"
	done
	hmp "$1" "$2" "i /b $((bar + 7))"
	qwait "$1" "] = $(printf 0x%02x $scr)" 10 || die "the UART of $1 did not take the writes"
}

# active NAME FD: waits until the migration of NAME is in pre-copy (status active, some RAM
# sent), polling quickly: with 384 MiB pre-copy lasts a few seconds.
active() {
	i=0
	while [ $i -lt 100 ]; do
		hmp "$1" "$2" "info migrate"
		usleep 100000
		st=$(tr -d '\r' <"$QDIR/$1.out" | sed -n 's/^Migration status: //p' | tail -n 1)
		case $st in
		active) return 0 ;;
		completed* | failed* | cancelled*) die "the migration of $1 ended ($st) before it could be caught in pre-copy" ;;
		esac
		i=$((i + 1))
	done
	die "the migration of $1 never became active"
}

# expect_status NAME FD STATUS SECS: the migration of NAME ends with STATUS.
expect_status() {
	st=$(qmigrated "$1" "$2" "$4")
	echo "scenario: $1 migration status: $st"
	# QEMU's own account of the migration's duration (bench/record-overhead.sh reads it).
	[ "$st" = completed ] && echo "scenario: $1 migration $(tr -d '\r' <"$QDIR/$1.out" | sed -n 's/^total time: \([0-9]*\) ms/total \1 ms/p' | tail -n 1), $(tr -d '\r' <"$QDIR/$1.out" | sed -n 's/^downtime: \([0-9]*\) ms/downtime \1 ms/p' | tail -n 1)"
	[ "$st" = "$3" ] || die "expected migration status $3, got $st"
}

# gone NAME SECS: waits for a QEMU that is meant to exit by itself (a failed destination).
gone() {
	i=0
	while [ $i -lt $(($2 * 10)) ]; do
		eval "kill -0 \$${1}_pid" 2>/dev/null || {
			eval "wait \$${1}_pid"
			echo "scenario: $1 exited by itself with status $?"
			return 0
		}
		usleep 100000
		i=$((i + 1))
	done
	die "$1 did not exit within $2 s"
}

# magic_offset FILE: byte offset of the mtty stream header (MTTY_MAGIC, little endian) in FILE.
magic_offset() {
	hexdump -v -e '16/1 "%02x" "\n"' "$1" | awk -v m=4e2c3e8c89099d7e '
		{
			s = prev $0; base = (NR == 1) ? 0 : (NR - 2) * 16; off = 0
			while ((i = index(substr(s, off + 1), m)) > 0) {
				p = off + i - 1
				if (p % 2 == 0) { print base + p / 2; exit }
				off = p + 1
			}
			prev = $0
		}'
}

# big_ram: 384 MiB of guest RAM instead of 64 for the scenarios that need pre-copy to last:
# the first pass over RAM takes seconds under nested TCG (~16k pages/s). (A bandwidth limit
# does not do it: QEMU completes as soon as its pending estimate is 0.)
big_ram() { QEMU_BASE=$(echo "$QEMU_BASE" | sed 's/-m 64/-m 384/'); }

# flip_byte FILE OFFSET: inverts the low bit of the byte at OFFSET.
flip_byte() {
	v=$(dd if="$1" bs=1 skip="$2" count=1 2>/dev/null | hexdump -v -e '1/1 "%u"')
	n=$((v ^ 1))
	# shellcheck disable=SC2059 # the format is the octal escape of the byte
	printf "\\$(printf %03o $n)" | dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null
}

case ${1:-} in
live_precopy)
	# A running VM migrated live (pre-copy) over a UNIX socket to a destination QEMU.
	qstart src 5 -device "$(vfio_dev "$SRC")"
	qstart dst 6 -device "$(vfio_dev "$DST")" -incoming "unix:$SOCK"
	uart src 5
	hmp src 5 "migrate -d unix:$SOCK"
	expect_status src 5 completed 60
	hmp dst 6 "info status"
	qwait dst "VM status: running" 20 || die "destination not running"
	qquit src 5
	qquit dst 6
	;;
stopcopy_paused)
	# A paused VM (`stop`) migrated live: no PRE_COPY; the destination is resumed with `cont`.
	qstart src 5 -device "$(vfio_dev "$SRC")"
	qstart dst 6 -device "$(vfio_dev "$DST")" -incoming "unix:$SOCK"
	uart src 5
	hmp src 5 stop
	hmp src 5 "migrate -d unix:$SOCK"
	expect_status src 5 completed 60
	hmp dst 6 "info status"
	qwait dst "VM status: paused" 20 || die "destination not paused"
	hmp dst 6 cont
	hmp dst 6 "info status"
	qwait dst "VM status: running" 20 || die "destination not running after cont"
	qquit src 5
	qquit dst 6
	;;
file_save_load)
	# A stopped VM saved to a file (`migrate file:`), QEMU quits, and a new QEMU loads the file
	# into the same device (`-incoming file:`), then `cont`.
	rm -f "$IMG"
	qstart src 5 -device "$(vfio_dev "$SRC")"
	uart src 5
	hmp src 5 stop
	hmp src 5 "migrate file:$IMG"
	expect_status src 5 completed 60
	qquit src 5
	qstart dst 6 -device "$(vfio_dev "$SRC")" -incoming "file:$IMG"
	hmp dst 6 "info status"
	qwait dst "VM status: paused" 30 || die "the loaded VM is not paused"
	hmp dst 6 cont
	hmp dst 6 "info status"
	qwait dst "VM status: running" 20 || die "the loaded VM does not run"
	qquit dst 6
	;;
cancel_precopy)
	# migrate_cancel during pre-copy (384 MiB of RAM, so pre-copy lasts): the source goes on
	# running; the destination sees its stream end and exits.
	big_ram
	qstart src 5 -device "$(vfio_dev "$SRC")"
	qstart dst 6 -device "$(vfio_dev "$DST")" -incoming "unix:$SOCK"
	uart src 5
	hmp src 5 "migrate -d unix:$SOCK"
	active src 5
	hmp src 5 migrate_cancel
	expect_status src 5 cancelled 30
	gone dst 30
	hmp src 5 "info status"
	qwait src "VM status: running" 20 || die "the source does not run after the cancel"
	qquit src 5
	;;
dest_fails_foreign)
	# The destination's device refuses the stream (an mtty of another type: its stream is
	# shorter, write() fails): the destination exits, and with the return path on the source
	# learns it, the migration fails and the source VM resumes.
	[ -n "$XDST" ] || die "XDST (a device of another type) is not set"
	qstart src 5 -device "$(vfio_dev "$SRC")"
	qstart dst 6 -device "$(vfio_dev "$XDST")" -incoming defer
	hmp src 5 "migrate_set_capability return-path on"
	hmp dst 6 "migrate_set_capability return-path on"
	hmp dst 6 "migrate_incoming unix:$SOCK"
	uart src 5
	hmp src 5 "migrate -d unix:$SOCK"
	expect_status src 5 failed 60
	# QEMU 10 keeps a destination whose load failed (HMP migrate_incoming) until told to quit.
	hmp dst 6 "info status"
	sleep 1
	qquit dst 6
	hmp src 5 "info status"
	qwait src "VM status: running" 20 || die "the source does not run after the failure"
	qquit src 5
	;;
dest_fails_truncated)
	# A stopped VM saved to a file; the file is cut inside the device's data (10 bytes into
	# the first port); a destination QEMU on another device loads it and fails.
	rm -f "$IMG"
	qstart src 5 -device "$(vfio_dev "$SRC")"
	uart src 5
	hmp src 5 stop
	hmp src 5 "migrate file:$IMG"
	expect_status src 5 completed 60
	qquit src 5
	off=$(magic_offset "$IMG")
	[ -n "$off" ] || die "no mtty stream header in $IMG"
	head -c $((off + 24 + 10)) "$IMG" >"$IMG.cut"
	echo "scenario: $IMG cut at $((off + 34)) of $(stat -c %s "$IMG") bytes (stream header at $off)"
	qstart dst 6 -device "$(vfio_dev "$DST")" -incoming "file:$IMG.cut"
	gone dst 60
	;;
reset_precopy)
	# system_reset of the source VM during pre-copy (which lasts, as in cancel_precopy), then
	# the migration completes.
	big_ram
	qstart src 5 -device "$(vfio_dev "$SRC")"
	qstart dst 6 -device "$(vfio_dev "$DST")" -incoming "unix:$SOCK"
	uart src 5
	hmp src 5 "migrate -d unix:$SOCK"
	active src 5
	hmp src 5 system_reset
	expect_status src 5 completed 60
	hmp dst 6 "info status"
	qwait dst "VM status: running" 20 || die "destination not running"
	qquit src 5
	qquit dst 6
	;;
p2p_two_devices)
	# Two mtty devices in each VM: QEMU moves both through the P2P states.
	[ -n "$SRC2" ] && [ -n "$DST2" ] || die "SRC2 and DST2 are not set"
	qstart src 5 -device "$(vfio_dev "$SRC")" -device "$(vfio_dev "$SRC2")"
	qstart dst 6 -device "$(vfio_dev "$DST")" -device "$(vfio_dev "$DST2")" -incoming "unix:$SOCK"
	uart src 5 1
	hmp src 5 "migrate -d unix:$SOCK"
	expect_status src 5 completed 60
	hmp dst 6 "info status"
	qwait dst "VM status: running" 20 || die "destination not running"
	qquit src 5
	qquit dst 6
	;;
multifd)
	# QEMU 10.0 multifd device-state transfer (x-migration-multifd-transfer=on, multifd on
	# both sides, 2 channels).
	qstart src 5 -device "$(vfio_dev "$SRC" x-migration-multifd-transfer=on)"
	qstart dst 6 -device "$(vfio_dev "$DST" x-migration-multifd-transfer=on)" -incoming defer
	for q in "src 5" "dst 6"; do
		# shellcheck disable=SC2086 # NAME FD
		hmp $q "migrate_set_capability multifd on"
		# shellcheck disable=SC2086
		hmp $q "migrate_set_parameter multifd-channels 2"
	done
	hmp dst 6 "migrate_incoming unix:$SOCK"
	uart src 5
	hmp src 5 "migrate -d unix:$SOCK"
	expect_status src 5 completed 60
	hmp dst 6 "info status"
	qwait dst "VM status: running" 20 || die "destination not running"
	qquit src 5
	qquit dst 6
	;;
# ---- Effects of mtty's declared deviations on a real migration (.ci/vm-qemu-guest.sh compares
# the devices' states afterwards with .ci/qemu/same-state.yaml, independently of QEMU).
save_stopped) # DEVICE FILE [uart|uart-alt]: a stopped VM on DEVICE saved to FILE, both UARTs
	# programmed first (SCR 0x5a/0x5b, or 0x3c/0x3d with uart-alt)
	rm -f "$3"
	qstart src 5 -device "$(vfio_dev "$2")"
	case ${4:-} in
	uart) uart src 5 && uart src 5 1 1 ;;
	uart-alt) uart src 5 1 0 0x3c && uart src 5 1 1 0x3c ;;
	esac
	hmp src 5 stop
	hmp src 5 "migrate file:$3"
	expect_status src 5 completed 60
	qquit src 5
	;;
load_file) # DEVICE FILE: a new QEMU on DEVICE loads FILE; prints whether it ran or failed
	qstart dst 6 -device "$(vfio_dev "$2")" -incoming "file:$3"
	i=0
	while [ $i -lt 600 ]; do
		if ! kill -0 "$dst_pid" 2>/dev/null; then
			wait "$dst_pid"
			echo "scenario: load of $3 failed: QEMU exited with status $? ($(tr -d '\r' <"$QDIR/dst.out" | grep -a 'qemu-system-x86_64:' | grep -v 'reset mechanism\|dirty tracking' | tail -n 2 | tr '\n' ' '))"
			exit 0
		fi
		hmp dst 6 "info status"
		usleep 250000
		if tr -d '\r' <"$QDIR/dst.out" | grep -q "VM status: paused"; then
			hmp dst 6 cont
			hmp dst 6 "info status"
			qwait dst "VM status: running" 20 || die "the loaded VM does not run"
			echo "scenario: load of $3 completed: the VM runs"
			qquit dst 6
			exit 0
		fi
		i=$((i + 1))
	done
	die "load of $3: neither running nor failed after 150 s"
	;;
flip) # FILE WHERE: flips bit 0 of the mtty stream's byte WHERE (magic + WHERE) in FILE
	off=$(magic_offset "$2")
	[ -n "$off" ] || die "no mtty stream header in $2"
	flip_byte "$2" $((off + $3))
	echo "scenario: flipped bit 0 of byte $((off + $3)) of $2 (stream byte $3)"
	;;
splice) # FILE1 FILE2 OUT: port 0 from FILE1's stream, the rest from FILE2
	o1=$(magic_offset "$2") o2=$(magic_offset "$3")
	[ -n "$o1" ] && [ -n "$o2" ] || die "no mtty stream header"
	{ head -c $((o1 + 60)) "$2"; tail -c +$((o2 + 61)) "$3"; } >"$4"
	echo "scenario: $4 = $2 up to the end of port 0 ($((o1 + 60)) bytes) + $3 from byte $((o2 + 60))"
	;;
dirty_tracking)
	# A live migration with QEMU's default device dirty tracking (no x-device-dirty-page-
	# tracking=off): QEMU starts the device's DMA logging; on Debian's 6.12 the report fails
	# (EOPNOTSUPP), the migration fails and the source VM goes on running. The recording shows
	# the page size QEMU asks for and whether it stops the logging after the failure.
	qstart src 5 -device "vfio-pci,sysfsdev=/sys/bus/mdev/devices/$SRC,enable-migration=on"
	qstart dst 6 -device "vfio-pci,sysfsdev=/sys/bus/mdev/devices/$DST,enable-migration=on" -incoming defer
	for q in "src 5" "dst 6"; do
		# shellcheck disable=SC2086 # NAME FD
		hmp $q "migrate_set_capability return-path on"
	done
	hmp dst 6 "migrate_incoming unix:$SOCK"
	uart src 5
	hmp src 5 "migrate -d unix:$SOCK"
	st=$(qmigrated src 5 60)
	echo "scenario: migration with device dirty tracking: $st ($(tr -d '\r' <"$QDIR/src.out" | grep -a 'Migration status: ' | tail -n 1))"
	hmp src 5 "info status"
	qwait src "VM status: running" 20 || die "the source does not run"
	qquit src 5
	qquit dst 6 || true
	;;
*)
	die "unknown scenario '${1:-}' (live_precopy stopcopy_paused file_save_load cancel_precopy dest_fails_foreign dest_fails_truncated reset_precopy p2p_two_devices multifd)"
	;;
esac
echo "scenario: ${1} done"
