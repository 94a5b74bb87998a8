#!/usr/bin/env bash
# --bind and its restore on an emulated PCI NIC (QEMU's e1000e) in the vm/ guest, three ways:
#   iommu    the 7.2 test kernel, q35 + intel-iommu: every IOMMU back end (type1, type1v2,
#            iommufd and its compat container), in-use refusal, SIGINT mid-run, SIGKILL then
#            `restore`, SIGKILL then the next run; the mtty records name their back end
#   noiommu  the 7.2 test kernel without a vIOMMU: vfio's no-IOMMU mode (vfio_noiommu)
#   none     Debian's 6.12 (no IOMMU, no CONFIG_VFIO_NOIOMMU): --bind refuses before any change
# The guest side is .ci/vm-bind-guest.sh; each prints PASS:/FAIL: lines and
# "vm-bind: N passed, M failed".
#
# usage: .ci/vm-bind.sh (--bin PATH | --deb FILE.deb) [--results DIR] [MODE...]
set -euo pipefail
cd "$(dirname "$0")/.."
inst=() results=target/ci/vm-bind modes=()
while [ $# -gt 0 ]; do
	case $1 in
	--bin | --deb) inst=("$1" "$2"); shift ;;
	--results) results=$2; shift ;;
	iommu | noiommu | none) modes+=("$1") ;;
	*) echo "usage: $0 (--bin PATH | --deb FILE.deb) [--results DIR] [iommu|noiommu|none...]" >&2; exit 2 ;;
	esac
	shift
done
[ ${#inst[@]} = 2 ] || { echo "$0: give --bin PATH or --deb FILE.deb" >&2; exit 2; }
[ ${#modes[@]} -gt 0 ] || modes=(none iommu noiommu)
rc=0
for m in "${modes[@]}"; do
	case $m in
	# run.sh's vIOMMU has no interrupt remapping (intremap=off): type1 and IOMMUFD refuse to
	# attach (EPERM) unless told that unsafe interrupts are acceptable.
	iommu) vm=(--kernel 7.2 --iommu --mdev mtty-2
		--append "vfio_iommu_type1.allow_unsafe_interrupts=1 iommufd.allow_unsafe_interrupts=1") ;;
	noiommu) vm=(--kernel 7.2) ;;
	none) vm=(--kernel 6.12) ;;
	esac
	echo "=== vm-bind $m: vm/run.sh ${vm[*]} --device e1000e"
	rm -rf "${results:?}/$m" && mkdir -p "$results"
	t0=$SECONDS
	if vm/run.sh "${inst[@]}" "${vm[@]}" --device e1000e --mem 1024 --timeout 900 --results "$results/$m" \
		-- sh /repo/.ci/vm-bind-guest.sh "$m" | tee "$results/$m.txt"; then
		echo "=== vm-bind $m: ok in $((SECONDS - t0)) s"
	else
		echo "=== vm-bind $m: FAILED in $((SECONDS - t0)) s"
		rc=1
	fi
done
exit $rc
