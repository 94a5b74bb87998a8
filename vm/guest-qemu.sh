#!/usr/bin/env bash
# Fetch and unpack QEMU 10.0.2 (qemu-system-x86 from Debian bookworm-backports) for running
# *inside* the test guest (vm/run.sh --qemu-in-guest): a real VMM migrating the guest's mtty
# devices, recorded by `vfio-mig-conform record` (.ci/vm-qemu.sh). Nothing is installed on the
# host: the packages are unpacked into the cache; the host keeps its own QEMU (7.2) for the
# outer VM. QEMU 10.0.2 runs on bookworm's userspace (every library it links resolves).
#
#   vm/guest-qemu.sh [--print-dir] [--quiet]
#
# Cache: $VMC_KERNEL_CACHE/guest-qemu/<version>/ (usr/bin/qemu-system-x86_64,
# usr/share/qemu/, READY), apt lists of bookworm-backports in $VMC_KERNEL_CACHE/apt-bpo.
# VMC_GUEST_QEMU_VERSION overrides the pinned version.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VERSION=${VMC_GUEST_QEMU_VERSION:-1:10.0.2+ds-2+deb13u1~bpo12+1}
PRINT_DIR=0 QUIET=0
while [ $# -gt 0 ]; do
	case $1 in
	--print-dir) PRINT_DIR=1 ;;
	--quiet | -q) QUIET=1 ;;
	-h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) vmc_die "unknown argument: $1" ;;
	esac
	shift
done
T0=$(vmc_now)
say() { [ "$QUIET" = 1 ] || vmc_log "[$(vmc_elapsed "$T0")s] $*"; }

ROOT=$VMC_KERNEL_CACHE
APT_DIR=$ROOT/apt-bpo
QD=$ROOT/guest-qemu/${VERSION//[:~+]/_}
mkdir -p "$ROOT/guest-qemu" "$APT_DIR/lists/partial"
exec 8>"$ROOT/guest-qemu/.lock"
flock 8 || vmc_die "cannot lock $ROOT/guest-qemu/.lock"

if [ -f "$QD/READY" ]; then
	[ "$QUIET" = 1 ] || vmc_log "guest QEMU ready (cached): $QD"
	[ "$PRINT_DIR" = 1 ] && echo "$QD"
	exit 0
fi

APT_OPTS=(-o "Dir::Etc::sourcelist=$APT_DIR/bpo.sources" -o Dir::Etc::sourceparts=-
	-o "Dir::State::Lists=$APT_DIR/lists" -o APT::Sandbox::User=root -q)
cat >"$APT_DIR/bpo.sources" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
say "apt-get update (Debian bookworm-backports lists, kept in $APT_DIR)"
apt-get "${APT_OPTS[@]}" update >"$APT_DIR/update.log" 2>&1 ||
	vmc_die "apt-get update of bookworm-backports failed (see $APT_DIR/update.log)"

WORK=$(mktemp -d "$ROOT/guest-qemu/work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
say "downloading qemu-system-x86 and qemu-system-data $VERSION (~12 MB)"
(cd "$WORK" && apt-get "${APT_OPTS[@]}" download "qemu-system-x86=$VERSION" "qemu-system-data=$VERSION") \
	>"$WORK/download.log" 2>&1 || vmc_die "apt-get download of QEMU $VERSION failed: $(tail -n 3 "$WORK/download.log")"
mkdir -p "$WORK/root"
for d in "$WORK"/*.deb; do dpkg-deb -x "$d" "$WORK/root"; done
# SeaBIOS: bookworm's (1.16.2) boots QEMU 10's q35 machine; taken from the host's seabios
# package (a dependency of the host QEMU), else downloaded.
if [ -f /usr/share/seabios/bios-256k.bin ]; then
	install -D -m 0644 /usr/share/seabios/bios-256k.bin "$WORK/root/usr/share/seabios/bios-256k.bin"
else
	(cd "$WORK" && apt-get -q download seabios) >>"$WORK/download.log" 2>&1 || vmc_die "apt-get download seabios failed"
	dpkg-deb -x "$WORK"/seabios_*.deb "$WORK/root"
fi
Q=$WORK/root/usr/bin/qemu-system-x86_64
[ -x "$Q" ] || vmc_die "qemu-system-x86 $VERSION has no usr/bin/qemu-system-x86_64"
if missing=$(LC_ALL=C ldd "$Q" | grep 'not found'); then
	vmc_die "QEMU $VERSION needs libraries this host lacks: $missing"
fi
QV=$("$Q" --version | head -n1)
rm -rf "$QD"
mkdir -p "$QD"
mv "$WORK/root/usr" "$QD/usr"
printf 'DEB_VERSION=%q\nQEMU_VERSION=%q\nQEMU=usr/bin/qemu-system-x86_64\n' "$VERSION" "$QV" >"$QD/READY"
say "guest QEMU ready: $QV in $QD"
[ "$PRINT_DIR" = 1 ] && echo "$QD"
exit 0
