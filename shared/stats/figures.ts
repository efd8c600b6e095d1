import { emptyCounts, type PeerCounts } from './counts';

/**
 * What the counts mean: how the INVITE dialogs ended, and the RFC 6076
 * figures. Computed when shown, never stored, so a saved window can be
 * read again with other definitions.
 */
export interface Figures {
  invites: number;
  answered: number;
  /** 486 Busy Here, 600 Busy Everywhere. */
  busy: number;
  /** 408 Request Timeout, 480 Temporarily Unavailable. */
  noAnswer: number;
  /** 487 Request Terminated (the caller's CANCEL). */
  cancelled: number;
  /** Other final responses, by class. */
  failed: Record<'3xx' | '4xx' | '5xx' | '6xx', number>;
  unfinished: number;
  zeroDuration: number;
  short: number;
  /** RFC 6076 §4.6 Session Establishment Ratio, percent: 2xx / (INVITEs - 3xx). Null without a denominator. */
  ser: number | null;
  /** §4.8 Session Establishment Effectiveness Ratio, percent: (2xx, 480, 486, 600, 603) / (INVITEs - 3xx). */
  seer: number | null;
  /** §4.9 Ineffective Session Attempts, percent: (408, 500, 503, 504) / INVITEs. */
  isa: number | null;
  /** §4.3 Session Request Delay, mean seconds. */
  srd: number | null;
  /** Mean duration of the answered calls ended by a BYE, seconds. */
  meanDuration: number | null;
  /** Answered INVITE dialogs over all new ones, percent (the operator's ASR). */
  answerRatio: number | null;
  /** Failed INVITE dialogs (a final 4xx-6xx other than busy, no answer or cancelled, or none at all) over all new ones, percent. */
  errorRatio: number | null;
  /** SIP messages, requests and responses. */
  messages: number;
}

/** The figures an alert rule or a chart can follow, by name. */
export const FIGURE_NAMES = ['ser', 'seer', 'isa', 'answerRatio', 'errorRatio', 'srd', 'meanDuration', 'invites', 'messages'] as const;
export type FigureName = (typeof FIGURE_NAMES)[number];

const n = (r: Record<string, number>, code: number) => r[String(code)] ?? 0;
const sum = (r: Record<string, number>) => Object.values(r).reduce((x, y) => x + y, 0);

export function figuresOf(c: PeerCounts): Figures {
  let answered = 0;
  const failed = { '3xx': 0, '4xx': 0, '5xx': 0, '6xx': 0 };
  let redirected = 0;
  for (const [k, v] of Object.entries(c.finals)) {
    const code = Number(k);
    if (code >= 200 && code < 300) answered += v;
    if (code >= 300 && code < 400) redirected += v;
  }
  const busy = n(c.finals, 486) + n(c.finals, 600);
  const noAnswer = n(c.finals, 408) + n(c.finals, 480);
  const cancelled = n(c.finals, 487);
  for (const [k, v] of Object.entries(c.finals)) {
    const code = Number(k);
    if (code < 300 || code === 486 || code === 600 || code === 408 || code === 480 || code === 487) continue;
    const cls = `${Math.floor(code / 100)}xx` as keyof typeof failed;
    if (cls in failed) failed[cls] += v;
  }
  const attempts = c.invites - redirected;
  const pct = (x: number, d: number) => (d > 0 ? (100 * x) / d : null);
  return {
    invites: c.invites,
    answered,
    busy,
    noAnswer,
    cancelled,
    failed,
    unfinished: c.unfinished,
    zeroDuration: c.zeroDuration,
    short: c.short,
    ser: pct(answered, attempts),
    seer: pct(answered + n(c.finals, 480) + n(c.finals, 486) + n(c.finals, 600) + n(c.finals, 603), attempts),
    isa: pct(n(c.finals, 408) + n(c.finals, 500) + n(c.finals, 503) + n(c.finals, 504), c.invites),
    srd: c.srdCount > 0 ? c.srdSeconds / c.srdCount : null,
    meanDuration: c.ended > 0 ? c.durationSeconds / c.ended : null,
    answerRatio: pct(answered, c.invites),
    errorRatio: pct(failed['4xx'] + failed['5xx'] + failed['6xx'] + c.unfinished, c.invites),
    messages: sum(c.requests) + sum(c.responses),
  };
}

/** Counts added up (rows of several peers, windows or hosts). */
export function sumCounts(rows: PeerCounts[]): PeerCounts {
  const out = emptyCounts();
  for (const r of rows) {
    for (const [k, v] of Object.entries(r.requests)) out.requests[k] = (out.requests[k] ?? 0) + v;
    for (const [k, v] of Object.entries(r.responses)) out.responses[k] = (out.responses[k] ?? 0) + v;
    for (const [k, v] of Object.entries(r.finals)) out.finals[k] = (out.finals[k] ?? 0) + v;
    out.invites += r.invites;
    out.unfinished += r.unfinished;
    out.ended += r.ended;
    out.durationSeconds += r.durationSeconds;
    out.zeroDuration += r.zeroDuration;
    out.short += r.short;
    out.srdCount += r.srdCount;
    out.srdSeconds += r.srdSeconds;
  }
  return out;
}
