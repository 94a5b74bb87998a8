#!/usr/bin/env bash
# Build (once) the test kernel: Debian's linux-source-7.2 with KASAN, lockdep, KCOV, fault
# injection, IOMMUFD, the VFIO cdev, VFIO debugfs and the mtty/mdpy samples built in
# (vm/testkernel.config), compiled with the host's gcc 12. The result is a kernel directory
# that vm/run.sh boots with `--kernel 7.2`.
#
# Cached outside the checkout, keyed by what it is built from: the source package version,
# vm/testkernel.config and the build recipe below. A warm cache costs nothing; a cold build is
# about 20 minutes with make -j2 (docs/performance.md).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The source package, from Debian's sid suite. When sid has dropped this version, the newest
# linux-source-$TK_SERIES there is used instead (with a warning; the key changes with it).
TK_SERIES=7.2
TK_VERSION=7.2.13-1
# Bump when the compile step changes (invalidates the compiled tree)...
BUILD_RECIPE=1
# ...or when only the packaging of the products changes (base.cpio, copied sources).
PACKAGE_RECIPE=2
CFG=$VMC_SCRIPT_DIR/testkernel.config
MAKE_ARGS=(CFLAGS_mtty.o=-g CFLAGS_vfio_main.o=-g)

usage() {
	cat <<EOF
usage: vm/testkernel.sh [--print-dir] [--quiet] [--force]

  --print-dir  print the kernel directory on stdout (building it if needed)
  --key        print the cache key and exit (nothing is built)
  --force      rebuild even when the cache has this key
  --quiet      only errors and the summary line

environment:
  VMC_KERNEL_CACHE  cache root (default: \${XDG_CACHE_HOME:-\$HOME/.cache}/vfio-mig-conform)
  VMC_JOBS          make -j (default: nproc)
EOF
}

PRINT_DIR=0 QUIET=0 FORCE=0 KEY_ONLY=0
while [ $# -gt 0 ]; do
	case $1 in
	--print-dir) PRINT_DIR=1 ;;
	--key) KEY_ONLY=1 ;;
	--quiet | -q) QUIET=1 ;;
	--force) FORCE=1 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; vmc_die "unknown argument: $1" ;;
	esac
	shift
done

T0=$(vmc_now)
say() { [ "$QUIET" = 1 ] || vmc_log "[$(vmc_elapsed "$T0")s] $*"; }

ROOT=$VMC_KERNEL_CACHE
APT_DIR=$ROOT/apt-sid
DEB_DIR=$ROOT/debs
mkdir -p "$ROOT/testkernel" "$APT_DIR/lists/partial" "$DEB_DIR"
exec 8>"$ROOT/testkernel/.lock"
flock 8 || vmc_die "cannot lock $ROOT/testkernel/.lock"

APT_OPTS=(-o "Dir::Etc::sourcelist=$APT_DIR/sid.sources" -o Dir::Etc::sourceparts=-
	-o "Dir::State::Lists=$APT_DIR/lists" -o APT::Sandbox::User=root -q)
cat >"$APT_DIR/sid.sources" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF

# The .deb of VERSION, from the cache or downloaded; prints its path.
fetch_source() { # VERSION
	local v=$1 deb=$DEB_DIR/linux-source-${TK_SERIES}_${1}_all.deb
	if [ -s "$deb" ]; then
		echo "$deb"
		return 0
	fi
	[ -e "$APT_DIR/lists/.updated" ] || {
		say "apt-get update (Debian sid lists, kept in $APT_DIR)"
		apt-get "${APT_OPTS[@]}" update >"$APT_DIR/update.log" 2>&1 ||
			vmc_die "apt-get update of Debian sid failed (see $APT_DIR/update.log)"
		touch "$APT_DIR/lists/.updated"
	}
	say "downloading linux-source-$TK_SERIES=$v (~164 MB)"
	(cd "$DEB_DIR" && apt-get "${APT_OPTS[@]}" download "linux-source-$TK_SERIES=$v") \
		>"$DEB_DIR/download.log" 2>&1 || return 1
	[ -s "$deb" ] || return 1
	echo "$deb"
}

VERSION=$TK_VERSION
key_of() { # VERSION
	{
		echo "linux-source-$TK_SERIES=$1"
		echo "build-recipe=$BUILD_RECIPE"
		echo "make-args=${MAKE_ARGS[*]}"
		echo "gcc=$(gcc -dumpfullversion 2>/dev/null || echo none)"
		grep -v '^#' "$CFG" | grep -v '^$'
	} | sha256sum | cut -c1-16
}
KEY=$(key_of "$VERSION")
if [ "$KEY_ONLY" = 1 ]; then
	echo "$KEY"
	exit 0
fi
KD=$ROOT/testkernel/$TK_SERIES-$KEY

ready_ok() { [ -f "$KD/READY" ] && grep -qx "RECIPE=$PACKAGE_RECIPE" "$KD/READY"; }

if [ "$FORCE" = 0 ] && ready_ok; then
	[ "$QUIET" = 1 ] || vmc_log "test kernel ready (cached): $KD"
	[ "$PRINT_DIR" = 1 ] && echo "$KD"
	exit 0
fi

ensure_host_pkgs() {
	local p missing=()
	for p in "$@"; do
		dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || missing+=("$p")
	done
	[ ${#missing[@]} = 0 ] && return 0
	[ "$(id -u)" = 0 ] || vmc_die "installing ${missing[*]} needs root"
	say "installing host packages: ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
		>"$ROOT/testkernel/apt-install.log" 2>&1 || {
		apt-get update -qq >/dev/null 2>&1 || true
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
			>"$ROOT/testkernel/apt-install.log" 2>&1 ||
			vmc_die "apt-get install ${missing[*]} failed (see $ROOT/testkernel/apt-install.log)"
	}
}
ensure_host_pkgs gcc make flex bison bc libelf-dev libssl-dev busybox-static cpio xz-utils binutils

DEB=$(fetch_source "$VERSION") || {
	vmc_log "warning: linux-source-$TK_SERIES=$VERSION is no longer in Debian sid; using the newest one there"
	rm -f "$APT_DIR/lists/.updated"
	apt-get "${APT_OPTS[@]}" update >"$APT_DIR/update.log" 2>&1 || vmc_die "apt-get update of sid failed"
	touch "$APT_DIR/lists/.updated"
	VERSION=$(apt-cache "${APT_OPTS[@]}" madison "linux-source-$TK_SERIES" | awk -F'|' 'NR == 1 { gsub(/ /, "", $2); print $2 }')
	[ -n "$VERSION" ] || vmc_die "no linux-source-$TK_SERIES in Debian sid"
	KEY=$(key_of "$VERSION")
	KD=$ROOT/testkernel/$TK_SERIES-$KEY
	DEB=$(fetch_source "$VERSION") || vmc_die "download of linux-source-$TK_SERIES=$VERSION failed (see $DEB_DIR/download.log)"
}

B=$KD/build
if [ "$FORCE" = 1 ] || ! [ -f "$B/BUILT" ]; then
	rm -rf "$KD"
	mkdir -p "$B"
	W=$ROOT/testkernel/work-$KEY
	rm -rf "$W" && mkdir -p "$W"
	say "unpacking linux-source-$TK_SERIES=$VERSION"
	dpkg-deb --fsys-tarfile "$DEB" | tar -xO --wildcards "./usr/src/linux-source-$TK_SERIES.tar.xz" |
		xz -dc -T0 | tar -x -C "$W" || vmc_die "unpacking $DEB failed"
	S=$W/linux-source-$TK_SERIES
	[ -f "$S/Makefile" ] || vmc_die "no Makefile in $S"
	O=$W/out
	mkdir -p "$O"
	say "configuring: defconfig kvm_guest.config + $(basename "$CFG")"
	make -C "$S" O="$O" -s defconfig kvm_guest.config >"$W/config.log" 2>&1 ||
		vmc_die "make defconfig failed (see $W/config.log)"
	"$S/scripts/kconfig/merge_config.sh" -m -O "$O" "$O/.config" "$CFG" >>"$W/config.log" 2>&1 ||
		vmc_die "merge_config.sh failed (see $W/config.log)"
	make -C "$S" O="$O" -s olddefconfig >>"$W/config.log" 2>&1 || vmc_die "make olddefconfig failed"
	# Every option asked for must have its value: Kconfig drops what it cannot satisfy silently.
	bad=""
	while IFS= read -r line; do
		case $line in '' | '#'*) continue ;; esac
		opt=${line%%=*} val=${line#*=}
		if [ "$val" = n ]; then
			grep -qx "$opt=y\|$opt=m" "$O/.config" && bad="$bad $opt=n"
		else
			grep -qx "$line" "$O/.config" || bad="$bad $line"
		fi
	done <"$CFG"
	[ -z "$bad" ] || vmc_die "Kconfig did not take:$bad (see $O/.config)"
	jobs=${VMC_JOBS:-$(nproc)}
	say "building bzImage with make -j$jobs (about 20 minutes on 2 cores, log: $W/build.log)"
	tb=$(vmc_now)
	if ! make -C "$S" O="$O" -j"$jobs" "${MAKE_ARGS[@]}" bzImage >"$W/build.log" 2>&1; then
		tail -n 40 "$W/build.log" >&2
		vmc_die "kernel build failed (log: $W/build.log)"
	fi
	build_s=$(vmc_elapsed "$tb")
	if grep -q '=m$' "$O/.config"; then
		say "building modules"
		make -C "$S" O="$O" -j"$jobs" "${MAKE_ARGS[@]}" modules >>"$W/build.log" 2>&1 ||
			vmc_die "modules build failed (log: $W/build.log)"
		make -C "$S" O="$O" -s INSTALL_MOD_PATH="$B/modroot" INSTALL_MOD_STRIP=1 modules_install >>"$W/build.log" 2>&1 ||
			vmc_die "modules_install failed"
	fi
	cp "$O/arch/x86/boot/bzImage" "$B/bzImage"
	cp "$O/vmlinux" "$B/vmlinux"
	cp "$O/System.map" "$B/System.map"
	cp "$O/.config" "$B/config"
	make -C "$S" O="$O" -s kernelrelease >"$B/kernelrelease"
	# Sources the suite reads: the uAPI header and vfio_main.c (the next-state table extractor),
	# the samples (the coverage view), the KTAP parser.
	mkdir -p "$B/src"
	(cd "$S" && cp --parents -r drivers/vfio samples/vfio-mdev include/uapi/linux/vfio.h include/linux/vfio.h \
		tools/testing/kunit "$B/src/")
	mkdir -p "$B/include/linux"
	# headers_install.sh runs scripts/unifdef from the current directory: the build tree's,
	# which only `make headers` (or this target) builds.
	make -C "$S" O="$O" -s scripts_unifdef >>"$W/build.log" 2>&1 || vmc_die "make scripts_unifdef failed"
	(cd "$O" && "$S/scripts/headers_install.sh" "$S/include/uapi/linux/vfio.h" "$B/include/linux/vfio.h") ||
		vmc_die "headers_install.sh of uapi/linux/vfio.h failed"
	cp "$W/build.log" "$B/build.log"
	{
		echo "VERSION=$VERSION"
		echo "BUILD_SECONDS=$build_s"
		echo "JOBS=$jobs"
	} >"$B/BUILT"
	rm -rf "$W"
	say "built in ${build_s}s"
fi

say "packaging: base initramfs"
rm -rf "$KD/ir" && mkdir -p "$KD/ir"/{bin,dev,proc,sys,run,tmp,repo,results,root,etc,lib/modules/vmc,vmc}
cp "$(command -v busybox)" "$KD/ir/bin/busybox"
: >"$KD/ir/lib/modules/vmc/load-order"
(cd "$KD/ir" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --owner=0:0 --quiet) >"$KD/base.cpio"
rm -rf "$KD/ir"
ln -sfn build/bzImage "$KD/vmlinuz"
ln -sfn build/config "$KD/config"
# shellcheck disable=SC1091
. "$B/BUILT"
cat >"$KD/READY" <<EOF
RECIPE=$PACKAGE_RECIPE
KIND=test
SERIES=$TK_SERIES
DEB_VERSION=$VERSION
ABI=$(cat "$B/kernelrelease")
KREL=$(cat "$B/kernelrelease")
VMLINUZ=vmlinuz
VMLINUX=build/vmlinux
SYSTEM_MAP=build/System.map
BASE_CPIO=base.cpio
UAPI_INCLUDE=build/include
KSRC=build/src
KUNIT=build/src/tools/testing/kunit
HEADERS=
MODULES=""
BUILD_SECONDS=$BUILD_SECONDS
EOF
ln -sfn "$TK_SERIES-$KEY" "$ROOT/testkernel/current-$TK_SERIES.tmp" && mv -T "$ROOT/testkernel/current-$TK_SERIES.tmp" "$ROOT/testkernel/current-$TK_SERIES"
[ "$QUIET" = 1 ] || vmc_log "test kernel $(cat "$B/kernelrelease") ready in $(vmc_elapsed "$T0")s: $KD"
[ "$PRINT_DIR" = 1 ] && echo "$KD"
exit 0
