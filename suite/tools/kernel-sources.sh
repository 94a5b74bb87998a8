#!/usr/bin/env bash
# Fetches drivers/vfio/vfio_main.c of the kernels whose next-state tables are checked in
# (suite/data/next_state/<series>.json) into a cache outside the checkout, and prints the
# environment the ignored test suite/tests/kernel_table_sources.rs reads:
#
#   eval "$(suite/tools/kernel-sources.sh)"
#   cargo test -p vmc-suite --test kernel_table_sources -- --ignored
#
# Sources: Debian's linux-source-6.12 (the host's bookworm-security) and linux-source-7.2
# (Debian sid; the .deb vm/testkernel.sh cached is used when present). The version of each is
# the one the checked-in table names in its "origin"; when the archive no longer has it, the
# newest one is used with a warning (the test then says whether the table still holds).
# Cache: ${VMC_KERNEL_CACHE:-~/.cache/vfio-mig-conform}/ksrc/<version>/drivers/vfio/vfio_main.c
# (a few seconds to extract each, once; the .deb files are not kept, except the one
# vm/testkernel.sh owns). --commands also prints, as comments, the commands that regenerate
# the tables from these files.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
prog=${0##*/}
log() { printf '%s: %s\n' "$prog" "$*" >&2; }
die() { printf '%s: error: %s\n' "$prog" "$*" >&2; exit 1; }

COMMANDS=0
case ${1:-} in
--commands) COMMANDS=1 ;;
'') ;;
-h | --help) sed -n '2,18s/^# \{0,1\}//p' "$0"; exit 0 ;;
*) die "unknown argument: $1 (usage: $prog [--commands])" ;;
esac

ROOT=${VMC_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vfio-mig-conform}
KSRC=$ROOT/ksrc
mkdir -p "$KSRC"
exec 9>"$KSRC/.lock"
flock 9 || die "cannot lock $KSRC/.lock"

# The version the checked-in table of SERIES was extracted from, if any.
pinned() { # SERIES
	local f=$repo/suite/data/next_state/$1.json
	[ -f "$f" ] || return 0
	sed -n "s|^ *\"origin\": \"linux-source-$1_\([^/\"]*\)/.*|\1|p" "$f" | head -n1
}

# apt-get with Debian sid's lists (kept in the cache, apart from the host's).
SID=$KSRC/apt-sid
SID_OPTS=(-o "Dir::Etc::sourcelist=$SID/sid.sources" -o Dir::Etc::sourceparts=-
	-o "Dir::State::Lists=$SID/lists" -o APT::Sandbox::User=root -q)
apt_sid() {
	if ! [ -e "$SID/lists/.updated" ]; then
		mkdir -p "$SID/lists/partial"
		cat >"$SID/sid.sources" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
		apt-get "${SID_OPTS[@]}" update >"$SID/update.log" 2>&1 || die "apt-get update of Debian sid failed (see $SID/update.log)"
		touch "$SID/lists/.updated"
	fi
	apt-get "${SID_OPTS[@]}" "$@"
}
apt_host() { apt-get -q -o APT::Sandbox::User=root "$@"; }

# The newest version of linux-source-SERIES the given apt knows.
newest() { # APT-FN SERIES
	local fn=$1 v
	if [ "$fn" = apt_sid ]; then
		apt_sid update >/dev/null 2>&1 || true
		v=$(apt-cache "${SID_OPTS[@]}" madison "linux-source-$2" | awk -F'|' 'NR == 1 { gsub(/ /, "", $2); print $2 }')
	else
		v=$(apt-cache madison "linux-source-$2" 2>/dev/null | awk -F'|' 'NR == 1 { gsub(/ /, "", $2); print $2 }')
		if [ -z "$v" ]; then
			apt-get update -qq >/dev/null 2>&1 || true
			v=$(apt-cache madison "linux-source-$2" 2>/dev/null | awk -F'|' 'NR == 1 { gsub(/ /, "", $2); print $2 }')
		fi
	fi
	[ -n "$v" ] || die "no linux-source-$2 in the archive"
	echo "$v"
}

# Extracts vfio_main.c of linux-source-SERIES=VERSION into $KSRC/VERSION; prints the file.
fetch() { # APT-FN SERIES VERSION
	local fn=$1 series=$2 v=$3
	local out=$KSRC/$v/drivers/vfio/vfio_main.c
	if [ -s "$out" ]; then
		echo "$out"
		return 0
	fi
	local deb=$ROOT/debs/linux-source-${series}_${v}_all.deb tmp=""
	if ! [ -s "$deb" ]; then
		tmp=$(mktemp -d "$KSRC/dl.XXXXXX")
		log "downloading linux-source-$series=$v"
		if [ "$fn" = apt_host ] && ! apt-cache show "linux-source-$series=$v" >/dev/null 2>&1; then
			apt-get update -qq >/dev/null 2>&1 || true
		fi
		(cd "$tmp" && "$fn" download "linux-source-$series=$v") >"$tmp.log" 2>&1 || {
			rm -rf "$tmp"
			return 1
		}
		deb=$(ls "$tmp"/linux-source-"$series"_*_all.deb)
	fi
	log "extracting drivers/vfio/vfio_main.c from $(basename "$deb")"
	mkdir -p "$KSRC/$v.part"
	(
		set +o pipefail
		dpkg-deb --fsys-tarfile "$deb" 2>/dev/null | tar -xO "./usr/src/linux-source-$series.tar.xz" 2>/dev/null |
			xz -dc 2>/dev/null | tar -x -C "$KSRC/$v.part" --strip-components=1 --occurrence=1 \
			"linux-source-$series/drivers/vfio/vfio_main.c" 2>/dev/null
	)
	dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$KSRC/$v.part" --strip-components=5 \
		"./usr/share/doc/linux-source-$series/changelog.Debian.gz" 2>/dev/null || true
	[ -n "$tmp" ] && rm -rf "$tmp" "$tmp.log"
	[ -s "$KSRC/$v.part/drivers/vfio/vfio_main.c" ] || die "no drivers/vfio/vfio_main.c in $deb"
	rm -rf "${KSRC:?}/$v" && mv "$KSRC/$v.part" "$KSRC/$v"
	echo "$out"
}

# SERIES APT-FN FALLBACK-VERSION
source_of() {
	local series=$1 fn=$2 want file
	want=$(pinned "$series")
	want=${want:-$3}
	[ -n "$want" ] || want=$(newest "$fn" "$series")
	if ! file=$(fetch "$fn" "$series" "$want"); then
		local latest
		latest=$(newest "$fn" "$series")
		log "warning: linux-source-$series=$want is no longer in the archive; using $latest (regenerate suite/data/next_state/$series.json)"
		want=$latest
		file=$(fetch "$fn" "$series" "$want") || die "download of linux-source-$series=$want failed"
	fi
	printf '%s %s\n' "$want" "$file"
}

tk_version=$(sed -n 's/^TK_VERSION=//p' "$repo/vm/testkernel.sh" | head -n1)
read -r v612 f612 < <(source_of 6.12 apt_host "")
read -r v72 f72 < <(source_of 7.2 apt_sid "$tk_version")
[ -n "$f612" ] && [ -n "$f72" ] || die "fetching the sources failed"
printf 'export VMC_VFIO_MAIN_6_12=%q\n' "$f612"
printf 'export VMC_VFIO_MAIN_7_2=%q\n' "$f72"
if [ "$COMMANDS" = 1 ]; then
	regen() { # SERIES VERSION FILE
		printf '# cargo run -q -p vmc-suite --example extract_next_state -- %q --origin %q > suite/data/next_state/%s.json\n' \
			"$3" "linux-source-$1_$2/drivers/vfio/vfio_main.c" "$1"
	}
	regen 6.12 "$v612" "$f612"
	regen 7.2 "$v72" "$f72"
fi
