/**
 * Flags for node itself, given wherever a long-running tracefleet process
 * is launched: bin/tracefleet's shebang, deploy/*-entrypoint.sh (the
 * containers and the systemd units), `npm start` and the benches that start
 * a dispatcher or agents; node-flags.test.ts holds those places to this list.
 * NODE_OPTIONS does not take them, so they go on node's command line.
 *
 * --initial-old-space-size=48: the dispatcher's and the agent's heaps hold
 * 18-20 MB, so V8 sets their old generation's limit at 27-34 MB, and the
 * bytes of every Buffer made since the last full collection count against
 * that limit (V8's AllocatedExternalMemorySinceMarkCompact). Nothing fills
 * the old space (it stays at 18-21 MB); a 200 MiB result passes through
 * 400-600 MiB of fresh Buffers (socket reads, ws's reassembly of each frame,
 * the PCAP writer's batches), and each ~10 MB of them started a full
 * collection: 38 a trace in the dispatcher, 20 in the agent. The flag is a
 * floor under that limit, not memory taken; a heap that holds more gets
 * V8's own limits as before. Why 48 and not more: dead Buffers wait for the
 * next full collection, and at 64 the dispatcher's RSS grew 74 MiB during
 * bench:stream's trace in two runs of four (its target: under 64 MiB).
 */
export const NODE_FLAGS: readonly string[] = ['--initial-old-space-size=48'];
