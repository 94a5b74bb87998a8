#!/usr/bin/env bash
# Which blocks of mtty's migration code a sequence reaches (docs/fuzzing.md, what the blocks
# reached last need): one VM on the 7.2 test kernel (mtty-2 with a peer mtty-2), and in it, for
# each sequence, a `fuzz --coverage kcov` session that runs the sequence first (a one-entry
# corpus) and then only `get_state` walks for a second, which reach none of the save or resume
# code. Then, on the host, `kcov-report` symbolizes each session. Sessions are compared within
# groups of sequences whose file names share their first word (resume-*.yaml): printed is every
# mtty.c line whose blocks some sessions of a group reached and others did not, with what each
# reached there (reached, -, or k of n blocks).
#
#   bench/kcov-blocks.sh [SEQUENCE.yaml...]   (default: bench/kcov-blocks/*.yaml)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -eq 0 ]; then set -- bench/kcov-blocks/*.yaml; fi
for f in "$@"; do
	[ -f "$f" ] || { echo "kcov-blocks: not a file: $f" >&2; exit 2; }
done
# shellcheck source=bench/kcov-setup.sh
. bench/kcov-setup.sh
out=target/bench/kcov-blocks
kcov_setup "$out"
mkdir -p "$out/in"
for f in "$@"; do
	name=$(basename "$f" .yaml)
	mkdir -p "$out/in/$name" && cp "$f" "$out/in/$name/"
done
vm/run.sh --kernel 7.2 --bin "$bin" --mdev mtty-2 --mdev mtty-2 --timeout $((300 + 30 * $#)) --results "$out" \
	-- sh /repo/bench/vm/kcov-blocks-guest.sh | tee "$out/guest.log" ||
	echo "kcov-blocks: the VM run failed (exit $?): reporting the sessions that wrote a record"
for d in "$out"/in/*/; do
	name=$(basename "$d")
	[ -f "$out/$name.jsonl" ] || { echo "$name: no record (see $out/$name.err)"; continue; }
	"$bin" kcov-report "$out/$name.jsonl" --vmlinux "$VMLINUX" --ksrc "$KSRC" >"$out/$name.report"
done
python3 - "$out" <<'PY'
import glob, os, re, sys
out = sys.argv[1]
unreached = {}
for f in sorted(glob.glob(os.path.join(out, "*.report"))):
    name = os.path.basename(f)[:-7]
    text = open(f).read()
    if "unreached:" not in text:
        print(f"{name}: no list of unreached lines in {f}")
        continue
    rows = re.findall(r"^\s+(\S+:\d+) \((\d+) of (\d+) blocks unreached\)", text.split("unreached:", 1)[1], re.M)
    unreached[name] = {line: (int(k), int(n)) for line, k, n in rows}
def shown(name, line):
    k, n = unreached[name].get(line, (0, 0))
    return "reached" if k == 0 else ("-" if k == n else f"{n - k} of {n}")
def key(line):
    f, _, n = line.rpartition(":")
    return (f, int(n))
# Sessions are compared within a group: the names that share their first word (resume-*).
groups = {}
for name in sorted(unreached):
    groups.setdefault(name.split("-")[0], []).append(name)
for group, names in groups.items():
    lines = sorted({l for n in names for l in unreached[n]}, key=key)
    diff = [l for l in lines if len({shown(n, l) for n in names}) > 1]
    print(f"{group}-*: " + ", ".join(f"[{i + 1}] {n}" for i, n in enumerate(names)))
    if not diff:
        print("    the same blocks of mtty's migration functions in every session")
    for l in diff:
        print(f"    {l:32}" + "".join(f" [{i + 1}] {shown(n, l):8}" for i, n in enumerate(names)))
PY
