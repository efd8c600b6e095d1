/**
 * How benches report: progress on stderr (stdout stays parseable), a
 * readable block of figures on stdout, and as the very last stdout line one
 * JSON object with every figure, so that a script can `tail -n 1` it.
 */

import { readFileSync } from 'node:fs';

const t0 = process.hrtime.bigint();

export function progress(msg: string): void {
  const s = (Number(process.hrtime.bigint() - t0) / 1e9).toFixed(1).padStart(6);
  process.stderr.write(`[${s}s] ${msg}\n`);
}

export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

export async function timeAsync<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const start = nowMs();
  const value = await fn();
  return { ms: nowMs() - start, value };
}

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function round(x: number, digits: number): number {
  if (!Number.isFinite(x)) return x;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

type Value = number | string | boolean | null;

interface Row {
  key: string;
  label: string;
  value: Value;
  unit: string;
  digits: number;
}

export class Figures {
  private readonly rows: Array<Row | { section: string }> = [];
  private readonly json: Record<string, unknown>;

  constructor(readonly bench: string) {
    this.json = { bench };
  }

  section(title: string): this {
    this.rows.push({ section: title });
    return this;
  }

  /** A figure shown as `label: value unit` and stored in the JSON under `key` (numbers rounded to `digits`). */
  add(key: string, label: string, value: Value, unit = '', digits = 2): this {
    const v = typeof value === 'number' ? round(value, digits) : value;
    this.rows.push({ key, label, value: v, unit, digits });
    this.json[key] = v;
    return this;
  }

  /** In the JSON only: details a reader of the table does not need. */
  extra(key: string, value: unknown): this {
    this.json[key] = value;
    return this;
  }

  print(out: NodeJS.WritableStream = process.stdout): void {
    const width = Math.max(...this.rows.map((r) => ('label' in r ? r.label.length : 0)));
    const lines: string[] = [];
    for (const r of this.rows) {
      if ('section' in r) {
        lines.push('', `== ${r.section}`);
        continue;
      }
      const v = typeof r.value === 'number' ? fmt(r.value, r.digits) : String(r.value);
      lines.push(`  ${r.label.padEnd(width)}  ${v}${r.unit ? ' ' + r.unit : ''}`);
    }
    out.write(`${this.bench}\n${lines.join('\n')}\n\n${JSON.stringify(this.json)}\n`);
  }
}

function fmt(x: number, digits: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (Number.isInteger(x) && Math.abs(x) >= 1000) return x.toLocaleString('en-US');
  return x.toFixed(Number.isInteger(x) ? 0 : digits);
}

/** Machine-wide CPU time from /proc/stat, in ms (USER_HZ = 100): busy and idle over all cores. */
export function machineCpu(): { busy: number; idle: number; steal: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, idle, iowait, irq, softirq, steal] = f;
  return { busy: (user + nice + system + irq + softirq) * 10, idle: (idle + iowait) * 10, steal: (steal ?? 0) * 10 };
}

export function machineDelta(a: ReturnType<typeof machineCpu>, b: ReturnType<typeof machineCpu>): { busyMs: number; idleMs: number; stealMs: number } {
  return { busyMs: b.busy - a.busy, idleMs: b.idle - a.idle, stealMs: b.steal - a.steal };
}
