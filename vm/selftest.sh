#!/usr/bin/env bash
# End-to-end check of the VM harness (vm/prepare.sh + vm/run.sh).
# Prints PASS/FAIL lines and "selftest: N passed, M failed"; exits non-zero
# on any failure. --quick: only the main boot (no timeout / init-failure
# boots).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

QUICK=0
case ${1:-} in
--quick) QUICK=1 ;;
"") ;;
-h | --help) echo "usage: vm/selftest.sh [--quick]"; exit 0 ;;
*) vmc_die "unknown argument: $1" ;;
esac

PASSED=0 FAILED=0
pass() { echo "PASS: $*"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL: $*"; FAILED=$((FAILED + 1)); }
check() { # NAME COMMAND...
	local name=$1
	shift
	if "$@"; then pass "$name"; else fail "$name"; fi
}

# Runs that fail keep their run directory for inspection; drop the ones the
# expected-failure checks leave behind.
drop_kept_run() {
	local d
	d=$(sed -n 's/^run.sh: run directory kept: //p' "$WORK/err" | tail -n 1)
	case $d in "$VMC_CACHE"/runs/run.*) rm -rf "$d" ;; esac
}

T0=$(vmc_now)
if out=$("$VMC_SCRIPT_DIR/prepare.sh" --quiet 2>&1); then
	pass "prepare ($(printf '%s\n' "$out" | sed -n 's/^vm: kernel \([^ ]*\) .*/\1/p' | tail -n 1))"
else
	printf '%s\n' "$out"
	fail "prepare"
	echo "selftest: $PASSED passed, $FAILED failed"
	exit 1
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/vmc-selftest.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
RES=$WORK/results
mkdir -p "$RES"

# Runs inside the guest (busybox sh). $1 and $2 test argument boundaries.
# shellcheck disable=SC2016 # expanded in the guest
GUEST='
ok() { echo "GUEST-PASS: $*"; }
ko() { echo "GUEST-FAIL: $*"; bad=1; }
bad=0
[ "$1" = "a b" ] && [ "$2" = "it'"'"'s \$x" ] && [ $# -eq 2 ] && ok "argv preserved" || ko "argv: $# [$1] [$2]"
[ "$VMC_NDEV" = 4 ] && ok "VMC_NDEV=4" || ko "VMC_NDEV=$VMC_NDEV"
[ -f /run/vmc-devices.env ] && grep -q "^VMC_NDEV=4$" /run/vmc-devices.env && ok "/run/vmc-devices.env" || ko "/run/vmc-devices.env"
i=0
for t in mtty-2 mtty-2 mtty-1 mdpy-vga; do
	eval "dev=\$VMC_DEV$i type=\$VMC_DEV${i}_TYPE uuid=\$VMC_DEV${i}_UUID grp=\$VMC_DEV${i}_GROUP"
	[ "$type" = "$t" ] || ko "dev$i type $type != $t"
	[ -c "$dev" ] && ok "dev$i $t: $dev is a char device" || ko "dev$i: $dev missing"
	[ "$dev" = "/dev/vfio/$grp" ] || ko "dev$i: $dev != /dev/vfio/$grp"
	[ -e "/sys/bus/mdev/devices/$uuid" ] || ko "dev$i: no /sys/bus/mdev/devices/$uuid"
	n=$(ls "/sys/kernel/iommu_groups/$grp/devices" | wc -l)
	case $t in
	mtty-*) [ "$n" = 1 ] && ok "dev$i $t: group $grp has exactly one device" || ko "dev$i: group $grp has $n devices" ;;
	esac
	i=$((i + 1))
done
[ -c /dev/vfio/vfio ] && ok "/dev/vfio/vfio" || ko "/dev/vfio/vfio missing"
grep -q " /sys/kernel/debug debugfs " /proc/mounts && ok "debugfs mounted" || ko "debugfs not mounted"
[ -f /repo/vm/selftest.sh ] && ok "/repo shared (9p)" || ko "/repo not shared"
touch /repo/.vmc-write-test 2>/dev/null && ko "/repo is writable" || ok "/repo is read-only"
[ "$(getconf PAGE_SIZE)" = 4096 ] && ok "--bin dynamic executable (getconf) runs" || ko "getconf from --bin failed"
lsmod | grep -q "^mtty " && ok "mtty loaded" || ko "mtty not loaded"
echo "results-roundtrip $VMC_DEV0_UUID" > /results/selftest.txt
echo "to stderr" >&2
[ $bad = 0 ] && exit 3
exit 1
'

out=$("$VMC_SCRIPT_DIR/run.sh" --timeout 120 --results "$RES" --bin /usr/bin/getconf \
	--mdev mtty-2 --mdev mtty-2 --mdev mtty-1 --mdev mdpy-vga \
	-- sh -c "$GUEST" guest 'a b' "it's \$x") && rc=0 || rc=$?
printf '%s\n' "$out" | sed -n 's/^GUEST-PASS: /PASS: guest: /p; s/^GUEST-FAIL: /FAIL: guest: /p'
n_guest_fail=$(printf '%s\n' "$out" | grep -c '^GUEST-FAIL' || true)
FAILED=$((FAILED + n_guest_fail))
PASSED=$((PASSED + $(printf '%s\n' "$out" | grep -c '^GUEST-PASS' || true)))
if [ "$rc" = 3 ]; then
	pass "exit status 3 propagated to the host"
else
	fail "exit status: expected 3, got $rc"
	printf '%s\n' "$out" | sed 's/^/  | /'
fi
check "stderr of the command reaches stdout" grep -qx 'to stderr' <<<"$out"
check "file written to /results came back" grep -qx 'results-roundtrip c0000000-0000-4000-8000-000000000000' "$RES/selftest.txt"
check "dmesg saved to results/dmesg.txt" grep -q 'mtty' "$RES/dmesg.txt"
if grep -qE '(WARNING|BUG):|Oops|Call Trace' "$RES/dmesg.txt" 2>/dev/null; then
	fail "guest dmesg has no WARN/BUG/Oops"
else
	pass "guest dmesg has no WARN/BUG/Oops"
fi

if [ "$QUICK" = 0 ]; then
	rc=0
	"$VMC_SCRIPT_DIR/run.sh" --no-share --timeout 3 -- sleep 600 >/dev/null 2>"$WORK/err" || rc=$?
	drop_kept_run
	if [ "$rc" = 124 ] && grep -q 'timeout' "$WORK/err"; then
		pass "--timeout kills the VM and gives 124"
	else
		fail "--timeout: expected 124, got $rc"
	fi
	rc=0
	"$VMC_SCRIPT_DIR/run.sh" --no-share --mdev no-such-type -- true >/dev/null 2>"$WORK/err" || rc=$?
	drop_kept_run
	if [ "$rc" = 125 ] && grep -q "mdev type 'no-such-type' not found" "$WORK/err"; then
		pass "guest init failure gives 125 with a message"
	else
		fail "init failure: expected 125, got $rc"
	fi
	rc=0
	"$VMC_SCRIPT_DIR/run.sh" --no-share -- sh -c 'echo c > /proc/sysrq-trigger' >/dev/null 2>"$WORK/err" || rc=$?
	drop_kept_run
	if [ "$rc" = 125 ] && grep -q 'Kernel panic' "$WORK/err"; then
		pass "guest kernel panic gives 125 with a message"
	else
		fail "panic: expected 125, got $rc"
	fi
fi

echo "selftest took $(vmc_elapsed "$T0")s"
echo "selftest: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
