import { TracefleetError } from '../shared/errors/catalogue';

/*
 * `tracefleet extcap`: Wireshark's extcap interface
 * (https://www.wireshark.org/docs/wsdg_html_chunked/ChCaptureExtcap.html).
 * Wireshark runs every program of its extcap folders with
 * --extcap-interfaces at each start, and --extcap-dlts / --extcap-config for
 * each interface, so those answers are printed from this module's constants
 * alone: no yargs, no zod, no Socket.IO (a capture loads them, from
 * extcap-capture.ts). The arguments are Wireshark's, parsed here by hand.
 *
 * The error channel: a line on stderr and a non-zero exit. Wireshark shows
 * whatever the program wrote on stderr as an error, so a capture that goes
 * well writes nothing there.
 */

export const EXTCAP_INTERFACES = {
  'tracefleet-trace': { display: 'tracefleet fleet trace', window: 'trace' },
  'tracefleet-follow': { display: 'tracefleet follow', window: 'follow' },
} as const;
export type ExtcapInterface = keyof typeof EXTCAP_INTERFACES;

interface ConfigArg {
  call: string;
  display: string;
  type: 'string' | 'password' | 'boolflag' | 'integer';
  tooltip: string;
  group: string;
  default?: string;
  placeholder?: string;
  required?: boolean;
  /** Shown for these interfaces only. */
  only?: ExtcapInterface;
}

/**
 * The configuration dialog. The calls are the `tracefleet trace`/`follow`
 * flags of the same meaning; tshark sets them as -o extcap.IFACE.NAME:VALUE
 * with NAME the call without its dashes (a password field is never passed
 * by -o: tshark keeps no secret in its preferences).
 */
const CONFIG_ARGS: ConfigArg[] = [
  { call: '--url', display: 'Dispatcher URL', type: 'string', group: 'Dispatcher', placeholder: 'http://dispatcher:8060', tooltip: "The dispatcher's URL; empty: TRACEFLEET_URL or the one tracefleet login saved" },
  { call: '--token', display: 'API token', type: 'password', group: 'Dispatcher', tooltip: 'A session or API token; empty: TRACEFLEET_TOKEN or the one tracefleet login saved' },
  { call: '--number', display: 'Number', type: 'string', group: 'Calls', placeholder: '5551234', tooltip: 'Phone number: R-URI/From/To/P-Asserted-Identity users ending with these digits (at least 4); comma-separate several' },
  { call: '--call-id', display: 'Call-ID', type: 'string', group: 'Calls', tooltip: 'Call-ID; comma-separate several' },
  { call: '--ip', display: 'IP address', type: 'string', group: 'Calls', tooltip: 'IPv4 or IPv6 address, source or destination; comma-separate several' },
  { call: '--since', display: 'Window start', type: 'string', group: 'Window', default: '15m', only: 'tracefleet-trace', tooltip: 'Start of the window: 15m, 2h (back from now), epoch seconds or ISO 8601' },
  { call: '--until', display: 'Window end', type: 'string', group: 'Window', only: 'tracefleet-trace', tooltip: 'End of the window (same forms); empty: now' },
  { call: '--duration', display: 'Follow for', type: 'string', group: 'Window', default: '10m', only: 'tracefleet-follow', tooltip: 'How long to follow: 90s, 10m, 2h; stopping the capture ends it sooner' },
  { call: '--hosts', display: 'Hosts', type: 'string', group: 'Calls', tooltip: 'Agents to ask, comma-separated; empty: every connected agent' },
  { call: '--rtp', display: 'RTP', type: 'boolflag', group: 'Calls', only: 'tracefleet-trace', tooltip: "Add the dialogs' RTP/RTCP (both ends their SDP announced)" },
];

/** The value flags Wireshark or the dialog may pass; anything else is a boolean flag. */
const VALUE_FLAGS = new Set(['--extcap-interface', '--extcap-version', '--extcap-capture-filter', '--fifo', '--extcap-control-in', '--extcap-control-out', '--extcap-reload-option', ...CONFIG_ARGS.filter((a) => a.type !== 'boolflag').map((a) => a.call)]);

export interface ExtcapArgs {
  values: Map<string, string>;
  flags: Set<string>;
}

/** Wireshark's forms: `--name value`, `--name=value`, `--flag`. */
export function parseExtcapArgs(argv: string[]): ExtcapArgs {
  const values = new Map<string, string>();
  const flags = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const eq = a.indexOf('=');
    if (a.startsWith('--') && eq > 0) values.set(a.slice(0, eq), a.slice(eq + 1));
    else if (VALUE_FLAGS.has(a) && i + 1 < argv.length) values.set(a, argv[++i]);
    else flags.add(a);
  }
  return { values, flags };
}

/** `{` and `}` end a field in extcap's syntax, and a newline ends the sentence. */
function field(s: string): string {
  return s.replace(/[{}\r\n]/g, ' ');
}

export function interfacesText(version: string): string {
  const lines = [`extcap {version=${field(version)}}`];
  for (const [value, i] of Object.entries(EXTCAP_INTERFACES)) lines.push(`interface {value=${value}}{display=${i.display}}`);
  return lines.join('\n') + '\n';
}

export function dltsText(): string {
  // The stream is PCAPNG carrying each agent interface's own link type; Wireshark's DLT list only names one.
  return 'dlt {number=1}{name=EN10MB}{display=The link type of the agents\' capture}\n';
}

export function configText(iface: ExtcapInterface): string {
  return (
    CONFIG_ARGS.filter((a) => !a.only || a.only === iface)
      .map((a, n) =>
        [
          `arg {number=${n}}`,
          `{call=${a.call}}`,
          `{display=${field(a.display)}}`,
          `{type=${a.type}}`,
          `{tooltip=${field(a.tooltip)}}`,
          a.default !== undefined ? `{default=${field(a.default)}}` : '',
          a.placeholder !== undefined ? `{placeholder=${field(a.placeholder)}}` : '',
          a.required ? '{required=true}' : '',
          `{group=${a.group}}`,
        ].join(''),
      )
      .join('\n') + '\n'
  );
}

/** The filter words and the trace request key each fills. */
const FILTER_WORDS: Record<string, 'number' | 'callId' | 'ip' | 'port' | 'method' | 'status' | 'correlation'> = {
  number: 'number',
  'call-id': 'callId',
  callid: 'callId',
  ip: 'ip',
  port: 'port',
  method: 'method',
  status: 'status',
  correlation: 'correlation',
};
export type FilterKey = (typeof FILTER_WORDS)[string];

/**
 * Wireshark's capture filter box, read as tracefleet's filter words:
 * `number 5551234 and method INVITE`. Only the shape is checked here (the
 * values are the query contract's to judge, with the dialog's fields);
 * a BPF expression is refused with what to write instead.
 */
export function parseCaptureFilter(text: string): Partial<Record<FilterKey, string[]>> {
  const words = text.trim().split(/\s+/).filter((w) => w !== '');
  const out: Partial<Record<FilterKey, string[]>> = {};
  for (let i = 0; i < words.length; i++) {
    const w = words[i].toLowerCase();
    if (w === 'and' || w === '&&') continue;
    const key = Object.hasOwn(FILTER_WORDS, w) ? FILTER_WORDS[w] : undefined;
    if (!key) throw new TracefleetError('TF_EXTCAP_FILTER', { value: text, why: `'${words[i]}' is not a tracefleet filter word (this is not a BPF filter)` });
    const v = words[++i];
    if (v === undefined || v.toLowerCase() === 'and') throw new TracefleetError('TF_EXTCAP_FILTER', { value: text, why: `'${words[i - 1]}' needs a value` });
    (out[key] ??= []).push(...v.split(',').filter((x) => x !== ''));
  }
  return out;
}

export function isInterface(s: string | undefined): s is ExtcapInterface {
  return s !== undefined && Object.hasOwn(EXTCAP_INTERFACES, s);
}

function interfaceOf(a: ExtcapArgs): ExtcapInterface {
  const i = a.values.get('--extcap-interface');
  if (!isInterface(i)) throw new TracefleetError('TF_EXTCAP_INTERFACE', { value: i ?? '(none)', known: Object.keys(EXTCAP_INTERFACES) });
  return i;
}

function version(): string {
  return (require('./commands/local') as typeof import('./commands/local')).agentVersion();
}

/** Runs `tracefleet extcap ARGS` (the launcher Wireshark runs) and exits. */
export function extcapMain(argv: string[]): void {
  if (argv[0] === 'install') {
    (require('./extcap-install') as typeof import('./extcap-install')).installMain(argv.slice(1));
    return;
  }
  const a = parseExtcapArgs(argv);
  try {
    if (a.flags.has('--extcap-interfaces')) return void process.stdout.write(interfacesText(version()));
    if (a.flags.has('--capture')) {
      void (require('./extcap-capture') as typeof import('./extcap-capture')).captureMain(interfaceOf(a), a);
      return;
    }
    if (a.flags.has('--extcap-dlts')) return void process.stdout.write((interfaceOf(a), dltsText()));
    if (a.flags.has('--extcap-config')) return void process.stdout.write(configText(interfaceOf(a)));
    const filter = a.values.get('--extcap-capture-filter');
    if (filter !== undefined) {
      // Validation of the filter box: nothing on stdout when it is good, the reason when not (Wireshark colours the box).
      interfaceOf(a);
      try {
        parseCaptureFilter(filter);
      } catch (e) {
        process.stdout.write(`${(e as Error).message}\n`);
      }
      return;
    }
    if (a.values.has('--extcap-version')) return void process.stdout.write(`extcap {version=${field(version())}}\n`);
    process.stderr.write(
      'tracefleet extcap: this is the program Wireshark runs for its capture dialog; install it with `tracefleet extcap install [--global]`, then pick "tracefleet follow" or "tracefleet fleet trace" in Wireshark (or tshark -i tracefleet-follow)\n',
    );
    process.exitCode = 2;
  } catch (e) {
    process.stderr.write(`tracefleet: ${(e as Error).message}\n`);
    process.exitCode = e instanceof TracefleetError ? e.exit : 1;
  }
}
