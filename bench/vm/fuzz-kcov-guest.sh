#!/bin/sh
# shellcheck shell=dash
# Guest half of bench/fuzz-kcov.sh (the vm/ guest on the 7.2 test kernel, mtty-2 with peers
# mtty-2 and mtty-1): for each seed, one guided and one blind `fuzz --coverage kcov` session of
# DURATION from a cold start (an empty corpus directory), the order alternated by seed. Each
# session writes its record to /results/<mode>-<seed>.jsonl and its minimized corpus to
# /results/corpus-<mode>-<seed>/. GUIDED_FLAGS (may be empty) go to the guided sessions only.
set -u
DURATION=$1
SEEDS=$2
OPS=$3
GUIDED_FLAGS=${4:-}
R=/results
# fail_nth: let injected faults reach GFP_KERNEL and order-0 allocations.
sh /repo/vm/fail-nth-knobs.sh
i=0
for seed in $(echo "$SEEDS" | tr ',' ' '); do
	if [ $((i % 2)) = 0 ]; then order="guided blind"; else order="blind guided"; fi
	i=$((i + 1))
	for mode in $order; do
		extra=$GUIDED_FLAGS
		[ "$mode" = blind ] && extra=--blind
		echo "seed $seed $mode: $DURATION"
		# An empty corpus directory: a cold start, and the session's minimized corpus saved.
		rm -rf "$R/corpus-$mode-$seed" && mkdir -p "$R/corpus-$mode-$seed"
		# shellcheck disable=SC2086
		vfio-mig-conform fuzz "$VMC_DEV0" --peer "$VMC_DEV1" --peer "$VMC_DEV2" --duration "$DURATION" \
			--seed "$seed" --ops "$OPS" --coverage kcov --kcov-filter $R/kcov-filter.txt $extra --corpus "$R/corpus-$mode-$seed" \
			--json "$R/$mode-$seed.jsonl" --out "$R/findings-$mode-$seed" >"$R/$mode-$seed.txt" 2>"$R/$mode-$seed.err"
		echo "seed $seed $mode: exit $? ($(grep -c '\[NEW\]' "$R/$mode-$seed.err") new findings)"
		grep -E 'coverage:|walks' "$R/$mode-$seed.err" | tail -2
	done
done
dmesg >$R/dmesg.txt
