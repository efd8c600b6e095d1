#!/bin/sh
# Runs `tracefleet agent` configured by environment: the container image's
# ENTRYPOINT and the systemd unit's ExecStart. Arguments given to this script
# come after the ones made here (set a setting once: by variable or by flag).
#
#   TRACEFLEET_RING               ring directory                    /var/lib/tracefleet/ring
#   TRACEFLEET_INTERFACES         interfaces, comma-separated       any (unless -i is given)
#   TRACEFLEET_RING_SIZE          --ring-size                       10G
#   TRACEFLEET_SEGMENT_SIZE       --segment-size                    64M
#   TRACEFLEET_SEGMENT_SECONDS    --segment-seconds                 300
#   TRACEFLEET_MIN_FREE           --min-free                        5% of the filesystem, at most 2G
#   TRACEFLEET_FILTER             --filter (BPF)                    SIP ports, ICMP, IP fragments
#   TRACEFLEET_RTP_PORTS          --rtp-ports LO-HI[,LO-HI]         none
#   TRACEFLEET_PROMISC            1: --promisc                      off
#   TRACEFLEET_STATS_INTERVAL     --stats-interval (seconds)        60
#   TRACEFLEET_CORRELATION_HEADER --correlation-header              X-CID
#   TRACEFLEET_NAME               --name at the dispatcher          the host name
#   TRACEFLEET_DISPATCHER, TRACEFLEET_TOKEN, TRACEFLEET_CA are read by tracefleet itself.
#   TRACEFLEET_HOME               the tracefleet checkout or /app   this script's ../
set -eu
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
home=${TRACEFLEET_HOME:-$(dirname -- "$here")}

# Interfaces given as arguments (-i) replace TRACEFLEET_INTERFACES.
given_iface=0
for a in "$@"; do
  case $a in -i | -i=* | --interface | --interface=*) given_iface=1 ;; esac
done

# The caller's arguments are moved behind ours: count them, append ours, rotate.
n=$#
set -- "$@" --ring "${TRACEFLEET_RING:-/var/lib/tracefleet/ring}"
if [ "$given_iface" = 0 ]; then
  old_ifs=$IFS
  IFS=,
  for i in ${TRACEFLEET_INTERFACES:-any}; do
    [ -n "$i" ] && set -- "$@" -i "$i"
  done
  IFS=$old_ifs
fi
[ -n "${TRACEFLEET_RING_SIZE:-}" ] && set -- "$@" --ring-size "$TRACEFLEET_RING_SIZE"
[ -n "${TRACEFLEET_SEGMENT_SIZE:-}" ] && set -- "$@" --segment-size "$TRACEFLEET_SEGMENT_SIZE"
[ -n "${TRACEFLEET_SEGMENT_SECONDS:-}" ] && set -- "$@" --segment-seconds "$TRACEFLEET_SEGMENT_SECONDS"
[ -n "${TRACEFLEET_MIN_FREE:-}" ] && set -- "$@" --min-free "$TRACEFLEET_MIN_FREE"
[ -n "${TRACEFLEET_FILTER:-}" ] && set -- "$@" --filter "$TRACEFLEET_FILTER"
[ -n "${TRACEFLEET_RTP_PORTS:-}" ] && set -- "$@" --rtp-ports "$TRACEFLEET_RTP_PORTS"
[ "${TRACEFLEET_PROMISC:-0}" = 1 ] && set -- "$@" --promisc
[ -n "${TRACEFLEET_STATS_INTERVAL:-}" ] && set -- "$@" --stats-interval "$TRACEFLEET_STATS_INTERVAL"
[ -n "${TRACEFLEET_CORRELATION_HEADER:-}" ] && set -- "$@" --correlation-header "$TRACEFLEET_CORRELATION_HEADER"
[ -n "${TRACEFLEET_NAME:-}" ] && set -- "$@" --name "$TRACEFLEET_NAME"
while [ "$n" -gt 0 ]; do
  set -- "$@" "$1"
  shift
  n=$((n - 1))
done
# exec: node gets the signals (SIGTERM seals the ring's indexes) and keeps this process's id.
# The node flags: shared/runtime/node-flags.ts says why.
exec node --initial-old-space-size=48 "$home/bin/tracefleet" agent "$@"
