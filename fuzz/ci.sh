#!/usr/bin/env bash
# CI for the cargo-fuzz targets (fuzz/): replay every checked-in corpus input once, then fuzz
# each target for VMC_FUZZ_SECONDS (default 60) seconds, VMC_FUZZ_JOBS (default 2) at a time.
# New inputs go to a scratch corpus (target/ci-fuzz/corpus/<target>); the checked-in corpus is
# only read. A crash fails the script; its input lands in fuzz/artifacts/<target>/ and the
# panic message carries a YAML reproducer (also: vfio-mig-conform fuzz-to-yaml FILE).
#
#   fuzz/ci.sh                      # about 4-5 minutes on 2 cores
#   VMC_FUZZ_SECONDS=10 fuzz/ci.sh  # quick
set -euo pipefail
cd "$(dirname "$0")"
secs=${VMC_FUZZ_SECONDS:-60}
jobs=${VMC_FUZZ_JOBS:-2}
toolchain=${VMC_FUZZ_TOOLCHAIN:-+nightly}
out=$(cd .. && pwd)/target/ci-fuzz
start=$SECONDS
step() { printf '\n=== [fuzz %ss] %s\n' "$((SECONDS - start))" "$*"; }
# The panic (finding and YAML reproducer) and the crash input of a failed libFuzzer log.
report() {
	grep -m1 -A60 -E 'panicked|ERROR: libFuzzer' "$1" | grep -v '^ *[0-9]*: \|^ *at ' | head -n 60 || tail -n 40 "$1"
	grep -A2 -m1 'Failing input' "$1" || true
}

if ! cargo fuzz --version >/dev/null 2>&1; then
	step "installing cargo-fuzz"
	cargo install cargo-fuzz --locked
fi
# No sanitizer (the harness is safe Rust; this keeps builds and runs fast, and works on
# stable too), with debug assertions so arithmetic overflow is a crash.
flags=(--sanitizer none --debug-assertions)
step "build ($toolchain)"
cargo $toolchain fuzz build "${flags[@]}"
targets=$(cargo $toolchain fuzz list)
rm -rf "$out" && mkdir -p "$out/corpus"

step "replay the checked-in corpora (-runs=0)"
for t in $targets; do
	if ! cargo $toolchain fuzz run "${flags[@]}" "$t" "corpus/$t" -- -runs=0 >"$out/$t.replay.log" 2>&1; then
		report "$out/$t.replay.log"
		echo "fuzz: the corpus of $t does not replay cleanly (log: $out/$t.replay.log)"
		exit 1
	fi
	echo "$t: $(ls "corpus/$t" | wc -l) inputs replayed"
done

step "fuzz each target for ${secs}s, $jobs at a time"
fuzz_one() {
	local t=$1
	mkdir -p "$out/corpus/$t"
	cargo $toolchain fuzz run "${flags[@]}" "$t" "$out/corpus/$t" "corpus/$t" -- \
		-max_total_time="$secs" -rss_limit_mb=1024 -malloc_limit_mb=512 -print_final_stats=1 \
		>"$out/$t.log" 2>&1
}
declare -A pids=()
failed=()
for t in $targets; do
	while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 1; done
	fuzz_one "$t" &
	pids[$t]=$!
done
for t in $targets; do
	if wait "${pids[$t]}"; then
		execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$t.log")
		rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out/$t.log")
		echo "$t: ok, $execs inputs ($rate/s)"
	else
		failed+=("$t")
		report "$out/$t.log"
		echo "$t: FAILED (log: $out/$t.log; crash inputs: fuzz/artifacts/$t/; vfio-mig-conform fuzz-to-yaml FILE)"
	fi
done
step "done"
[ ${#failed[@]} -eq 0 ] || { echo "fuzz targets that failed: ${failed[*]}"; exit 1; }
