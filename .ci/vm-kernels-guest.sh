#!/bin/sh
# Runs inside the test VM (vm/run.sh, busybox sh): the full suite on mtty through each path
# given, then (with `oops`) mtty's close-in-RESUMING NULL dereference under kernel-log capture.
#   sh /repo/.ci/vm-kernels-guest.sh SERIES group [cdev] [oops]
# Devices (vm/run.sh --mdev order): DEV0, DEV1 mtty-2; DEV2, DEV3 mtty-1. The suites use DEV0
# with peers DEV1, DEV2; the oops sequence uses DEV3 alone (it wedges the device).
# Records: /results/mtty2-<SERIES>-<path>.jsonl. Prints PASS:/FAIL: lines, exits 1 on a FAIL.
set -u
R=/results
T=vfio-mig-conform
series=$1
shift
fails=0

expect() { # NAME EXPECTED ACTUAL
	if [ "$3" = "$2" ]; then
		echo "PASS: $1"
	else
		echo "FAIL: $1 (exit $3, expected $2)"
		fails=$((fails + 1))
	fi
}

now() { cut -d' ' -f1 /proc/uptime; }

echo "kernel $(uname -r); kernel log readable: $([ -r /dev/kmsg ] && echo yes || echo no)"
for path in "$@"; do
	case $path in
	group) d0=$VMC_DEV0 d1=$VMC_DEV1 d2=$VMC_DEV2 ;;
	cdev) d0=$VMC_DEV0_CDEV d1=$VMC_DEV1_CDEV d2=$VMC_DEV2_CDEV ;;
	oops) continue ;;
	*) echo "unknown path $path"; exit 2 ;;
	esac
	name=mtty2-$series-$path
	t0=$(now)
	# The mtty profile is matched automatically: every FAIL must be one of its deviations.
	$T "$d0" --peer "$d1" --peer "$d2" --json $R/$name.jsonl --format terse >$R/$name.txt 2>&1
	rc=$?
	t1=$(now)
	expect "full suite on mtty-2 ($series, $path: $d0) with the mtty profile" 0 $rc
	tail -n 1 $R/$name.txt
	echo "TIME: $name $(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }") s"
	grep -o '"report_stub":[a-z]*' $R/$name.jsonl | head -n 1 | sed "s/^/DMA REPORT ($path): /"
done

for path in "$@"; do
	[ "$path" = oops ] || continue
	# The device is wedged afterwards (mtty's state mutex stays held): DEV3 is used by nothing else.
	t0=$(now)
	$T "$VMC_DEV3" --sequence /repo/.ci/sequences/mtty-close-in-resuming.yaml --profile none --timeout 5 \
		--json $R/oops-$series.jsonl >$R/oops-$series.txt 2>&1
	rc=$?
	t1=$(now)
	expect "close in RESUMING on mtty-1 stops the run with exit 6 (device not restored)" 6 $rc
	grep -q '"outcome":"FAIL"' $R/oops-$series.jsonl && grep -q 'V2-KERNEL-001' $R/oops-$series.jsonl &&
		grep -Eq 'NULL pointer dereference|KASAN' $R/oops-$series.jsonl &&
		echo "PASS: the check FAILs on V2-KERNEL-001 with the kernel's report" ||
		{ echo "FAIL: no V2-KERNEL-001 FAIL with the kernel's report:"; tail -n 30 $R/oops-$series.txt; fails=$((fails + 1)); }
	echo "TIME: oops-$series $(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }") s"
	# A new run on the wedged device must not hang (open() or the first GET would wait in the
	# kernel for ever, deaf to every signal): it must end on its own, within its --timeout.
	$T "$VMC_DEV3" fsm.get.in. --profile none --timeout 5 >$R/wedged-$series.txt 2>&1 &
	pid=$!
	waited=0
	while kill -0 $pid 2>/dev/null && [ $waited -lt 60 ]; do sleep 1; waited=$((waited + 1)); done
	if kill -0 $pid 2>/dev/null; then
		echo "FAIL: a new run on the wedged device still hangs after 60 s"
		fails=$((fails + 1))
	else
		wait $pid
		rc=$?
		if [ $rc = 6 ] || [ $rc = 3 ]; then
			echo "PASS: a new run on the wedged device ends by itself in ${waited} s (exit $rc): $(head -c 300 $R/wedged-$series.txt)"
		else
			echo "FAIL: a new run on the wedged device exits $rc (expected 6, or 3 if the device cannot be opened): $(head -c 300 $R/wedged-$series.txt)"
			fails=$((fails + 1))
		fi
	fi
done

echo "vm-kernels ($series): $fails failed"
[ "$fails" -eq 0 ]
