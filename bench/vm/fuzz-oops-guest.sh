#!/bin/sh
# shellcheck shell=dash
# Guest half of bench/fuzz-oops.sh (the vm/ guest on the 7.2 test kernel, mtty-2 with peers
# mtty-2 and mtty-1): one `fuzz --coverage kcov` session, MODE (guided or blind) and SEED,
# with `close_device` among the kinds and --stop-on-finding, from a cold start. mtty's
# close-in-RESUMING NULL dereference leaves the device hung (its next reset never returns) and
# the fuzzer's process in an uninterruptible wait, so this script does not wait for it: it
# returns once stderr holds the first new finding (or the session ended), and the VM powers off.
set -u
MODE=$1
SEED=$2
OPS=$3
R=/results
extra=""
[ "$MODE" = blind ] && extra=--blind
mkdir -p $R/corpus
# shellcheck disable=SC2086
vfio-mig-conform fuzz "$VMC_DEV0" --peer "$VMC_DEV1" --peer "$VMC_DEV2" --duration 300s --seed "$SEED" \
	--ops "$OPS" --allow-disruptive --stop-on-finding --coverage kcov --kcov-filter $R/kcov-filter.txt $extra \
	--corpus $R/corpus --json $R/fuzz.jsonl --out $R/findings >$R/fuzz.txt 2>$R/fuzz.err &
pid=$!
while kill -0 $pid 2>/dev/null; do
	grep -q '\[NEW\]' $R/fuzz.err 2>/dev/null && break
	sleep 1
done
sleep 3
dmesg >$R/dmesg.txt
grep -m1 '\[NEW\]' $R/fuzz.err || echo "no new finding (session ended)"
