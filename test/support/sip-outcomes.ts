import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { run, startDaemon } from './proc';
import { sleep } from './capture';

/*
 * sipp scenarios that end an INVITE dialog each way an operator counts
 * (answered with a BYE, 486 busy, 480 no answer, cancelled by the caller,
 * 503), and a runner that plays a plan of them on loopback, one UAS per
 * outcome on its own port.
 */

const HEAD = (first: string) => `${first}
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0`;

const send = (msg: string, retrans = false) => `  <send${retrans ? ' retrans="500"' : ''}><![CDATA[

${msg}

]]></send>`;

const REQ = (method: string, cseq: string, to = 'To: <sip:[service]@[remote_ip]:[remote_port]>') => `${method} sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=${method === 'ACK' || method === 'CANCEL' ? '[branch-1]' : '[branch]'}
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
${to}
Call-ID: [call_id]
CSeq: ${cseq}
Contact: sip:sipp@[local_ip]:[local_port]
Max-Forwards: 70
Content-Length: 0`;

export type Outcome = 'answered' | 'busy' | 'noanswer' | 'cancelled' | 'unavailable';
export const FINAL: Record<Outcome, number> = { answered: 200, busy: 486, noanswer: 480, cancelled: 487, unavailable: 503 };

export function scenarios(o: Outcome): { uas: string; uac: string } {
  const code = FINAL[o];
  const reason: Record<number, string> = { 200: 'OK', 486: 'Busy Here', 480: 'Temporarily Unavailable', 487: 'Request Terminated', 503: 'Service Unavailable' };
  const x = (body: string) => `<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="${o}">\n${body}\n</scenario>\n`;
  const uasParts = ['  <recv request="INVITE" />', send(HEAD('SIP/2.0 180 Ringing'))];
  const uacParts = [send(REQ('INVITE', '1 INVITE'), true), '  <recv response="100" optional="true" />', '  <recv response="180" />'];
  if (o === 'cancelled') {
    uasParts.push('  <recv request="CANCEL" />', send(HEAD('SIP/2.0 200 OK')), send(HEAD('SIP/2.0 487 Request Terminated').replace('[last_CSeq:]', 'CSeq: 1 INVITE')), '  <recv request="ACK" />');
    uacParts.push(send(REQ('CANCEL', '1 CANCEL')), '  <recv response="200" />', '  <recv response="487" />', send(REQ('ACK', '1 ACK', '[last_To:]')));
  } else if (o === 'answered') {
    uasParts.push(send(HEAD('SIP/2.0 200 OK')), '  <recv request="ACK" />', '  <recv request="BYE" />', send(HEAD('SIP/2.0 200 OK')));
    uacParts.push('  <recv response="200" />', send(REQ('ACK', '1 ACK', '[last_To:]').replace('[branch-1]', '[branch]')), '  <pause milliseconds="1500" />', send(REQ('BYE', '2 BYE', '[last_To:]'), true), '  <recv response="200" />');
  } else {
    uasParts.push(send(HEAD(`SIP/2.0 ${code} ${reason[code]}`)), '  <recv request="ACK" />');
    uacParts.push(`  <recv response="${code}" />`, send(REQ('ACK', '1 ACK', '[last_To:]')));
  }
  uasParts.push('  <timewait milliseconds="300" />');
  return { uas: x(uasParts.join('\n')), uac: x(uacParts.join('\n')) };
}


/** Plays each outcome's calls: its UAS on uasPorts[i], one UAC on uacPort; rate in calls per second. */
export async function playOutcomes(dir: string, plan: Array<[Outcome, number]>, uasPorts: number[], uacPort: number, rate = 5): Promise<void> {
  for (const [i, [o, calls]] of plan.entries()) {
    const sc = scenarios(o);
    writeFileSync(join(dir, `${o}-uas.xml`), sc.uas);
    writeFileSync(join(dir, `${o}-uac.xml`), sc.uac);
    const uas = await startDaemon('sipp', ['-sf', join(dir, `${o}-uas.xml`), '-i', '127.0.0.1', '-p', String(uasPorts[i]), '-m', String(calls), '-nostdin', '-trace_err', '-error_file', join(dir, `${o}-uas.err`)], { stopGraceMs: 1000 });
    try {
      await sleep(300);
      const uac = await run('sipp', [`127.0.0.1:${uasPorts[i]}`, '-sf', join(dir, `${o}-uac.xml`), '-i', '127.0.0.1', '-p', String(uacPort), '-m', String(calls), '-r', String(rate), '-nostdin', '-timeout', '30s', '-timeout_error'], { timeoutMs: 40_000, check: false });
      assert.equal(uac.code, 0, `${o}: sipp UAC failed: ${uac.stdout.slice(-1500)}`);
      await uas.waitForExit(10_000);
    } finally {
      await uas.stop();
    }
  }
}
