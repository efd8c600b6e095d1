import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ERRORS, ErrorCode, EXIT, receivedError, TracefleetError } from './catalogue';

/** An entry's message with each parameter shown as <name> (a one-element array also joins, sorts and counts like the lists some take). */
function template(code: ErrorCode): string {
  const params = new Proxy({}, { get: (_t, k) => [`<${String(k)}>`] });
  return String((ERRORS[code].message as (p: unknown) => unknown)(params));
}

/** The table docs/API.md shows between its error-codes markers. */
function table(): string {
  const rows = (Object.keys(ERRORS) as ErrorCode[]).map((code) => {
    const e = ERRORS[code];
    const field = e.field === 'path' ? '(the key named)' : (e.field ?? '');
    return `| \`${code}\` | ${field} | ${e.status ?? '-'} | ${e.exit} | ${template(code).replace(/\|/g, '\\|')} |`;
  });
  return ['| code | field | HTTP | exit | message |', '|---|---|---|---|---|', ...rows].join('\n');
}

test('docs/API.md lists every error code as the catalogue has it', () => {
  const doc = readFileSync(join(__dirname, '../../../docs/API.md'), 'utf8');
  const m = /<!-- error-codes:begin -->\n([\s\S]*?)\n<!-- error-codes:end -->/.exec(doc);
  assert.ok(m, 'docs/API.md has the error-codes markers');
  assert.equal(m[1], table(), `docs/API.md is out of date; put this between the markers:\n${table()}`);
});

test('a REST status and the exit code agree: bad input 2, not allowed 4, anything else 1', () => {
  for (const [code, e] of Object.entries(ERRORS)) {
    if (e.status === null || code.startsWith('TF_AUTH_')) continue; // users are managed by `tracefleet user`, where an unknown one is bad input
    const want = [400, 409, 413].includes(e.status) ? EXIT.BAD_INPUT : [401, 403].includes(e.status) ? EXIT.UNAUTHORIZED : EXIT.FAILED;
    assert.equal(e.exit, want, code);
  }
});

test('an error carries its entry: code, field, status, exit and the sentence', () => {
  const e = new TracefleetError('TF_QUERY_BAD_PORT', { value: '0' });
  assert.deepEqual([e.code, e.field, e.status, e.exit, e.message], ['TF_QUERY_BAD_PORT', 'port', 400, 2, "bad port '0': give a number from 1 to 65535"]);
  assert.equal(new TracefleetError('TF_REQUEST_INVALID', { message: 'bad x' }, 'callId').field, 'callId', "a 'path' entry takes the key named");
  assert.equal(new TracefleetError('TF_QUERY_BAD_IP', { value: 'x' }, 'port').field, 'ip', 'a fixed field is not overridden');
  const got = receivedError({ code: 'TF_QUERY_BAD_PORT', field: 'port' }, 'the dispatcher refused (400): bad port', 400);
  assert.deepEqual([got.code, got.field, got.exit, got.message], ['TF_QUERY_BAD_PORT', 'port', 2, 'the dispatcher refused (400): bad port']);
  assert.equal(receivedError({ code: 'TF_FROM_A_NEWER_DISPATCHER' }, 'x', 403).code, 'TF_FORBIDDEN', "an unknown code falls back to the status's");
});
