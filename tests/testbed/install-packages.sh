#!/usr/bin/env bash
# Installs the Debian packages that the test bed's real node (`build.sh node`) and `make images` need, and only
# those that are missing: a machine that has them all runs no apt-get at all. CI runs as root on a fresh machine,
# so nothing here is ever installed by hand.
#
#   install-packages.sh node     build: gcc, libc6-dev (the static pause binary), libseccomp-dev, pkg-config
#                                (runc with seccomp); run: containernetworking-plugins (CNI bridge, host-local,
#                                loopback), iproute2 (bridge, policy routing), util-linux (mount, umount),
#                                nftables (kube-proxy's nftables mode runs `nft`), iptables (the kubelet's own
#                                chains), procps (sysctl)
#   install-packages.sh images   buildah (build, commit, push images), mmdebstrap (the Debian base image)
#
# Not used: Debian's runc 1.1.5 and crun 1.8.1 (too old for containerd 2.4), containerd 1.6 (too old for kubelet
# 1.36): build.sh builds runc and containerd.
set -euo pipefail

declare -A PACKAGES=(
  [node]="gcc libc6-dev libseccomp-dev pkg-config containernetworking-plugins iproute2 util-linux nftables iptables procps"
  [images]="buildah mmdebstrap"
)

missing=()
for group in "${@:-node}"; do
  [[ -n ${PACKAGES[$group]:-} ]] || { echo "install-packages.sh: unknown group $group (node, images)" >&2; exit 2; }
  for package in ${PACKAGES[$group]}; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
  done
done
((${#missing[@]})) || exit 0

if [[ $(id -u) != 0 ]]; then
  echo "install-packages.sh: missing Debian packages: ${missing[*]} (run this script as root)" >&2
  exit 1
fi
echo "[install-packages $(date +%H:%M:%S)] installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
