#!/usr/bin/env bash
# Times a no-op `kubeforge plan` on N lab machines (default 12) against the same work done by
# Ansible (ansible-core from PyPI in a venv): fact gathering plus a stat (with sha256) of the
# files kubeforge manages in the os and runtime phases. Prints both medians and the ratio.
# Needs root and the lab's tools. Usage: tests/bench/plan_vs_ansible.sh [N] [RUNS]
set -euo pipefail
n=${1:-12}; runs=${2:-5}
bin=${KUBEFORGE_BIN:-$(dirname "$0")/../../target/release/kubeforge}
work=$(mktemp -d); lab=kfbench
trap '"$bin" lab down --name $lab >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
cd "$work"
"$bin" lab up --name $lab --control-planes 3 --workers $((n - 3)) --spec-out "$work/bench.yaml" >/dev/null
"$bin" apply -f bench.yaml --until runtime --yes >/dev/null           # converge once
"$bin" plan -f bench.yaml --until runtime | tail -1 | grep -qx 'No changes.'

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# A failed run must not count as a fast one: it aborts the benchmark with its output.
time_it() {
  local s e; s=$(date +%s.%N)
  if ! "$@" >"$work/last.log" 2>&1; then echo "FAILED: $*" >&2; tail -20 "$work/last.log" >&2; kill $$; fi
  e=$(date +%s.%N); awk -v a="$s" -v b="$e" 'BEGIN { printf "%.3f\n", b - a }'
}

kf=$(for _ in $(seq "$runs"); do time_it "$bin" plan -f bench.yaml --until runtime; done | median)

python3 -m venv "$work/venv" && "$work/venv/bin/pip" -q install ansible-core
key=/var/lib/kubeforge/lab/$lab/id_ed25519; kh=/var/lib/kubeforge/lab/$lab/known_hosts
{ echo "[lab]"; awk '/address:/ {print $2}' bench.yaml | grep -v '^"' ; } > inventory
cat > play.yml <<'YML'
- hosts: lab
  gather_facts: true
  tasks:
    - stat: {path: "{{ item }}", checksum_algorithm: sha256}
      loop: [/etc/modules-load.d/kubernetes.conf, /etc/sysctl.d/99-kubernetes.conf,
             /etc/containerd/config.toml, /etc/crictl.yaml, /etc/hosts, /etc/fstab]
YML
export ANSIBLE_HOST_KEY_CHECKING=True ANSIBLE_FORKS=$n
export ANSIBLE_SSH_ARGS="-o UserKnownHostsFile=$kh -o ControlMaster=auto -o ControlPersist=60s"
ans=$(for _ in $(seq "$runs"); do time_it "$work/venv/bin/ansible-playbook" -i inventory -u root --private-key "$key" play.yml; done | median)

echo "hosts=$n runs=$runs kubeforge_plan_s=$kf ansible_s=$ans ratio=$(awk -v a="$ans" -v k="$kf" 'BEGIN { printf "%.1f", a / k }')"
