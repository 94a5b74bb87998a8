#!/bin/sh
# shellcheck shell=dash
# Runs inside the test VM (vm/run.sh --qemu-in-guest, called by .ci/vm-qemu.sh): a real QEMU
# 10.0.2 migrating the guest's mtty devices.
#   1. every scenario of vm/qemu/scenario.sh recorded with `vfio-mig-conform record`;
#   2. the fresh recordings and the checked-in ones (fixtures/recorded/qemu-10.0/) replayed on
#      mtty-2 and on mtty-1 with their declared outcomes (exit 0: PASS or a declared XFAIL);
#   3. the recorder's fidelity test against QEMU's own trace events (runner/tests/record.rs);
#   4. the effect of each of mtty's declared deviations on a real migration, the device states
#      compared independently of QEMU (.ci/qemu/same-state.yaml);
#   5. no kernel warning.
# Devices (vm/run.sh --mdev order): DEV0-DEV3 mtty-2, DEV4-DEV7 mtty-1.
# Prints PASS:/FAIL: and EFFECT: lines; exits 1 if anything failed. Results in /results.
set -u
R=/results
T=vfio-mig-conform
S=/repo/vm/qemu/scenario.sh
mkdir -p $R/rec $R/replay $R/effect
fails=0
now() { cut -d' ' -f1 /proc/uptime; }
T0=$(now)
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
expect() { # NAME EXPECTED ACTUAL
	if [ "$3" = "$2" ]; then pass "$1"; else fail "$1 (exit $3, expected $2)"; fi
}
export SRC=$VMC_DEV0_UUID DST=$VMC_DEV1_UUID SRC2=$VMC_DEV2_UUID DST2=$VMC_DEV3_UUID XDST=$VMC_DEV4_UUID
ALL="$VMC_DEV0 $VMC_DEV1 $VMC_DEV2 $VMC_DEV3 $VMC_DEV4 $VMC_DEV5 $VMC_DEV6 $VMC_DEV7"
# restore: every device back to RUNNING through VFIO_DEVICE_RESET (a failed QEMU destination
# leaves mtty in RESUMING, and QEMU cannot reset mtty: it advertises no VFIO_DEVICE_FLAGS_RESET).
# One run per device: a check restores only the devices it uses, not every --peer.
restore() {
	for d in $ALL; do
		$T "$d" --exact fsm.get.in.running --profile none -q >/dev/null 2>&1 || fail "restoring $d"
	done
}

# same NAME DEV_A DEV_B: compares two device states independently of QEMU (exit 0 equal).
same() { # NAME DEV_A DEV_B: compares the two device states (exit 0 equal, 1 different)
	$T "$2" --peer "$3" --sequence /repo/.ci/qemu/same-state.yaml --profile none --trace \
		>$R/effect/$1.same.txt 2>&1
}

# ---- 1. recordings
SCENARIOS=${VMC_QEMU_SCENARIOS:-live_precopy stopcopy_paused file_save_load cancel_precopy dest_fails_foreign dest_fails_truncated reset_precopy p2p_two_devices multifd}
for s in $SCENARIOS; do
	t=$(now)
	# With QEMU's own trace events on, for the fidelity test (step 3).
	QEMU_TRACE=1 QDIR=/tmp/q-$s timeout 180 $T record -o $R/rec/$s.yaml --events $R/rec/$s.jsonl \
		--id "rec.qemu_10_0.$s" --scenario "vm/qemu/scenario.sh $s" -- sh $S "$s" >$R/rec/$s.log 2>&1
	expect "record $s ($(awk -v a="$t" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }') s): $(grep -a '^vfio-mig-conform record' $R/rec/$s.log | sed 's/.*record: \([0-9]* steps\).*/\1/')" 0 $?
	# The tracer stops only on VFIO ioctls and on I/O on device and data fds (the per-fd
	# seccomp filters): a few hundred stops per scenario, where stopping on every read/write
	# (QEMU's eventfds and monitor, the scenario's helpers) made about 3 800.
	st=$(grep -a '^vfio-mig-conform record' $R/rec/$s.log | sed -n 's/.*; \([0-9]*\) tracer stops.*/\1/p')
	expect "record $s: ${st:-?} tracer stops (at most 1000: only VFIO ioctls and device/data-fd I/O)" 0 "$([ -n "$st" ] && [ "$st" -le 1000 ]; echo $?)"
	# The source's events first: in file_save_load both QEMUs use one device, one after the
	# other (the trace lines carry no time stamp).
	cat /tmp/q-$s/src.trace /tmp/q-$s/dst.trace >$R/rec/$s.trace 2>/dev/null
	# What the QEMUs and their monitors said, for a scenario that went wrong.
	mkdir -p $R/rec/$s.qemu && cp /tmp/q-$s/*.out /tmp/q-$s/hmp.log $R/rec/$s.qemu/ 2>/dev/null
	# V2-PRECOPY-007 (read() returns 0 at the temporary end of PRE_COPY): its effect on a live
	# pre-copy migration, read from the devices QEMU just left (step 4).
	[ "$s" = live_precopy ] && { same precopy007 "$SRC" "$DST"; echo $? >$R/effect/precopy007.rc; }
	restore
done

# ---- 2. replays: mtty-2 (DEV0, peers DEV1-3) and mtty-1 (DEV4, peers DEV5-7)
replay() { # FILE TAG
	n=$(sed -n 's/^requires:.*devices: \[\([A-Z, ]*\)\].*/\1/p' "$1" | tr -cd 'A-Z' | wc -c)
	[ "$n" -ge 1 ] || n=1
	for set in "mtty2 $VMC_DEV0 $VMC_DEV1 $VMC_DEV2 $VMC_DEV3" "mtty1 $VMC_DEV4 $VMC_DEV5 $VMC_DEV6 $VMC_DEV7"; do
		# shellcheck disable=SC2086 # the words of $set
		set -- "$1" "$2" $set
		f=$1 tag=$2 kind=$3 dev=$4
		peers=""
		[ "$n" -ge 2 ] && peers="--peer $5"
		[ "$n" -ge 3 ] && peers="$peers --peer $6"
		[ "$n" -ge 4 ] && peers="$peers --peer $7"
		base=$(basename "$f" .yaml)
		# shellcheck disable=SC2086 # peers is a list of options
		$T "$dev" $peers --profile /repo/.ci/qemu/mtty-recorded.yaml --sequence "$f" --json $R/replay/$tag-$base-$kind.jsonl --format terse \
			>$R/replay/$tag-$base-$kind.txt 2>&1
		rc=$?
		expect "replay $tag $base on $kind: $(tail -n 1 $R/replay/$tag-$base-$kind.txt | sed 's/.*: \(pass:.*\)/\1/')" 0 $rc
	done
}
for f in $R/rec/*.yaml; do [ -f "$f" ] && replay "$f" fresh; done
for f in /repo/fixtures/recorded/qemu-10.0/*.yaml; do [ -f "$f" ] && replay "$f" checked-in; done
restore

# ---- 3. fidelity against QEMU's trace (runner/tests/record.rs, on the recordings of step 1)
t=$(now)
VMC_FIDELITY_DIR=$R/rec VMC_FIDELITY_SCENARIOS="$SCENARIOS" record-qemu-test --ignored --exact --nocapture \
	a_recording_of_qemu_holds_every_state_change_qemu_traces_in_order_with_its_byte_counts >$R/fidelity.txt 2>&1
expect "fidelity: the recordings hold every state change and byte count QEMU traced ($(awk -v a="$t" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }') s)" 0 $?
grep -a '^fidelity:' $R/fidelity.txt

# ---- 4. effects of mtty's deviations on a real QEMU 10.0.2 migration
effect() { # CLAUSES DESCRIPTION
	echo "EFFECT: $1: $2" | tee -a $R/effects.txt
}
E=$R/effect
# V2-PRECOPY-007 (read() returns 0 at the temporary end of PRE_COPY): compared in step 1.
expect "effect V2-PRECOPY-007: live pre-copy migration completes with equal device state" 0 "$(cat $R/effect/precopy007.rc 2>/dev/null)"
effect "V2-PRECOPY-007" "completes, destination state equals the source's (QEMU treats read() == 0 in PRE_COPY like ENOMSG: no more data for now)"
# V2-ARC-RES-001/V2-RESUME-002 (no integrity check): one bit of port 0's SCR flipped in the file.
sh $S save_stopped "$SRC" /tmp/e0.bin uart >$E/save.log 2>&1 || fail "saving the VM for the effects"
cp /tmp/e0.bin /tmp/e1.bin && cp /tmp/e0.bin /tmp/e3.bin && cp /tmp/e0.bin /tmp/e4.bin
sh $S flip /tmp/e1.bin 31 >$E/flip.log 2>&1 &&
	sh $S load_file "$DST" /tmp/e1.bin >>$E/flip.log 2>&1
grep -q "completed: the VM runs" $E/flip.log && ! same flip "$SRC" "$DST"
expect "effect V2-ARC-RES-001 (flipped bit in the device data): QEMU completes, the state differs" 0 $?
effect "V2-ARC-RES-001, V2-RESUME-002 (stream.negative.flip_*)" "$(grep -a 'scenario: load' $E/flip.log | sed 's/scenario: //'); device state $(same flip "$SRC" "$DST" && echo equal || echo DIFFERENT) (SCR $(grep -a 'step 4 region_read' $E/flip.same.txt | sed 's/.*value //') on the source, $(grep -a 'step 8 region_read' $E/flip.same.txt | sed 's/.*value //') on the destination): completes with wrong device state"
restore
# V2-ARC-RES-001 spliced (mtty-2): port 0 from one saved VM, port 1 from another whose UARTs
# hold other values (mtty keeps its registers across QEMU runs: without them, SRC2's port 0
# could equal SRC's and the splice would be indistinguishable from SRC2's own state).
sh $S save_stopped "$SRC2" /tmp/e2b.bin uart-alt >$E/splice.log 2>&1 &&
	sh $S splice /tmp/e0.bin /tmp/e2b.bin /tmp/e2.bin >>$E/splice.log 2>&1 &&
	sh $S load_file "$DST" /tmp/e2.bin >>$E/splice.log 2>&1
grep -q "completed: the VM runs" $E/splice.log && ! same splice-a "$SRC" "$DST" && ! same splice-b "$SRC2" "$DST"
expect "effect V2-ARC-RES-001 (spliced streams): QEMU completes, the state is neither source's" 0 $?
effect "V2-ARC-RES-001, V2-RESUME-002 (stream.negative.spliced)" "$(grep -a 'scenario: load' $E/splice.log | sed 's/scenario: //'); the destination's state differs from both saved VMs: completes with wrong device state (a mix)"
restore
# DEBATE-POSTCOPY-001 / flip_first_byte (header refused with EFAULT): the magic's first byte flipped.
sh $S flip /tmp/e3.bin 0 >$E/header.log 2>&1 &&
	sh $S load_file "$DST" /tmp/e3.bin >>$E/header.log 2>&1
grep -q "load of /tmp/e3.bin failed" $E/header.log
expect "effect DEBATE-POSTCOPY-001 (stream header refused): QEMU's load fails" 0 $?
effect "V2-ARC-RES-001, DEBATE-POSTCOPY-001 (flip_first_byte, debate.postcopy.*)" "$(grep -a 'scenario: load' $E/header.log | sed 's/scenario: //'): fails cleanly (QEMU stops at the failed write and never leaves RESUMING, so the size-only load check is not reached)"
# V2-OPEN-001 (state kept across close): the destination that failed just now left the device
# in RESUMING; QEMU cannot reset mtty. A second destination loads a good file into it.
# (No vfio-mig-conform run in between: it would reset the device.) The load is recorded: its
# SET RESUMING shows what the device answered.
QDIR=/tmp/q-open timeout 120 $T record -o $E/reopen.yaml --events $E/reopen.jsonl \
	-- sh $S load_file "$DST" /tmp/e4.bin >$E/open.log 2>&1
rc=$?
st=$(grep -a 'scenario: load' $E/open.log | sed 's/scenario: //')
set_line=$(grep '"feature":"set_state","state":4' $E/reopen.jsonl | head -n 1)
resuming="data fd $(echo "$set_line" | sed 's/.*"data_fd":\(-*[0-9]*\).*/\1/'), $(echo "$set_line" | sed 's/.*"ret":{"\([a-z]*\)":\(-*[0-9]*\)}.*/\1 \2/')"
writes=$(grep -c '"kind":"write"' $E/reopen.jsonl)
grep -q "completed: the VM runs" $E/open.log && same open "$SRC" "$DST" && st="$st; device state equal"
effect "V2-OPEN-001 (fsm.reopen.*)" "a destination whose load failed leaves mtty in RESUMING when QEMU closes it (QEMU cannot reset mtty); the next QEMU destination on that device: SET RESUMING -> $resuming; $writes write(s) on a data fd; $st"
echo "effect V2-OPEN-001: scenario exit $rc"
restore
# V2-LOG-004 / V2-LOG-005 (DMA-logging stubs): a migration with QEMU's default device dirty tracking.
QDIR=/tmp/q-dirty timeout 120 $T record -o $E/dirty_tracking.yaml --events $E/dirty_tracking.jsonl \
	-- sh $S dirty_tracking >$E/dirty.log 2>&1
expect "effect V2-LOG-004/005: the dirty-tracking migration ran and was recorded" 0 $?
starts=$(grep -c '"feature":"dma_log_start"' $E/dirty_tracking.jsonl)
stops=$(grep -c '"feature":"dma_log_stop"' $E/dirty_tracking.jsonl)
pages=$(grep '"feature":"dma_log_start"' $E/dirty_tracking.jsonl | sed 's/.*"page_size":\([0-9]*\).*/\1/' | sort -u | tr '\n' ' ')
effect "V2-LOG-004, V2-LOG-005 (dmalog.start.*)" "$(grep -a 'scenario: migration' $E/dirty.log | sed 's/scenario: //'); QEMU sent $starts DMA_LOGGING_START (page size $pages) and $stops DMA_LOGGING_STOP: it never starts twice and never asks for page size 0, so neither stub behaviour is reached (not reachable by QEMU 10.0.2)"
restore

# ---- 5. the kernel
if dmesg | grep -E 'WARNING:|BUG:|Oops|general protection' >$R/kernel-warnings.txt; then
	fail "the kernel logged warnings:"
	cat $R/kernel-warnings.txt
else
	pass "no kernel warnings, oopses or BUGs"
fi

echo "vm-qemu checks: $fails failed in $(awk -v a="$T0" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }') s (guest uptime)"
[ "$fails" -eq 0 ]
