import { test } from 'node:test';
import assert from 'node:assert/strict';
import { unmaskedIsSafe } from './transports';

test('frames go unmasked only inside TLS or to a loopback peer; plain ws to another host keeps the random mask', () => {
  for (const u of ['wss://dispatcher.example:8443/socket.io/?EIO=4', 'ws://127.0.0.1:8080/socket.io/', 'ws://127.3.2.1/', 'ws://localhost:80/', 'ws://[::1]:8080/']) {
    assert.equal(unmaskedIsSafe(u), true, u);
  }
  for (const u of ['ws://10.0.0.5:8080/socket.io/', 'ws://dispatcher.example/', 'ws://[2001:db8::1]:80/', 'ws://127.0.0.1.evil.example/', 'ws://localhost.example/', 'not a url']) {
    assert.equal(unmaskedIsSafe(u), false, u);
  }
});
