# shellcheck shell=bash
# Sourced by bench/fuzz-kcov.sh and bench/fuzz-oops.sh (from the repository root): the kinds
# their sessions fuzz, and kcov_setup OUT, which builds the release binary ($bin), finds the
# 7.2 test kernel ($VMLINUX, $KSRC), empties OUT and writes there the filter of mtty.c and
# vfio_main.c that the guest passes to --kcov-filter.

# Every non-disruptive v2 kind but close_device (its known NULL dereference ends a session).
KCOV_BENCH_OPS=set_state,get_state,get_flags,data_size,read,write,precopy_info,precopy_info_v2,bad_buffer,race_set_read,race_reset,fail_nth,poll,fd_flags,close_fd,reset,dma_log_start,dma_log_stop,dma_log_report,config_read,region_read,set_irqs,wait,debugfs_state

kcov_setup() {
	cargo build --release -q -p vfio-mig-conform
	bin=target/release/vfio-mig-conform
	rm -rf "$1" && mkdir -p "$1"
	local kdir
	kdir=$(vm/testkernel.sh --quiet --print-dir)
	# shellcheck disable=SC1091
	. "$kdir/READY"
	VMLINUX=$kdir/$VMLINUX KSRC=$kdir/$KSRC
	"$bin" kcov-report --vmlinux "$VMLINUX" --filter-out "$1/kcov-filter.txt" >/dev/null
}
