import { LegKeyKind, messageLegKeys } from '../index/format';
import type { OpenedSegment } from '../index/open';
import type { LegVia } from '../../shared/query/query';
import { cmpTs } from '../../shared/query/query';
import { TracefleetError } from '../../shared/errors/catalogue';
import { DialogMedia, addToMedia, spansOverlap } from './media';

/*
 * The other legs of a call. A B2BUA or SBC starts a new dialog (its own
 * Call-ID) on each side; what ties them is a key both legs carry: the
 * configured correlation header (X-CID, or an xref parameter; the same
 * value, or one leg's holding the other's Call-ID as HOMER has it), the RFC 7989
 * Session-ID UUID (passed through unchanged by a compliant B2BUA), the
 * P-Charging-Vector icid-value, a Call-ID the B2BUA derived from the other
 * leg's by a prefix or suffix (an operator rule, given to the agent), or the
 * same media: a B2BUA that relays SDP without anchoring the media makes both
 * legs announce the same endpoints.
 *
 * Starting from the dialogs a query selected, each round looks up the keys of
 * the dialogs the previous round added, over every segment of the ring; the
 * closure is bounded in rounds and in dialogs, and a note says so when a bound
 * cut it.
 */

/** A Call-ID rule: the B2BUA's leg has the other leg's Call-ID with this prefix or suffix added. */
export type LegCallIdRule = { prefix: string } | { suffix: string };

/** Rounds of lookups at most: a B2BUA chain of this many hops is followed whole. */
export const MAX_LEG_ROUNDS = 4;
/** Dialogs added at most per query, beyond those it selected. */
export const MAX_LEG_DIALOGS = 256;
/**
 * A key more dialogs than this carry names no one call (a constant header, a
 * media server's shared port): it is not followed, and a note says so.
 */
export const MAX_DIALOGS_PER_KEY = 32;

/** "prefix:B2B-" or "suffix:-leg2", as `--leg-callid-rule` takes it. */
export function parseLegCallIdRule(text: string): LegCallIdRule {
  const m = /^(prefix|suffix):(.+)$/.exec(text);
  if (!m || /[\s\x00-\x1f\x7f]/.test(m[2])) {
    throw new TracefleetError('TF_USAGE', { message: `bad --leg-callid-rule ${JSON.stringify(text)}: write prefix:TEXT or suffix:TEXT (the text a B2BUA adds to the other leg's Call-ID)` });
  }
  return m[1] === 'prefix' ? { prefix: m[2] } : { suffix: m[2] };
}

/** The rules of a repeatable flag's values (yargs gives a string, an array, or undefined). */
export function legCallIdRulesOf(v: unknown): LegCallIdRule[] {
  if (v === undefined) return [];
  return (Array.isArray(v) ? v : [v]).map((x) => parseLegCallIdRule(String(x)));
}

/** The Call-IDs a rule relates to `c`: with the text added, and (when `c` has it) without. */
function ruleRelatives(c: string, rules: readonly LegCallIdRule[]): string[] {
  const out: string[] = [];
  for (const r of rules) {
    if ('prefix' in r) {
      out.push(r.prefix + c);
      if (c.startsWith(r.prefix) && c.length > r.prefix.length) out.push(c.slice(r.prefix.length));
    } else {
      out.push(c + r.suffix);
      if (c.endsWith(r.suffix) && c.length > r.suffix.length) out.push(c.slice(0, -r.suffix.length));
    }
  }
  return out;
}

const VIA: Record<LegKeyKind, LegVia> = { x: 'correlation', s: 'session-id', i: 'icid', m: 'media' };

export interface LegLinks {
  /** Call-ID -> its call's group: the Call-ID of the call's earliest leg. Every selected and linked dialog is here. */
  group: Map<string, string>;
  /** Call-ID -> the key that linked it, for the dialogs added (the selected ones have none). */
  via: Map<string, LegVia>;
}

interface Leg {
  media: DialogMedia;
  keys: Array<[LegKeyKind, string]>;
  /** RTP endpoints its SDP announced (RTCP left out: it follows them). */
  rtpEnds: Set<string>;
}

/**
 * The legs linked to `selected`, selected ones included; yields after each dialog it follows.
 * `later`: dialogs other hosts linked (a trace's linkedCallId), in the order they were found;
 * each is followed from once the ones before it reach no more, so a leg this host links from
 * another still says how, and a later one reached by a key here says how too.
 */
export function* linkLegs(
  segments: OpenedSegment[],
  selected: ReadonlySet<string>,
  rules: readonly LegCallIdRule[],
  notes: string[],
  later: readonly string[] = [],
): Generator<void, LegLinks, void> {
  const legs = new Map<string, Leg>();
  // Every message of a dialog, over every segment: its keys and its span are the whole dialog's.
  const leg = (callId: string): Leg => {
    let l = legs.get(callId);
    if (l) return l;
    const media = new Map<string, DialogMedia>();
    const seen = new Set<string>();
    const keys: Array<[LegKeyKind, string]> = [];
    const rtpEnds = new Set<string>();
    for (const s of segments) {
      for (const d of s.index.dialogsByCallId(callId)) {
        for (const m of d.msgs) {
          addToMedia(media, m);
          messageLegKeys(m, (kind, value) => {
            if (kind === 'm') rtpEnds.add(value);
            const k = kind + '\0' + value;
            if (!seen.has(k)) {
              seen.add(k);
              keys.push([kind, value]);
            }
          });
        }
      }
    }
    l = { media: media.get(callId) ?? { callId, first: [0, 0], last: [0, 0], ends: new Set(), rtpmap: new Map(), ended: false, inviteOk: false, inviteFailed: false }, keys, rtpEnds };
    legs.set(callId, l);
    return l;
  };

  const parent = new Map<string, string>();
  const find = (c: string): string => {
    let r = c;
    while (parent.get(r) !== r) r = parent.get(r)!;
    parent.set(c, r);
    return r;
  };
  for (const c of selected) parent.set(c, c);

  const via = new Map<string, LegVia>();
  const followedKeys = new Set<string>();
  const tooCommon: string[] = [];
  let pending = 0;
  const seedLater = (): string[] => {
    while (pending < later.length) {
      const c = later[pending++];
      if (!parent.has(c)) {
        parent.set(c, c);
        return [c];
      }
    }
    return [];
  };
  let frontier = selected.size > 0 ? [...selected] : seedLater();
  let added = 0;
  let full = false;
  let round = 0;
  for (; round < MAX_LEG_ROUNDS && frontier.length > 0 && !full; round++) {
    const next: string[] = [];
    for (const c of frontier) {
      const from = leg(c);
      const link = (other: string, how: LegVia): void => {
        if (full) return;
        if (parent.has(other)) {
          // Known already: two legs the query selected may be one call.
          const a = find(c);
          const b = find(other);
          if (a !== b) parent.set(b, a);
          return;
        }
        if (how === 'media') {
          // Two unrelated calls to one media server share its endpoint; legs of one call relayed by a B2BUA share both ends, at the same time.
          const o = leg(other);
          let shared = 0;
          for (const e of o.rtpEnds) if (from.rtpEnds.has(e)) shared++;
          if (shared < 2 || !spansOverlap(from.media, o.media)) return;
        }
        if (added >= MAX_LEG_DIALOGS) {
          full = true;
          return;
        }
        added++;
        parent.set(other, find(c));
        via.set(other, how);
        next.push(other);
      };
      for (const [kind, value] of from.keys) {
        const k = kind + '\0' + value;
        if (followedKeys.has(k)) continue;
        followedKeys.add(k);
        const found = new Set<string>();
        for (const s of segments) for (const d of s.index.dialogsByLegKey(kind, value)) found.add(d.c);
        if (found.size > MAX_DIALOGS_PER_KEY) {
          tooCommon.push(`${VIA[kind]} ${JSON.stringify(value.slice(0, 64))} (${found.size} dialogs)`);
          continue;
        }
        for (const other of found) if (other !== c) link(other, VIA[kind]);
      }
      // HOMER's convention: a B2BUA puts the other leg's Call-ID in the correlation header.
      for (const [kind, value] of from.keys) {
        if (kind === 'x' && value !== c && segments.some((s) => s.index.dialogsByCallId(value).length > 0)) link(value, 'correlation');
      }
      const pointing = new Set<string>();
      for (const s of segments) for (const d of s.index.dialogsByLegKey('x', c)) pointing.add(d.c);
      if (pointing.size <= MAX_DIALOGS_PER_KEY) for (const other of pointing) if (other !== c) link(other, 'correlation');
      for (const other of ruleRelatives(c, rules)) {
        if (segments.some((s) => s.index.dialogsByCallId(other).length > 0)) link(other, 'call-id-rule');
      }
      yield;
    }
    frontier = next.length > 0 ? next : seedLater();
  }
  // Cut short: the other hosts' legs not reached are in no call found here.
  for (let c = seedLater(); c.length > 0; c = seedLater());
  if (full) notes.push(`legs: stopped at ${MAX_LEG_DIALOGS} linked dialogs; the calls may have more legs than the result holds`);
  else if (frontier.length > 0) notes.push(`legs: stopped after ${MAX_LEG_ROUNDS} rounds of links; legs further along the chain are not in the result`);
  if (tooCommon.length > 0) notes.push(`legs: keys shared by more than ${MAX_DIALOGS_PER_KEY} dialogs link no one call and were not followed: ${tooCommon.slice(0, 5).join(', ')}${tooCommon.length > 5 ? ', …' : ''}`);

  // A call is named by its earliest leg, so that every host that sees one of its legs can name it alike.
  const earliest = new Map<string, string>();
  for (const c of parent.keys()) {
    const r = find(c);
    const cur = earliest.get(r);
    if (cur === undefined) earliest.set(r, c);
    else {
      const d = cmpTs(leg(c).media.first, leg(cur).media.first);
      if (d < 0 || (d === 0 && c < cur)) earliest.set(r, c);
    }
  }
  const group = new Map<string, string>();
  for (const c of parent.keys()) group.set(c, earliest.get(find(c))!);
  return { group, via };
}
