#!/bin/sh
# shellcheck shell=dash
# Runs in the vm/ guest (busybox sh), started by .ci/vm-bind.sh: --bind and its restore on
# an emulated PCI NIC (QEMU's e1000e, bound to the e1000e driver at boot). The NIC has no
# migration support, so a run on it ends with exit 4, and the device must be back on e1000e
# after every run: a normal end, SIGINT in the middle, SIGKILL then `restore`, SIGKILL then
# the next run.
#
# usage: vm-bind-guest.sh MODE   (MODE: iommu, noiommu, none; see .ci/vm-bind.sh)
MODE=${1:?usage: vm-bind-guest.sh iommu|noiommu|none}
R=${VMC_RESULTS_DIR:-/results}
STATES=/run/vfio-mig-conform/bound
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "PASS: $*"; }
ko() { fail=$((fail + 1)); echo "FAIL: $*"; }

BDF=""
for d in /sys/bus/pci/devices/*; do
	[ "$(basename "$(readlink "$d/driver" 2>/dev/null)" 2>/dev/null)" = e1000e ] && BDF=${d##*/}
done
[ -n "$BDF" ] || { echo "FAIL: no PCI device bound to e1000e (vm/run.sh --device e1000e?)"; exit 1; }
SYS=/sys/bus/pci/devices/$BDF
echo "device: $BDF ($(cat "$SYS/vendor"):$(cat "$SYS/device")), mode $MODE, kernel $(uname -r)"

driver() { basename "$(readlink "$SYS/driver" 2>/dev/null)" 2>/dev/null; }
show() { echo "  sysfs: driver=$(driver) driver_override=$(cat "$SYS/driver_override") net=$(ls "$SYS/net" 2>/dev/null) state-files=$(ls $STATES 2>/dev/null | tr '\n' ' ')"; }

# restored WHAT: the device is on e1000e with no override, its interface is back, no state.
restored() {
	show
	if [ "$(driver)" = e1000e ] && [ "$(cat "$SYS/driver_override")" = "(null)" ] && [ -n "$(ls "$SYS/net" 2>/dev/null)" ] &&
		[ -z "$(ls $STATES 2>/dev/null)" ]; then
		ok "$1: back on e1000e, driver_override (null), interface $(ls "$SYS/net"), no state file"
	else
		ko "$1: not restored"
	fi
}

# expect CODE WHAT CMD...: runs CMD (output to $R/log.N), checks its exit code.
n=0
expect() {
	want=$1 what=$2
	shift 2
	n=$((n + 1))
	"$@" >"$R/log.$n" 2>&1
	rc=$?
	sed 's/^/  | /' "$R/log.$n" | tail -n 12
	if [ "$rc" = "$want" ]; then ok "$what: exit $rc"; else ko "$what: exit $rc, expected $want"; fi
}
logged() { grep -q "$1" "$R/log.$n" && ok "$2" || ko "$2 (no \`$1\` in the output)"; }

# wait_bound PID: until the device is on vfio-pci (the run has bound it), at most 60 s.
wait_bound() {
	i=0
	while [ "$(driver)" != vfio-pci ] && [ $i -lt 600 ] && kill -0 "$1" 2>/dev/null; do
		usleep 100000
		i=$((i + 1))
	done
	[ "$(driver)" = vfio-pci ]
}

expect 3 "a device on e1000e without --bind is refused" vfio-mig-conform "$BDF"
logged "add --bind" "the refusal says how to bind"
expect 3 "VMC_BDF names the device too" env VMC_BDF="$BDF" vfio-mig-conform
restored "after the refusals"

if [ "$MODE" = none ]; then
	# Debian's 6.12: no IOMMU and no CONFIG_VFIO_NOIOMMU: vfio-pci cannot take the device;
	# --bind says so before changing anything.
	expect 3 "--bind without an IOMMU group is refused before any change" vfio-mig-conform "$BDF" --bind
	logged "has no IOMMU group" "the refusal names the missing IOMMU group"
	restored "after --bind without an IOMMU"
	echo "vm-bind: $pass passed, $fail failed"
	[ "$fail" = 0 ]
	exit
fi

if [ "$MODE" = noiommu ]; then
	expect 3 "--bind with the no-IOMMU mode off is refused" vfio-mig-conform "$BDF" --bind
	logged "enable_unsafe_noiommu_mode" "the refusal names vfio's no-IOMMU mode"
	echo Y >/sys/module/vfio/parameters/enable_unsafe_noiommu_mode
fi

IF=$(ls "$SYS/net")
ip link set "$IF" up
expect 3 "--bind refuses a device whose interface is up" vfio-mig-conform "$BDF" --bind
logged "network interface $IF is up" "the refusal names the interface"
[ "$(driver)" = e1000e ] && ok "the refused device was not touched" || ko "the refused device was touched: $(driver)"
ip link set "$IF" down

expect 4 "--bind --iommu-backend all: no migration support on every back end" \
	vfio-mig-conform "$BDF" --bind --iommu-backend all --json "$R/e1000e.jsonl"
grep 'IOMMU back end' "$R/log.$n"
if [ "$MODE" = iommu ]; then
	logged "==== IOMMU back end vfio_type1v2_iommu" "ran under vfio_type1v2_iommu"
	logged "==== IOMMU back end iommufd ====" "ran under iommufd"
else
	logged "==== IOMMU back end vfio_noiommu" "ran under vfio_noiommu"
fi
logged "bound $BDF to vfio-pci (was e1000e" "said what it bound"
restored "after a run with --bind"

if [ "$MODE" = iommu ] && [ -n "${VMC_DEV0:-}" ]; then
	# The record of each run names its back end (mtty has migration: records are written).
	expect 0 "mtty under every back end" vfio-mig-conform "$VMC_DEV0" fsm.arc.running.stop --iommu-backend all --json "$R/mtty.jsonl"
	for f in "$R"/mtty.*.jsonl; do
		b=${f#"$R"/mtty.}
		b=${b%.jsonl}
		head -n1 "$f" | grep -q "\"iommu\":\"$b\"" && ok "record $f says iommu $b" || ko "record $f does not say iommu $b"
	done
fi

# A long run (exec: $! is the runner itself): the suite on an mtty device with the NIC as a bound peer (6.12-style no-IOMMU
# groups cannot mix with mtty's, so only with an IOMMU).
if [ "$MODE" = iommu ] && [ -n "${VMC_DEV0:-}" ]; then
	long() { exec vfio-mig-conform "$VMC_DEV0" --peer "$BDF" --bind --json "$R/$1.jsonl" >"$R/$1.log" 2>&1; }
else
	long() { exec vfio-mig-conform "$BDF" --bind --iommu-backend all --json "$R/$1.jsonl" >"$R/$1.log" 2>&1; }
fi

if [ "$MODE" = iommu ]; then
	long sigint &
	pid=$!
	if wait_bound $pid; then
		sleep 2
		kill -INT $pid
		wait $pid
		rc=$?
		tail -n 4 "$R/sigint.log" | sed 's/^/  | /'
		[ "$rc" = 5 ] && ok "SIGINT mid-run: exit 5" || ko "SIGINT mid-run: exit $rc, expected 5"
		grep -q "back on e1000e" "$R/sigint.log" && ok "the interrupted run said it restored the device" ||
			ko "the interrupted run did not say it restored the device"
	else
		wait $pid
		ko "the run never bound the device (exit $?): $(tail -n 3 "$R/sigint.log")"
	fi
	restored "after SIGINT"

	long sigkill1 &
	pid=$!
	if wait_bound $pid; then
		sleep 2
		kill -KILL $pid
		wait $pid
		show
		[ "$(driver)" = vfio-pci ] && [ -f "$STATES/$BDF.json" ] && ok "after SIGKILL the device is on vfio-pci with a state file" ||
			ko "after SIGKILL: no state file or not on vfio-pci"
		cat "$STATES/$BDF.json" 2>/dev/null | sed 's/^/  | /'
		expect 0 "restore puts it back" vfio-mig-conform restore
		restored "after SIGKILL + restore"
	else
		wait $pid
		ko "the run never bound the device: $(tail -n 3 "$R/sigkill1.log")"
	fi

	long sigkill2 &
	pid=$!
	if wait_bound $pid; then
		sleep 2
		kill -KILL $pid
		wait $pid
		# The next run (no --bind) restores it first, then refuses it as not on vfio-pci.
		i=0
		while [ $i -lt 10 ]; do
			vfio-mig-conform "$BDF" >"$R/next.log" 2>&1
			rc=$?
			[ "$(driver)" = e1000e ] && break
			sleep 1 # a check process of the killed run still holds the lock: it is finishing
			i=$((i + 1))
		done
		sed 's/^/  | /' "$R/next.log"
		grep -q "restored $BDF back on e1000e" "$R/next.log" && ok "the next run restored the device (exit $rc)" ||
			ko "the next run did not restore the device (exit $rc)"
		restored "after SIGKILL + the next run"
	else
		wait $pid
		ko "the run never bound the device: $(tail -n 3 "$R/sigkill2.log")"
	fi
fi

echo "vm-bind: $pass passed, $fail failed"
[ "$fail" = 0 ]
