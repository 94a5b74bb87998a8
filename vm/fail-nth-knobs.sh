#!/bin/sh
# shellcheck shell=dash
# In the vm/ guest, before a `fuzz` session with the `fail_nth` kind: lets injected faults
# reach GFP_KERNEL and order-0 allocations, which the kernel's default fault-injection filters
# skip (Documentation/fault-injection/fault-injection.rst; docs/fuzzing.md). A kernel without
# fault injection has none of these files, and nothing is written.
for d in failslab fail_page_alloc; do
	[ -w /sys/kernel/debug/$d/ignore-gfp-wait ] && echo N >/sys/kernel/debug/$d/ignore-gfp-wait
done
[ -w /sys/kernel/debug/fail_page_alloc/min-order ] && echo 0 >/sys/kernel/debug/fail_page_alloc/min-order
exit 0
