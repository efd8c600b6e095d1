import { KEY_ENTRY_LEN, LegKeyKind, MessageRecord, NUMBER_ENTRY_LEN, NUMBER_KEY_LEN, endpointKeyHash, keyHash, messageLegKeys } from './format';
import { MIN_QUERY_DIGITS } from '../../shared/sip/number';
import { objectArray } from './object-array';

/** hash * DIALOG_KEY_SPAN + dialog < 2^53: the key entries sort exactly as doubles. */
const DIALOG_KEY_SPAN = 2 ** 21;

/**
 * What the sealed lookup sections need of a segment's messages, gathered as
 * each is indexed (the records themselves are binary, off the heap, and are
 * not decoded again at the seal): the dialog of every message (dialogs
 * numbered in first-seen order of their Call-IDs), the key table's (hash,
 * dialog) pairs and the number table's (reversed digits, dialog) pairs.
 * Pairs are deduplicated when sorted, so a key repeated by a dialog's
 * messages gives one entry, as before.
 */
export class DialogKeys {
  private readonly dialogOf = new Map<string, number>();
  /** Call-ID of each dialog. */
  readonly ids: string[] = objectArray();
  private msgDialog: Uint32Array = new Uint32Array(1024);
  messages = 0;
  private hashes: Uint32Array = new Uint32Array(4096);
  private keyDialogs: Uint32Array = new Uint32Array(4096);
  private nKeys = 0;
  /** The number table's pairs: key bytes (NUMBER_KEY_LEN each, zero-padded), dialog, and numberPrefix of the key. */
  private numKeys: Buffer = Buffer.alloc(1024 * NUMBER_KEY_LEN);
  private numDialogs: Uint32Array = new Uint32Array(1024);
  private numPrefix: Float64Array = new Float64Array(1024);
  private nNums = 0;
  /** Pairs whose key has digits past PREFIX_DIGITS: numberPrefix does not order them alone. */
  private longNums = 0;
  /**
   * The users whose numbers each dialog took, USERS_PER_DIALOG slots a dialog (dialog d's at d * USERS_PER_DIALOG):
   * a dialog's messages repeat the same few users, their digits are taken once. A user past the slots replaces
   * the oldest; taking it again only repeats a pair, which numberTable() drops. Compared by value, a few
   * short strings, rather than looked up in a Map of every user of the segment (hashing each fresh string,
   * probing a table that outgrows the caches: 6% of the live indexer's time, profiled).
   */
  private seenUsers: Array<string | undefined> = objectArray<string>();
  private seenNext: Uint8Array = new Uint8Array(1024);
  private curDialog = 0;
  /**
   * messageLegKeys' callbacks, the same two functions for every instance (the one adding is `adding`): a closure an
   * instance made the next segment's first message deoptimize its inlined calls (wrong call target), and with them
   * the indexer's hottest functions, compiled again in each index thread.
   */
  private static adding: DialogKeys | null = null;
  private static readonly addLeg = (kind: LegKeyKind, value: string): void => {
    const k = DialogKeys.adding!;
    k.addKey(keyHash(kind, value), k.curDialog);
  };
  private static readonly addEndpoint = (host: string, port: number): void => {
    const k = DialogKeys.adding!;
    k.addKey(endpointKeyHash(host, port), k.curDialog);
  };

  add(m: MessageRecord): void {
    let d = this.dialogOf.get(m.c);
    if (d === undefined) {
      d = this.ids.length;
      this.dialogOf.set(m.c, d);
      this.ids.push(m.c);
      this.addKey(keyHash('c', m.c), d);
    }
    if (this.messages === this.msgDialog.length) this.msgDialog = grow(this.msgDialog);
    this.msgDialog[this.messages++] = d;
    this.curDialog = d;
    DialogKeys.adding = this;
    messageLegKeys(m, DialogKeys.addLeg, DialogKeys.addEndpoint);
    // messageUsers(m), without its array a message.
    this.addUser(m.ru, d);
    this.addUser(m.fu, d);
    this.addUser(m.tu, d);
    if (m.pu) for (const u of m.pu) this.addUser(u, d);
  }

  private addUser(u: string | null, d: number): void {
    if (u === null) return;
    const seen = this.seenUsers;
    const base = d * USERS_PER_DIALOG;
    for (let k = base; k < base + USERS_PER_DIALOG; k++) {
      const v = seen[k];
      if (v === undefined) break;
      if (v === u) return;
    }
    if (d >= this.seenNext.length) this.seenNext = growBytes(this.seenNext, d + 1);
    const slot = this.seenNext[d];
    this.seenNext[d] = (slot + 1) % USERS_PER_DIALOG;
    // Filled in order: the slots of dialogs before d exist (undefined) so that the array stays packed.
    while (seen.length < base) seen.push(undefined);
    seen[base + slot] = u;
    // numberKey(sipDigits(u)) when u has 4 digits or more, read from u's end without the digits' string,
    // written where the pair's key goes (kept only when it has enough digits).
    const i0 = this.nNums;
    if (i0 === this.numDialogs.length) this.growNums();
    const keys = this.numKeys;
    const at = i0 * NUMBER_KEY_LEN;
    let n = 0;
    let prefix = 0;
    for (let i = u.length - 1; i >= 0 && n < NUMBER_KEY_LEN; i--) {
      const c = u.charCodeAt(i);
      if (c >= 48 && c <= 57) {
        keys[at + n++] = c;
        if (n <= PREFIX_DIGITS) prefix = prefix * 11 + (c - 47);
      }
    }
    if (n < MIN_QUERY_DIGITS) {
      keys.fill(0, at, at + n);
      return;
    }
    if (n > PREFIX_DIGITS) this.longNums++;
    else prefix *= PAD_WEIGHT[PREFIX_DIGITS - n];
    this.numPrefix[i0] = prefix;
    this.numDialogs[i0] = d;
    this.nNums = i0 + 1;
  }

  private growNums(): void {
    const keys = Buffer.alloc(this.numKeys.length * 2);
    this.numKeys.copy(keys);
    this.numKeys = keys;
    this.numDialogs = grow(this.numDialogs);
    const prefix = new Float64Array(this.numPrefix.length * 2);
    prefix.set(this.numPrefix);
    this.numPrefix = prefix;
  }

  private addKey(hash: number, dialog: number): void {
    if (this.nKeys === this.hashes.length) {
      this.hashes = grow(this.hashes);
      this.keyDialogs = grow(this.keyDialogs);
    }
    this.hashes[this.nKeys] = hash;
    this.keyDialogs[this.nKeys++] = dialog;
  }

  /** Back to empty (the segment is sealed), the memory freed; as a new instance, with the same object. */
  clear(): void {
    this.dialogOf.clear();
    this.ids.length = 0;
    this.seenUsers.length = 0;
    this.msgDialog = new Uint32Array(1024);
    this.seenNext = new Uint8Array(1024);
    this.hashes = new Uint32Array(4096);
    this.keyDialogs = new Uint32Array(4096);
    this.numKeys = Buffer.alloc(1024 * NUMBER_KEY_LEN);
    this.numDialogs = new Uint32Array(1024);
    this.numPrefix = new Float64Array(1024);
    this.messages = this.nKeys = this.nNums = this.longNums = this.curDialog = 0;
  }

  /**
   * Each dialog's message numbers, in order, flat: dialog d's are order[ends[d - 1], ends[d]) (ends[-1] = 0).
   * Typed arrays by a counting sort rather than an array a dialog: the seal hands them to the addon as they are.
   */
  dialogMessages(): { order: Uint32Array; ends: Uint32Array } {
    const ends = new Uint32Array(this.ids.length);
    const order = new Uint32Array(this.messages);
    groupByDialog(this.msgDialog, order, ends);
    return { order, ends };
  }

  /** The key table's body: (u32 hash, u32 dialog) sorted, each pair once. */
  keyTable(): { body: Buffer; count: number } {
    const n = this.nKeys;
    const body = Buffer.alloc(n * KEY_ENTRY_LEN);
    let count = 0;
    if (this.ids.length < DIALOG_KEY_SPAN) count = keyEntries(this.hashes, this.keyDialogs, n, body);
    else {
      const keys = new BigUint64Array(n);
      for (let k = 0; k < n; k++) keys[k] = (BigInt(this.hashes[k]) << 32n) | BigInt(this.keyDialogs[k]);
      keys.sort();
      for (let k = 0; k < n; k++) if (k === 0 || keys[k] !== keys[k - 1]) putKey(body, count++, Number(keys[k] >> 32n), Number(keys[k] & 0xffffffffn));
    }
    return { body: body.subarray(0, count * KEY_ENTRY_LEN), count };
  }

  /** The number table's body: (reversed digits zero-padded to NUMBER_KEY_LEN, u32 dialog) sorted, each pair once. */
  numberTable(): { body: Buffer; count: number } {
    const n = this.nNums;
    const keys = this.numKeys;
    const dl = this.numDialogs;
    const body = Buffer.alloc(n * NUMBER_ENTRY_LEN);
    let count = 0;
    if (this.longNums === 0 && this.ids.length < DIALOG_KEY_SPAN) {
      count = shortNumberEntries(this.numPrefix, keys, dl, n, body);
    } else {
      // Digits past the prefix, or dialogs past 2^21: the keys' bytes compared (zero padding sorts a prefix first).
      const order = new Uint32Array(n);
      for (let i = 0; i < n; i++) order[i] = i;
      const L = NUMBER_KEY_LEN;
      order.sort((a, b) => keys.compare(keys, b * L, b * L + L, a * L, a * L + L) || dl[a] - dl[b]);
      let prev = -1;
      for (let k = 0; k < n; k++) {
        const i = order[k];
        if (prev >= 0 && dl[prev] === dl[i] && keys.compare(keys, prev * L, prev * L + L, i * L, i * L + L) === 0) continue;
        prev = i;
        putNumber(body, count++, keys, i, dl[i]);
      }
    }
    return { body: body.subarray(0, count * NUMBER_ENTRY_LEN), count };
  }
}

/**
 * Digits of a number key in its prefix (numberPrefix): base 11, a digit d as d + 1 and the zero padding as 0, so that
 * prefixes order as the keys' bytes do; 11^15 < 2^53, exact as a double. E.164 numbers have 15 digits at most.
 */
const PREFIX_DIGITS = 15;
/** 11^k: a key of n digits is padded with PREFIX_DIGITS - n zeros. */
const PAD_WEIGHT = Float64Array.from({ length: PREFIX_DIGITS + 1 }, (_, k) => 11 ** k);

/**
 * The key table's entries of the n pairs (hashes[k], dialogs[k]) written to body sorted, each once; their count.
 * As doubles hash * 2^21 + dialog (exact below 2^21 dialogs): a Float64Array sorts them natively, no comparator,
 * no BigInt.
 */
function keyEntries(hashes: Uint32Array, dialogs: Uint32Array, n: number, body: Buffer): number {
  const keys = new Float64Array(n);
  for (let k = 0; k < n; k++) keys[k] = hashes[k] * DIALOG_KEY_SPAN + dialogs[k];
  keys.sort();
  let count = 0;
  for (let k = 0; k < n; k++) {
    if (k > 0 && keys[k] === keys[k - 1]) continue;
    // Split by a floor rather than `%`: a double's modulo is a call to fmod().
    const hash = Math.floor(keys[k] / DIALOG_KEY_SPAN);
    putKey(body, count++, hash, keys[k] - hash * DIALOG_KEY_SPAN);
  }
  return count;
}

/**
 * Message numbers grouped by their dialog (dialogOf[i] message i's), each dialog's in order, by a counting sort:
 * ends[d] is where dialog d's end in order. (This and the tables' sorts are functions of the module, their loops
 * apart from the objects a seal returns: a seal's loops run optimized on stack replacement, and code after them
 * that had no feedback yet deoptimized it at every seal.)
 */
function groupByDialog(dialogOf: Uint32Array, order: Uint32Array, ends: Uint32Array): void {
  const n = order.length;
  for (let i = 0; i < n; i++) ends[dialogOf[i]]++;
  for (let d = 0, sum = 0; d < ends.length; d++) ends[d] = sum += ends[d];
  const next = ends.slice();
  // Backwards, so that each dialog's messages keep their order.
  for (let i = n - 1; i >= 0; i--) order[--next[dialogOf[i]]] = i;
}

/** The number table's entries of n pairs whose keys have PREFIX_DIGITS digits at most, written to body; their count. */
function shortNumberEntries(prefix: Float64Array, keys: Buffer, dl: Uint32Array, n: number, body: Buffer): number {
  // Keys of PREFIX_DIGITS digits or fewer sort as their prefixes do, and equal prefixes are equal keys. The
  // prefixes' ranks (distinct prefixes in order) joined to the dialog as doubles, rank * 2^21 + dialog (exact:
  // rank < 2^32), sort natively: two typed-array sorts and no comparator, no strings (a comparator over the
  // keys' strings was 20 ms a 64 MiB segment).
  const distinct = prefix.slice(0, n).sort();
  let m = 0;
  for (let k = 0; k < n; k++) if (m === 0 || distinct[k] !== distinct[m - 1]) distinct[m++] = distinct[k];
  const rep = new Uint32Array(m);
  const pairs = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const p = prefix[i];
    let lo = 0;
    let hi = m - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (distinct[mid] < p) lo = mid + 1;
      else hi = mid;
    }
    rep[lo] = i;
    pairs[i] = lo * DIALOG_KEY_SPAN + dl[i];
  }
  pairs.sort();
  let count = 0;
  for (let k = 0; k < n; k++) {
    if (k > 0 && pairs[k] === pairs[k - 1]) continue;
    const rank = Math.floor(pairs[k] / DIALOG_KEY_SPAN);
    // The rank's representative has the key (any pair of that rank has the same).
    putNumber(body, count++, keys, rep[rank], pairs[k] - rank * DIALOG_KEY_SPAN);
  }
  return count;
}

/*
 * The tables' entries written by functions of the module rather than closures a call: a closure compiled for one
 * seal died with it and was compiled again at the next (weak objects).
 */
function putKey(body: Buffer, entry: number, hash: number, dialog: number): void {
  body.writeUInt32LE(hash, entry * KEY_ENTRY_LEN);
  body.writeUInt32LE(dialog, entry * KEY_ENTRY_LEN + 4);
}

/** Pair i's key with the dialog given; byte by byte rather than copy(): a call into C++ a pair cost more. */
function putNumber(body: Buffer, entry: number, keys: Buffer, i: number, dialog: number): void {
  const at = entry * NUMBER_ENTRY_LEN;
  for (let b = 0, from = i * NUMBER_KEY_LEN; b < NUMBER_KEY_LEN; b++) body[at + b] = keys[from + b];
  body.writeUInt32LE(dialog, at + NUMBER_KEY_LEN);
}

/** Users a dialog remembers (addUser): a call's request URI, From, To and P-Asserted-Identity users. */
const USERS_PER_DIALOG = 4;

function growBytes(a: Uint8Array, min: number): Uint8Array {
  const b = new Uint8Array(Math.max(min, a.length * 2));
  b.set(a);
  return b;
}

function grow(a: Uint32Array): Uint32Array {
  const b = new Uint32Array(a.length * 2);
  b.set(a);
  return b;
}
