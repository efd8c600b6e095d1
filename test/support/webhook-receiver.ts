/**
 * An HTTP receiver for the dispatcher's alert webhook, as an Alertmanager
 * webhook receiver would be: every POST body kept, in order.
 */

import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AlertmanagerMessage } from '../../dispatcher/alerts/webhook';

export interface WebhookReceiver {
  url: string;
  /** The messages received, in order. */
  got: AlertmanagerMessage[];
  /** Content types the posts were sent with, in order. */
  contentTypes: Array<string | undefined>;
  close(): void;
}

export async function startWebhookReceiver(): Promise<WebhookReceiver> {
  const got: AlertmanagerMessage[] = [];
  const contentTypes: Array<string | undefined> = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      contentTypes.push(req.headers['content-type']);
      got.push(JSON.parse(body) as AlertmanagerMessage);
      res.end('ok');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    got,
    contentTypes,
    close: () => {
      server.close();
      server.closeAllConnections();
    },
  };
}
