# shellcheck shell=bash disable=SC2034 # variables are used by the sourcing scripts
# Shared helpers for vm/prepare.sh, vm/run.sh and vm/selftest.sh.
# Sourced, never executed. Callers have `set -euo pipefail`.

VMC_SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VMC_REPO=$(cd "$VMC_SCRIPT_DIR/.." && pwd)
# Caches live outside the checkout (CI starts from a clean clone): the Debian kernel
# directories, the downloaded packages and the test kernel, each keyed by what it was built from.
VMC_KERNEL_CACHE=${VMC_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vfio-mig-conform}
case $VMC_KERNEL_CACHE in /*) ;; *) VMC_KERNEL_CACHE=$PWD/$VMC_KERNEL_CACHE ;; esac
VMC_CACHE=${VMC_VM_CACHE:-$VMC_KERNEL_CACHE/vm}
case $VMC_CACHE in /*) ;; *) VMC_CACHE=$PWD/$VMC_CACHE ;; esac
# Kernel series and flavour this harness targets (Debian bookworm-security
# names: linux-image-6.12.N+deb12-amd64-unsigned, linux-source-6.12, ...).
VMC_SERIES=6.12
VMC_FLAVOUR=amd64

# Modules (by module name) that must be loaded in the guest, in any order;
# their dependencies are resolved from .modinfo at prepare time.
# vfio_pci and the e1000e/igb NIC drivers: an emulated PCI device (run.sh --device e1000e) to
# bind to vfio-pci (.ci/vm-bind.sh; vfio's no-IOMMU mode on this kernel).
VMC_ROOT_MODULES=(vfio vfio_iommu_type1 vfio_pci mdev mtty mdpy 9pnet_virtio 9p e1000e igb)
# In-image module directories (relative to lib/modules/<abi>/kernel) searched
# for those modules and their dependencies.
VMC_MODULE_DIRS=(drivers/vfio virt/lib fs/9p fs/netfs net/9p drivers/net/ethernet/intel drivers/ptp drivers/pps
	drivers/dca drivers/i2c/algos)

vmc_prog=${0##*/}

vmc_log() { printf '%s: %s\n' "$vmc_prog" "$*" >&2; }
vmc_die() { printf '%s: error: %s\n' "$vmc_prog" "$*" >&2; exit "${VMC_DIE_CODE:-1}"; }

# vmc_now: seconds since epoch with millisecond resolution.
vmc_now() { date +%s.%N | cut -c1-14; }
vmc_elapsed() { awk -v a="$1" -v b="$(vmc_now)" 'BEGIN { printf "%.1f", b - a }'; }

# vmc_modinfo FIELD FILE.ko: print one .modinfo field (kmod is not needed).
vmc_modinfo() {
	objcopy -O binary -j .modinfo "$2" /dev/stdout 2>/dev/null |
		tr '\0' '\n' | sed -n "s/^$1=//p" | head -n1
}

# The prepared kernel directory (symlink to kernels/<abi>), valid when
# "$VMC_CACHE/current/READY" exists. READY is a sourceable key=value file.
VMC_CURRENT=$VMC_CACHE/current
