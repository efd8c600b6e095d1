#!/usr/bin/env bash
# Installs what is missing (system packages, npm packages) and builds.
# Idempotent: a second run on a ready machine does no installs.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }
[ -f /usr/include/pcap/pcap.h ] || need_apt+=(libpcap-dev)
have tshark || need_apt+=(tshark)
have dumpcap || need_apt+=(tshark)
have sipp || need_apt+=(sip-tester)
have tcpreplay || need_apt+=(tcpreplay)
have ip || need_apt+=(iproute2)
have ethtool || need_apt+=(ethtool)
have ping || need_apt+=(iputils-ping)
have capinfos || need_apt+=(tshark)
have make || need_apt+=(make)
have g++ || need_apt+=(g++)
have python3 || need_apt+=(python3)
have redis-server || need_apt+=(redis-server)
have openssl || need_apt+=(openssl)

if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! have apt-get; then
    echo "tracefleet setup: missing system packages: ${need_apt[*]}" >&2
    echo "Install them as root (apt-get install ${need_apt[*]}) or run this as root on Debian." >&2
    exit 1
  fi
  echo "tracefleet setup: installing ${need_apt[*]} (apt-get)" >&2
  export DEBIAN_FRONTEND=noninteractive
  # tshark asks whether non-root users may capture; answer no without a prompt.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

stamp=node_modules/.tracefleet-lock
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  echo "tracefleet setup: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi

npm run --silent build >&2
