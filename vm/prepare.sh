#!/usr/bin/env bash
# Prepare the real-kernel VM harness: host packages, a Debian 6.12 kernel,
# the out-of-tree mtty/mdpy sample drivers and a busybox base initramfs.
# Idempotent: a second run with an up-to-date cache does no network access.
# See vm/README.md.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Bump when the layout/recipe of a prepared kernel directory changes: a
# kernel directory prepared by another recipe is rebuilt.
RECIPE=6

usage() {
	cat <<EOF
usage: vm/prepare.sh [--update] [--force] [--quiet]

  --update   re-run apt-get update and switch to the newest complete
             Debian $VMC_SERIES kernel version (default: keep the cached one)
  --force    rebuild the cached kernel directory from scratch
  --quiet    print only the summary line (and errors)

environment:
  VMC_VM_CACHE        cache directory (default: ${XDG_CACHE_HOME:-~/.cache}/vfio-mig-conform/vm)
  VMC_KERNEL_VERSION  pin a Debian package version (6.12.113-1~deb12u1)
                      or ABI name (6.12.113+deb12)
  VMC_KEEP_DEBS=1     keep the downloaded .deb files in the cache
  VMC_KEEP_HEADERS=1  keep the extracted headers/kbuild tree in the cache
                      (to build more out-of-tree modules; ~100 MB, 17k files)
  VMC_NO_APT_UPDATE=1 never run apt-get update (use the current lists)
  VMC_SCRATCH         scratch directory for downloads (default: /dev/shm
                      when it has > 1 GiB free, else the cache)
EOF
}

UPDATE=0 FORCE=0 QUIET=0
while [ $# -gt 0 ]; do
	case $1 in
	--update) UPDATE=1 ;;
	--force) FORCE=1 ;;
	--quiet | -q) QUIET=1 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; vmc_die "unknown argument: $1" ;;
	esac
	shift
done

T0=$(vmc_now)
say() { [ "$QUIET" = 1 ] || vmc_log "[$(vmc_elapsed "$T0")s] $*"; }

command -v apt-get >/dev/null || vmc_die "apt-get not found: this harness needs a Debian bookworm host"

# Root is needed only to install packages and update the apt lists; a
# prepared cache on a provisioned host works for any user.
need_root() {
	[ "$(id -u)" = 0 ] || vmc_die "$1 needs root (run vm/prepare.sh as root once)"
}

APT_UPDATED=0
apt_update() {
	[ "$APT_UPDATED" = 1 ] && return 0
	[ "${VMC_NO_APT_UPDATE:-0}" = 1 ] && return 0
	need_root "apt-get update"
	say "apt-get update"
	apt-get update -qq >"$VMC_CACHE/apt-update.log" 2>&1 ||
		vmc_die "apt-get update failed (see $VMC_CACHE/apt-update.log)"
	APT_UPDATED=1
}

# missing_pkgs PKG...: print the packages that are not installed.
missing_pkgs() {
	local p st
	for p in "$@"; do
		st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
		case $st in ii*) ;; *) printf '%s\n' "$p" ;; esac
	done
}

ensure_pkgs() {
	local missing
	missing=$(missing_pkgs "$@")
	[ -z "$missing" ] && return 0
	# shellcheck disable=SC2086 # word splitting of the package list is intended
	say "installing host packages:" $missing
	need_root "installing host packages (${missing//$'\n'/ })"
	apt_update
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		$missing >"$VMC_CACHE/apt-install.log" 2>&1 ||
		vmc_die "apt-get install failed for:" $missing "(see $VMC_CACHE/apt-install.log)"
}

mkdir -p "$VMC_CACHE/kernels"
exec 9>"$VMC_CACHE/.lock"
flock 9 || vmc_die "cannot lock $VMC_CACHE/.lock"

# Host tools: qemu (TCG), busybox for the guest, cpio for the initramfs,
# xz/binutils/make/libelf for unpacking the kernel and building modules.
# gcc-N (matching the kernel's compiler) is added once the kernel is known.
HOST_PKGS=(qemu-system-x86 busybox-static cpio xz-utils make binutils libelf1 zlib1g)
ensure_pkgs "${HOST_PKGS[@]}"

# ---------------------------------------------------------------- selection
ready_ok() { # DIR: is DIR a complete kernel directory of this recipe?
	[ -f "$1/READY" ] || return 1
	grep -qx "RECIPE=$RECIPE" "$1/READY"
}

pin_matches() { # DEB_VERSION ABI
	[ -z "${VMC_KERNEL_VERSION:-}" ] && return 0
	[ "$VMC_KERNEL_VERSION" = "$1" ] || [ "$VMC_KERNEL_VERSION" = "$2" ]
}

# list_candidates: "DEB_VERSION ABI" lines, newest first, for which all five
# packages exist at exactly that version in the apt lists.
list_candidates() {
	local series_re images
	series_re=${VMC_SERIES//./\\.}
	images=$(apt-cache pkgnames "linux-image-$VMC_SERIES." 2>/dev/null |
		grep -E "^linux-image-$series_re\.[0-9]+\+deb[0-9]+-$VMC_FLAVOUR-unsigned\$" || true)
	[ -n "$images" ] || return 0
	local names=() img abi
	for img in $images; do
		abi=${img#linux-image-}
		abi=${abi%-"$VMC_FLAVOUR"-unsigned}
		names+=("$img" "linux-headers-$abi-$VMC_FLAVOUR" "linux-headers-$abi-common" "linux-kbuild-$abi")
	done
	names+=("linux-source-$VMC_SERIES")
	apt-cache madison "${names[@]}" 2>/dev/null |
		awk -F'|' -v flav="$VMC_FLAVOUR" -v series="$VMC_SERIES" '
		$3 ~ /Sources/ { next }
		{
			gsub(/ /, "", $1); gsub(/ /, "", $2)
			have[$1 "=" $2] = 1
			if ($1 ~ "^linux-image-.*-" flav "-unsigned$") {
				abi = $1; sub(/^linux-image-/, "", abi); sub("-" flav "-unsigned$", "", abi)
				cand[$2 " " abi] = 1
			}
		}
		END {
			for (c in cand) {
				split(c, a, " "); v = a[1]; abi = a[2]
				if (have["linux-headers-" abi "-" flav "=" v] &&
				    have["linux-headers-" abi "-common=" v] &&
				    have["linux-kbuild-" abi "=" v] &&
				    have["linux-source-" series "=" v])
					print c
			}
		}' | sort -u | sort -r -V -k1,1
}

DEB_VERSION="" ABI=""
if [ "$FORCE" = 0 ] && [ "$UPDATE" = 0 ] && ready_ok "$VMC_CURRENT"; then
	# shellcheck disable=SC1091
	cur_ver=$(. "$VMC_CURRENT/READY" && echo "$DEB_VERSION")
	# shellcheck disable=SC1091
	cur_abi=$(. "$VMC_CURRENT/READY" && echo "$ABI")
	if pin_matches "$cur_ver" "$cur_abi"; then
		DEB_VERSION=$cur_ver ABI=$cur_abi
	fi
fi
if [ -z "$DEB_VERSION" ] && [ "$FORCE" = 0 ] && [ -n "${VMC_KERNEL_VERSION:-}" ]; then
	# A pinned version that is already prepared (but not current).
	for d in "$VMC_CACHE"/kernels/*/; do
		ready_ok "$d" || continue
		# shellcheck disable=SC1091
		v=$(. "$d/READY" && echo "$DEB_VERSION")
		# shellcheck disable=SC1091
		a=$(. "$d/READY" && echo "$ABI")
		if pin_matches "$v" "$a"; then DEB_VERSION=$v ABI=$a; fi
	done
fi

# ---------------------------------------------------------------- building
# fetch VERSION ABI DLDIR: download the five packages; non-zero on failure.
fetch() {
	local v=$1 abi=$2 dl=$3
	rm -rf "$dl" && mkdir -p "$dl"
	# Test hook: pretend VERSION vanished from the archive.
	if [ "${VMC_TEST_FAIL_DOWNLOAD:-}" = "$v" ]; then
		echo "E: simulated download failure (VMC_TEST_FAIL_DOWNLOAD=$v)" >"$dl.log"
		return 1
	fi
	(cd "$dl" && apt-get download -q -o APT::Sandbox::User=root \
		"linux-image-$abi-$VMC_FLAVOUR-unsigned=$v" \
		"linux-headers-$abi-$VMC_FLAVOUR=$v" \
		"linux-headers-$abi-common=$v" \
		"linux-kbuild-$abi=$v" \
		"linux-source-$VMC_SERIES=$v") >"$dl.log" 2>&1
}

# resolve_order MODDIR ROOT...: print module files (basename) in load order.
resolve_order() {
	local dir=$1
	shift
	declare -A file=() state=()
	local f n
	for f in "$dir"/*.ko; do
		n=${f##*/}
		n=${n%.ko}
		file[${n//-/_}]=${f##*/}
	done
	local order=()
	visit() {
		local m=${1//-/_} d deps
		case ${state[$m]:-} in done) return 0 ;; active) vmc_die "module dependency cycle at $m" ;; esac
		[ -n "${file[$m]:-}" ] || vmc_die "module $m (needed) not found in the kernel image package"
		state[$m]=active
		deps=$(vmc_modinfo depends "$dir/${file[$m]}")
		for d in ${deps//,/ }; do visit "$d"; done
		state[$m]="done"
		order+=("${file[$m]}")
	}
	for n in "$@"; do visit "$n"; done
	printf '%s\n' "${order[@]}"
}

build_kernel_dir() { # VERSION ABI DLDIR
	local v=$1 abi=$2 dl=$3
	local krel=$abi-$VMC_FLAVOUR
	local kd=$VMC_CACHE/kernels/$abi
	# Everything is unpacked and built in the scratch directory (tmpfs by
	# default: creating ~17k header files on the cache's filesystem can cost
	# 10 s); only the products are copied into the cache.
	local w=$SCRATCH/work
	rm -rf "$kd" "$w" && mkdir -p "$kd"/{modules,src,build,include/linux} "$w"/{img,hdr,build,initramfs}

	say "extracting samples/vfio-mdev from linux-source-$VMC_SERIES (in the background)"
	local want=(mtty.c mdpy.c mdpy-defs.h) pat=() f
	for f in "${want[@]}"; do pat+=("*/samples/vfio-mdev/$f"); done
	# The kernel's KTAP parser (kunit.py parse), to validate the suite's KTAP in CI.
	local kunit=(kunit.py kunit_parser.py kunit_printer.py kunit_json.py kunit_kernel.py kunit_config.py qemu_config.py)
	for f in "${kunit[@]}"; do pat+=("*/tools/testing/kunit/$f"); done
	# The 1.5 GB source tarball must be decompressed up to samples/ (~6 s of
	# CPU); overlap that with the rest. --occurrence stops tar once all
	# members are found, which breaks the pipe upstream: ignore the pipeline
	# status and check the files instead.
	(
		set +o pipefail
		dpkg-deb --fsys-tarfile "$dl"/linux-source-*.deb 2>/dev/null |
			tar -xO --wildcards './usr/src/linux-source-*.tar.xz' 2>/dev/null |
			xz -dc -T2 2>/dev/null |
			tar -x -C "$kd/src" --wildcards --occurrence=1 --strip-components=3 "${pat[@]}"
	) &
	local srcpid=$!

	say "extracting linux-image (vmlinuz, config, needed modules)"
	local pats=("./boot/vmlinuz-$krel" "./boot/config-$krel")
	local d
	for d in "${VMC_MODULE_DIRS[@]}"; do pats+=("./lib/modules/$krel/kernel/$d/*"); done
	dpkg-deb --fsys-tarfile "$dl"/linux-image-"$abi"-*.deb |
		tar -x -C "$w/img" --wildcards "${pats[@]}" ||
		vmc_die "extracting linux-image-$krel failed (package layout changed?)"
	cp "$w/img/boot/vmlinuz-$krel" "$kd/vmlinuz"
	cp "$w/img/boot/config-$krel" "$kd/config"
	find "$w/img/lib/modules" -name '*.ko.xz' -exec xz -d -T1 {} + ||
		vmc_die "decompressing in-image modules failed"
	find "$w/img/lib/modules" -name '*.ko' -exec cp -t "$kd/modules" {} +

	say "extracting headers and kbuild"
	# Skip what an x86 out-of-tree module build never reads (other
	# architectures, vmlinux for BTF, docs).
	for f in "$dl"/linux-headers-*.deb "$dl"/linux-kbuild-*.deb; do
		dpkg-deb --fsys-tarfile "$f" | tar -x -C "$w/hdr" --wildcards \
			--exclude='./usr/share/doc' --exclude='./usr/share/lintian' \
			--exclude="./usr/src/linux-headers-$abi-$VMC_FLAVOUR/vmlinux" \
			--exclude="./usr/src/linux-headers-$abi-common/arch/[!x]*" \
			--exclude="./usr/src/linux-headers-$abi-common/arch/xtensa" ||
			vmc_die "extracting $f failed"
	done
	local hdr=$w/hdr/usr/src/linux-headers-$krel
	[ -f "$hdr/Makefile" ] || vmc_die "headers Makefile missing: $hdr/Makefile"
	# The flavour Makefile includes the common one by an absolute /usr/src
	# path; make it relative (make -C runs in $hdr), so the tree is relocatable.
	sed -i "s|^include /usr/src/\(linux-headers-[^/]*-common/Makefile\)|include ../\1|" "$hdr/Makefile"
	grep -q '^include \.\./' "$hdr/Makefile" || vmc_die "unexpected headers Makefile: $(cat "$hdr/Makefile")"

	# The kernel's compiler (e.g. "x86_64-linux-gnu-gcc-12 (Debian ...) 12.2.0").
	local cc_text gccpkg
	cc_text=$(sed -n 's/^CONFIG_CC_VERSION_TEXT="\(.*\)"$/\1/p' "$kd/config")
	gccpkg=$(printf '%s\n' "$cc_text" | grep -oE '\bgcc-[0-9]+' | head -n1 || true)
	[ -n "$gccpkg" ] || vmc_die "cannot tell the kernel's gcc from CONFIG_CC_VERSION_TEXT='$cc_text'"
	ensure_pkgs "$gccpkg"
	command -v "x86_64-linux-gnu-$gccpkg" >/dev/null ||
		vmc_die "x86_64-linux-gnu-$gccpkg not found after installing $gccpkg"

	wait "$srcpid" || true
	for f in "${want[@]}"; do
		[ -s "$kd/src/$f" ] || vmc_die "samples/vfio-mdev/$f not found in linux-source-$VMC_SERIES=$v"
	done
	# kunit.py finds the kernel tree by the `tools/testing/kunit` in its own path (and exits 1
	# silently when it is not there), so the files keep that path.
	mkdir -p "$kd/kunit/tools/testing/kunit"
	for f in "${kunit[@]}"; do
		[ -s "$kd/src/kunit/$f" ] || vmc_die "tools/testing/kunit/$f not found in linux-source-$VMC_SERIES=$v"
		mv "$kd/src/kunit/$f" "$kd/kunit/tools/testing/kunit/"
	done
	rmdir "$kd/src/kunit" 2>/dev/null || true

	say "building mtty.ko and mdpy.ko out of tree"
	cp "$kd"/src/* "$w/build/"
	printf 'obj-m := mtty.o mdpy.o\n' >"$w/build/Kbuild"
	if ! make -C "$hdr" M="$w/build" CONFIG_DEBUG_INFO_BTF_MODULES= \
		-j"$(nproc)" modules >"$kd/build/build.log" 2>&1; then
		tail -n 30 "$kd/build/build.log" >&2
		vmc_die "out-of-tree build of mtty/mdpy failed (log: $kd/build/build.log)"
	fi
	for f in mtty mdpy; do
		[ -f "$w/build/$f.ko" ] || vmc_die "$f.ko was not produced"
		local vm
		vm=$(vmc_modinfo vermagic "$w/build/$f.ko")
		case $vm in "$krel "*) ;; *) vmc_die "$f.ko vermagic '$vm' does not match $krel" ;; esac
		cp "$w/build/$f.ko" "$kd/build/"
		cp "$w/build/$f.ko" "$kd/modules/"
	done

	# A user-space copy of the uAPI vfio.h (for C probes; system linux/types.h).
	(cd "$w/hdr/usr/lib/linux-kbuild-$abi" &&
		scripts/headers_install.sh "$w/hdr/usr/src/linux-headers-$abi-common/include/uapi/linux/vfio.h" \
			"$kd/include/linux/vfio.h") || vmc_die "headers_install.sh of uapi/linux/vfio.h failed"

	local headers=""
	if [ "${VMC_KEEP_HEADERS:-0}" = 1 ]; then
		say "keeping the headers tree in the cache"
		cp -a "$w/hdr" "$kd/hdr"
		headers=hdr/usr/src/linux-headers-$krel
	fi

	say "building the base initramfs"
	resolve_order "$kd/modules" "${VMC_ROOT_MODULES[@]}" >"$kd/load-order"
	local ir=$w/initramfs
	mkdir -p "$ir"/{bin,dev,proc,sys,run,tmp,repo,results,root,etc,lib/modules/vmc,vmc}
	cp "$(command -v busybox)" "$ir/bin/busybox"
	file_is_static "$ir/bin/busybox" || vmc_die "busybox is not static (install busybox-static)"
	local m
	while read -r m; do
		strip --strip-debug -o "$ir/lib/modules/vmc/$m" "$kd/modules/$m"
	done <"$kd/load-order"
	cp "$kd/load-order" "$ir/lib/modules/vmc/load-order"
	(cd "$ir" && find . -mindepth 1 | LC_ALL=C sort |
		cpio -o -H newc --owner=0:0 --quiet) >"$kd/base.cpio" ||
		vmc_die "cpio of the base initramfs failed"
	rm -rf "$w"

	cat >"$kd/READY" <<EOF
RECIPE=$RECIPE
DEB_VERSION=$v
ABI=$abi
KREL=$krel
VMLINUZ=vmlinuz
BASE_CPIO=base.cpio
UAPI_INCLUDE=include
KUNIT=kunit/tools/testing/kunit
HEADERS=$headers
MODULES="$(tr '\n' ' ' <"$kd/load-order" | sed 's/ $//')"
EOF
}

file_is_static() { # ELF has no PT_INTERP
	! LC_ALL=C readelf -l "$1" 2>/dev/null | grep -q 'Requesting program interpreter'
}

if [ -z "$DEB_VERSION" ]; then
	apt_update
	cands=$(list_candidates)
	if [ -z "$cands" ] && [ "$APT_UPDATED" = 0 ]; then
		APT_UPDATED=0 VMC_NO_APT_UPDATE=0 apt_update
		cands=$(list_candidates)
	fi
	[ -n "$cands" ] || vmc_die "no complete Debian linux $VMC_SERIES package set (image-unsigned, headers, headers-common, kbuild, source) in the apt lists; is bookworm-security enabled?"
	if [ -n "${VMC_KERNEL_VERSION:-}" ]; then
		cands=$(printf '%s\n' "$cands" | awk -v p="$VMC_KERNEL_VERSION" '$1 == p || $2 == p')
		[ -n "$cands" ] || vmc_die "pinned VMC_KERNEL_VERSION=$VMC_KERNEL_VERSION is not available"
	fi
	say "candidates (newest first): $(printf '%s\n' "$cands" | awk '{print $1}' | tr '\n' ' ')"
	# Downloads and throw-away extraction go to RAM (tmpfs) when there is
	# room: ~300 MB that never needs to hit the disk.
	scratch_parent=${VMC_SCRATCH:-}
	if [ -z "$scratch_parent" ]; then
		scratch_parent=$VMC_CACHE
		if [ -d /dev/shm ] && [ -w /dev/shm ] &&
			[ "$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }')" -gt 1048576 ] 2>/dev/null; then
			scratch_parent=/dev/shm
		fi
	fi
	SCRATCH=$(mktemp -d "$scratch_parent/vmc-prepare.XXXXXX") || vmc_die "cannot create a scratch directory in $scratch_parent"
	trap 'rm -rf "$SCRATCH"' EXIT
	dl=$SCRATCH/dl
	while read -r v abi; do
		if ready_ok "$VMC_CACHE/kernels/$abi" && [ "$FORCE" = 0 ] &&
			grep -qx "DEB_VERSION=$v" "$VMC_CACHE/kernels/$abi/READY"; then
			DEB_VERSION=$v ABI=$abi
			break
		fi
		say "downloading Debian linux $v ($abi)"
		if fetch "$v" "$abi" "$dl"; then
			build_kernel_dir "$v" "$abi" "$dl"
			DEB_VERSION=$v ABI=$abi
			break
		fi
		vmc_log "warning: download of $v failed, trying an older version ($(tail -n 1 "$dl.log"))"
	done <<<"$cands"
	[ -n "$DEB_VERSION" ] || vmc_die "could not download any candidate kernel version: $(tail -n 3 "$dl.log" 2>/dev/null | tr '\n' ' ')"
	if [ "${VMC_KEEP_DEBS:-0}" = 1 ]; then
		mkdir -p "$VMC_CACHE/debs/$DEB_VERSION"
		cp "$dl"/*.deb "$VMC_CACHE/debs/$DEB_VERSION/"
	fi
	rm -rf "$SCRATCH"
	trap - EXIT
fi

ln -sfn "kernels/$ABI" "$VMC_CURRENT.tmp" && mv -T "$VMC_CURRENT.tmp" "$VMC_CURRENT"
ready_ok "$VMC_CURRENT" || vmc_die "internal: $VMC_CURRENT is not ready"
# shellcheck disable=SC1091
. "$VMC_CURRENT/READY"
# The gcc package may have been removed since the kernel was prepared.
gccpkg=$(sed -n 's/^CONFIG_CC_VERSION_TEXT="\(.*\)"$/\1/p' "$VMC_CURRENT/config" | grep -oE '\bgcc-[0-9]+' | head -n1)
ensure_pkgs "$gccpkg"

kd=$(cd "$VMC_CURRENT" && pwd -P)
# shellcheck disable=SC2153 # KREL etc. come from READY
echo "vm: kernel $KREL (deb $DEB_VERSION) ready in $(vmc_elapsed "$T0")s: dir=$kd vmlinuz=$VMLINUZ initramfs=$BASE_CPIO vfio.h=$UAPI_INCLUDE/linux/vfio.h modules=[$MODULES]${HEADERS:+ headers=$HEADERS}"
