#!/usr/bin/env bash
# Guided vs blind live fuzzing of mtty on the 7.2 test kernel (issue 13; figures in
# docs/fuzzing.md): one VM (vm/run.sh --kernel 7.2), and in it, for each seed, a guided and a
# blind `fuzz --coverage kcov` session of the same DURATION from a cold start, the order
# alternated by seed. Then, on the host, `kcov-report` symbolizes every session against the
# test kernel's vmlinux: distinct mtty.c PCs at 60 s and at the end, and the share of the KCOV
# blocks of mtty's migration functions reached, with the unreached lines.
#
#   bench/fuzz-kcov.sh [DURATION [SEEDS [OPS [GUIDED_FLAGS]]]]
#       default: 300s 1,2, every non-disruptive v2 kind but close_device (an empty OPS too),
#       and no extra flags for the guided sessions (set G of docs/fuzzing.md: --fault-sweep);
#       ends with one line per session and guided against blind
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-300s}
SEEDS=${2:-1,2}
# shellcheck source=bench/kcov-setup.sh
. bench/kcov-setup.sh
OPS=${3:-$KCOV_BENCH_OPS}
GUIDED_FLAGS=${4:-}
out=target/bench/fuzz-kcov
kcov_setup "$out"
secs=${DURATION%s}
nseeds=$(echo "$SEEDS" | tr ',' '\n' | wc -l)
vm/run.sh --kernel 7.2 --bin "$bin" --mdev mtty-2 --mdev mtty-2 --mdev mtty-1 \
	--timeout $((300 + nseeds * 2 * (secs + 120))) --results "$out" \
	-- sh /repo/bench/vm/fuzz-kcov-guest.sh "$DURATION" "$SEEDS" "$OPS" "$GUIDED_FLAGS" | tee "$out/guest.log" ||
	echo "fuzz-kcov: the VM run failed (exit $?): reporting the sessions that wrote a record"
for f in "$out"/*.jsonl; do
	echo "== $(basename "$f" .jsonl)"
	"$bin" kcov-report "$f" --vmlinux "$VMLINUX" --ksrc "$KSRC" --at "60,$secs" | tee "$out/$(basename "$f" .jsonl).report"
done
# One line per session, then guided against blind over every (guided, blind) pair of sessions:
# how often a guided session had more blocks at 60 s (Mann-Whitney U, ties counted half).
python3 - "$out" <<'PY'
import glob, os, re, sys
rows = []
def order(f):
    mode, _, seed = os.path.basename(f)[:-7].partition("-")
    return (mode, int(seed) if seed.isdigit() else 0)
for f in sorted(glob.glob(os.path.join(sys.argv[1], "*.report")), key=order):
    mode, _, seed = os.path.basename(f)[:-7].partition("-")
    text = open(f).read()
    pcs = re.search(r"distinct PCs:.*?60 s: ([0-9]+) driver.*end: ([0-9]+) driver", text)
    blk = re.search(r"migration functions: ([0-9]+) of ([0-9]+) KCOV blocks.*?(?:the last after ([0-9.]+) s)?; by time:\s+60 s: ([0-9]+)", text)
    if not pcs or not blk:
        print(f"{mode} seed {seed}: no coverage summary in {f}")
        continue
    rows.append((mode, seed, int(blk.group(4)), int(blk.group(1)), blk.group(3), int(pcs.group(1)), int(pcs.group(2))))
    print(f"{mode:6} seed {seed:>3}: blocks {blk.group(4)} at 60 s, {blk.group(1)} of {blk.group(2)} at the end "
          f"(the last after {blk.group(3) or '?'} s); driver PCs {pcs.group(1)} at 60 s, {pcs.group(2)} at the end")
g = [r[2] for r in rows if r[0] == "guided"]
b = [r[2] for r in rows if r[0] == "blind"]
if g and b:
    u = sum((x > y) + 0.5 * (x == y) for x in g for y in b)
    print(f"blocks at 60 s: guided mean {sum(g) / len(g):.2f}, blind mean {sum(b) / len(b):.2f}; "
          f"guided ahead in U = {u:g} of {len(g) * len(b)} (guided, blind) pairs")
PY
