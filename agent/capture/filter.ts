/** SIP signalling ports this agent captures by default (UDP and TCP; TLS usually sits at 5061 inside the first range). */
export const SIP_PORT_RANGES: ReadonlyArray<readonly [number, number]> = [
  [5060, 5299],
  [15060, 15299],
];

function checkRange([lo, hi]: readonly [number, number]): void {
  const ok = (n: number) => Number.isInteger(n) && n >= 1 && n <= 65535;
  if (!ok(lo) || !ok(hi) || lo > hi) {
    throw new Error(`invalid RTP port range [${lo}, ${hi}]: give two whole port numbers 1..65535, the low one first`);
  }
}

const portranges = (ranges: ReadonlyArray<readonly [number, number]>) =>
  ranges.map(([lo, hi]) => (lo === hi ? `port ${lo}` : `portrange ${lo}-${hi}`)).join(' or ');

/**
 * The BPF filter for a call server: SIP, ICMP (port unreachables and
 * too-big messages explain failed calls), optional RTP, and every non-first
 * fragment. Fragments carry no ports, so a port filter alone would keep the
 * first piece of a large INVITE and lose its tail. The whole set is repeated
 * after `vlan` because on interfaces that deliver 802.1Q tags in-line the
 * port offsets move by four bytes. Pass vlan: false for link types where
 * libpcap has no `vlan` (Linux cooked captures such as the "any" device,
 * raw IP tunnels).
 */
export function defaultCaptureFilter(opts: { rtpPortRanges?: Array<[number, number]>; vlan?: boolean } = {}): string {
  const rtp = opts.rtpPortRanges ?? [];
  rtp.forEach(checkRange);
  const parts = [
    `((udp or tcp) and (${portranges(SIP_PORT_RANGES)}))`,
    'icmp',
    'icmp6',
    '(ip and (ip[6:2] & 0x1fff) != 0)',
    '(ip6 and ip6[6] == 44)',
  ];
  if (rtp.length > 0) parts.push(`(udp and (${portranges(rtp)}))`);
  const inner = parts.join(' or ');
  return opts.vlan === false ? inner : `(${inner}) or (vlan and (${inner}))`;
}
