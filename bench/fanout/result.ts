import { ethernet, ETH_IPV4, ipv4, sipInvite, sipResponse, udp } from '../../test/support/packets';
import { pcapHeaderBytes } from '../../shared/pcap/pcap';
import { LINKTYPE } from '../../shared/pcap/types';
import { encodePcapRecord } from '../../shared/pcap/writer';
import type { TraceDone } from '../../shared/protocol/agent';

/*
 * What one simulated agent answers a trace with: a small PCAP of one SIP
 * exchange (INVITE, 100 Trying, 200 OK) whose Call-ID names the agent and
 * the trace, so no two agents' packets are alike (the merge would otherwise
 * count them as duplicates), and the two message summaries a real agent's
 * ladder would hold. Addresses are from the documentation ranges: these
 * packets only ever exist as bytes in a file.
 */

export const RESULT_PACKETS = 3;

export interface AgentResult {
  pcap: Buffer;
  done: Omit<TraceDone, 'traceId' | 'chunks'>;
}

/** `tag` names the run (the trace's Call-ID): made before the trace is asked, the result cannot name its id. */
export function agentResult(agent: string, tag: string, index: number, nowMs: number): AgentResult {
  const callId = `${tag}-${agent}@bench.example.net`;
  const agentIp = `192.0.2.${1 + (index % 250)}`;
  const proxy = '198.51.100.7';
  const sec = Math.floor(nowMs / 1000);
  const baseNs = Math.floor((nowMs - sec * 1000) * 1e6);
  const frames: Array<{ data: Buffer; ns: number; src: string; dst: string }> = [
    { data: sipInvite(callId), ns: 0, src: agentIp, dst: proxy },
    { data: sipResponse(100, 'Trying', callId), ns: 2_000_000, src: proxy, dst: agentIp },
    { data: sipResponse(200, 'OK', callId), ns: 40_000_000, src: proxy, dst: agentIp },
  ];
  const parts: Buffer[] = [pcapHeaderBytes({ linkType: LINKTYPE.ETHERNET, nanos: true })];
  const ts: Array<{ sec: number; nsec: number }> = [];
  for (const f of frames) {
    const total = baseNs + f.ns;
    const t = { sec: sec + Math.floor(total / 1e9), nsec: total % 1e9 };
    ts.push(t);
    const frame = ethernet(ETH_IPV4, ipv4({ src: f.src, dst: f.dst, proto: 17 }, udp(5060, 5060, f.data)));
    parts.push(...encodePcapRecord({ tsSec: t.sec, tsNsec: t.nsec, origLen: frame.length, data: frame }, true));
  }
  const pcap = Buffer.concat(parts);
  const summary = (i: number, method: string | null, status: number | null, reason: string | null) => ({
    ts: `${ts[i].sec}.${String(ts[i].nsec).padStart(9, '0')}`,
    time: new Date(ts[i].sec * 1000 + Math.floor(ts[i].nsec / 1e6)).toISOString(),
    src: `${frames[i].src}:5060`,
    dst: `${frames[i].dst}:5060`,
    transport: 'udp' as const,
    method,
    status,
    reason,
    callId,
    cseq: '314159 INVITE',
    from: 'alice',
    to: '+15551234567',
    ruri: method ? '+15551234567' : null,
    correlation: null,
    bytes: frames[i].data.length,
    packets: 1,
  });
  return {
    pcap,
    done: {
      packets: RESULT_PACKETS,
      bytes: pcap.length,
      truncated: false,
      messages: [summary(0, 'INVITE', null, null), summary(2, null, 200, 'OK')],
      notes: [],
    },
  };
}
