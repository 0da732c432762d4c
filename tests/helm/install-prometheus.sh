#!/usr/bin/env bash
# Installs Prometheus (the server and promtool) and its Alertmanager (prometheus-alertmanager and amtool) from
# Debian's packages, once: the chart's monitoring tests check the alert rules with promtool, check the Alertmanager
# example (docs/alertmanager.yml) with amtool, and run a real Prometheus and Alertmanager on loopback. Idempotent: a
# machine that already has the four binaries does nothing. The packages' own services are not used (tests start
# their own servers).
set -euo pipefail
BINARIES=(promtool prometheus prometheus-alertmanager amtool)
installed() {
  local binary
  for binary in "${BINARIES[@]}"; do command -v "$binary" >/dev/null 2>&1 || return 1; done
}
if installed; then
  exit 0
fi
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d 101 keeps the packages' post-install from starting a system Prometheus (:9090) and Alertmanager.
POLICY=/usr/sbin/policy-rc.d
CREATED_POLICY=0
if [[ ! -e $POLICY ]]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null && $SUDO chmod +x "$POLICY" && CREATED_POLICY=1
fi
trap '[[ $CREATED_POLICY == 1 ]] && $SUDO rm -f "$POLICY"' EXIT
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager >/dev/null
installed
echo "installed: $(prometheus --version 2>&1 | head -1); $(prometheus-alertmanager --version 2>&1 | head -1)"
