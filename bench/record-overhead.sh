#!/usr/bin/env bash
# The recorder's overhead (issue 11; figures in docs/performance.md): QEMU 10.0.2 inside the
# vm/ guest migrates a running VM with an mtty-2 device live (vm/qemu/scenario.sh
# live_precopy: pre-copy, then stop-copy), ROUNDS times plain, ROUNDS times under
# `vfio-mig-conform record` and ROUNDS times under `record --stop-on-all-io` (the recorder
# stopping on every read/write, as before its per-fd filters), alternately (the order rotated
# every round). Prints QEMU's own total migration time and downtime (`info migrate`) and the
# scenario's wall time (two QEMUs started, the UART programmed, migrated, both quit), with
# medians and the ratios of the medians to plain.
#
#   bench/record-overhead.sh [ROUNDS]      (default 5; 15-120 s per round under TCG, by host load)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
cargo build --release -q -p vfio-mig-conform
out=target/bench/record-overhead
rm -rf "$out" && mkdir -p "$out"
vm/run.sh --timeout $((120 + ROUNDS * 180)) --mem 1024 --qemu-in-guest --bin target/release/vfio-mig-conform \
	--mdev mtty-2 --mdev mtty-2 --results "$out" -- sh /repo/bench/vm/record-overhead-guest.sh "$ROUNDS"
