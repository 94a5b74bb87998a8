#!/usr/bin/env bash
# The HTML report in a real browser: builds reports from simulator runs and from a run on the
# kernel's mtty driver, renders them in headless Chromium (Debian's `chromium`, driven by
# playwright-core; no browser is downloaded) and checks the DOM: arc matrices, colours, links,
# clause details, the runs x clauses matrix, fuzz coverage, kernel coverage, the filters, the
# diff page, runs that did not finish, and no horizontal overflow at 1400 px. Screenshots land in
# target/report-tests/*.png.
#
#   report-tests/run.sh [MTTY.jsonl]
#
# MTTY.jsonl is a run record of the full suite on mtty (e.g. target/ci/vm/mtty2.jsonl from
# .ci/run); without it, target/ci/vm/mtty2.jsonl if present, else the record kept in
# report-tests/records/ (a real run on Debian 6.12 in vm/). VMC_BIN=path skips the cargo build.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/target/report-tests
rm -rf "$out" && mkdir -p "$out/records"

if ! command -v chromium >/dev/null 2>&1; then
	echo "report-tests: installing Debian's chromium"
	if [ "$(id -u)" != 0 ]; then
		echo "report-tests: chromium is missing and this is not root: apt-get install chromium" >&2
		exit 1
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
chromium_bin=$(command -v chromium)
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	echo "report-tests: installing Debian's nodejs and npm"
	[ "$(id -u)" = 0 ] || { echo "report-tests: node/npm are missing and this is not root: apt-get install nodejs npm" >&2; exit 1; }
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi

(cd report-tests && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)

bin=${VMC_BIN:-}
if [ -z "$bin" ]; then
	cargo build --release -q -p vfio-mig-conform
	bin=$root/target/release/vfio-mig-conform
fi
# Relative to the repository (the fuzz run below works in another directory).
case $bin in /*) ;; *) bin=$root/$bin ;; esac

# Exit 1 (a violation) is what the defect run is for; anything else is a failure.
allow1() { "$@" || [ $? = 1 ]; }

rec=$out/records
"$bin" sim:v2 --json "$rec/sim.jsonl" -q >/dev/null
allow1 "$bin" 'sim:v2?defect=stop_copy_to_pre_copy_accepted,eof_at_precopy_temporary_end' \
	--json "$rec/defect.jsonl" -q >/dev/null
"$bin" 'sim:v2?flags=stop_copy,p2p' --json "$rec/p2p.jsonl" -q >/dev/null
# A fuzz summary line as the fuzzer writes it (Line::Fuzz), so the coverage section renders.
cat >>"$rec/sim.jsonl" <<'EOF'
{"type":"fuzz","device":"A","seed":42,"duration_ms":10000,"ops":123456,"ops_per_sec":12345.6,"arcs_covered":["RUNNING->STOP","STOP->RUNNING","RUNNING->STOP_COPY","STOP_COPY->STOP","STOP->RESUMING"],"arcs_possible":42,"error_paths":[["set_state:EINVAL",812],["read:ENOMSG",40],["precopy_info:EINVAL",7]],"findings":[]}
EOF

mtty=${1:-}
if [ -z "$mtty" ]; then
	if [ -f "$root/target/ci/vm/mtty2.jsonl" ]; then
		mtty=$root/target/ci/vm/mtty2.jsonl
	else
		mtty=$root/report-tests/records/mtty-2-debian-6.12.jsonl
	fi
fi
echo "report-tests: mtty record: $mtty"
cp "$mtty" "$rec/mtty.jsonl"

allow1 "$bin" report "$rec/sim.jsonl" "$rec/defect.jsonl" "$rec/p2p.jsonl" "$rec/mtty.jsonl" --html "$out/all"
allow1 "$bin" report "$rec/mtty.jsonl" --html "$out/mtty"
# Kernel coverage: a guided and a blind session of fuzz --coverage kcov on mtty-2 (7.2 test
# kernel in vm/), symbolized by kcov-report against its vmlinux (docs/fuzzing.md).
allow1 "$bin" report report-tests/records/kcov-mtty-guided.jsonl report-tests/records/kcov-mtty-blind.jsonl \
	--html "$out/kcov"

# Runs that are not whole (issue 15 item 10): a partial run (a filter), a run killed before
# its end line, an interrupted run, and a fuzz session whose finding breaks V2-STATE-007. The
# fuzzer writes its reproducer under ./target: run it inside the records directory.
"$bin" sim:v2 fsm.arc.running --json "$rec/partial.jsonl" -q >/dev/null
grep -v '^{"type":"end"' "$rec/defect.jsonl" >"$rec/killed.jsonl"
sed 's/^{"type":"end",/{"type":"end","interrupted":"interrupted by SIGINT (test record)",/' "$rec/sim.jsonl" >"$rec/interrupted.jsonl"
grep -q '"interrupted"' "$rec/interrupted.jsonl" || { echo "report-tests: no end line to mark interrupted" >&2; exit 1; }
(cd "$rec" && allow1 "$bin" fuzz 'sim:v2?defect=stop_copy_to_pre_copy_accepted' --duration 2s --seed 42 \
	--json "$rec/fuzz.jsonl" -q >/dev/null 2>&1)
# An unfinished run makes `report` exit 5; 1 is the violations; anything else is a failure.
rc=0
"$bin" report "$rec/sim.jsonl" "$rec/partial.jsonl" "$rec/killed.jsonl" "$rec/interrupted.jsonl" \
	"$rec/fuzz.jsonl" --html "$out/odd" >/dev/null || rc=$?
case $rc in 0 | 1 | 5) ;; *) echo "report-tests: report of the odd runs exited $rc" >&2; exit 1 ;; esac

cd report-tests
REPORT_ALL=$out/all REPORT_MTTY=$out/mtty REPORT_KCOV=$out/kcov REPORT_ODD=$out/odd ARTIFACTS=$out CHROMIUM=$chromium_bin node --test report.test.mjs
echo "report-tests: screenshots in $out: $(cd "$out" && ls ./*.png | tr '\n' ' ')"
