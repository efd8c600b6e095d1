import { LOOPBACK } from './capture';

/*
 * Hand-made SIP datagrams for tests that send a call themselves, message by
 * message, to 127.0.0.1 (sipp runs a call whole): the follow tests, which
 * check what arrives between two messages.
 */

/** One SIP message of a dialog on 127.0.0.1:`port`. */
export function sipDatagram(first: string, callId: string, to: string, cseq: string, port: number): Buffer {
  return Buffer.from(
    `${first}\r\nVia: SIP/2.0/UDP ${LOOPBACK}:${port};branch=z9hG4bK-${callId}-${cseq.replace(' ', '')}\r\n` +
      `From: <sip:+15550100999@${LOOPBACK}>;tag=a1\r\nTo: <sip:${to}@${LOOPBACK}>\r\nCall-ID: ${callId}\r\nCSeq: ${cseq}\r\n` +
      'Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n',
  );
}

/** A short call to `to`: INVITE, 100, 180, 200, ACK, BYE, 200. */
export function callDatagrams(callId: string, to: string, port: number): Buffer[] {
  return [
    sipDatagram(`INVITE sip:${to}@${LOOPBACK} SIP/2.0`, callId, to, '1 INVITE', port),
    sipDatagram('SIP/2.0 100 Trying', callId, to, '1 INVITE', port),
    sipDatagram('SIP/2.0 180 Ringing', callId, to, '1 INVITE', port),
    sipDatagram('SIP/2.0 200 OK', callId, to, '1 INVITE', port),
    sipDatagram(`ACK sip:${to}@${LOOPBACK} SIP/2.0`, callId, to, '1 ACK', port),
    sipDatagram(`BYE sip:${to}@${LOOPBACK} SIP/2.0`, callId, to, '2 BYE', port),
    sipDatagram('SIP/2.0 200 OK', callId, to, '2 BYE', port),
  ];
}
