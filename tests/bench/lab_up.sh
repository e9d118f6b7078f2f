#!/usr/bin/env bash
# Benchmark: wall time of `kubeforge lab up` for 4 and 12 machines with a warm image cache
# (targets: under 60 s and under 120 s), each followed by `lab down` (timed too).
# Run as root from the repository root after `cargo build -p kubeforge` (or set KUBEFORGE_BIN).
# Prints one line per size; exits non-zero if a target is missed.
set -euo pipefail
BIN=${KUBEFORGE_BIN:-target/debug/kubeforge}
[[ -x $BIN ]] || { echo "no kubeforge binary at $BIN: run cargo build -p kubeforge" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# Warm the caches (image, artifacts) with the smallest lab; not timed.
"$BIN" lab up --name bench-warm --control-planes 1 --workers 0 --spec-out "$work/warm.yaml" >/dev/null
"$BIN" lab down --name bench-warm >/dev/null

status=0
for size in "4 3 1 60" "12 3 9 120"; do
  read -r total cps workers target <<<"$size"
  name="bench-$total"
  t0=$(now)
  "$BIN" lab up --name "$name" --control-planes "$cps" --workers "$workers" --spec-out "$work/$name.yaml" >/dev/null
  t1=$(now)
  "$BIN" lab down --name "$name" >/dev/null
  t2=$(now)
  up=$(secs "$t0" "$t1"); down=$(secs "$t1" "$t2")
  verdict=ok
  awk -v u="$up" -v t="$target" 'BEGIN { exit !(u < t) }' || { verdict=MISSED; status=1; }
  echo "lab up, $total machines ($cps control planes, $workers workers): ${up} s (target < ${target} s: $verdict); lab down: ${down} s"
done
exit $status
