#!/usr/bin/env bash
# Benchmark: throughput and peak RSS of `kubeforge backup create` (operator machine; by default
# `--via auto`, which goes direct over mTLS to the member's client port when it is reachable, as
# on the lab; and with `--via tunnel` through an SSH tunnel to the member it picks),
# of `kubeforge backup run` (direct mTLS to that same member, as the timer runs it) against
# `etcdctl snapshot save` from the same machine to the same member, with an etcd database of
# at least 256 MiB. Targets (issue 11): at least etcdctl's throughput, peak RSS under 64 MiB.
#
# Brings up its own lab (`bkbench<pid>`, 3 stacked members, etcd from the lab's artifacts),
# applies `--until etcd`, fills etcd with incompressible 1 MiB values, runs each tool
# $RUNS times (default 3, taking turns) under /usr/bin/time -v, prints one line per tool (median wall
# time, MiB/s of etcd database, max RSS, median user+system CPU, every run's wall time), and
# brings the lab down. The lab shares the machine's CPUs with the tools measured: on a small
# or busy machine the SSH server's and client's work per byte shows in the tunnel's figure.
# Run as root from the repository root after `cargo build --release -p kubeforge` (or set
# KUBEFORGE_BIN; a debug build compresses and hashes several times slower).
# DB_MIB (default 300) sets the database size. KEEP_LAB=1 leaves the lab and its work dir (spec,
# state, PKI) in place and prints the dir; REUSE=<that dir> measures again against that lab
# without bringing up or filling anything (e.g. to compare two builds on the same data);
# ONLY=create,tunnel,run,etcdctl picks some of the four measurements.
set -euo pipefail
BIN=${KUBEFORGE_BIN:-target/release/kubeforge}
BIN=$(readlink -f "$BIN")
[[ -x $BIN ]] || { echo "no kubeforge binary at $BIN: cargo build --release -p kubeforge" >&2; exit 2; }
ETCDCTL=${ETCDCTL:-$(command -v etcdctl)}
[[ -x /usr/bin/time ]] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 2; }
DB_MIB=${DB_MIB:-300}
RUNS=${RUNS:-3}
if [[ -n ${REUSE:-} ]]; then
  work=$(readlink -f "$REUSE")
  name=$(awk '/^  name:/ { print $2; exit }' "$work/lab.yaml")
  KEEP_LAB=1
else
  name="bkbench$(( $$ % 100000 ))"
  work=$(mktemp -d)
fi
cleanup() {
  if [[ -z ${KEEP_LAB:-} ]]; then
    "$BIN" lab down --name "$name" >/dev/null 2>&1 || true
    rm -rf "$work"
  else
    rm -rf "$work/out" "$work/warm" "$work"/*.runs
    echo "lab $name left up; measure again with REUSE=$work, remove with: $BIN lab down --name $name && rm -rf $work" >&2
  fi
}
trap cleanup EXIT
cd "$work"
export KUBEFORGE_NODE_BINARY="$BIN"

if [[ -z ${REUSE:-} ]]; then
  "$BIN" lab up --name "$name" --control-planes 3 --workers 0 --spec-out "$work/lab.yaml" >/dev/null
  "$BIN" apply -f lab.yaml --until etcd --yes -o json >/dev/null
fi
pki="$work/.kubeforge/$name/pki"
tls=(--cacert="$pki/etcd/ca.crt" --cert="$pki/nodes/cp1/etcd/healthcheck-client.crt"
     --key="$pki/nodes/cp1/etcd/healthcheck-client.key")
addr() { awk -v h="- name: $1" '$0 ~ h { getline; print $2; exit }' lab.yaml; }
ep="https://$(addr cp1):2379"

# Fill: 1 MiB of random bytes (base64, ~1.33 MiB per value) per key until the db is large enough.
size_mib() {
  ETCDCTL_API=3 "$ETCDCTL" --endpoints="$ep" "${tls[@]}" endpoint status -w json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["dbSize"] // 1048576)'
}
i=0
while (( $(size_mib) < DB_MIB )); do
  for _ in $(seq 1 20); do
    head -c 786432 /dev/urandom | base64 -w0 |
      ETCDCTL_API=3 "$ETCDCTL" --endpoints="$ep" "${tls[@]}" put "/bench/$i" >/dev/null
    i=$((i + 1))
  done
done
db=$(size_mib)
keys=$( ((i > 0)) && echo " in $i keys" || true)
echo "etcd database: ${db} MiB$keys (lab $name, etcd $(awk '/version:/ {print $2; exit}' lab.yaml))"

# Which member does `backup create` pick? Use that one for the others too.
"$BIN" backup create -f lab.yaml --to "$work/warm" -o json >"$work/create.json"
member=$(python3 -c 'import json; print(json.load(open("'"$work"'/create.json"))["backup"]["member"])')
mep="https://$(addr "$member"):2379"
rm -rf "$work/warm"

# One run of a tool under /usr/bin/time: appends "wall cpu rss_kib" to $work/<id>.runs.
run_once() { # id, command...
  local id=$1; shift
  rm -rf "$work/out"; mkdir -p "$work/out"
  /usr/bin/time -v -o "$work/time.txt" "$@" >/dev/null 2>"$work/err.txt" ||
    { echo "$id failed: $(tail -3 "$work/err.txt")" >&2; return 1; }
  awk -F': ' '
    /Elapsed \(wall clock\)/ { n = split($2, p, ":"); w = 0; for (k = 1; k <= n; k++) w = w * 60 + p[k] }
    /User time|System time/ { c += $2 }
    /Maximum resident set size/ { r = $2 }
    END { print w, c, r }' "$work/time.txt" >>"$work/$id.runs"
}
# Median wall time (and MiB/s of the database), median CPU, highest RSS, every wall time.
report() { # id, label
  local f="$work/$1.runs"
  [[ -s $f ]] || return 0
  local wall cpu
  wall=$(awk '{ print $1 }' "$f" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
  cpu=$(awk '{ print $2 }' "$f" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
  awk -v l="$2" -v w="$wall" -v c="$cpu" -v d="$db" '
    { if ($3 > r) r = $3; all = all (NR > 1 ? " " : "") $1 }
    END { printf "%-46s %6.2f s  %7.1f MiB/s  peak RSS %6.1f MiB  cpu %5.2f s  (median of %d: %s s)\n",
      l, w, d / w, r / 1024, c, NR, all }' "$f"
}

# ONLY=create,tunnel,run,etcdctl (default all) picks the measurements. The tools take turns,
# round after round, so that a change in the machine's load hits them alike.
want() { [[ -z ${ONLY:-} || ",$ONLY," == *",$1,"* ]]; }
rm -f "$work"/*.runs
for r in $(seq 1 "$RUNS"); do
  ! want create || run_once create "$BIN" backup create -f lab.yaml --to "$work/out"
  ! want tunnel || run_once tunnel "$BIN" backup create -f lab.yaml --via tunnel --to "$work/out"
  ! want run || run_once run "$BIN" backup run --etcd-endpoints="$mep" \
    --etcd-cacert="$pki/etcd/ca.crt" --etcd-cert="$pki/nodes/cp1/etcd/healthcheck-client.crt" \
    --etcd-key="$pki/nodes/cp1/etcd/healthcheck-client.key" --destination="$work/out" --retention=1
  ! want etcdctl || run_once etcdctl env ETCDCTL_API=3 "$ETCDCTL" --endpoints="$mep" "${tls[@]}" \
    snapshot save "$work/out/snap.db"
done
echo "from $(hostname) to member $member ($mep), $RUNS rounds:"
report create "kubeforge backup create (default: direct mTLS, zstd)"
report tunnel "kubeforge backup create --via tunnel (zstd)"
report run "kubeforge backup run (direct mTLS, zstd)"
report etcdctl "etcdctl snapshot save (direct mTLS, raw)"
