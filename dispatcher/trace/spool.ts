import { createReadStream, createWriteStream, existsSync, mkdirSync, readdirSync, readFile as readFileCb, readFileSync, renameSync, rmSync, statSync, writeFile as writeFileCb, writeFileSync, WriteStream } from 'node:fs';
import { mkdir, readdir, rename, rm, rmdir, stat, truncate, unlink } from 'node:fs/promises';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { CaptureStreamParser } from '../../shared/pcap/reader';
import type { MessageSummary } from '../../agent/query/engine';
import type { RtpStreamFigures } from '../../shared/rtp/figures';
import type { ResultState } from '../store/layout';

/**
 * The dispatcher's disk spool: every byte an agent sends is written here
 * before it is acknowledged, and a host's final state is written here before
 * the store is asked to keep it. So a CouchDB outage, or a dispatcher restart,
 * loses nothing: whatever is in the spool is stored when the store answers
 * again, and only then removed.
 *
 *   <dir>/<traceId>/trace.json            this dispatcher owns the trace (builds its merged PCAP)
 *   <dir>/<traceId>/<host>.pcap           the host's PCAP as received
 *   <dir>/<traceId>/<host>.final.json     the host's final state, not yet stored
 *   <dir>/<traceId>/<host>.stored         the store has the host's result (its .pcap stays,
 *                                         on the owner, as the merge's local input); the
 *                                         final.json renamed, or empty
 *   <dir>/<traceId>/merged.pending        the merged PCAP is still to be built
 *
 * Host names are agent names ([A-Za-z0-9_.-]), so they are safe file names.
 */

export interface HostFinal {
  state: Extract<ResultState, 'done' | 'error' | 'unreachable' | 'lost' | 'cancelled'>;
  packets: number;
  bytes: number;
  truncated: boolean;
  error?: string;
  messages: MessageSummary[];
  /** RTP figures per stream; absent in finals spooled before they existed. */
  streams?: RtpStreamFigures[];
  /** True when <host>.pcap holds bytes to store as packets.pcap. */
  hasPcap: boolean;
}

export interface OwnedTraceRecord {
  traceId: string;
  hosts: string[];
  createdAt: string;
}

const SAFE = /^[A-Za-z0-9_.-]{1,128}$/;

/**
 * The callback forms, promisified: a fleet-wide trace writes and reads a few small files per host, and
 * fs/promises' FileHandle per file cost about half as much CPU again (measured: 5,000 files of 700
 * bytes written and read, 0.85 s against 0.5 s).
 */
const writeFile = promisify(writeFileCb);
const readFile = promisify(readFileCb);

/**
 * Spool files open at once for trace chunks. A fleet-wide trace's first
 * chunks all arrive within a second: a file held open per host, on top of
 * one socket per agent, ran a 10,000-agent dispatcher out of descriptors
 * (EMFILE). Chunks past this wait their turn, and so do their acks (the
 * agent's next chunk waits for the disk as it always did).
 */
const CHUNK_FILES_OPEN = 64;

/** The suffix of a trace's directory being removed: not a trace id (SAFE has no '~'), so scan() never takes it for one. */
const REMOVING = '~removing';
/** Files unlinked at once by removeTrace(): enough to keep the thread pool busy, few enough to leave it to other work. */
const REMOVE_AT_ONCE = 32;

/** Empties and removes a directory of files (a trace's spool: no subdirectories), REMOVE_AT_ONCE unlinks in flight. */
async function removeDir(dir: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < names.length) {
      const path = join(dir, names[next++]);
      // Not a file after all (nothing here makes one): removed whole.
      await unlink(path).catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? undefined : e.code === 'EISDIR' || e.code === 'EPERM' ? rm(path, { recursive: true, force: true }) : Promise.reject(e)));
    }
  };
  await Promise.all(Array.from({ length: Math.min(REMOVE_AT_ONCE, names.length) }, worker));
  await rm(dir, { recursive: true, force: true });
}

/** Removes a file that may not be there (rm's force costs an lstat first). */
function gone(path: string): Promise<void> {
  return unlink(path).catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? undefined : Promise.reject(e)));
}

function safe(name: string, what: string): string {
  if (!SAFE.test(name) || name === '.' || name === '..') throw new Error(`${what} ${JSON.stringify(name)} cannot name a spool file`);
  return name;
}

/** Writes a file so that a crash leaves either the old or the new content. */
function writeAtomic(path: string, data: string): void {
  writeFileSync(`${path}.tmp`, data);
  renameSync(`${path}.tmp`, path);
}

/** The same off the event loop: a fleet-wide trace writes a thousand of these at once. */
async function writeAtomicAsync(path: string, data: string): Promise<void> {
  await writeFile(`${path}.tmp`, data);
  await rename(`${path}.tmp`, path);
}

export class Spool {
  private chunkFilesOpen = 0;
  private readonly waitingForFile: Array<() => void> = [];

  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }

  traceDir(traceId: string): string {
    return join(this.dir, safe(traceId, 'trace id'));
  }

  pcapPath(traceId: string, host: string): string {
    return join(this.traceDir(traceId), `${safe(host, 'host')}.pcap`);
  }

  /**
   * Appends one trace chunk to the host's PCAP, the file opened and closed
   * for it (see CHUNK_FILES_OPEN); the first chunk replaces a file left by
   * an earlier attempt. Resolves once the bytes are written.
   */
  async appendPcap(traceId: string, host: string, bytes: Uint8Array, first: boolean): Promise<void> {
    const path = this.pcapPath(traceId, host);
    if (this.chunkFilesOpen >= CHUNK_FILES_OPEN) await new Promise<void>((r) => this.waitingForFile.push(r));
    else this.chunkFilesOpen++;
    try {
      const flag = first ? 'w' : 'a';
      // The trace's directory is made when it is missing, not tried for every host (a mkdir per host was a
      // tenth of a fleet-wide trace's spool time); twice, for markStored removing it empty in between.
      for (let attempt = 0; ; attempt++) {
        try {
          await writeFile(path, bytes, { flag });
          break;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= 2) throw e;
          await mkdir(this.traceDir(traceId), { recursive: true });
        }
      }
    } finally {
      // The slot passes straight to the next waiter (the count stays), or is given back.
      const next = this.waitingForFile.shift();
      if (next) next();
      else this.chunkFilesOpen--;
    }
  }

  /** A fresh file for a host's PCAP, held open (a live follow's few long streams); an old one from an earlier attempt is replaced. */
  openPcap(traceId: string, host: string): WriteStream {
    mkdirSync(this.traceDir(traceId), { recursive: true });
    return createWriteStream(this.pcapPath(traceId, host), { flags: 'w' });
  }

  /** Bytes of the host's PCAP so far (0 when there is none). */
  pcapSize(traceId: string, host: string): number {
    try {
      return statSync(this.pcapPath(traceId, host)).size;
    } catch {
      return 0;
    }
  }

  /** A small PCAP, whole (for an inline upload). */
  readPcap(traceId: string, host: string): Promise<Buffer> {
    return readFile(this.pcapPath(traceId, host));
  }

  /** For the upload of a big result: 1 MiB reads, a sixteenth of the chunks (and of their trips through the HTTP client) of the default. */
  pcapStream(traceId: string, host: string) {
    return createReadStream(this.pcapPath(traceId, host), { highWaterMark: 1 << 20 });
  }

  /**
   * Cuts a PCAP that stopped mid-record (a host lost mid-stream) back to its
   * last whole record, so what is stored opens cleanly in Wireshark.
   * Returns the bytes kept and the packets in them.
   */
  async trimPcap(traceId: string, host: string): Promise<{ bytes: number; packets: number; cut: number }> {
    const path = this.pcapPath(traceId, host);
    if (!existsSync(path)) return { bytes: 0, packets: 0, cut: 0 };
    const size = (await stat(path)).size;
    if (size === 0) return { bytes: 0, packets: 0, cut: 0 };
    const parser = new CaptureStreamParser(path);
    let packets = 0;
    let torn: number;
    try {
      // Streamed: a big partial result must not hold the event loop (other traces, agents' chunks).
      for await (const chunk of createReadStream(path, { end: size - 1, highWaterMark: 1 << 20 })) packets += parser.push(chunk as Buffer).length;
      torn = parser.end().tornBytes;
    } catch {
      // Not even a whole file header: nothing worth keeping.
      await truncate(path, 0);
      return { bytes: 0, packets: 0, cut: size };
    }
    if (torn > 0) await truncate(path, size - torn);
    return { bytes: size - torn, packets, cut: torn };
  }

  async writeFinal(traceId: string, host: string, f: HostFinal): Promise<void> {
    const path = join(this.traceDir(traceId), `${safe(host, 'host')}.final.json`);
    const data = JSON.stringify(f);
    // The directory is nearly always there (the host's chunks, trace.json): made only when missing, as appendPcap does.
    try {
      await writeAtomicAsync(path, data);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      await mkdir(this.traceDir(traceId), { recursive: true });
      await writeAtomicAsync(path, data);
    }
  }

  /**
   * Once the store holds the host's result. The owner of the trace keeps the
   * PCAP as the merge's input (read locally rather than back from the
   * store); a dispatcher running a peer's host keeps nothing.
   */
  async markStored(traceId: string, host: string, keepPcap: boolean): Promise<void> {
    const base = join(this.traceDir(traceId), safe(host, 'host'));
    const kept = keepPcap && existsSync(`${base}.pcap`);
    // The final state becomes the mark, in one step (a restart sees the one or the other): a new file and
    // the final's removal were four file operations a host more (10,000 hosts, unloaded: 0.5 s of CPU).
    // Without a spooled final (its write failed), an empty mark.
    if (kept) await rename(`${base}.final.json`, `${base}.stored`).catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? writeFile(`${base}.stored`, '') : Promise.reject(e)));
    else await Promise.all([gone(`${base}.pcap`), gone(`${base}.final.json`)]);
    // Only an empty directory goes: no listing per host (a thousand hosts would make that quadratic). One
    // that still holds this host's files cannot be empty: not tried (a failed rmdir per host of a fleet trace).
    if (!kept) await rmdir(this.traceDir(traceId)).catch(() => {});
  }

  /** The host's PCAP when this dispatcher still holds it and the store has it too. */
  storedPcap(traceId: string, host: string): string | null {
    const base = join(this.traceDir(traceId), safe(host, 'host'));
    return existsSync(`${base}.stored`) && existsSync(`${base}.pcap`) ? `${base}.pcap` : null;
  }

  markOwned(rec: OwnedTraceRecord): void {
    mkdirSync(this.traceDir(rec.traceId), { recursive: true });
    writeAtomic(join(this.traceDir(rec.traceId), 'trace.json'), JSON.stringify(rec));
  }

  markMergePending(traceId: string): void {
    mkdirSync(this.traceDir(traceId), { recursive: true });
    writeFileSync(join(this.traceDir(traceId), 'merged.pending'), '');
  }

  /**
   * The trace is finished and stored: everything of it goes. The directory
   * is renamed out of the spool's names at once (a restart finds nothing of
   * the trace), then emptied off the event loop, REMOVE_AT_ONCE files at a
   * time: an rmSync of a 10,000-host trace's 20,001 files held the loop
   * 0.8-0.9 s (at load 10) after its final update; this one's max lag 15-48 ms.
   */
  async removeTrace(traceId: string): Promise<void> {
    const dir = this.traceDir(traceId);
    const gone = `${dir}${REMOVING}`;
    try {
      await rename(dir, gone);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      // Left by an earlier removal of the same trace that did not finish (ENOTEMPTY/EEXIST): that one goes first.
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw e;
      await removeDir(gone);
      await rename(dir, gone);
    }
    await removeDir(gone);
  }

  /** What an earlier run of this dispatcher left unfinished, for recovery. */
  scan(): Array<{
    traceId: string;
    owned: OwnedTraceRecord | null;
    mergePending: boolean;
    finals: Array<{ host: string; final: HostFinal }>;
    /** Hosts with bytes received but no final state: runs cut off by a restart. */
    unfinished: string[];
  }> {
    const out = [];
    for (const traceId of readdirSync(this.dir)) {
      const dir = join(this.dir, traceId);
      // A removal cut off by a restart: what is left of it goes (the trace was finished).
      if (traceId.endsWith(REMOVING)) {
        rmSync(dir, { recursive: true, force: true });
        continue;
      }
      if (!SAFE.test(traceId)) continue;
      let names: string[];
      try {
        names = readdirSync(dir);
      } catch {
        continue;
      }
      if (names.length === 0) {
        rmSync(dir, { recursive: true, force: true });
        continue;
      }
      const finals: Array<{ host: string; final: HostFinal }> = [];
      const pcaps = new Set<string>();
      const stored = new Set(names.filter((n) => n.endsWith('.stored')).map((n) => n.slice(0, -'.stored'.length)));
      for (const n of names) {
        if (n.endsWith('.final.json')) {
          const host = n.slice(0, -'.final.json'.length);
          try {
            finals.push({ host, final: JSON.parse(readFileSync(join(dir, n), 'utf8')) as HostFinal });
          } catch {
            /* a torn write cannot happen (rename), but a foreign file may: skip it */
          }
        } else if (n.endsWith('.pcap')) pcaps.add(n.slice(0, -'.pcap'.length));
      }
      let owned: OwnedTraceRecord | null = null;
      if (names.includes('trace.json')) {
        try {
          owned = JSON.parse(readFileSync(join(dir, 'trace.json'), 'utf8')) as OwnedTraceRecord;
        } catch {
          owned = null;
        }
      }
      const finalHosts = new Set(finals.map((f) => f.host));
      out.push({
        traceId,
        owned,
        mergePending: names.includes('merged.pending'),
        finals,
        unfinished: [...pcaps].filter((h) => !finalHosts.has(h) && !stored.has(h)),
      });
    }
    return out;
  }
}

