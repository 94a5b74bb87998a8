#!/usr/bin/env bash
# Coverage-guided live fuzzing of mtty on the 7.2 test kernel (KCOV, KASAN, lockdep), at most
# two minutes: boots the VM (vm/run.sh --kernel 7.2) and fuzzes mtty-2 (peers mtty-2, mtty-1)
# for VMC_FUZZ_DURATION (default 60s) with --coverage kcov, starting warm from the checked-in
# corpus fuzz/corpus/live-mtty/. Every finding must be a declared mtty deviation (no `[NEW]` from
# vfio-mig-conform fuzz); a kernel report (KASAN, lockdep, WARN, BUG, hung task) is a finding,
# so it fails the run. Then, on the host, the PCs are symbolized against the test kernel's
# vmlinux (vfio-mig-conform kcov-report) and the run must reach at least VMC_KCOV_MIN_BLOCKS
# (default 90, the goal of the issue) % of the KCOV blocks of mtty's migration functions.
#
#   .ci/vm-fuzz-kcov.sh [BIN]          # BIN: a release vfio-mig-conform (default: cargo build)
#
# Results land in target/ci/vm-fuzz-kcov/. Inside the VM this script runs itself with --guest.
set -euo pipefail

if [ "${1:-}" = --guest ]; then
	# ---- in the guest (busybox sh is enough for what follows, but bash runs it too) ----
	R=/results
	ops=set_state,get_state,get_flags,data_size,read,write,precopy_info,bad_buffer,poll,fd_flags,close_fd,reset
	ops=$ops,dma_log_start,dma_log_stop,dma_log_report,config_read,region_read,set_irqs,wait,debugfs_state
	# The error-path kinds: races with a reader and with resets, the PRECOPY_INFOv2 opt-in, and
	# fault injection of the kernel's allocations (GFP_KERNEL and order-0 included).
	ops=$ops,precopy_info_v2,race_set_read,race_reset,fail_nth
	sh /repo/vm/fail-nth-knobs.sh
	rm -rf $R/corpus && cp -r /repo/fuzz/corpus/live-mtty $R/corpus
	rc=0
	vfio-mig-conform fuzz "$VMC_DEV0" --peer "$VMC_DEV1" --peer "$VMC_DEV2" --duration "${VMC_FUZZ_DURATION:-60s}" \
		--seed "${VMC_FUZZ_SEED:-1}" --ops "$ops" --coverage kcov --kcov-filter $R/kcov-filter.txt \
		--corpus $R/corpus --json $R/fuzz-kcov.jsonl --out $R/findings >$R/fuzz-kcov.txt 2>$R/fuzz-kcov.err || rc=$?
	cat $R/fuzz-kcov.txt
	grep -E '\[NEW\]|coverage:|corpus:' $R/fuzz-kcov.err || true
	dmesg >$R/dmesg.txt
	exit $rc
fi

cd "$(dirname "$0")/.."
out=target/ci/vm-fuzz-kcov
rm -rf "$out" && mkdir -p "$out"
fails=0
pass() { echo "PASS: $1"; }
fail() { echo "FAIL: $1"; fails=$((fails + 1)); }

bin=${1:-}
if [ -z "$bin" ]; then
	cargo build --release -q -p vfio-mig-conform
	bin=target/release/vfio-mig-conform
fi
kdir=$(vm/testkernel.sh --quiet --print-dir)
# shellcheck disable=SC1091
. "$kdir/READY"
VMLINUX=$kdir/$VMLINUX KSRC=$kdir/$KSRC
[ -f "$VMLINUX" ] || { echo "FAIL: no vmlinux in $kdir"; exit 1; }

# The kernel functions that count: mtty.c and vfio_main.c, from the image's DWARF.
"$bin" kcov-report --vmlinux "$VMLINUX" --filter-out "$out/kcov-filter.txt" >/dev/null

rc=0
vm/run.sh --kernel 7.2 --bin "$bin" --mdev mtty-2 --mdev mtty-2 --mdev mtty-1 --timeout 600 \
	--env "VMC_FUZZ_DURATION=${VMC_FUZZ_DURATION:-60s}" --env "VMC_FUZZ_SEED=${VMC_FUZZ_SEED:-1}" \
	--results "$out" -- sh /repo/.ci/vm-fuzz-kcov.sh --guest | tee "$out/guest.log" || rc=$?
if [ "$rc" = 0 ]; then
	pass "guided fuzzing of mtty-2 on 7.2 with KCOV: every finding is a declared mtty deviation, no kernel report"
else
	fail "guided fuzzing of mtty-2 on 7.2 (exit $rc; $out/fuzz-kcov.err, $out/findings/)"
fi
# fuzz exits 1 only for a new finding that fails (a new SHOULD finding is NON-STRICT, exit 0):
# here every finding must be declared, whatever its level.
if grep -q '\[NEW\]' "$out/fuzz-kcov.err" 2>/dev/null; then
	fail "new (undeclared) findings: $(grep -c '\[NEW\]' "$out/fuzz-kcov.err") in $out/fuzz-kcov.err"
else
	pass "no finding that the mtty profile does not declare"
fi
nseeds=$(find fuzz/corpus/live-mtty -name '*.yaml' | wc -l)
if grep -q "corpus: $nseeds sequences from" "$out/fuzz-kcov.err" 2>/dev/null; then
	pass "the session started from the $nseeds checked-in corpus sequences"
else
	fail "the checked-in corpus ($nseeds sequences) was not loaded"
fi
if grep -q '"coverage":{"source":"kcov","guided":true' "$out/fuzz-kcov.jsonl" 2>/dev/null; then
	pass "the record holds the guided session's kernel coverage"
else
	fail "no kcov coverage in $out/fuzz-kcov.jsonl"
fi

# Symbolized on the host: the share of mtty's migration blocks reached.
"$bin" kcov-report "$out/fuzz-kcov.jsonl" --vmlinux "$VMLINUX" --ksrc "$KSRC" --write "$out/symbolized" \
	>"$out/kcov-report.txt" || fail "kcov-report failed"
sed -n '1,3p' "$out/kcov-report.txt"
share=$(sed -n 's/.*migration functions: \([0-9]*\) of \([0-9]*\) KCOV blocks.*/\1 \2/p' "$out/kcov-report.txt" | head -1)
min=${VMC_KCOV_MIN_BLOCKS:-90}
if [ -n "$share" ] && [ $((100 * ${share% *} / ${share#* })) -ge "$min" ]; then
	pass "mtty's migration functions: ${share% *} of ${share#* } KCOV blocks reached (at least $min %)"
else
	fail "mtty's migration functions: '${share:-no figure}' KCOV blocks reached (less than $min %)"
fi

echo "vm fuzz kcov checks: $fails failed"
[ "$fails" -eq 0 ]
