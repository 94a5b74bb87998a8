#!/bin/sh
# shellcheck shell=dash
# Guest half of bench/record-overhead.sh (runs in the vm/ guest with --qemu-in-guest and two
# mtty-2 devices): ROUNDS live migrations plain, ROUNDS under the recorder and ROUNDS under
# the recorder with --stop-on-all-io (every read/write stops: the recorder before the per-fd
# filters), alternately, the order rotated every round.
set -u
ROUNDS=${1:-5}
S=/repo/vm/qemu/scenario.sh
R=/results
now() { cut -d' ' -f1 /proc/uptime; }
one() { # MODE ROUND: one live_precopy migration; appends "MODE total_ms downtime_ms wall_s" to $R/samples
	t=$(now)
	if [ "$1" = record ]; then
		QDIR=/tmp/b-$1-$2 vfio-mig-conform record -o $R/rec-$2.yaml -- sh $S live_precopy >$R/$1-$2.log 2>&1
	elif [ "$1" = allio ]; then
		QDIR=/tmp/b-$1-$2 vfio-mig-conform record --stop-on-all-io -o $R/allio-$2.yaml -- sh $S live_precopy >$R/$1-$2.log 2>&1
	else
		QDIR=/tmp/b-$1-$2 sh $S live_precopy >$R/$1-$2.log 2>&1
	fi
	rc=$?
	w=$(awk -v a="$t" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')
	l=$(grep -a 'scenario: src migration total' $R/$1-$2.log)
	tot=$(echo "$l" | sed -n 's/.*total \([0-9]*\) ms.*/\1/p')
	down=$(echo "$l" | sed -n 's/.*downtime \([0-9]*\) ms.*/\1/p')
	[ "$rc" = 0 ] && [ -n "$tot" ] || { echo "round $2 $1: the migration failed (exit $rc), see $1-$2.log"; return 1; }
	echo "$1 $tot ${down:-0} $w" >>$R/samples
	echo "round $2 $1: migration $tot ms (downtime ${down:-?} ms), scenario ${w} s$( [ "$1" != plain ] && grep -a 'tracer stops' $R/$1-$2.log | sed 's/.*; \([0-9]* tracer stops ([0-9]* followed to their exit)\).*/; \1/')"
}
: >$R/samples
i=1
while [ $i -le "$ROUNDS" ]; do
	case $((i % 3)) in
	1) one plain $i; one record $i; one allio $i ;;
	2) one record $i; one allio $i; one plain $i ;;
	*) one allio $i; one plain $i; one record $i ;;
	esac
	i=$((i + 1))
done
med() { # MODE COLUMN: the median of one column of one mode's samples
	awk -v m="$1" -v c="$2" '$1 == m { print $c }' $R/samples | sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
for c in "2 migration total (ms)" "3 downtime (ms)" "4 scenario wall (s)"; do
	col=${c%% *} name=${c#* }
	p=$(med plain "$col") r=$(med record "$col") a=$(med allio "$col")
	ratio() { awk -v a="$1" -v b="$p" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
	echo "median $name: plain $p, recorded $r, ratio $(ratio "$r")x; with --stop-on-all-io $a, ratio $(ratio "$a")x ($ROUNDS rounds)"
done
