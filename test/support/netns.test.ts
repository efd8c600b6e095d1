import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TestNet, listNamespaces } from './netns';
import { run, haveCommand, isRoot } from './proc';

const skip = isRoot() ? false : 'network namespaces need root';

/** Node one-liners so connectivity is checked even where ping is not installed. */
const TCP_SERVER = `const s=require('net').createServer(c=>{c.end('pong '+c.remoteAddress)});s.listen(+process.argv[2],process.argv[1],()=>console.log('listening'));setTimeout(()=>process.exit(0),15000)`;
const TCP_CLIENT = `const c=require('net').connect(+process.argv[2],process.argv[1]);let d='';c.on('data',x=>d+=x);c.on('end',()=>{console.log(d);process.exit(0)});setTimeout(()=>process.exit(3),5000)`;

async function rootLinks(): Promise<string[]> {
  const r = await run('ip', ['-o', 'link', 'show']);
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(':')[1].trim());
}

test('bridge mode: two hosts reach each other over IPv4 and IPv6; destroy removes every namespace', { skip }, async (t) => {
  const linksBefore = await rootLinks();
  const net = await TestNet.create({ hosts: ['a', 'b'] });
  t.after(() => net.destroy());
  const mine = (await listNamespaces()).filter((n) => n.startsWith(net.prefix));
  assert.deepEqual(mine.sort(), [`${net.prefix}a`, `${net.prefix}b`, `${net.prefix}br`]);
  assert.deepEqual(await rootLinks(), linksBefore, 'an interface appeared in the root namespace');
  assert.equal(net.addr('a'), '198.18.0.1');
  assert.equal(net.addr('b'), '198.18.0.2');
  assert.equal(net.ifname('a'), 'eth0');

  await t.test('ping -c 1', { skip: haveCommand('ping') ? false : 'ping (iputils-ping) is not installed' }, async () => {
    const r = await net.exec('a', 'ping', ['-c', '1', '-W', '3', net.addr('b')], { timeoutMs: 10_000 });
    assert.match(r.stdout, /1 received/);
  });

  for (const [fam, addr] of [
    ['IPv4', net.addr('b')],
    ['IPv6', net.addr6('b')],
  ]) {
    await t.test(`TCP exchange over ${fam}`, async () => {
      const srv = await net.spawn('b', process.execPath, ['-e', TCP_SERVER, addr, '7000']);
      try {
        await srv.waitForOutput(/listening/, 10_000);
        const r = await net.exec('a', process.execPath, ['-e', TCP_CLIENT, addr, '7000'], { timeoutMs: 10_000 });
        assert.equal(r.stdout.trim(), `pong ${fam === 'IPv4' ? net.addr('a') : net.addr6('a')}`);
      } finally {
        await srv.stop();
      }
    });
  }

  await net.destroy();
  assert.deepEqual(
    (await listNamespaces()).filter((n) => n.startsWith(net.prefix)),
    [],
  );
});

test('links mode: per-link subnets and interface names; mtu applies to every interface', { skip }, async (t) => {
  const net = await TestNet.create({ hosts: ['a', 'b', 'c'], links: [['a', 'b'], ['b', 'c']], mtu: 1400 });
  t.after(() => net.destroy());
  assert.equal(net.bridgeNs, undefined);
  assert.equal(net.addr('a'), '198.18.1.1');
  assert.equal(net.addr('b', 'a'), '198.18.1.2');
  assert.equal(net.addr('b', 'c'), '198.18.2.1');
  assert.equal(net.addr('b', 1), '198.18.2.1');
  assert.equal(net.addr6('c'), '2001:db8:0:2::2');
  assert.throws(() => net.addr('b'), /2 interfaces/);
  const r = await net.exec('b', 'ip', ['-o', 'link', 'show', 'dev', net.ifname('b', 'c')]);
  assert.match(r.stdout, /mtu 1400/);
  const c = await net.exec('c', process.execPath, ['-e', TCP_CLIENT, net.addr('b', 'c'), '7001'], { timeoutMs: 10_000, check: false });
  // Nothing listens: a refused connection proves the link carries packets both ways.
  assert.match(c.stderr, /ECONNREFUSED/);
});

test('below 1280 bytes MTU there is no IPv6, and asking for it is an error', { skip }, async (t) => {
  await assert.rejects(TestNet.create({ hosts: ['a'], mtu: 576, ipv6: true }), /at least 1280/);
  const net = await TestNet.create({ hosts: ['a', 'b'], mtu: 576 });
  t.after(() => net.destroy());
  assert.throws(() => net.addr6('a'), /no IPv6/);
  const r = await net.exec('a', 'ip', ['-o', 'link', 'show', 'dev', 'eth0']);
  assert.match(r.stdout, /mtu 576/);
});

test('invalid options are rejected before any namespace is made', { skip }, async () => {
  const before = await listNamespaces();
  await assert.rejects(TestNet.create({ hosts: ['a', 'br'] }), /reserved/);
  await assert.rejects(TestNet.create({ hosts: ['a'], links: [['a', 'z']] }), /unknown host/);
  assert.deepEqual(await listNamespaces(), before);
});
