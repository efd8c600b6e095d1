import { NodeWebSocket, NodeXHR, WebTransport } from 'engine.io-client';

/**
 * A WebSocket client frame must carry a masking key, but RFC 6455 masks
 * only so that a browser script cannot choose the bytes an intermediary
 * sees on the wire (cache poisoning); the agent is no browser and sends
 * what it captured. With the key all zeros, ws neither copies each frame
 * into a fresh buffer nor XORs it, and the receiving ws skips its unmask:
 * masking a 200 MiB result cost the agent about a fifth of its CPU (the
 * copy, the XOR and the collections of those buffers; bench:stream).
 */
function zeroMask(mask: Buffer): void {
  mask.fill(0);
}

/** engine.io-client's Node WebSocket transport, its frames unmasked (a zero key: see zeroMask). */
class UnmaskedWebSocket extends NodeWebSocket {
  override createSocket(uri: string, protocols: string | string[] | undefined, opts: Record<string, unknown>): unknown {
    return super.createSocket(uri, protocols, { ...opts, generateMask: zeroMask });
  }
}

/** The agent's transports, in Socket.IO's default order (long-polling first, then the upgrade), the WebSocket unmasked. */
export const AGENT_TRANSPORTS = [NodeXHR, UnmaskedWebSocket, WebTransport];
