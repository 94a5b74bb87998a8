#!/usr/bin/env bash
# A real VMM in the loop (issue 11): QEMU 10.0.2 (vm/guest-qemu.sh) inside the test VM
# migrates the guest's mtty devices; .ci/vm-qemu-guest.sh records every scenario, replays the
# recordings on mtty-2 and mtty-1, runs the recorder's fidelity test against QEMU's trace and
# measures the effect of each declared mtty deviation. The checked-in recordings are also
# replayed on sim:v2 here on the host. Called by .ci/run; about 4-5 minutes.
#
#   .ci/vm-qemu.sh [--update]    --update: copy the fresh recordings over fixtures/recorded/qemu-10.0/
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/target/ci/vm-qemu
rm -rf "$out" && mkdir -p "$out"
start=$SECONDS
UPDATE=0
shopt -s nullglob
[ "${1:-}" = --update ] && UPDATE=1

cargo build --release -q -p vfio-mig-conform
bin=$root/target/release/vfio-mig-conform
# The fidelity test (runner/tests/record.rs) as a binary the guest can run.
t=$(cargo test --release -q -p vfio-mig-conform --test record --no-run --message-format=json | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "record" and m.get("executable"):
        print(m["executable"])')
mkdir -p "$root/target/ci-bin"
cp "$t" "$root/target/ci-bin/record-qemu-test"

fails=0
echo "== the checked-in recordings on sim:v2 (host)"
for f in fixtures/recorded/qemu-10.0/*.yaml; do
	n=$(sed -n 's/^requires:.*devices: \[\([A-Z, ]*\)\].*/\1/p' "$f" | tr -cd 'A-Z' | wc -c)
	peers=()
	for ((i = 1; i < n; i++)); do peers+=(--peer sim:v2); done
	if "$bin" sim:v2 "${peers[@]}" --sequence "$f" --format terse >"$out/sim-$(basename "$f" .yaml).txt" 2>&1; then
		echo "PASS: replay $(basename "$f" .yaml) on sim:v2: $(tail -n 1 "$out/sim-$(basename "$f" .yaml).txt" | sed 's/.*: \(pass:.*\)/\1/')"
	else
		echo "FAIL: replay $(basename "$f" .yaml) on sim:v2"
		cat "$out/sim-$(basename "$f" .yaml).txt"
		fails=$((fails + 1))
	fi
done

echo "== QEMU 10.0.2 in the VM"
vm/guest-qemu.sh --quiet
rc=0
vm/run.sh --timeout 540 --mem 1024 --qemu-in-guest --bin "$bin" --bin "$root/target/ci-bin/record-qemu-test" \
	--mdev mtty-2 --mdev mtty-2 --mdev mtty-2 --mdev mtty-2 \
	--mdev mtty-1 --mdev mtty-1 --mdev mtty-1 --mdev mtty-1 \
	--results "$out/vm" -- sh /repo/.ci/vm-qemu-guest.sh || rc=$?
[ "$rc" = 0 ] || fails=$((fails + 1))

if [ "$UPDATE" = 1 ]; then
	mkdir -p fixtures/recorded/qemu-10.0
	for f in "$out"/vm/rec/*.yaml; do
		s=$(basename "$f" .yaml)
		# Only a scenario that went as intended replaces its recording.
		if grep -q "^scenario: $s done" "$out/vm/rec/$s.log"; then
			cp "$f" "fixtures/recorded/qemu-10.0/$(echo "$s" | tr _ -).yaml"
		else
			echo "not updating $s: the scenario did not finish as intended"
		fi
	done
	echo "fixtures/recorded/qemu-10.0/ updated from this run"
fi
echo "vm-qemu: $fails failed in $((SECONDS - start)) s; results in target/ci/vm-qemu/"
[ "$fails" = 0 ]
