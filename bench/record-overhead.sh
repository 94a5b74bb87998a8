#!/usr/bin/env bash
# The recorder's overhead (issue 11; figures in docs/performance.md): QEMU 10.0.2 inside the
# vm/ guest migrates a running VM with an mtty-2 device live (vm/qemu/scenario.sh
# live_precopy: pre-copy, then stop-copy), ROUNDS times plain and ROUNDS times under
# `vfio-mig-conform record`, alternately (plain first in odd rounds, recorded first in even
# ones). Prints QEMU's own total migration time and downtime (`info migrate`) and the
# scenario's wall time (two QEMUs started, the UART programmed, migrated, both quit), with
# medians and the recorded/plain ratio of the medians.
#
#   bench/record-overhead.sh [ROUNDS]      (default 5; about 40 s per round under TCG)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
cargo build --release -q -p vfio-mig-conform
out=target/bench/record-overhead
rm -rf "$out" && mkdir -p "$out"
vm/run.sh --timeout $((120 + ROUNDS * 90)) --mem 1024 --qemu-in-guest --bin target/release/vfio-mig-conform \
	--mdev mtty-2 --mdev mtty-2 --results "$out" -- sh /repo/bench/vm/record-overhead-guest.sh "$ROUNDS"
