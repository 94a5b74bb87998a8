#!/bin/sh
# shellcheck shell=dash
# Guest half of bench/kcov-blocks.sh (the vm/ guest on the 7.2 test kernel, mtty-2 with a peer
# mtty-2): for each sequence under /results/in/<name>/, a one-second `fuzz --coverage kcov`
# session that runs it first (a one-entry corpus) and then only `get_state` walks. Records go
# to /results/<name>.jsonl.
set -u
R=/results
for d in "$R"/in/*/; do
	name=$(basename "$d")
	rm -rf "$R/corpus-$name" && cp -r "$d" "$R/corpus-$name"
	vfio-mig-conform fuzz "$VMC_DEV0" --peer "$VMC_DEV1" --duration 1s --seed 1 --ops get_state \
		--coverage kcov --kcov-filter $R/kcov-filter.txt --corpus "$R/corpus-$name" \
		--json "$R/$name.jsonl" >"$R/$name.txt" 2>"$R/$name.err"
	echo "$name: exit $?; $(grep -E 'corpus:' "$R/$name.err" | head -1)"
done
