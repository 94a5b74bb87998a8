#!/bin/busybox sh
# shellcheck shell=dash
# shellcheck disable=SC1091 # /vmc/* are written by run.sh at run time
# /init of the vfio-mig-conform test guest (busybox ash, PID 1).
# Installed into the per-run initramfs overlay by vm/run.sh; never run on
# the host. Reads /vmc/config, /vmc/env and /vmc/cmd (written by run.sh).
#
# Channels (virtio-serial ports, found by name):
#   vmc.out  the command's stdout+stderr (nothing else)
#   vmc.ctl  harness protocol lines: "VMC-<WORD> <uptime> ..." (see run.sh)
# The kernel console (ttyS0) goes to a log file on the host.

/bin/busybox mount -t devtmpfs devtmpfs /dev
exec </dev/null >/dev/console 2>&1
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
umask 022

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t debugfs debugfs /sys/kernel/debug
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm

uptime_s() { cut -d' ' -f1 /proc/uptime; }

# port NAME: print the /dev node of the virtio-serial port called NAME.
port() {
	for p in /sys/class/virtio-ports/*; do
		[ -e "$p/name" ] || continue
		if [ "$(cat "$p/name")" = "$1" ]; then
			echo "/dev/${p##*/}"
			return 0
		fi
	done
	return 1
}

# Ports are added asynchronously by the virtio console driver: wait (<= 10 s).
CTL="" OUT="" n=0
while [ $n -lt 1000 ]; do
	CTL=$(port vmc.ctl) && OUT=$(port vmc.out) && [ -c "$CTL" ] && [ -c "$OUT" ] && break
	CTL="" OUT=""
	n=$((n + 1))
	usleep 10000
done
if [ -z "$CTL" ]; then
	echo "vmc-init: virtio-serial ports vmc.ctl/vmc.out not found" >&2
	poweroff -f
fi
exec 3>"$CTL"

ctl() { echo "VMC-$1 $(uptime_s) $2" >&3; }

finish() {
	if grep -q " /results " /proc/mounts; then
		dmesg >/results/dmesg.txt 2>/dev/null
	fi
	sync
	grep -q " /results " /proc/mounts && umount /results 2>/dev/null
	ctl DONE ""
	poweroff -f
	echo o >/proc/sysrq-trigger
	while :; do sleep 1; done
}

fail() {
	echo "vmc-init: error: $*" >&2
	ctl ERROR "$*"
	dmesg | tail -n 20 >&2
	finish
}

ctl BOOTED "$(uname -r)"

. /vmc/config

# Modules, in dependency order (computed by prepare.sh).
while read -r m; do
	[ -n "$m" ] || continue
	insmod "/lib/modules/vmc/$m" || fail "insmod $m failed"
done </lib/modules/vmc/load-order

P9OPTS=trans=virtio,version=9p2000.L,msize=512000
if [ "$VMC_SHARE" = 1 ]; then
	mount -t 9p -o "$P9OPTS,ro" vmcrepo /repo || fail "mounting the shared directory (9p) on /repo failed"
fi
if [ "$VMC_RESULTS" = 1 ]; then
	mount -t 9p -o "$P9OPTS" vmcresults /results || fail "mounting the results directory (9p) on /results failed"
else
	mount -t tmpfs -o mode=0755 tmpfs /results
fi

# mdev instances, in order, with deterministic UUIDs.
ENVF=/run/vmc-devices.env
: >"$ENVF"
i=0
for t in $VMC_MDEVS; do
	tdir=""
	for d in /sys/class/mdev_bus/*/mdev_supported_types/"$t"; do
		[ -d "$d" ] && tdir=$d
	done
	if [ -z "$tdir" ]; then
		avail=""
		for d in /sys/class/mdev_bus/*/mdev_supported_types/*; do
			[ -d "$d" ] && avail="$avail ${d##*/}"
		done
		fail "mdev type '$t' not found; available:${avail:- none}"
	fi
	uuid=$(printf 'c0000000-0000-4000-8000-%012x' "$i")
	echo "$uuid" >"$tdir/create" || fail "creating $t instance $uuid failed (available_instances=$(cat "$tdir/available_instances" 2>/dev/null))"
	sysfs=/sys/bus/mdev/devices/$uuid
	grp=$(readlink "$sysfs/iommu_group") || fail "$uuid has no iommu_group"
	grp=${grp##*/}
	n=0
	while [ ! -c "/dev/vfio/$grp" ] && [ $n -lt 500 ]; do
		n=$((n + 1))
		usleep 10000
	done
	[ -c "/dev/vfio/$grp" ] || fail "/dev/vfio/$grp did not appear for $uuid"
	# The IOMMUFD device cdev (kernels with VFIO_DEVICE_CDEV): /dev/vfio/devices/vfioN.
	cdev=""
	for c in "$sysfs"/vfio-dev/vfio*; do
		[ -e "$c" ] && cdev=/dev/vfio/devices/${c##*/}
	done
	{
		[ -n "$cdev" ] && echo "VMC_DEV${i}_CDEV=$cdev"
		echo "VMC_DEV$i=/dev/vfio/$grp"
		echo "VMC_DEV${i}_TYPE=$t"
		echo "VMC_DEV${i}_UUID=$uuid"
		echo "VMC_DEV${i}_GROUP=$grp"
		echo "VMC_DEV${i}_SYSFS=$sysfs"
	} >>"$ENVF"
	i=$((i + 1))
done
echo "VMC_NDEV=$i" >>"$ENVF"
set -a
# shellcheck disable=SC1090
. "$ENVF"
set +a
export VMC_GUEST=1 VMC_RESULTS_DIR=/results VMC_KERNEL_KIND VMC_KERNEL_SERIES
[ "$VMC_SHARE" = 1 ] && export VMC_REPO_DIR=/repo
[ -f /vmc/env ] && . /vmc/env

ctl READY "$VMC_NDEV"
if [ "$VMC_SHARE" = 1 ]; then cd /repo || fail "cd /repo"; else cd /root || fail "cd /root"; fi
(. /vmc/cmd) </dev/null >"$OUT" 2>&1
rc=$?
cd /
ctl EXIT "$rc"
finish
