import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createLogger, logSettingsOf, prettyLine, REDACTED } from './log';
import { memoryLogger } from '../../test/support/log';

const PASSWORD = 'hunter2-Secret!pw';
const AGENT_TOKEN = 'a3f9c0ffee5e1f2b7d8e9a0b1c2d3e4f5a6b7c8d';
const SESSION = 'tf_s_0123456789abcdef0123456789abcdef';
const COUCH_PW = 'couch-Pa55word';
const COUCHDB_URL = `http://admin:${COUCH_PW}@couch.example:5984`;

test('no secret reaches a line: a login, an agent token, a session, an Authorization header, a URL with credentials', () => {
  const { logger, lines, records } = memoryLogger('trace');
  const log = logger.child({ component: 'dispatcher.api' });
  log.info({ user: 'alice', password: PASSWORD }, 'login');
  log.info({ body: { user: 'alice', password: PASSWORD }, session: SESSION, token: SESSION }, 'login answered');
  log.warn({ agent: 'edge1', token: AGENT_TOKEN, auth: { token: AGENT_TOKEN, name: 'edge1' } }, 'refused agent');
  log.info({ agentTokens: [{ agent: 'edge1', token: AGENT_TOKEN }] }, 'configured');
  log.debug({ req: { method: 'GET', headers: { Authorization: `Bearer ${SESSION}`, cookie: `tf_session=${SESSION}` } } }, 'request');
  log.info({ couchdb: COUCHDB_URL }, 'store');
  log.info(`cannot reach ${COUCHDB_URL}/tracefleet: ECONNREFUSED`);
  log.info({ hint: `send Authorization: Basic ${Buffer.from(`alice:${PASSWORD}`).toString('base64')}` }, 'free text');
  log.error({ err: new Error(`request to ${COUCHDB_URL}/_users failed`) }, 'store failed');
  logger.child({ component: 'x', token: AGENT_TOKEN }).info('a child bound to a secret');

  assert.equal(lines.length, 10);
  for (const secret of [PASSWORD, AGENT_TOKEN, SESSION, COUCH_PW, Buffer.from(`alice:${PASSWORD}`).toString('base64')]) {
    for (const l of lines) assert.ok(!l.includes(secret), `a line holds a secret: ${l}`);
  }
  // What is not secret stays, so the line is still worth reading.
  assert.equal(records[0].user, 'alice');
  assert.equal(records[0].password, REDACTED);
  assert.equal(records[2].agent, 'edge1');
  assert.equal(records[5].couchdb, `http://${REDACTED}@couch.example:5984`);
  assert.equal(records[6].msg, `cannot reach http://${REDACTED}@couch.example:5984/tracefleet: ECONNREFUSED`);
  assert.match(String((records[8].err as { message: string }).message), /couch\.example:5984\/_users failed/);
  assert.equal(records[9].component, 'x');
});

test('levels: records below the level are not written; each record carries its level and component', () => {
  const { logger, records } = memoryLogger('warn');
  const log = logger.child({ component: 'agent.link' });
  log.debug('not written');
  log.info('not written either');
  log.warn({ reason: 'x' }, 'written');
  log.error('written too');
  assert.deepEqual(records.map((r) => [r.level, r.component, r.msg]), [[40, 'agent.link', 'written'], [50, 'agent.link', 'written too']]);
  assert.deepEqual(logSettingsOf(log), { level: 'warn', format: 'json' });
});

test('pretty form: time, level, component, message, fields; control characters from the wire are escaped', () => {
  const out: string[] = [];
  const logger = createLogger({ format: 'pretty', destination: { write: (s: string) => void out.push(s) } });
  logger.child({ component: 'dispatcher.fleet' }).warn({ agent: 'edge\u001b[2J9', addr: '10.0.0.1', n: 3 }, 'refused agent');
  assert.equal(out.length, 1);
  assert.match(out[0], /^\d\d:\d\d:\d\d\.\d{3} WARN  dispatcher\.fleet: refused agent {2}agent=edge\\u001b\[2J9 addr=10\.0\.0\.1 n=3\n$/);
  assert.ok(!out[0].includes('\u001b'));
  assert.equal(logSettingsOf(logger).format, 'pretty');
  assert.equal(prettyLine('not json\u0007'), 'not json\\u0007');
});

test('auto: pretty on a terminal, JSON lines otherwise', () => {
  for (const [isTTY, pretty] of [[true, true], [false, false]] as const) {
    const out: string[] = [];
    createLogger({ format: 'auto', isTTY, destination: { write: (s: string) => void out.push(s) } }).info('x');
    assert.equal(out[0].startsWith('{'), !pretty, `isTTY ${isTTY}: ${out[0]}`);
  }
});
