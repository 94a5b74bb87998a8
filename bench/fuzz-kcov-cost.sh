#!/usr/bin/env bash
# What KCOV costs the live fuzzer (issue 13; figure in docs/fuzzing.md): in one VM on the 7.2
# test kernel (mtty-2 with peers mtty-2 and mtty-1), ROUNDS pairs of `fuzz --blind --coverage
# kcov` and `fuzz` (no coverage) sessions of DURATION each, the two of a pair with the same
# seed (the round's number: blind walks do not depend on coverage, so both draw the same
# walks) and the order alternated by round. Prints each session's operations per second and
# the medians per mode. Run it on an otherwise idle host: under TCG, host load moves ops/s.
#
#   bench/fuzz-kcov-cost.sh [DURATION [ROUNDS [OPS]]]   (default: 60s 4 and the kinds of
#                                                         bench/fuzz-kcov.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-60s}
ROUNDS=${2:-4}
# shellcheck source=bench/kcov-setup.sh
. bench/kcov-setup.sh
OPS=${3:-$KCOV_BENCH_OPS}
out=target/bench/fuzz-kcov-cost
kcov_setup "$out"
secs=${DURATION%s}
vm/run.sh --kernel 7.2 --bin "$bin" --mdev mtty-2 --mdev mtty-2 --mdev mtty-1 \
	--timeout $((300 + ROUNDS * 2 * (secs + 60))) --results "$out" \
	-- sh /repo/bench/vm/fuzz-kcov-cost-guest.sh "$DURATION" "$ROUNDS" "$OPS" | tee "$out/guest.log" ||
	echo "fuzz-kcov-cost: the VM run failed (exit $?): reporting the sessions that wrote a summary"
python3 - "$out" <<'PY'
import glob, os, re, statistics, sys
rates = {"kcov": [], "none": []}
for f in sorted(glob.glob(os.path.join(sys.argv[1], "*-r*.txt"))):
    mode = os.path.basename(f).split("-r")[0]
    m = re.search(r"([0-9.]+) s, ([0-9]+) walks?, ([0-9]+) operations? \(([0-9]+) ops/s\)", open(f).read())
    if not m:
        print(f"{os.path.basename(f)}: no summary line")
        continue
    secs, walks, ops, _ = m.groups()
    rate = int(ops) / float(secs)
    rates[mode].append(rate)
    print(f"{os.path.basename(f)[:-4]}: {walks} walks, {ops} operations in {secs} s: {rate:.1f} ops/s")
for mode, r in rates.items():
    if r:
        print(f"coverage {mode}: median {statistics.median(r):.1f} ops/s over {len(r)} sessions "
              f"(min {min(r):.1f}, max {max(r):.1f})")
if rates["kcov"] and rates["none"]:
    k, n = statistics.median(rates["kcov"]), statistics.median(rates["none"])
    print(f"KCOV mode / no coverage: {k / n:.2f} (medians)")
PY
