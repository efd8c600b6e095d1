import { spawnSync } from 'node:child_process';
import { run, startDaemon, haveCommand, RunOptions, RunResult, DaemonOptions, DaemonHandle } from './proc';

/**
 * Namespaced test networks. Every veth pair is created with both ends inside
 * namespaces this class made (the bridge namespace and a host namespace, or two
 * host namespaces), so nothing is ever attached to the root namespace and no
 * test packet can leave the machine. Addresses come from 198.18.0.0/15 and
 * 2001:db8::/32, which are never routed.
 */

export interface TestNetOptions {
  /** Host names: short, [a-z0-9] and '-', unique. */
  hosts: string[];
  /**
   * Point-to-point veth links between pairs of hosts. Omitted: bridge mode,
   * every host gets `eth0` on one L2 segment (198.18.0.0/24, 2001:db8:0:0::/64)
   * through a Linux bridge in a namespace of its own.
   */
  links?: Array<[string, string]>;
  /** MTU for every interface made (veths and the bridge). IPv6 needs ≥ 1280, so below that only IPv4 is configured. */
  mtu?: number;
  /** Configure IPv6 addresses. Default: true when the MTU allows it. */
  ipv6?: boolean;
  /** Turn checksum/segmentation/receive offloads off with ethtool when it is installed. Default true. */
  disableOffloads?: boolean;
}

interface Iface {
  host: string;
  /** Index into `links` (0 for the bridge link). */
  link: number;
  peer: string | undefined;
  ifname: string;
  addr4: string;
  addr6: string | undefined;
}

const NAME_RE = /^[a-z0-9][a-z0-9-]{0,19}$/;
let seq = 0;

/** Namespaces still existing in this process, removed by an exit hook if a test forgot destroy(). */
const liveNamespaces = new Set<string>();
let exitHookInstalled = false;
function trackNs(ns: string): void {
  liveNamespaces.add(ns);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const n of liveNamespaces) spawnSync('ip', ['netns', 'del', n], { stdio: 'ignore', timeout: 5000 });
    });
  }
}

async function ip(args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return run('ip', args, { timeoutMs: 15_000, ...opts });
}

export class TestNet {
  /** Per-instance prefix, `tf-<pid>-<n>-`; every namespace name starts with it. */
  readonly prefix: string;
  readonly mode: 'bridge' | 'links';
  readonly mtu: number | undefined;
  readonly ipv6: boolean;
  /** Namespace holding the bridge `br0` (bridge mode only); capture there to see every host's traffic. */
  readonly bridgeNs: string | undefined;
  readonly bridgeIf = 'br0';
  /** Non-fatal setup problems (offloads that could not be changed). */
  readonly warnings: string[] = [];
  private readonly hostNs = new Map<string, string>();
  private readonly ifaces: Iface[] = [];
  private readonly daemons = new Set<DaemonHandle>();
  private readonly created: string[] = [];
  private destroyed = false;

  private constructor(opts: TestNetOptions, ipv6: boolean) {
    this.prefix = `tf-${process.pid}-${seq++}-`;
    this.mode = opts.links ? 'links' : 'bridge';
    this.mtu = opts.mtu;
    this.ipv6 = ipv6;
    this.bridgeNs = this.mode === 'bridge' ? `${this.prefix}br` : undefined;
    for (const h of opts.hosts) this.hostNs.set(h, this.prefix + h);
  }

  static async create(opts: TestNetOptions): Promise<TestNet> {
    if (opts.hosts.length === 0) throw new Error('TestNet: no hosts');
    const seen = new Set<string>();
    for (const h of opts.hosts) {
      if (!NAME_RE.test(h)) throw new Error(`TestNet: host name ${JSON.stringify(h)} must match ${NAME_RE}`);
      if (h === 'br') throw new Error('TestNet: host name "br" is reserved for the bridge namespace');
      if (seen.has(h)) throw new Error(`TestNet: duplicate host ${h}`);
      seen.add(h);
    }
    for (const [a, b] of opts.links ?? []) {
      if (!seen.has(a) || !seen.has(b)) throw new Error(`TestNet: link ${a}-${b} names an unknown host`);
      if (a === b) throw new Error(`TestNet: link ${a}-${b} joins a host to itself`);
    }
    if ((opts.links?.length ?? 0) > 250) throw new Error('TestNet: at most 250 links');
    if (opts.hosts.length > 250) throw new Error('TestNet: at most 250 hosts');
    if (opts.mtu !== undefined && (!Number.isInteger(opts.mtu) || opts.mtu < 68 || opts.mtu > 65535)) {
      throw new Error(`TestNet: mtu ${opts.mtu} out of range 68..65535`);
    }
    const v6Possible = opts.mtu === undefined || opts.mtu >= 1280;
    if (opts.ipv6 === true && !v6Possible) throw new Error(`TestNet: IPv6 needs an MTU of at least 1280, got ${opts.mtu}`);
    const net = new TestNet(opts, opts.ipv6 ?? v6Possible);
    try {
      await net.build(opts);
    } catch (e) {
      await net.destroy().catch(() => undefined);
      throw e;
    }
    return net;
  }

  private async addNs(name: string): Promise<void> {
    // Registered before creation so that a half-made namespace is still removed.
    trackNs(name);
    this.created.push(name);
    await ip(['netns', 'add', name]);
    await ip(['-n', name, 'link', 'set', 'lo', 'up']);
    // Set before any interface exists so new interfaces inherit it: no router
    // solicitations or DAD probes cluttering captures, and no delay before an
    // address is usable.
    await this.sysctl(name, ['net.ipv6.conf.default.router_solicitations=0', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.default.accept_ra=0']);
    // Without IPv6 addresses the interfaces would still send MLD reports; lo keeps ::1.
    if (!this.ipv6) await this.sysctl(name, ['net.ipv6.conf.default.disable_ipv6=1']);
  }

  private sysctl(ns: string, settings: string[]): Promise<RunResult> {
    return run('sysctl', ['-q', '-w', ...settings], { ns, timeoutMs: 15_000 });
  }

  private async build(opts: TestNetOptions): Promise<void> {
    for (const h of opts.hosts) await this.addNs(this.hostNs.get(h)!);
    const mtuArgs = this.mtu !== undefined ? ['mtu', String(this.mtu)] : [];
    const offloads = (opts.disableOffloads ?? true) && haveCommand('ethtool');

    if (this.mode === 'bridge') {
      const br = this.bridgeNs!;
      await this.addNs(br);
      // The bridge namespace only switches frames; with IPv6 off it sends none of its own.
      await this.sysctl(br, ['net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
      await ip(['-n', br, 'link', 'add', this.bridgeIf, ...mtuArgs, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0']);
      await ip(['-n', br, 'link', 'set', this.bridgeIf, 'up']);
      for (const [i, h] of opts.hosts.entries()) {
        const hns = this.hostNs.get(h)!;
        const port = `p${i}`;
        // Created inside the bridge namespace with the peer born directly in the host namespace.
        await ip(['-n', br, 'link', 'add', port, ...mtuArgs, 'type', 'veth', 'peer', 'name', 'eth0', ...mtuArgs, 'netns', hns]);
        await ip(['-n', br, 'link', 'set', port, 'master', this.bridgeIf]);
        const iface: Iface = {
          host: h,
          link: 0,
          peer: undefined,
          ifname: 'eth0',
          addr4: `198.18.0.${i + 1}`,
          addr6: this.ipv6 ? `2001:db8::${(i + 1).toString(16)}` : undefined,
        };
        this.ifaces.push(iface);
        await this.configure(hns, iface);
        await ip(['-n', br, 'link', 'set', port, 'up']);
        if (offloads) {
          await this.disableOffloads(br, port);
          await this.disableOffloads(hns, 'eth0');
        }
      }
    } else {
      for (const [li, [a, b]] of opts.links!.entries()) {
        const ifname = `l${li}`;
        const nsA = this.hostNs.get(a)!;
        const nsB = this.hostNs.get(b)!;
        await ip(['-n', nsA, 'link', 'add', ifname, ...mtuArgs, 'type', 'veth', 'peer', 'name', ifname, ...mtuArgs, 'netns', nsB]);
        // Subnets 198.18.1.0/24 … 198.18.250.0/24, one per link.
        const ends: Array<[string, string, string, number]> = [
          [a, b, nsA, 1],
          [b, a, nsB, 2],
        ];
        for (const [host, peer, ns, n] of ends) {
          const iface: Iface = {
            host,
            link: li,
            peer,
            ifname,
            addr4: `198.18.${li + 1}.${n}`,
            addr6: this.ipv6 ? `2001:db8:0:${(li + 1).toString(16)}::${n}` : undefined,
          };
          this.ifaces.push(iface);
          await this.configure(ns, iface);
          if (offloads) await this.disableOffloads(ns, ifname);
        }
      }
    }
  }

  private async configure(ns: string, iface: Iface): Promise<void> {
    await ip(['-n', ns, 'addr', 'add', `${iface.addr4}/24`, 'dev', iface.ifname]);
    if (iface.addr6) {
      await ip(['-n', ns, '-6', 'addr', 'add', `${iface.addr6}/64`, 'dev', iface.ifname, 'nodad']);
    }
    await ip(['-n', ns, 'link', 'set', iface.ifname, 'up']);
  }

  /**
   * veths offload checksums and segmentation by default: captures would then
   * show bad checksums and TCP "segments" far larger than the MTU, which real
   * NICs never put on the wire.
   */
  private async disableOffloads(ns: string, ifname: string): Promise<void> {
    const r = await run('ethtool', ['-K', ifname, 'tx', 'off', 'rx', 'off', 'gso', 'off', 'tso', 'off', 'gro', 'off'], { ns, check: false, timeoutMs: 15_000 });
    if (r.code !== 0) this.warnings.push(`ethtool -K ${ifname} in ${ns}: exit ${r.code}: ${r.stderr.trim()}`);
  }

  private findIface(host: string, link?: string | number): Iface {
    if (!this.hostNs.has(host)) throw new Error(`TestNet: unknown host ${host}`);
    let cands = this.ifaces.filter((i) => i.host === host);
    if (link !== undefined) {
      cands = cands.filter((i) => (typeof link === 'number' ? i.link === link : i.peer === link));
    }
    if (cands.length === 0) throw new Error(`TestNet: host ${host} has no interface${link === undefined ? '' : ` on link ${link}`}`);
    if (cands.length > 1) {
      throw new Error(`TestNet: host ${host} has ${cands.length} interfaces${link === undefined ? '' : ` towards ${link}`}; pass the link index`);
    }
    return cands[0];
  }

  /** Namespace name of a host. */
  ns(host: string): string {
    const n = this.hostNs.get(host);
    if (!n) throw new Error(`TestNet: unknown host ${host}`);
    return n;
  }

  get hosts(): string[] {
    return [...this.hostNs.keys()];
  }

  /** IPv4 address of a host; `link` (peer host name or link index) picks the interface when the host has several. */
  addr(host: string, link?: string | number): string {
    return this.findIface(host, link).addr4;
  }

  /** IPv6 address of a host (see addr). Throws when the net has no IPv6. */
  addr6(host: string, link?: string | number): string {
    const i = this.findIface(host, link);
    if (!i.addr6) throw new Error(`TestNet: no IPv6 on this net (mtu ${this.mtu ?? 'default'}, ipv6 ${this.ipv6})`);
    return i.addr6;
  }

  ifname(host: string, link?: string | number): string {
    return this.findIface(host, link).ifname;
  }

  /** Runs a command inside the host's namespace (throws on non-zero exit unless check: false). */
  exec(host: string, cmd: string, args: readonly string[], opts: Omit<RunOptions, 'ns'> = {}): Promise<RunResult> {
    return run(cmd, args, { ...opts, ns: this.ns(host) });
  }

  /** Starts a daemon inside the host's namespace; destroy() stops it if the caller has not. */
  async spawn(host: string, cmd: string, args: readonly string[], opts: Omit<DaemonOptions, 'ns'> = {}): Promise<DaemonHandle> {
    if (this.destroyed) throw new Error('TestNet: already destroyed');
    const d = await startDaemon(cmd, args, { ...opts, ns: this.ns(host) });
    this.daemons.add(d);
    return d;
  }

  /** Stops daemons started through spawn() and deletes every namespace (which removes the veths and the bridge). Idempotent. */
  async destroy(): Promise<void> {
    this.destroyed = true;
    await Promise.all([...this.daemons].map((d) => d.stop(1000).catch(() => undefined)));
    this.daemons.clear();
    const errors: string[] = [];
    for (const name of this.created.splice(0).reverse()) {
      const r = await run('ip', ['netns', 'del', name], { check: false, timeoutMs: 15_000 }).catch((e: Error) => ({ code: -1, stderr: e.message }) as RunResult);
      const stillThere = (await listNamespaces()).includes(name);
      if (stillThere) {
        errors.push(`ip netns del ${name}: exit ${r.code}: ${r.stderr.trim()}`);
        this.created.push(name);
      } else {
        liveNamespaces.delete(name);
      }
    }
    if (errors.length) throw new Error(`TestNet.destroy: ${errors.join('; ')}`);
  }
}

/** Names of all network namespaces (as `ip netns list` shows them). */
export async function listNamespaces(): Promise<string[]> {
  const r = await run('ip', ['netns', 'list'], { timeoutMs: 15_000 });
  return r.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0])
    .filter((s): s is string => !!s);
}
