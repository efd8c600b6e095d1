#!/bin/sh
# Runs `tracefleet dispatcher` configured by environment: the container image's
# ENTRYPOINT and the systemd unit's ExecStart. Arguments given to this script
# come after the ones made here (set a setting once: by variable or by flag).
#
#   TRACEFLEET_LISTEN          HOST:PORT                           127.0.0.1:8060 (read by tracefleet)
#   TRACEFLEET_DATA_DIR        spool and embedded store            var/dispatcher (read by tracefleet)
#   TRACEFLEET_AGENT_TOKENS    TOKEN or NAME=TOKEN, comma-separated (read by tracefleet; required)
#   COUCHDB_URL                Apache CouchDB                      the embedded store (read by tracefleet)
#   REDIS_URL                  shared by several dispatchers       none (read by tracefleet)
#   TRACEFLEET_DB              --db                                tracefleet
#   TRACEFLEET_TLS_CERT, TRACEFLEET_TLS_KEY   --tls-cert, --tls-key: serve HTTPS/WSS
#   TRACEFLEET_RETENTION_DAYS  --retention-days                    30
#   TRACEFLEET_RUN_TIMEOUT     --run-timeout (seconds)             10
#   TRACEFLEET_IDLE_TIMEOUT    --idle-timeout (seconds)            30
#   TRACEFLEET_HOME            the tracefleet checkout or /app     this script's ../
set -eu
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
home=${TRACEFLEET_HOME:-$(dirname -- "$here")}

n=$#
[ -n "${TRACEFLEET_DB:-}" ] && set -- "$@" --db "$TRACEFLEET_DB"
[ -n "${TRACEFLEET_TLS_CERT:-}" ] && set -- "$@" --tls-cert "$TRACEFLEET_TLS_CERT"
[ -n "${TRACEFLEET_TLS_KEY:-}" ] && set -- "$@" --tls-key "$TRACEFLEET_TLS_KEY"
[ -n "${TRACEFLEET_RETENTION_DAYS:-}" ] && set -- "$@" --retention-days "$TRACEFLEET_RETENTION_DAYS"
[ -n "${TRACEFLEET_RUN_TIMEOUT:-}" ] && set -- "$@" --run-timeout "$TRACEFLEET_RUN_TIMEOUT"
[ -n "${TRACEFLEET_IDLE_TIMEOUT:-}" ] && set -- "$@" --idle-timeout "$TRACEFLEET_IDLE_TIMEOUT"
while [ "$n" -gt 0 ]; do
  set -- "$@" "$1"
  shift
  n=$((n - 1))
done
# The node flags: shared/runtime/node-flags.ts says why.
exec node --initial-old-space-size=48 "$home/bin/tracefleet" dispatcher "$@"
