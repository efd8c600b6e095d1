#!/usr/bin/env node
// Healthy when the dispatcher on this machine answers GET /healthz with 200
// ({ok: true}: its store answers). The address is TRACEFLEET_LISTEN's port on
// loopback (a wildcard listen address is reached there too); HTTPS when
// TRACEFLEET_TLS_CERT is set, without checking the certificate (the question
// is whether this process answers, not who it is). Node only: the image has
// no curl.
'use strict';
const listen = process.env.TRACEFLEET_LISTEN || '127.0.0.1:8060';
const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:]+)):(\d{1,5})$/.exec(listen.trim());
if (!m) {
  process.stderr.write(`healthcheck: bad TRACEFLEET_LISTEN '${listen}'\n`);
  process.exit(1);
}
let host = m[1] || m[2];
if (host === '0.0.0.0') host = '127.0.0.1';
if (host === '::') host = '::1';
const tls = Boolean(process.env.TRACEFLEET_TLS_CERT);
const lib = require(tls ? 'node:https' : 'node:http');
const req = lib.get(
  { host, port: Number(m[3]), path: '/healthz', timeout: 4000, rejectUnauthorized: false },
  (res) => {
    let body = '';
    res.setEncoding('utf8');
    res.on('data', (d) => {
      if (body.length < 65536) body += d;
    });
    res.on('end', () => {
      if (res.statusCode === 200) process.exit(0);
      process.stderr.write(`healthcheck: /healthz answered ${res.statusCode}: ${body.slice(0, 500)}\n`);
      process.exit(1);
    });
  },
);
req.on('timeout', () => req.destroy(new Error('no answer within 4 s')));
req.on('error', (e) => {
  process.stderr.write(`healthcheck: ${host}:${m[3]}: ${e.message}\n`);
  process.exit(1);
});
