#!/bin/sh
# shellcheck shell=dash
# Guest half of bench/fuzz-kcov-cost.sh (the vm/ guest on the 7.2 test kernel): ROUNDS pairs of
# a blind `fuzz --coverage kcov` and a `fuzz` without coverage, DURATION each, the seed of a
# pair its round number, the order alternated by round. Each session's summary goes to
# /results/<kcov|none>-r<round>.txt.
set -u
DURATION=$1
ROUNDS=$2
OPS=$3
R=/results
# The same fault-injection knobs as bench/fuzz-kcov.sh (fail_nth is among the kinds).
sh /repo/vm/fail-nth-knobs.sh
round=1
while [ "$round" -le "$ROUNDS" ]; do
	if [ $((round % 2)) = 1 ]; then order="kcov none"; else order="none kcov"; fi
	for mode in $order; do
		cov=""
		[ "$mode" = kcov ] && cov="--coverage kcov --kcov-filter $R/kcov-filter.txt --blind"
		# shellcheck disable=SC2086
		vfio-mig-conform fuzz "$VMC_DEV0" --peer "$VMC_DEV1" --peer "$VMC_DEV2" --duration "$DURATION" \
			--seed "$round" --ops "$OPS" $cov --out "$R/findings-$mode-r$round" \
			>"$R/$mode-r$round.txt" 2>"$R/$mode-r$round.err"
		echo "round $round $mode: exit $?: $(head -n 1 "$R/$mode-r$round.txt")"
	done
	round=$((round + 1))
done
