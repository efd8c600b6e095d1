#!/usr/bin/env bash
# Installs what is missing (system packages, npm packages) and builds.
# Idempotent: a second run on a ready machine does no installs.
# --test: also the browsers the web page's tests drive (npm test passes it;
# npm start and the benchmarks need no browser).
set -euo pipefail
cd "$(dirname "$0")/.."

for_tests=0
for arg in "$@"; do
  case "$arg" in
    --test) for_tests=1 ;;
    *) echo "tracefleet setup: unknown option $arg (known: --test)" >&2; exit 2 ;;
  esac
done

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "tracefleet setup: Node.js 20 or later is needed (found: $(node --version 2>/dev/null || echo none)); install it (Debian 13: apt-get install nodejs npm; older: the NodeSource packages) and run again" >&2
  exit 1
fi

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }
[ -f /usr/include/pcap/pcap.h ] || need_apt+=(libpcap-dev)
# The index addon compresses the sealed dialog blocks with libdeflate when it is there (zlib otherwise).
[ -f /usr/include/libdeflate.h ] || need_apt+=(libdeflate-dev)
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
# The hop tests impair a router namespace's forwarding with iptables NFQUEUE and a small C program of their own
# (test/support/nfqueue/impair.c, built by the test): this kernel has no sch_netem.
have iptables || need_apt+=(iptables)
have gcc || need_apt+=(gcc)
[ -f /usr/include/libnetfilter_queue/libnetfilter_queue.h ] || need_apt+=(libnetfilter-queue-dev)
# The web page's browser tests drive Debian's Chromium (playwright-core) and Firefox ESR (puppeteer-core,
# over WebDriver BiDi); neither library downloads a browser here.
if [ "$for_tests" = 1 ]; then
  [ -x /usr/bin/chromium ] || need_apt+=(chromium)
  [ -x /usr/bin/firefox-esr ] || need_apt+=(firefox-esr)
  # The HEP tests: Kamailio as the proxy whose siptrace sends HEP (its TLS module for the TLS call), sngrep as a HEP receiver.
  have kamailio || need_apt+=(kamailio)
  [ -n "$(find /usr/lib -path '*/kamailio/modules/tls.so' -print -quit 2>/dev/null)" ] || need_apt+=(kamailio-tls-modules)
  have sngrep || need_apt+=(sngrep)
  # The /metrics tests judge both endpoints with Prometheus' own parser (promtool check metrics); the package's
  # server is not started (policy-rc.d below) and the tests do not use it.
  have promtool || need_apt+=(prometheus)
fi

# Each package once (tshark provides several of the commands).
uniq=()
for p in "${need_apt[@]}"; do [[ " ${uniq[*]} " == *" $p "* ]] || uniq+=("$p"); done
need_apt=("${uniq[@]}")

if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! have apt-get; then
    echo "tracefleet setup: missing system packages: ${need_apt[*]}" >&2
    if have apt-get; then
      echo "Install them as root: sudo apt-get install --no-install-recommends ${need_apt[*]}  (or run this as root), then run it again." >&2
    else
      echo "No apt-get here: install your system's packages of these (Debian names) and run this again." >&2
    fi
    exit 1
  fi
  echo "tracefleet setup: installing ${need_apt[*]} (apt-get)" >&2
  export DEBIAN_FRONTEND=noninteractive
  # tshark asks whether non-root users may capture; answer no without a prompt.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq
  # Packages with a service (kamailio, prometheus) must not start it: the tests run their own, and a system one would hold port 5060.
  # Where no policy-rc.d says so already (containers have one), one is put in place for the install.
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null || { [ "$own_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d; exit 1; }
  if [ "$own_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
fi

stamp=node_modules/.tracefleet-lock
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  echo "tracefleet setup: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi

# Build only what changed since the last build (same steps as `npm run build`),
# so that a second `npm start` is up in seconds.
addon=agent/capture/native/build/Release/tfcapture.node
if [ ! -f "$addon" ] || [ "$stamp" -nt "$addon" ] \
   || [ -n "$(find agent/capture/native -maxdepth 1 -type f -newer "$addon" -print -quit)" ]; then
  # Through npm: node-gyp then gets npm's settings (nodedir, proxy) as under `npm run build`.
  npm exec --no -- node-gyp rebuild --silent --directory agent/capture/native >&2
fi
# The indexer's native scan (agent/index/native), built the same way.
index_addon=agent/index/native/build/Release/tfindex.node
# An addon built before libdeflate-dev was installed (its header keeps the package's old mtime) is rebuilt with it.
if [ ! -f "$index_addon" ] || [ "$stamp" -nt "$index_addon" ] \
   || [ -n "$(find agent/index/native -maxdepth 1 -type f -newer "$index_addon" -print -quit)" ] \
   || { [ -f /usr/include/libdeflate.h ] && [ "$(node -p "require('./$index_addon').deflateKind?.()" 2>/dev/null)" != libdeflate ]; }; then
  npm exec --no -- node-gyp rebuild --silent --directory agent/index/native >&2
fi
built=dist/.tracefleet-built
if [ ! -f "$built" ] || [ "$stamp" -nt "$built" ] || [ tsconfig.json -nt "$built" ] \
   || [ -n "$(find agent cli shared dispatcher bin test bench -name '*.ts' -newer "$built" -print -quit 2>/dev/null)" ]; then
  mkdir -p dist
  # Stamped before compiling: a file edited meanwhile is compiled next time.
  touch "$built.new"
  node_modules/.bin/tsc -p tsconfig.json >&2
  mv "$built.new" "$built"
fi
# The start-up bundles of `tracefleet query` and `trace` (cli/hot-bundle.ts): remade when anything they were made from changed.
if ! node -e 'const h = require("./dist/cli/hot-bundle.js"); process.exit(Object.values(h.HOT_BUNDLES).every((n) => h.hotBundleState(undefined, n).state === "fresh") ? 0 : 1)'; then
  node scripts/bundle-cli.js >&2
fi
