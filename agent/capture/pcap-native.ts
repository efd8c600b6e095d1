/**
 * Typed loader for the tfcapture addon (agent/capture/native/capture.cc).
 *
 * Why an addon of our own and not the `cap` package, which the project
 * already depends on: `cap` hands JS the packet length only (no kernel
 * timestamp), has no pcap_stats drop counters, always turns promiscuous mode
 * on, and calls into JS once per packet, which costs too much at 100k
 * packets/s. We keep `cap` for what it does well, listing interfaces
 * (see interfaces.ts).
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

export interface OpenOptions {
  /** Bytes kept of each packet (64..262144). */
  snaplen: number;
  /** Kernel ring size in bytes. */
  bufferBytes: number;
  promisc: boolean;
  /** Ask for nanosecond timestamps; precision() tells what was granted. */
  nanos: boolean;
  /**
   * Deliver each packet at once (pcap_set_immediate_mode). Off by default:
   * on Linux it forces TPACKET_V2, whose fixed 64 KiB slots make the kernel
   * buffer hold only bufferBytes / 128 KiB packets on lo or on interfaces
   * with offloads; without it packets reach read() within 10 ms.
   */
  immediate?: boolean;
}

export interface ReadResult {
  /** Bytes of whole PCAP records written at the start of the buffer. */
  bytes: number;
  packets: number;
}

export interface PcapStats {
  /** Packets that passed the filter in the kernel (on lo, both directions: about twice what is captured). */
  received: number;
  /** Dropped because the kernel ring was full. */
  dropped: number;
  /** Dropped by the interface or its driver, where the OS reports it. */
  ifDropped: number;
}

declare const handleBrand: unique symbol;
/** Opaque; only the addon can make one. */
export type NativeHandle = { readonly [handleBrand]: true };

export interface NativeAddon {
  open(device: string, filter: string, opts: OpenOptions): NativeHandle;
  read(handle: NativeHandle, out: Buffer, timeoutMs: number): ReadResult;
  stats(handle: NativeHandle): PcapStats;
  /** LINKTYPE_* value for the capture file (DLT values already mapped). */
  linkType(handle: NativeHandle): number;
  /** libpcap's DLT name, for logs. */
  linkTypeName(handle: NativeHandle): string;
  precision(handle: NativeHandle): 'nano' | 'micro';
  /** The snap length libpcap actually uses. */
  snaplen(handle: NativeHandle): number;
  /** pcap_activate warnings and precision fallbacks. */
  warnings(handle: NativeHandle): string[];
  close(handle: NativeHandle): void;
  /** Compiles a filter for a link type without opening an interface; returns the BPF instruction count. */
  compileFilter(filter: string, linkType: number, snaplen?: number): number;
  /** Whether the filter keeps each frame (pcap_offline_filter); no interface needed. */
  filterMatches(filter: string, linkType: number, packets: Buffer[]): boolean[];
  libVersion(): string;
}

const ADDON_REL = join('agent', 'capture', 'native', 'build', 'Release', 'tfcapture.node');
const MARKER = join('agent', 'capture', 'native', 'binding.gyp');

/**
 * The addon is built in the source tree while this file runs from
 * dist/agent/capture/ (or from the source tree under a TS runner), so look
 * upward for the directory that holds the addon's sources.
 */
export function repoRoot(from: string = __dirname): string {
  let dir = from;
  for (let i = 0; i < 12; i++) {
    if (existsSync(join(dir, MARKER))) return dir;
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  throw new Error(`cannot find the tracefleet source tree above ${from} (looked for ${MARKER})`);
}

export function addonPath(): string {
  return join(repoRoot(), ADDON_REL);
}

let cached: NativeAddon | null = null;

/** Loads the addon once per thread; throws a clear error when it is not built. */
export function loadNative(): NativeAddon {
  if (cached) return cached;
  const path = addonPath();
  if (!existsSync(path)) {
    throw new Error(`capture addon not built (${path} is missing): run npm run build`);
  }
  try {
    cached = require(path) as NativeAddon;
  } catch (e) {
    throw new Error(
      `capture addon ${path} failed to load (${(e as Error).message}): run npm run build ` +
        '(it must be rebuilt for this Node version, and libpcap must be installed)',
    );
  }
  return cached;
}

/** One open capture, with the addon's functions bound to it. */
export class PcapCapture {
  private readonly addon: NativeAddon;
  private handle: NativeHandle | null;
  readonly device: string;
  readonly linkType: number;
  readonly linkTypeName: string;
  readonly precision: 'nano' | 'micro';
  readonly snaplen: number;
  readonly warnings: string[];

  constructor(device: string, filter: string, opts: OpenOptions) {
    this.addon = loadNative();
    this.device = device;
    this.handle = this.addon.open(device, filter, opts);
    this.linkType = this.addon.linkType(this.handle);
    this.linkTypeName = this.addon.linkTypeName(this.handle);
    this.precision = this.addon.precision(this.handle);
    this.snaplen = this.addon.snaplen(this.handle);
    this.warnings = this.addon.warnings(this.handle);
  }

  read(out: Buffer, timeoutMs: number): ReadResult {
    return this.addon.read(this.live(), out, timeoutMs);
  }

  stats(): PcapStats {
    return this.addon.stats(this.live());
  }

  get closed(): boolean {
    return this.handle === null;
  }

  close(): void {
    if (this.handle) this.addon.close(this.handle);
    this.handle = null;
  }

  private live(): NativeHandle {
    if (!this.handle) throw new Error(`capture on ${this.device} is closed`);
    return this.handle;
  }
}
