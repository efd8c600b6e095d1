/*
 * Test helpers for fleet traces: real rings imported from generated PCAPs,
 * real agents (agent/link connectDispatcher + agent/trace serveTraces) run
 * in-process over real Socket.IO, and readers for what the store holds.
 */

import assert from 'node:assert/strict';
import type { LegCallIdRule } from '../../agent/query/legs';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { connectDispatcher, DispatcherLink } from '../../agent/link/client';
import { closeResult, runQuery, writeResultPcap } from '../../agent/query/engine';
import { buildQuerySpec } from '../../shared/query/query';
import { importCaptures } from '../../agent/index/import';
import { serveTraces, TraceServer } from '../../agent/trace/serve';
import { ETH_IPV4, ethernet, ipv4, sipInvite, sipResponse, udp, writePcap } from './packets';
import { CaptureStreamParser } from '../../shared/pcap/reader';
import { silentLogger, type Logger } from '../../shared/log/log';

export const T0 = 1_795_100_000;
export const CALL = 'crossing-call@orch';
export const OTHER = 'other-call@orch';
/** Host a's address: every packet of host a, and the call's packets on b, have it. */
export const PROXY = '192.0.2.1';
/** Non-SIP bytes from the proxy on host a by default: enough to make its result many chunks long. */
export const BULK = 4000;

export type TestHost = 'a' | 'b' | 'c';

interface Pkt {
  sec: number;
  nsec: number;
  frame: Buffer;
}

const udpEth = (src: string, dst: string, sport: number, dport: number, payload: Buffer) => ethernet(ETH_IPV4, ipv4({ src, dst, proto: 17 }, udp(sport, dport, payload)));

/** 1200-byte UDP payloads from the proxy to dst, each numbered, all at T0+2. */
function bulk(n: number, dst: string, nsecBase: number): Pkt[] {
  const out: Pkt[] = [];
  for (let i = 0; i < n; i++) {
    const payload = Buffer.alloc(1200, i & 0xff);
    payload.writeUInt32BE(i, 0);
    out.push({ sec: T0 + 2, nsec: nsecBase + i * 1000, frame: udpEth(PROXY, dst, 40000, 40002, payload) });
  }
  return out;
}

/**
 * Three rings under dir, by host: a call crossing a (proxy 192.0.2.1) and b
 * (gateway 198.51.100.7), another call seen by a and c, and `bulk.a` (default
 * BULK) / `bulk.b` (default 0) packets of the proxy's non-SIP traffic on a and
 * b, so `{ ip: [PROXY] }` gives a 3 + bulk.a records, b 2 + bulk.b, c none.
 */
export async function makeTestRings(dir: string, opts: { bulk?: Partial<Record<TestHost, number>> } = {}): Promise<Record<TestHost, string>> {
  const inv = udpEth(PROXY, '198.51.100.7', 5060, 5060, sipInvite(CALL));
  const ok = udpEth('198.51.100.7', PROXY, 5060, 5060, sipResponse(200, 'OK', CALL));
  const pkts: Record<TestHost, Pkt[]> = {
    a: [
      { sec: T0, nsec: 1000, frame: inv },
      { sec: T0, nsec: 9000, frame: ok },
      { sec: T0 + 1, nsec: 0, frame: udpEth(PROXY, '198.51.100.9', 5060, 5060, sipInvite(OTHER)) },
      ...bulk(opts.bulk?.a ?? BULK, '198.51.100.7', 0),
    ],
    b: [
      { sec: T0, nsec: 4000, frame: inv },
      { sec: T0, nsec: 6000, frame: ok },
      ...bulk(opts.bulk?.b ?? 0, '198.51.100.8', 500),
    ],
    c: [{ sec: T0, nsec: 5000, frame: udpEth('203.0.113.5', '203.0.113.6', 5060, 5060, sipInvite(OTHER)) }],
  };
  const rings = {} as Record<TestHost, string>;
  for (const name of ['a', 'b', 'c'] as const) {
    writePcap(join(dir, `${name}.pcap`), pkts[name]);
    rings[name] = join(dir, `ring-${name}`);
    await importCaptures(rings[name], [join(dir, `${name}.pcap`)]);
  }
  return rings;
}

export interface TestAgent {
  name: string;
  link: DispatcherLink;
  server: TraceServer;
  close(): void;
}

export interface TestAgentOptions {
  /** Dispatcher base URL (http or https). */
  url: string;
  token: string;
  name: string;
  ringDir: string;
  /** PEM CA the agent trusts for an https dispatcher. */
  ca?: string;
  /** Sends this many trace:chunk messages, then holds the rest back: a stream stalled mid-trace. */
  stallAfterChunks?: number;
  /**
   * With stallAfterChunks: the last chunk sent leaves out its last 7 bytes,
   * so the stream stalls mid-record (the agent's chunks end on records; an
   * older agent's, cut at exactly CHUNK_BYTES, did not).
   */
  tornStall?: boolean;
  /** The agent's own most bytes a chunk (serveTraces' maxChunkBytes): a stall after N chunks stays mid-stream whatever the dispatcher offers. */
  maxChunkBytes?: number;
  logger?: Logger;
  /** The agent's `--leg-callid-rule`s. */
  legCallIdRules?: LegCallIdRule[];
  /** Answers as agents before trace:result did (started, progress, chunks, done), whatever trace:run offers. */
  beforeTraceResult?: boolean;
}

/** A real agent's dispatcher link and trace serving, in this process. */
export function startTestAgent(opts: TestAgentOptions): TestAgent {
  const status = { ring: { oldest: null, newest: null, bytes: 0, segments: 0 }, capture: {}, indexErrors: 0 };
  const log = opts.logger ?? silentLogger;
  const link = connectDispatcher({
    url: opts.url,
    token: opts.token,
    name: opts.name,
    ...(opts.ca !== undefined ? { ca: opts.ca } : {}),
    hello: () => ({ version: 'test', hostname: opts.name, interfaces: ['eth0'], ...status }),
    status: () => status,
    logger: log,
  });
  if (opts.stallAfterChunks !== undefined) {
    const limit = opts.stallAfterChunks;
    let chunks = 0;
    const loose = link.socket as unknown as { emit: (...args: unknown[]) => unknown };
    const origEmit = loose.emit.bind(link.socket);
    loose.emit = (...args: unknown[]) => {
      if (args[0] === 'trace:chunk' && ++chunks > limit) return link.socket; // never sent: the stream stalls here
      if (args[0] === 'trace:chunk' && chunks === limit && opts.tornStall) {
        const c = args[1] as { data: Buffer };
        return origEmit(args[0], { ...c, data: c.data.subarray(0, c.data.length - 7) }, ...args.slice(2));
      }
      return origEmit(...args);
    };
  }
  if (opts.beforeTraceResult) {
    // Such an agent's schema had no `result`: it never saw the dispatcher's offer.
    const loose = link.socket as unknown as { on: (event: string, f: (...args: unknown[]) => void) => unknown };
    const origOn = loose.on.bind(link.socket);
    loose.on = (event: string, f: (...args: unknown[]) => void) =>
      origOn(event, event !== 'trace:run' ? f : (data: unknown, ...rest: unknown[]) => f(data && typeof data === 'object' ? { ...data, result: undefined } : data, ...rest));
  }
  const server = serveTraces(link.socket, { ringDir: opts.ringDir, logger: log, legCallIdRules: opts.legCallIdRules, ...(opts.maxChunkBytes !== undefined ? { maxChunkBytes: opts.maxChunkBytes } : {}) });
  return {
    name: opts.name,
    link,
    server,
    close() {
      server.close();
      link.close();
    },
  };
}

/** Polls cond every 20 ms; throws after ms. */
/** `what` may be a function, to say in the error what was last seen. */
export async function until(cond: () => boolean | Promise<boolean>, what: string | (() => string), ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${typeof what === 'string' ? what : what()}`);
    await new Promise((res) => setTimeout(res, 20));
  }
}

export async function bytesOf(s: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/** The PCAP the agent's own query engine writes for this ring and query: what a host's packets.pcap must be. */
export async function expectedPcap(ring: string, q: Parameters<typeof buildQuerySpec>[0]): Promise<Buffer> {
  const res = runQuery(ring, buildQuerySpec(q));
  const out = new PassThrough();
  const got = bytesOf(out);
  await writeResultPcap(res, out);
  out.end();
  closeResult(res);
  return got;
}

/** A whole PCAP's records as (timestamp, hex data); asserts nothing is torn. */
export function records(buf: Buffer): Array<{ ts: string; data: string }> {
  const p = new CaptureStreamParser('test');
  const recs = p.push(buf).map((x) => ({ ts: `${x.tsSec}.${String(x.tsNsec).padStart(9, '0')}`, data: Buffer.from(x.data).toString('hex') }));
  assert.equal(p.end().tornBytes, 0);
  return recs;
}

/** Records in time order, then by bytes: comparable multisets. */
export function sortedRecords(recs: Array<{ ts: string; data: string }>): Array<{ ts: string; data: string }> {
  return [...recs].sort((x, y) => x.data.localeCompare(y.data) || x.ts.localeCompare(y.ts));
}
