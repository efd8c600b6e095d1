/**
 * Debian's Kamailio as a real SIP proxy for the HEP tests: a generated
 * config (and, for TLS, a generated self-signed certificate) in a temporary
 * directory, its siptrace module sending HEP3 for every message it receives
 * and sends (trace_mode 1: core events, so TLS is traced decrypted), started
 * in the foreground and stopped by the test.
 */
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run, startDaemon, type DaemonHandle } from './proc';
import type { SippEndpoint } from './sipp';

/** Debian's module directory, under the architecture's lib directory. */
export function kamailioModules(): string {
  for (const d of ['/usr/lib', ...readdirSync('/usr/lib').map((n) => `/usr/lib/${n}`)]) {
    if (existsSync(`${d}/kamailio/modules/siptrace.so`)) return `${d}/kamailio/modules`;
  }
  throw new Error('no kamailio/modules/siptrace.so under /usr/lib: install kamailio (scripts/setup.sh --test)');
}

export interface KamailioOptions {
  dir: string;
  /** Listen sockets, e.g. ['udp:127.0.0.1:5071', 'tcp:127.0.0.1:5071', 'tls:127.0.0.1:5072']. */
  listen: string[];
  /** Every request is relayed there, over this transport. */
  next: SippEndpoint & { transport: 'udp' | 'tcp' };
  /** Where siptrace sends HEP3 (UDP). */
  hep: SippEndpoint;
  hepPassword?: string;
  hepCaptureId?: number;
  /** siptrace's HEP version; default 3 (version 2 has no key). */
  hepVersion?: 2 | 3;
  /** PEM files for the tls listeners. */
  tls?: { cert: string; key: string };
}

/** A self-signed certificate for 127.0.0.1, with openssl. */
export async function selfSignedCert(dir: string): Promise<{ cert: string; key: string }> {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert], { timeoutMs: 30_000 });
  return { cert, key };
}

function config(o: KamailioOptions): string {
  const tls = o.listen.some((l) => l.startsWith('tls:'));
  return `#!KAMAILIO
debug=2
log_stderror=yes
children=1
tcp_children=1
auto_aliases=no
# One worker each: replies are relayed in the order they came (a 180 never overtakes its 200).
${o.listen.map((l) => `listen=${l}`).join('\n')}
${tls ? 'enable_tls=yes' : ''}
mpath="${kamailioModules()}"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "siptrace.so"
${tls ? 'loadmodule "tls.so"' : ''}
${tls ? `modparam("tls", "config", "${join(o.dir, 'tls.cfg')}")` : ''}
modparam("siptrace", "duplicate_uri", "sip:${o.hep.addr}:${o.hep.port}")
modparam("siptrace", "hep_mode_on", 1)
modparam("siptrace", "hep_version", ${o.hepVersion ?? 3})
modparam("siptrace", "hep_capture_id", ${o.hepCaptureId ?? 2001})
${o.hepPassword ? `modparam("siptrace", "auth_key", "${o.hepPassword}")` : ''}
modparam("siptrace", "trace_to_database", 0)
modparam("siptrace", "trace_on", 1)
modparam("siptrace", "trace_mode", 1)

request_route {
	$du = "sip:${o.next.addr}:${o.next.port};transport=${o.next.transport}";
	if (!t_relay()) {
		sl_reply_error();
	}
	exit;
}
`;
}

/** Writes the config, checks it (kamailio -c) and starts Kamailio; resolves once it listens. */
export async function startKamailio(o: KamailioOptions): Promise<DaemonHandle> {
  const cfg = join(o.dir, 'kamailio.cfg');
  writeFileSync(cfg, config(o));
  if (o.tls) {
    writeFileSync(join(o.dir, 'tls.cfg'), `[server:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
private_key = ${o.tls.key}
certificate = ${o.tls.cert}

[client:default]
verify_certificate = no
require_certificate = no
`);
  }
  const check = await run('kamailio', ['-c', '-f', cfg], { timeoutMs: 30_000, check: false });
  if (check.code !== 0) throw new Error(`kamailio -c refused the generated config: ${check.stderr.slice(-2000)}`);
  const k = await startDaemon('kamailio', ['-DD', '-E', '-f', cfg, '-P', join(o.dir, 'kamailio.pid'), '-Y', o.dir, '-m', '64', '-M', '8', '-w', o.dir], { stopGraceMs: 5000 });
  // Listening once every socket is there (TLS and TCP share the TCP table).
  const ports = o.listen.map((l) => ({ udp: l.startsWith('udp:'), port: Number(l.slice(l.lastIndexOf(':') + 1)) }));
  const deadline = Date.now() + 15_000;
  for (;;) {
    const [u, t] = await Promise.all([run('ss', ['-Hlnu'], { timeoutMs: 10_000 }), run('ss', ['-Hlnt'], { timeoutMs: 10_000 })]);
    if (ports.every((p) => (p.udp ? u.stdout : t.stdout).includes(`:${p.port} `))) break;
    if (k.exitStatus() !== null || Date.now() > deadline) {
      await k.stop();
      throw new Error(`kamailio did not listen on ${o.listen.join(', ')}; stderr: ${k.stderr().slice(-2000)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return k;
}
