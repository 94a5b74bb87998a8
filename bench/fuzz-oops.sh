#!/usr/bin/env bash
# Time to mtty's close-in-RESUMING NULL dereference, guided vs blind (issue 13; figures in
# docs/fuzzing.md): for each seed, a guided and a blind `fuzz --coverage kcov` session with
# `close_device` among the kinds and --stop-on-finding, each in a fresh VM on the 7.2 test
# kernel (the oops leaves the device hung), the order alternated by seed. Prints, per session,
# the first new finding and the time the fuzzer gives for it.
#
#   bench/fuzz-oops.sh [SEEDS [OPS]]   (default: 1,2,3 and the kinds of bench/fuzz-kcov.sh
#                                        plus close_device)
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${1:-1,2,3}
# shellcheck source=bench/kcov-setup.sh
. bench/kcov-setup.sh
OPS=${2:-$KCOV_BENCH_OPS,close_device}
out=target/bench/fuzz-oops
kcov_setup "$out"
i=0
for seed in ${SEEDS//,/ }; do
	if [ $((i % 2)) = 0 ]; then order="guided blind"; else order="blind guided"; fi
	i=$((i + 1))
	for mode in $order; do
		r=$out/$mode-$seed
		mkdir -p "$r" && cp "$out/kcov-filter.txt" "$r/"
		vm/run.sh --kernel 7.2 --bin "$bin" --mdev mtty-2 --mdev mtty-2 --mdev mtty-1 --timeout 600 \
			--results "$r" -- sh /repo/bench/vm/fuzz-oops-guest.sh "$mode" "$seed" "$OPS" >"$r/guest.log" 2>&1 ||
			echo "fuzz-oops: $mode seed $seed: the VM run failed (exit $?)"
		first=$(grep -m1 '\[NEW\]' "$r/fuzz.err" 2>/dev/null || echo "no new finding")
		echo "$mode seed $seed: $first"
		grep -m1 -E 'KASAN: null-ptr-deref|BUG: kernel NULL pointer|general protection fault' "$r/dmesg.txt" 2>/dev/null |
			sed 's/^/    dmesg: /' || true
	done
done
