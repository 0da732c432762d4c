#!/usr/bin/env bash
# Installs Prometheus (the server and promtool) from Debian's packages, once: the chart's monitoring tests
# check the alert rules with promtool and run a real Prometheus on loopback. Idempotent: a machine that already
# has both binaries does nothing. The Debian package's own service is not used (tests start their own server).
set -euo pipefail
if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d 101 keeps the package's post-install from starting a system Prometheus on :9090.
POLICY=/usr/sbin/policy-rc.d
CREATED_POLICY=0
if [[ ! -e $POLICY ]]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null && $SUDO chmod +x "$POLICY" && CREATED_POLICY=1
fi
trap '[[ $CREATED_POLICY == 1 ]] && $SUDO rm -f "$POLICY"' EXIT
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
command -v promtool >/dev/null && command -v prometheus >/dev/null
echo "installed: $(prometheus --version 2>&1 | head -1)"
