#!/usr/bin/env bash
# Mutation testing of lenslib's core modules with mutmut (not run in CI; see the README's development section).
#
#   bash tools/mutation.sh            every group of tools/mutation/groups.txt
#   bash tools/mutation.sh stats noise one or more groups by name
#
# Each group is mutated in its own copy of the working tree under $MUTATION_WORK (default
# /tmp/lenslib-mutation/<group>), with ../shared beside it, so the checkout is never touched and groups can be
# rerun alone (mutmut keeps its results there and reruns only what changed). A mutant that a test kills, or
# that makes a test time out or crash, counts as killed; mutants listed in tools/mutation/equivalent/<group>.txt
# (one `mutant-name  reason` per line) are equivalent to the original and left out of the count. The last line
# is `N killed of M mutants (P %)`; the exit status is 1 when a group has surviving mutants.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
groups_file="$repo/tools/mutation/groups.txt"
work_root="${MUTATION_WORK:-/tmp/lenslib-mutation}"
shared="$(cd "$repo/.." && pwd)/shared"
command -v mutmut >/dev/null || { echo "mutmut is not installed: pip install -e '.[mutation]'" >&2; exit 2; }

mapfile -t lines < <(grep -v '^\s*#' "$groups_file" | grep -v '^\s*$')
names=()
for line in "${lines[@]}"; do names+=("$(echo "${line%%|*}" | xargs)"); done
for w in "$@"; do
  [[ " ${names[*]} " == *" $w "* ]] || { echo "no group '$w' in $groups_file" >&2; exit 2; }
done
selected=()
for i in "${!lines[@]}"; do
  if [ $# -eq 0 ] || [[ " $* " == *" ${names[i]} "* ]]; then selected+=("${lines[i]}"); fi
done

mkdir -p "$work_root"
summary="$(mktemp "$work_root/summary.XXXXXX")"
trap 'rm -f "$summary"' EXIT
status=0
for line in "${selected[@]}"; do
  IFS='|' read -r name globs tests <<< "$line"
  name="$(echo "$name" | xargs)"; globs="$(echo "$globs" | xargs)"; tests="$(echo "$tests" | xargs)"
  dir="$work_root/$name/proj"
  mkdir -p "$dir"
  # the working tree as it is (tracked and new files), without build outputs; mutmut's own state is kept
  (cd "$repo" && git ls-files -z -co --exclude-standard | tar --null --ignore-failed-read -T - -cf - 2>/dev/null) \
    | tar -xf - -C "$dir"
  [ -e "$dir/../shared" ] || ln -s "$shared" "$dir/../shared"   # tests find ../shared beside the project...
  [ -e "$dir/shared" ] || ln -s "$shared" "$dir/shared"         # ...and mutmut runs them from proj/mutants
  {
    echo "[mutmut]"
    echo "source_paths=lenslib"
    echo "only_mutate="; for g in $globs; do echo "    $g"; done
    echo "pytest_add_cli_args_test_selection="; for t in $tests; do echo "    $t"; done
    echo "pytest_add_cli_args="; printf '    %s\n' -p no:logging -p no:cacheprovider -q
    echo "also_copy="; printf '    %s\n' params notebooks book
  } > "$dir/setup.cfg"
  echo "== $name: mutating $globs against $tests"
  start=$(date +%s)
  (cd "$dir" && OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 mutmut run > "$work_root/$name/run.log" 2>&1) || {
    echo "mutmut failed for group $name; see $work_root/$name/run.log" >&2; tail -c 2000 "$work_root/$name/run.log" >&2
    exit 2; }
  (cd "$dir" && mutmut results --all true) > "$work_root/$name/results.txt"
  python3 - "$name" "$work_root/$name/results.txt" "$repo/tools/mutation/equivalent/$name.txt" \
      "$(( $(date +%s) - start ))" "$summary" <<'PY' || status=1
import pathlib, re, sys
name, results, equivalent, seconds, summary = sys.argv[1:]
status = {}
for line in pathlib.Path(results).read_text().splitlines():
    m = re.match(r"\s*(\S+): (.+)$", line)
    if m:
        status[m.group(1)] = m.group(2).strip()
eq = {}
path = pathlib.Path(equivalent)
if path.exists():
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, reason = line.partition(" ")
            eq[key] = reason.strip()
unknown = sorted(set(eq) - set(status))
if unknown:
    print(f"   {len(unknown)} listed equivalent mutants no longer exist (update {path.name}): {', '.join(unknown[:5])}")
caught = {"killed", "timeout", "segfault", "caught by type check"}
counted = {k: v for k, v in status.items() if k not in eq and v != "skipped"}
killed = sum(v in caught for v in counted.values())
missed = sorted(k for k, v in counted.items() if v not in caught)
for k in missed:
    print(f"   {counted[k]:>10}: {k}   (mutmut show {k})")
total = len(counted)
pct = 100.0 * killed / total if total else 100.0
print(f"   {name}: {killed} killed of {total} mutants ({pct:.1f} %), {len(eq)} equivalent, {seconds} s")
with open(summary, "a") as f:
    f.write(f"{name}\t{killed}\t{total}\t{len(eq)}\t{seconds}\n")
sys.exit(1 if missed else 0)
PY
done
python3 - "$summary" <<'PY'
import sys
rows = [line.split("\t") for line in open(sys.argv[1]).read().splitlines()]
killed, total = sum(int(r[1]) for r in rows), sum(int(r[2]) for r in rows)
print(f"{killed} killed of {total} mutants ({100.0 * killed / max(total, 1):.1f} %)")
PY
exit $status
