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
OPS=${3:-set_state,get_state,get_flags,data_size,read,write,precopy_info,precopy_info_v2,bad_buffer,race_set_read,race_reset,fail_nth,poll,fd_flags,close_fd,reset,dma_log_start,dma_log_stop,dma_log_report,config_read,region_read,set_irqs,wait,debugfs_state}
cargo build --release -q -p vfio-mig-conform
bin=target/release/vfio-mig-conform
out=target/bench/fuzz-kcov
rm -rf "$out" && mkdir -p "$out"
kdir=$(vm/testkernel.sh --quiet --print-dir)
# shellcheck disable=SC1091
. "$kdir/READY"
VMLINUX=$kdir/$VMLINUX KSRC=$kdir/$KSRC
"$bin" kcov-report --vmlinux "$VMLINUX" --filter-out "$out/kcov-filter.txt" >/dev/null
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
