#!/bin/sh
# Healthy while the agent that owns the ring is alive: it writes its pid to
# agent.pid on start and removes it on a clean stop.
ring=${TRACEFLEET_RING:-/var/lib/tracefleet/ring}
pid=$(cat "$ring/agent.pid" 2>/dev/null) || { echo "no agent.pid in $ring: the agent is not running" >&2; exit 1; }
kill -0 "$pid" 2>/dev/null || { echo "agent process $pid (from $ring/agent.pid) is gone" >&2; exit 1; }
