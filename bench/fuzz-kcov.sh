#!/usr/bin/env bash
# Guided vs blind live fuzzing of mtty on the 7.2 test kernel (issue 13; figures in
# docs/fuzzing.md): one VM (vm/run.sh --kernel 7.2), and in it, for each seed, a guided and a
# blind `fuzz --coverage kcov` session of the same DURATION from a cold start, the order
# alternated by seed. Then, on the host, `kcov-report` symbolizes every session against the
# test kernel's vmlinux: distinct mtty.c PCs at 60 s and at the end, and the share of the KCOV
# blocks of mtty's migration functions reached, with the unreached lines.
#
#   bench/fuzz-kcov.sh [DURATION [SEEDS [OPS]]]   (default: 300s 1,2 and every non-disruptive
#                                                  v2 kind but close_device)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-300s}
SEEDS=${2:-1,2}
# shellcheck source=bench/kcov-setup.sh
. bench/kcov-setup.sh
OPS=${3:-$KCOV_BENCH_OPS}
out=target/bench/fuzz-kcov
kcov_setup "$out"
secs=${DURATION%s}
nseeds=$(echo "$SEEDS" | tr ',' '\n' | wc -l)
vm/run.sh --kernel 7.2 --bin "$bin" --mdev mtty-2 --mdev mtty-2 --mdev mtty-1 \
	--timeout $((300 + nseeds * 2 * (secs + 120))) --results "$out" \
	-- sh /repo/bench/vm/fuzz-kcov-guest.sh "$DURATION" "$SEEDS" "$OPS" | tee "$out/guest.log" ||
	echo "fuzz-kcov: the VM run failed (exit $?): reporting the sessions that wrote a record"
for f in "$out"/*.jsonl; do
	echo "== $(basename "$f" .jsonl)"
	"$bin" kcov-report "$f" --vmlinux "$VMLINUX" --ksrc "$KSRC" --at "60,$secs" | tee "$out/$(basename "$f" .jsonl).report"
done
