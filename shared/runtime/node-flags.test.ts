import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { NODE_FLAGS } from './node-flags';

const ROOT = resolve(__dirname, '..', '..', '..');
const read = (p: string): string => readFileSync(join(ROOT, p), 'utf8');

/** The node flags given on the one line of `text` that `line` matches. */
function flagsOn(text: string, line: RegExp, what: string): string[] {
  const m = text.split('\n').find((l) => line.test(l));
  assert.ok(m, `${what}: no line matches ${line}`);
  return m.split(/\s+/).filter((w) => w.startsWith('--'));
}

test('every launch of a long-running process gives node NODE_FLAGS', () => {
  const places: Array<[string, string[]]> = [
    ['bin/tracefleet (shebang)', flagsOn(read('bin/tracefleet'), /^#!/, 'bin/tracefleet')],
    ['deploy/dispatcher-entrypoint.sh', flagsOn(read('deploy/dispatcher-entrypoint.sh'), /^exec node /, 'dispatcher entrypoint')],
    ['deploy/agent-entrypoint.sh', flagsOn(read('deploy/agent-entrypoint.sh'), /^exec node /, 'agent entrypoint')],
    ['npm start', (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts.start.split(/\s+/).filter((w) => w.startsWith('--'))],
  ];
  for (const [where, flags] of places) {
    for (const f of NODE_FLAGS) assert.ok(flags.includes(f), `${where} does not give node ${f} (it gives ${flags.join(' ') || 'nothing'})`);
  }
});

test('bin/tracefleet runs through its shebang with the flags', () => {
  // env -S splits the shebang's words: an env without it would look for a program named "node --initial-...".
  assert.match(execFileSync(join(ROOT, 'bin', 'tracefleet'), ['--version'], { encoding: 'utf8', timeout: 30_000 }), /^\d+\.\d+\.\d+/);
});

test('node takes every flag on its command line', () => {
  assert.equal(execFileSync(process.execPath, [...NODE_FLAGS, '-e', 'process.stdout.write("ok")'], { encoding: 'utf8', timeout: 30_000 }), 'ok');
});
