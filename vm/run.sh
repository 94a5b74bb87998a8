#!/usr/bin/env bash
# Boot a test guest under QEMU/TCG (Debian's 6.12 kernel, or the 7.2 test kernel of
# vm/testkernel.sh) and run one command in it against real VFIO mdev devices (mtty, mdpy).
# See vm/README.md.
#
# Exit status: the guest command's exit status, or
#   124  the VM exceeded --timeout (QEMU killed)
#   125  harness failure (bad usage, prepare failed, guest init failed,
#        kernel panic, QEMU died, no exit status reported)
set -euo pipefail
VMC_DIE_CODE=125
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<'EOF'
usage: vm/run.sh [OPTIONS] -- CMD [ARGS...]

Boots the guest and runs CMD ARGS in it (argv preserved, like exec "$@";
use `sh -c '...'` for shell syntax). Output goes to stdout; exit status is
the command's.

  --kernel K        6.12 (Debian's kernel, vm/prepare.sh; the default), 7.2 (the test
                    kernel with KASAN, lockdep, KCOV, IOMMUFD, VFIO debugfs:
                    vm/testkernel.sh) or a prepared kernel directory
  --machine M       QEMU machine type (default pc; q35 for --iommu)
  --iommu           an emulated Intel IOMMU (q35 + intel-iommu; test kernel only)
  --device SPEC     an extra QEMU -device SPEC, e.g. igb or e1000e (repeatable)
  --qemu-arg ARG    an extra QEMU argument (repeatable)
  --bin PATH        copy a host executable (and its ldd libraries) to the
                    guest's /bin/ (repeatable)
  --deb FILE.deb    install a Debian package in the guest (dpkg-deb -x into the
                    root, plus the ldd libraries of its usr/bin executables), e.g.
                    the one .ci/package.sh builds (repeatable)
  --qemu-in-guest   put QEMU 10.0.2 (vm/guest-qemu.sh: qemu-system-x86 from
                    bookworm-backports, unpacked in the cache), its libraries and
                    its firmware (SeaBIOS bios-256k.bin, kvmvapic.bin) into the
                    guest as /usr/bin/qemu-system-x86_64 (nested TCG)
  --mdev TYPE       create one mdev instance of TYPE, in order (repeatable),
                    e.g. mtty-1, mtty-2, mdpy-vga, mdpy-xga, mdpy-hd
  --share DIR       host directory shown read-only at /repo (default: repo root)
  --no-share        no /repo
  --results DIR     host directory that receives the guest's /results
                    (9p, written through; created if missing)
  --env NAME=VALUE  export NAME=VALUE to the command (repeatable)
  --timeout SECS    whole-VM wall-clock limit (default 600)
  --mem MB          guest memory (default 512)
  --smp N           guest vCPUs (default 2)
  --append ARGS     extra kernel command-line arguments
  --console         also copy the kernel console to stderr after the run
  --keep            keep the run directory (initramfs, logs) under the cache
  -v, --verbose     print boot/run timings to stderr
EOF
}

BINS=() DEBS=() MDEVS=() ENVS=() DEVICES=() QARGS=() GUEST_QEMU=0
SHARE=$VMC_REPO RESULTS="" TIMEOUT=600 MEM=512 SMP=2 APPEND="" CONSOLE=0 KEEP=0 VERBOSE=0
KERNEL=${VMC_KERNEL:-6.12} MACHINE=pc IOMMU=0
need() { [ $# -ge 2 ] || { usage >&2; vmc_die "option $1 needs an argument"; }; }
while [ $# -gt 0 ]; do
	case $1 in
	--kernel) need "$@"; KERNEL=$2; shift ;;
	--machine) need "$@"; MACHINE=$2; shift ;;
	--iommu) IOMMU=1 MACHINE=q35 ;;
	--device) need "$@"; DEVICES+=("$2"); shift ;;
	--qemu-arg) need "$@"; QARGS+=("$2"); shift ;;
	--bin) need "$@"; BINS+=("$2"); shift ;;
	--deb) need "$@"; DEBS+=("$2"); shift ;;
	--qemu-in-guest) GUEST_QEMU=1 ;;
	--mdev) need "$@"; MDEVS+=("$2"); shift ;;
	--share) need "$@"; SHARE=$2; shift ;;
	--no-share) SHARE="" ;;
	--results) need "$@"; RESULTS=$2; shift ;;
	--env) need "$@"; ENVS+=("$2"); shift ;;
	--timeout) need "$@"; TIMEOUT=$2; shift ;;
	--mem) need "$@"; MEM=$2; shift ;;
	--smp) need "$@"; SMP=$2; shift ;;
	--append) need "$@"; APPEND=$2; shift ;;
	--console) CONSOLE=1 ;;
	--keep) KEEP=1 ;;
	-v | --verbose) VERBOSE=1 ;;
	-h | --help) usage; exit 0 ;;
	--) shift; break ;;
	*) usage >&2; vmc_die "unknown option: $1 (the command goes after --)" ;;
	esac
	shift
done
[ $# -gt 0 ] || { usage >&2; vmc_die "no command given (vm/run.sh [OPTIONS] -- CMD [ARGS...])"; }
for n in "$TIMEOUT" "$MEM" "$SMP"; do
	case $n in '' | *[!0-9]*) vmc_die "not a positive integer: '$n'" ;; esac
done
for t in "${MDEVS[@]}"; do
	case $t in '' | *[!A-Za-z0-9_.-]*) vmc_die "bad mdev type name: '$t'" ;; esac
done

T0=$(vmc_now)

# Prepare on demand (a ~0.1 s no-op when the cache is ready).
case $KERNEL in
6.12 | debian)
	if [ "$VERBOSE" = 1 ]; then
		"$VMC_SCRIPT_DIR/prepare.sh" --quiet >&2 || vmc_die "vm/prepare.sh failed"
	else
		"$VMC_SCRIPT_DIR/prepare.sh" --quiet >/dev/null || vmc_die "vm/prepare.sh failed"
	fi
	KDIR=$(cd "$VMC_CURRENT" && pwd -P)
	;;
7.2 | test)
	KDIR=$("$VMC_SCRIPT_DIR/testkernel.sh" --quiet --print-dir) || vmc_die "vm/testkernel.sh failed"
	;;
*)
	[ -f "$KERNEL/READY" ] || vmc_die "--kernel: '$KERNEL' is neither 6.12, 7.2 nor a prepared kernel directory (no READY)"
	KDIR=$(cd "$KERNEL" && pwd -P)
	;;
esac
KIND=debian SERIES=6.12
# shellcheck disable=SC1091
. "$KDIR/READY"
[ "$IOMMU" = 0 ] || [ "$KIND" = test ] || vmc_die "--iommu needs the test kernel (--kernel 7.2): Debian's 6.12 image has no intel-iommu driver built in"

mkdir -p "$VMC_CACHE/runs"
# Run directories of failed runs are kept for inspection; drop old ones.
find "$VMC_CACHE/runs" -mindepth 1 -maxdepth 1 -name 'run.*' -mmin +720 -exec rm -rf {} + 2>/dev/null || true
RUN=$(mktemp -d "$VMC_CACHE/runs/run.XXXXXX")
ROOT=$RUN/overlay
mkdir -p "$ROOT/vmc" "$ROOT/bin"

# qesc STR: STR as a QEMU option value (commas doubled).
qesc() { printf '%s' "${1//,/,,}"; }

# squote STR: STR as one single-quoted POSIX sh word.
squote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

# ---------------------------------------------------------------- overlay
cp "$VMC_SCRIPT_DIR/guest-init.sh" "$ROOT/init"
chmod 0755 "$ROOT/init"

# busybox sh runs its applets in preference to PATH: call a --bin binary that
# is CMD by its absolute path, so a name like "stat" gets the host binary.
ARGV0=$1
for b in "${BINS[@]}"; do
	[ "$ARGV0" = "${b##*/}" ] && ARGV0=/bin/$ARGV0 && break
done
shift
set -- "$ARGV0" "$@"
{
	printf 'exec'
	for a in "$@"; do printf ' %s' "$(squote "$a")"; done
	printf '\n'
} >"$ROOT/vmc/cmd"

: >"$ROOT/vmc/env"
for e in "${ENVS[@]}"; do
	name=${e%%=*}
	[[ $e == *=* && $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || vmc_die "--env needs NAME=VALUE, got '$e'"
	printf 'export %s=%s\n' "$name" "$(squote "${e#*=}")" >>"$ROOT/vmc/env"
done

VIRTFS=()
if [ -n "$SHARE" ]; then
	[ -d "$SHARE" ] || vmc_die "--share: not a directory: $SHARE"
	SHARE=$(cd "$SHARE" && pwd -P)
	# shellcheck disable=SC2054 # commas are QEMU option syntax
	VIRTFS+=(-fsdev "local,id=vmcrepo,path=$(qesc "$SHARE"),security_model=none,readonly=on"
		-device virtio-9p-pci,fsdev=vmcrepo,mount_tag=vmcrepo)
fi
if [ -n "$RESULTS" ]; then
	mkdir -p "$RESULTS" || vmc_die "--results: cannot create $RESULTS"
	RESULTS=$(cd "$RESULTS" && pwd -P)
	# shellcheck disable=SC2054
	VIRTFS+=(-fsdev "local,id=vmcresults,path=$(qesc "$RESULTS"),security_model=none"
		-device virtio-9p-pci,fsdev=vmcresults,mount_tag=vmcresults)
fi
{
	echo "VMC_MDEVS='${MDEVS[*]}'"
	echo "VMC_SHARE=$([ -n "$SHARE" ] && echo 1 || echo 0)"
	echo "VMC_RESULTS=$([ -n "$RESULTS" ] && echo 1 || echo 0)"
	echo "VMC_KERNEL_KIND=$KIND"
	echo "VMC_KERNEL_SERIES=$SERIES"
} >"$ROOT/vmc/config"

# copy_file SRC: copy SRC (dereferenced) to the same absolute path in the guest.
copy_file() {
	[ -e "$ROOT$1" ] && return 0
	mkdir -p "$ROOT$(dirname "$1")"
	cp -L "$1" "$ROOT$1" || vmc_die "cannot copy $1 into the guest"
}

# copy_libs EXE: copy the libraries ldd lists for EXE to their host paths in the guest.
copy_libs() {
	local out l
	if ! out=$(LC_ALL=C ldd "$1" 2>&1); then
		case $out in
		*"not a dynamic executable"* | *"statically linked"*) return 0 ;;
		*) vmc_die "ldd $1 failed: $out" ;;
		esac
	fi
	while read -r l; do
		case $l in
		*"=> not found"*) vmc_die "$1: missing library: ${l%% *}" ;;
		*"=> /"*) l=${l#*=> }; copy_file "${l%% (*}" ;;
		/*) copy_file "${l%% (*}" ;;
		esac
	done <<<"$out"
}

for b in "${BINS[@]}"; do
	if ! [ -f "$b" ] || ! [ -x "$b" ]; then vmc_die "--bin: not an executable file: $b"; fi
	cp -L "$b" "$ROOT/bin/${b##*/}"
	copy_libs "$b"
done

# Packages are unpacked as dpkg would place them (no maintainer scripts run).
for d in "${DEBS[@]}"; do
	[ -f "$d" ] || vmc_die "--deb: not a file: $d"
	dpkg-deb -x "$d" "$ROOT" || vmc_die "--deb: dpkg-deb -x $d failed"
	printf '%s\n' "$(dpkg-deb -f "$d" Package) $(dpkg-deb -f "$d" Version)" >>"$ROOT/vmc/debs"
done
if [ ${#DEBS[@]} -gt 0 ]; then
	for b in "$ROOT"/usr/bin/* "$ROOT"/usr/sbin/*; do
		[ -f "$b" ] && [ -x "$b" ] && copy_libs "$b"
	done
fi
# Nested QEMU 10.0.2 (vm/guest-qemu.sh, unpacked from bookworm-backports): the binary and its
# libraries (as --bin does) and the firmware at their Debian paths, where QEMU looks for them.
if [ "$GUEST_QEMU" = 1 ]; then
	QD=$("$VMC_SCRIPT_DIR/guest-qemu.sh" --quiet --print-dir) || vmc_die "vm/guest-qemu.sh failed"
	mkdir -p "$ROOT/usr/bin" "$ROOT/usr/share/qemu" "$ROOT/usr/share/seabios"
	cp "$QD/usr/bin/qemu-system-x86_64" "$ROOT/usr/bin/"
	cp "$QD/usr/share/seabios/bios-256k.bin" "$ROOT/usr/share/seabios/"
	cp "$QD/usr/share/qemu/kvmvapic.bin" "$ROOT/usr/share/qemu/"
	copy_libs "$QD/usr/bin/qemu-system-x86_64"
fi

(cd "$ROOT" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --owner=0:0 --quiet) \
	>"$RUN/overlay.cpio" || vmc_die "cpio of the run overlay failed"
cat "$KDIR/$BASE_CPIO" "$RUN/overlay.cpio" >"$RUN/initrd.cpio"
rm -f "$RUN/overlay.cpio"
[ "$KEEP" = 1 ] || rm -rf "$ROOT"

# ---------------------------------------------------------------- boot
: >"$RUN/out"
: >"$RUN/ctl"
: >"$RUN/console.log"
CMDLINE="console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init mitigations=off"
CMDLINE+=" i8042.noaux i8042.nomux i8042.nopnp tsc=reliable random.trust_cpu=on"
[ "$IOMMU" = 1 ] && CMDLINE+=" intel_iommu=on"
[ -n "$APPEND" ] && CMDLINE+=" $APPEND"

EXTRA=()
# shellcheck disable=SC2054 # commas are QEMU option syntax
[ "$IOMMU" = 1 ] && EXTRA+=(-device intel-iommu,intremap=off)
for d in "${DEVICES[@]}"; do EXTRA+=(-device "$d"); done
EXTRA+=("${QARGS[@]}")

# shellcheck disable=SC2054 # commas are QEMU option syntax
QEMU=(qemu-system-x86_64 -accel tcg -machine "$MACHINE" -cpu max -m "$MEM" -smp "$SMP"
	-nodefaults -no-user-config -display none -no-reboot
	-kernel "$KDIR/$VMLINUZ" -initrd "$RUN/initrd.cpio" -append "$CMDLINE"
	-chardev "file,id=vmccon,path=$(qesc "$RUN/console.log")" -serial chardev:vmccon
	-device virtio-serial-pci,id=vmcser
	-chardev "file,id=vmcout,path=$(qesc "$RUN/out")"
	-device virtserialport,bus=vmcser.0,chardev=vmcout,name=vmc.out
	-chardev "file,id=vmcctl,path=$(qesc "$RUN/ctl")"
	-device virtserialport,bus=vmcser.0,chardev=vmcctl,name=vmc.ctl
	"${VIRTFS[@]}" "${EXTRA[@]}")
printf '%q ' "${QEMU[@]}" >"$RUN/qemu.cmd"

# A guest kernel that panics while booting, before its init has run (no VMC-BOOTED line: the
# command never started, nothing was written to the results), is booted once more: under TCG
# an early-boot crash (seen once on Debian's 6.12, "Fatal exception in interrupt" in
# enqueue_timer at 1.1 s) says nothing about the command. The first console is kept.
for attempt in 1 2; do
	T_BOOT=$(vmc_now)
	timeout --kill-after=5 "$TIMEOUT" "${QEMU[@]}" </dev/null >"$RUN/qemu.log" 2>&1 &
	QPID=$!
	# Stream the command output while the VM runs.
	tail -c +1 -s 0.1 --pid="$QPID" -f "$RUN/out" &
	TPID=$!
	trap 'kill "$QPID" 2>/dev/null || true; kill "$TPID" 2>/dev/null || true' INT TERM
	QRC=0
	wait "$QPID" || QRC=$?
	wait "$TPID" 2>/dev/null || true
	trap - INT TERM
	T_END=$(vmc_now)
	if [ "$attempt" = 1 ] && ! grep -q '^VMC-BOOTED ' "$RUN/ctl" && grep -q 'Kernel panic' "$RUN/console.log"; then
		cp "$RUN/console.log" "$RUN/console.boot1.log"
		vmc_log "warning: the guest kernel panicked while booting, before its init ran ($(grep -m1 'Kernel panic' "$RUN/console.log" | tr -d '\r' | sed 's/^\[[ 0-9.]*\] //')); booting it again (the first console is in $RUN/console.boot1.log)"
		KEEP=1
		: >"$RUN/out"
		: >"$RUN/ctl"
		: >"$RUN/console.log"
		continue
	fi
	break
done

# ---------------------------------------------------------------- verdict
ctl_field() { awk -v w="VMC-$1" '$1 == w { $1 = ""; $2 = ""; sub(/^ +/, ""); print; exit }' "$RUN/ctl"; }
ctl_time() { awk -v w="VMC-$1" '$1 == w { print $2; exit }' "$RUN/ctl"; }

show_console() {
	echo "---- kernel console (last ${1:-40} lines of $RUN/console.log) ----" >&2
	tail -n "${1:-40}" "$RUN/console.log" | tr -d '\r' >&2
	if [ -s "$RUN/qemu.log" ]; then
		echo "---- qemu ----" >&2
		tail -n 20 "$RUN/qemu.log" >&2
	fi
	echo "----" >&2
}

RC=""
MSG=""
if grep -q '^VMC-EXIT ' "$RUN/ctl"; then
	RC=$(ctl_field EXIT)
	if [ "$QRC" != 0 ]; then
		vmc_log "warning: the command finished (exit $RC) but QEMU exited with $QRC during shutdown"
	fi
elif [ "$QRC" = 124 ] || [ "$QRC" = 137 ]; then
	RC=124
	MSG="timeout: the VM did not finish within ${TIMEOUT}s (QEMU killed)"
else
	RC=125
	if grep -q '^VMC-ERROR ' "$RUN/ctl"; then
		MSG="guest init failed: $(ctl_field ERROR)"
	elif grep -q 'Kernel panic' "$RUN/console.log"; then
		MSG="guest kernel panic: $(grep -m1 'Kernel panic' "$RUN/console.log" | tr -d '\r')"
	elif [ "$QRC" != 0 ]; then
		MSG="QEMU exited with status $QRC: $(tail -n 3 "$RUN/qemu.log" | tr '\n' ' ')"
	else
		MSG="the VM stopped without reporting the command's exit status"
	fi
fi

if [ -n "$MSG" ]; then
	vmc_log "$MSG"
	show_console 40
	vmc_log "run directory kept: $RUN"
	KEEP=1
elif [ "$CONSOLE" = 1 ]; then
	show_console 1000000
fi

if [ "$VERBOSE" = 1 ]; then
	vmc_log "kernel $KREL; guest: booted at $(ctl_time BOOTED)s, ready at $(ctl_time READY)s, command done at $(ctl_time EXIT)s (uptime); host: setup $(awk -v a="$T0" -v b="$T_BOOT" 'BEGIN{printf "%.2f", b-a}')s, qemu $(awk -v a="$T_BOOT" -v b="$T_END" 'BEGIN{printf "%.2f", b-a}')s, total $(vmc_elapsed "$T0")s"
fi

[ "$KEEP" = 1 ] || rm -rf "$RUN"
exit "$RC"
