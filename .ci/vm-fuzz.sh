#!/bin/sh
# Runs inside the test VM (vm/run.sh, busybox sh): the live fuzzer against the real mtty driver.
# Devices (vm/run.sh --mdev order): DEV0, DEV1 mtty-2; DEV2 mtty-1.
#   vm/run.sh --bin target/release/vfio-mig-conform --mdev mtty-2 --mdev mtty-2 --mdev mtty-1 \
#       --results target/ci/vm-fuzz -- sh /repo/.ci/vm-fuzz.sh
# Every finding must be a declared deviation of profiles/mtty.yaml (the profile is matched to
# the device automatically): vfio-mig-conform fuzz exits 0 then, 1 on a new finding.
# Prints PASS:/FAIL: lines and exits 1 if anything failed. Results land in /results.
set -u
R=/results
T=vfio-mig-conform
fails=0
secs=${VMC_FUZZ_DURATION:-60s}
seed=${VMC_FUZZ_SEED:-1}

expect() { # NAME EXPECTED ACTUAL
	if [ "$3" = "$2" ]; then
		echo "PASS: $1"
	else
		echo "FAIL: $1 (exit $3, expected $2)"
		fails=$((fails + 1))
	fi
}

# Every operation kind but close_device: closing mtty in RESUMING and leaving RESUMING after
# the reopen oopses the kernel (NULL resuming_migf in mtty_load_state; profiles/mtty.yaml).
ops=set_state,get_state,get_flags,data_size,read,write,precopy_info,poll,fd_flags,close_fd,reset
ops=$ops,dma_log_start,dma_log_stop,dma_log_report,config_read,region_read,set_irqs,wait,debugfs_state

# 1. Live fuzzing of mtty-2 with mtty-2 and mtty-1 peers (captured streams are also restored
#    into them): every finding must be a declared mtty deviation.
$T fuzz "$VMC_DEV0" --peer "$VMC_DEV1" --peer "$VMC_DEV2" --duration "$secs" --seed "$seed" --ops "$ops" \
	--json $R/fuzz-mtty2.jsonl --out $R/fuzz-findings >$R/fuzz-mtty2.txt 2>$R/fuzz-mtty2.err
rc=$?
cat $R/fuzz-mtty2.txt
grep '\[NEW\]' $R/fuzz-mtty2.err
expect "live fuzzing of mtty-2 for $secs (seed $seed): every finding is a declared mtty deviation" 0 $rc
grep -q '"type":"fuzz"' $R/fuzz-mtty2.jsonl && grep -q '"type":"end"' $R/fuzz-mtty2.jsonl ||
	{ echo "FAIL: the fuzz record has no summary or footer"; fails=$((fails + 1)); }

# 2. The device is back in RUNNING afterwards.
$T "$VMC_DEV0" fsm.get.in. --json $R/fuzz-after.jsonl -q >/dev/null 2>&1
expect "a run after fuzzing passes" 0 $?
grep -q '"initial_state":2' $R/fuzz-after.jsonl ||
	{ echo "FAIL: the device was not RUNNING after fuzzing"; fails=$((fails + 1)); }

# 3. No kernel warnings, oopses or BUGs.
if dmesg | grep -E 'WARNING:|BUG:|Oops|general protection' >$R/fuzz-kernel-warnings.txt; then
	echo "FAIL: the kernel logged warnings:"; cat $R/fuzz-kernel-warnings.txt
	fails=$((fails + 1))
else
	echo "PASS: no kernel warnings, oopses or BUGs"
fi

echo "vm fuzz checks: $fails failed"
[ "$fails" -eq 0 ]
