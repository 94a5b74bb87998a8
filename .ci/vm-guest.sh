#!/bin/sh
# Runs inside the test VM (vm/run.sh, busybox sh): the suite against the real mtty driver.
# Devices (vm/run.sh --mdev order): DEV0, DEV1 mtty-2; DEV2, DEV3 mtty-1; DEV4 mdpy-vga.
# Prints PASS:/FAIL: lines and exits 1 if anything failed. Results land in /results.
set -u
R=/results
T=vfio-mig-conform
fails=0

expect() { # NAME EXPECTED ACTUAL
	if [ "$3" = "$2" ]; then
		echo "PASS: $1"
	else
		echo "FAIL: $1 (exit $3, expected $2)"
		fails=$((fails + 1))
	fi
}

# 1. The full suite on mtty-2 (mtty-2 and mtty-1 peers), the mtty profile chosen automatically.
$T "$VMC_DEV0" --peer "$VMC_DEV1" --peer "$VMC_DEV2" \
	--json $R/mtty2.jsonl --ktap $R/mtty2.ktap --junit $R/mtty2.xml --format terse >$R/mtty2.txt 2>&1
expect "full suite on mtty-2 with the mtty profile (every FAIL is a declared deviation)" 0 $?
tail -n 2 $R/mtty2.txt

# 2. The same with mtty-1 as the device under test (mtty-1 -> mtty-2 streams are foreign).
$T "$VMC_DEV2" --peer "$VMC_DEV3" --peer "$VMC_DEV0" \
	--json $R/mtty1.jsonl --ktap $R/mtty1.ktap --format terse >$R/mtty1.txt 2>&1
expect "full suite on mtty-1 with the mtty profile" 0 $?
tail -n 1 $R/mtty1.txt

# 3. Differential: the simulator with mtty's flags gives the same verdict on every FSM arc.
$T 'sim:v2?flags=stop_copy,p2p,pre_copy' fsm.arc. --json $R/sim-arcs.jsonl -q >/dev/null 2>&1
expect "sim:v2 with mtty's flags passes the arc family" 0 $?
$T report $R/sim-arcs.jsonl $R/mtty2.jsonl --diff --filter fsm.arc. >$R/arc-diff.txt 2>&1
expect "sim:v2 and mtty-2 agree on every fsm.arc check" 0 $?
tail -n 1 $R/arc-diff.txt

# 4. A VFIO device without migration: SKIP, exit 4.
$T "$VMC_DEV4" --format ktap >$R/mdpy.ktap 2>&1
expect "mdpy (no migration support) is a skip" 4 $?

# 5. Paths that are not VFIO devices: exit 3 with a message naming the path.
$T /dev/null >$R/null.txt 2>&1
expect "/dev/null is refused" 3 $?
grep -q "not a VFIO group" $R/null.txt || { echo "FAIL: /dev/null message: $(cat $R/null.txt)"; fails=$((fails + 1)); }
$T /dev/vfio/4242 >/dev/null 2>&1
expect "a missing group is refused" 3 $?

# 6. Two runners on one device: the second refuses clearly.
$T "$VMC_DEV0" --peer "$VMC_DEV1" --peer "$VMC_DEV2" -q >/dev/null 2>&1 &
first=$!
sleep 0.5
$T "$VMC_DEV0" fsm.arc. -q >$R/second.txt 2>&1
expect "a second runner on the same device is refused" 3 $?
grep -q "another vfio-mig-conform" $R/second.txt || grep -q "busy" $R/second.txt ||
	{ echo "FAIL: second runner message: $(cat $R/second.txt)"; fails=$((fails + 1)); }
wait $first
expect "the first runner is unaffected" 0 $?

# 7. SIGINT in the middle of a run: exit 5, device restored, record valid and complete.
$T "$VMC_DEV0" --peer "$VMC_DEV1" --peer "$VMC_DEV2" --json $R/interrupted.jsonl -q >/dev/null 2>&1 &
pid=$!
sleep 1.5
kill -INT $pid
wait $pid
expect "SIGINT mid-run exits 5" 5 $?
$T report $R/interrupted.jsonl >$R/interrupted.txt 2>&1
expect "report on the interrupted run's record exits 5 (the run did not finish)" 5 $?
grep -q "interrupted" $R/interrupted.txt ||
	{ echo "FAIL: report does not say the run was interrupted: $(head -5 $R/interrupted.txt)"; fails=$((fails + 1)); }
grep -q '"type":"end"' $R/interrupted.jsonl && grep -q '"interrupted":"interrupted by SIGINT"' $R/interrupted.jsonl ||
	{ echo "FAIL: the interrupted record has no footer"; fails=$((fails + 1)); }
$T "$VMC_DEV0" fsm.get.in. --json $R/after-interrupt.jsonl -q >/dev/null 2>&1
expect "a new run after the interruption passes" 0 $?
grep -q '"initial_state":2' $R/after-interrupt.jsonl ||
	{ echo "FAIL: the device was not RUNNING after the interrupted run"; fails=$((fails + 1)); }

# 7b. The reader of stdout goes away mid-run (| head): exit 5, the record ends, the device is
# RUNNING afterwards.
( $T "$VMC_DEV0" fsm.arc. --json $R/epipe.jsonl; echo $? >$R/epipe.rc ) 2>$R/epipe.err | head -n 3 >/dev/null
expect "a closed stdout stops the run like an interruption" 5 "$(cat $R/epipe.rc)"
grep -q '"interrupted":"stopped: standard output was closed (broken pipe)"' $R/epipe.jsonl ||
	{ echo "FAIL: the record of the closed-stdout run has no footer: $(cat $R/epipe.err)"; fails=$((fails + 1)); }
$T "$VMC_DEV0" fsm.get.in.running --exact --json $R/after-epipe.jsonl -q >/dev/null 2>&1
expect "a new run after the closed stdout passes" 0 $?
grep -q '"initial_state":2' $R/after-epipe.jsonl ||
	{ echo "FAIL: the device was not RUNNING after the closed-stdout run"; fails=$((fails + 1)); }

# 7c. A deliberate wait longer than the watchdog is not a TIMEOUT (the engine sends heartbeats).
cat >/tmp/long-wait.yaml <<'EOF_YAML'
id: ci.watchdog.long_wait
title: a 2.5 s wait under a 1 s watchdog, then a GET
requires: {api: v2}
steps:
  - wait: {ms: 2500}
  - get_state:
    expect: {ok: true, state: RUNNING}
EOF_YAML
$T "$VMC_DEV0" --sequence /tmp/long-wait.yaml --timeout 1 --profile none >$R/long-wait.txt 2>&1
expect "a 2.5 s wait under --timeout 1 passes" 0 $?

# 8. No kernel warnings, oopses or BUGs.
if dmesg | grep -E 'WARNING:|BUG:|Oops|general protection' >$R/kernel-warnings.txt; then
	echo "FAIL: the kernel logged warnings:"; cat $R/kernel-warnings.txt
	fails=$((fails + 1))
else
	echo "PASS: no kernel warnings, oopses or BUGs"
fi

echo "vm checks: $fails failed"
[ "$fails" -eq 0 ]
