#!/usr/bin/env bash
# Kernels as a dimension: the full suite on mtty (mtty profile) under Debian's 6.12 (group path)
# and under the 7.2 test kernel (KASAN, lockdep, IOMMUFD, VFIO debugfs: group and cdev paths),
# then mtty's close-in-RESUMING NULL dereference on 7.2 under kernel-log capture, and one HTML
# report whose runs x clauses matrix shows the three runs side by side.
#   .ci/vm-kernels.sh [OUT]        (default target/ci/kernels; needs the release binary or cargo)
# Exits 1 if any guest check failed. Prints TIME: lines (guest seconds per suite run) and the
# wall-clock time of each stage.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=${1:-$root/target/ci/kernels}
rm -rf "$out" && mkdir -p "$out"
start=$SECONDS
stage() { printf '\n=== [%ss] %s\n' "$((SECONDS - start))" "$*"; }
bin=$root/target/release/vfio-mig-conform
[ -x "$bin" ] || cargo build --release -q -p vfio-mig-conform
mdevs=(--mdev mtty-2 --mdev mtty-2 --mdev mtty-1 --mdev mtty-1)
fails=0

stage "Debian 6.12 + mtty: the full suite through the group"
t=$SECONDS
vm/run.sh -v --kernel 6.12 --bin "$bin" "${mdevs[@]}" --results "$out/6.12" --timeout 1800 \
	-- sh /repo/.ci/vm-kernels-guest.sh 6.12 group 2>&1 | tee "$out/vm-6.12.log" || fails=$((fails + 1))
echo "WALL: 6.12 VM $((SECONDS - t)) s"

stage "the 7.2 test kernel (vm/testkernel.sh: a cache hit unless its source, config or recipe changed)"
t=$SECONDS
vm/testkernel.sh
echo "WALL: testkernel.sh $((SECONDS - t)) s"

stage "7.2 test kernel + mtty: group and cdev (IOMMUFD) paths, then the NULL dereference under kernel-log capture"
t=$SECONDS
vm/run.sh -v --kernel 7.2 --mem 1024 --bin "$bin" "${mdevs[@]}" --results "$out/7.2" --timeout 2400 \
	-- sh /repo/.ci/vm-kernels-guest.sh 7.2 group cdev oops 2>&1 | tee "$out/vm-7.2.log" || fails=$((fails + 1))
echo "WALL: 7.2 VM $((SECONDS - t)) s"

stage "HTML report: the runs x clauses matrix of 6.12 (group) against 7.2 (group, cdev)"
records=("$out/6.12/mtty2-6.12-group.jsonl" "$out/7.2/mtty2-7.2-group.jsonl" "$out/7.2/mtty2-7.2-cdev.jsonl")
for r in "${records[@]}"; do [ -s "$r" ] || { echo "missing record $r"; exit 1; }; done
"$bin" report "${records[@]}" --html "$out/html"
"$bin" report "${records[0]}" "${records[1]}" --diff >"$out/diff-6.12-7.2.txt" || true
tail -n 5 "$out/diff-6.12-7.2.txt"
grep -h '^TIME:\|^DMA REPORT\|^run.sh:' "$out"/vm-*.log || true

stage "done in $((SECONDS - start)) s ($fails VM stage(s) failed); report in $out/html/index.html"
[ "$fails" -eq 0 ]
