import { z } from 'zod';
import { FIGURE_NAMES, type FigureName } from '../stats/figures';
import { peerName } from '../stats/counts';
import { AGENT_NAME_PATTERN } from '../protocol/common';
import type { TraceRequest } from '../query/query';

/*
 * Alert rules: what an admin writes (REST, `tracefleet alert add`, the
 * Health page) and the dispatcher keeps in CouchDB. A rule follows one
 * figure of the SIP statistics over the last `windows` windows, summed, in a
 * scope (the whole fleet, each host or one, each peer or one), and fires
 * when the figure is past the threshold with at least `minInvites` INVITE
 * dialogs behind it; it clears when a later evaluation finds it back.
 */

/** Figures in percent: their threshold is 0-100. */
const PERCENT: readonly FigureName[] = ['ser', 'seer', 'isa', 'answerRatio', 'errorRatio'];

export const RULE_NAME_PATTERN = '^[A-Za-z0-9_.-]{1,64}$';
export const SCOPES = ['fleet', 'host', 'peer'] as const;
export const SEVERITIES = ['warning', 'critical'] as const;

export const alertRule = z
  .object({
    name: z.string().regex(new RegExp(RULE_NAME_PATTERN), 'rule names are 1-64 letters, digits, _, . or -'),
    figure: z.enum(FIGURE_NAMES, { message: `figure is one of ${FIGURE_NAMES.join(', ')}` }),
    op: z.enum(['below', 'above'], { message: "op is 'below' (fires under the threshold) or 'above'" }),
    threshold: z.number({ message: 'threshold must be a number' }).finite(),
    /** INVITE dialogs the figure must stand on, at least (a ratio of three calls says little). */
    minInvites: z.number({ message: 'minInvites must be a whole number' }).int('minInvites must be a whole number').min(0).max(1e9).default(0),
    /** How many of the latest windows are summed (1: each window alone). */
    windows: z.number({ message: 'windows must be a whole number' }).int('windows must be a whole number').min(1, 'windows is 1 to 240').max(240, 'windows is 1 to 240').default(1),
    scope: z.enum(SCOPES, { message: "scope is 'fleet', 'host' or 'peer'" }),
    /** With scope host or peer: only this one (absent: each separately). */
    match: z.string().max(64).optional(),
    severity: z.enum(SEVERITIES).default('warning'),
    description: z.string().max(500).regex(/^[^\u0000-\u001f\u007f]*$/, 'description is one line of text').optional(),
  })
  .strict()
  .superRefine((r, ctx) => {
    if (PERCENT.includes(r.figure) && (r.threshold < 0 || r.threshold > 100)) ctx.addIssue({ code: 'custom', path: ['threshold'], message: `${r.figure} is a percentage: the threshold is 0 to 100` });
    if (!PERCENT.includes(r.figure) && r.threshold < 0) ctx.addIssue({ code: 'custom', path: ['threshold'], message: `${r.figure} is never negative: give a threshold of 0 or more` });
    if (r.match !== undefined) {
      if (r.scope === 'fleet') ctx.addIssue({ code: 'custom', path: ['match'], message: 'match names a host or a peer: a fleet rule has none' });
      else if (r.scope === 'host' && !new RegExp(AGENT_NAME_PATTERN).test(r.match)) ctx.addIssue({ code: 'custom', path: ['match'], message: 'host names are agent names: 1-64 letters, digits, _, . or -' });
      else if (r.scope === 'peer' && !peerName.safeParse(r.match).success) ctx.addIssue({ code: 'custom', path: ['match'], message: 'a peer as the statistics name it: printable, no spaces, 1-64 characters' });
    }
  });
export type AlertRule = z.infer<typeof alertRule>;
export type AlertRuleInput = z.input<typeof alertRule>;

/** A raised or cleared alert, as stored, pushed to pages (`alert` on /client) and sent to the webhook. */
export interface AlertEvent {
  /** rule and scope: one alert per rule and host or peer at a time. */
  key: string;
  rule: string;
  status: 'firing' | 'resolved';
  severity: (typeof SEVERITIES)[number];
  figure: FigureName;
  /** The figure's value at the last evaluation (null: not enough INVITEs any more). */
  value: number | null;
  threshold: number;
  op: 'below' | 'above';
  invites: number;
  scope: (typeof SCOPES)[number];
  host: string | null;
  peer: string | null;
  /** The windows evaluated: their first start and last end, ISO. */
  since: string;
  until: string;
  startsAt: string;
  endsAt: string | null;
  summary: string;
  /** The trace request that selects the failed INVITEs behind it (with its hosts), or null when it cannot be (a peer known by a name, no failure codes). */
  trace: TraceRequest | null;
}

/** A rule's one-line description: "errorRatio above 20 over 1 window(s), min 5 INVITEs, each peer". */
export function describeRule(r: AlertRule): string {
  const where = r.scope === 'fleet' ? 'the fleet' : r.match ? `${r.scope} ${r.match}` : `each ${r.scope}`;
  return `${r.figure} ${r.op} ${r.threshold} over ${r.windows} window${r.windows === 1 ? '' : 's'}, at least ${r.minInvites} INVITEs, ${where}`;
}
