/* PCAP attachments, streamed both ways: never held whole in the dispatcher. */

import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { PassThrough, Readable, Transform, TransformCallback, pipeline } from 'node:stream';
import type { StoreClient } from './client';
import { NanoError, StoreError, StoreUnreachableError } from './errors';
import type { AttachmentStub, CouchMeta } from './layout';
import { storedAttachment } from './parts';

/** Counts what flows through, so an upload can report its size without a second read. */
class ByteCounter extends Transform {
  bytes = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    cb(null, chunk);
  }
}

/**
 * PUTs `body` to `url` with node:http(s) rather than nano, whose fetch
 * (undici) took about twice the CPU per byte of a big upload (200 MiB into
 * the embedded store: 0.9-1.4 s of the dispatcher's CPU against 0.4-0.5 s);
 * an attachment upload is the one request that carries hundreds of MB.
 * Resolves with the new revision; rejects as nano's calls do (StoreError,
 * StoreUnreachableError when the store cannot be reached or the body broke
 * off).
 */
function putBody(c: StoreClient, what: string, url: string, contentType: string, body: Readable): Promise<string> {
  return new Promise((resolve, reject) => {
    const send = url.startsWith('https:') ? httpsRequest : httpRequest;
    const req = send(url, { method: 'PUT', headers: { ...c.authHeaders, 'content-type': contentType, accept: 'application/json' } }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (b: Buffer) => parts.push(b));
      res.on('error', (e) => reject(c.unreachable(`${what}: the answer broke off: ${e.message}`)));
      res.on('end', () => {
        let answer: NanoError & { rev?: string };
        try {
          answer = JSON.parse(Buffer.concat(parts).toString('utf8')) as NanoError & { rev?: string };
        } catch {
          answer = {};
        }
        const status = res.statusCode ?? 0;
        if (status >= 200 && status < 300 && typeof answer.rev === 'string') resolve(answer.rev);
        else reject(c.fail(what, { ...answer, statusCode: status }));
      });
    });
    req.on('error', (e) => reject(c.unreachable(e.message)));
    body.once('error', (e) => req.destroy(e));
    body.pipe(req);
  });
}

/**
 * Streams `readable` into the document's attachment `name` (replacing it)
 * as the bytes arrive: the body is never held whole in this process. The
 * document must exist. If `readable` fails or closes before its end, the
 * upload is aborted, nothing is stored, and the promise rejects with the
 * stream's error.
 */
export async function putAttachmentStream(c: StoreClient, docId: string, name: string, contentType: string, readable: Readable): Promise<{ bytes: number; rev: string }> {
  const what = `storing ${name} on ${docId}`;
  // Listening at once: the source may fail while we wait for the document's
  // queue, and an 'error' nobody listens to would crash the process.
  let sourceError: Error | undefined;
  const onSourceError = (err: Error): void => {
    sourceError ??= err;
  };
  readable.on('error', onSourceError);
  try {
    return await c.serial(docId, async () => {
      if (sourceError) throw sourceError;
      if (readable.destroyed || readable.readableEnded) {
        throw new StoreError(`${what}: the source stream was closed before the upload began`);
      }
      const doc = await c.getRaw<{ _rev: string }>(docId);
      if (!doc) throw new StoreError(`${what}: no such document in the store at ${c.url}`, 404, 'not_found');
      const counter = new ByteCounter();
      // pipeline turns a source that closes early into an error too, so a
      // half-sent result is aborted instead of being stored as complete.
      pipeline(readable, counter, (err) => {
        if (err && !counter.writableFinished) sourceError ??= err;
      });
      try {
        const rev = await putBody(c, what, `${c.dbUrl}/${encodeURIComponent(docId)}/${encodeURIComponent(name)}?rev=${encodeURIComponent(doc._rev)}`, contentType, counter);
        return { bytes: counter.bytes, rev };
      } catch (err) {
        // An upload aborted because the source failed looks like a broken
        // connection; an answer from the server is the real story.
        if (sourceError && err instanceof StoreUnreachableError) throw sourceError;
        throw err;
      }
    });
  } catch (err) {
    readable.destroy();
    throw err;
  } finally {
    readable.off('error', onSourceError);
  }
}

/** Name, type, length and digest of an attachment, or null when it is not there. */
export async function getAttachmentInfo(c: StoreClient, docId: string, name: string): Promise<AttachmentStub | null> {
  return storedAttachment(await c.getRaw<CouchMeta>(docId), name);
}

/**
 * The attachment as a stream, fetched as it is read. A missing document or
 * attachment, an unreachable store, or a download that stops short of the
 * stored length each make the stream emit a StoreError.
 *
 * The one call not made through nano: nano 11's attachment.getAsStream
 * pipes an internal stream that has no 'error' listener, so a store that
 * goes away mid-download throws an uncaught exception and takes the whole
 * dispatcher down (seen with the embedded store killed mid-transfer). The
 * same HTTP request made with fetch lets us handle that error.
 */
export function getAttachmentStream(c: StoreClient, docId: string, name: string): Readable {
  const out = new PassThrough();
  const abort = new AbortController();
  out.once('close', () => abort.abort());
  const notFound = (): StoreError => new StoreError(`${docId} has no attachment ${name} in the store at ${c.url}`, 404, 'not_found');
  void (async () => {
    const info = await getAttachmentInfo(c, docId, name);
    if (!info) throw notFound();
    let res: Response;
    try {
      const url = `${c.dbUrl}/${encodeURIComponent(docId)}/${encodeURIComponent(name)}`;
      res = await fetch(url, { headers: c.authHeaders, signal: abort.signal });
    } catch (err) {
      if (out.destroyed) return;
      throw c.unreachable(String((err as { cause?: unknown }).cause ?? err));
    }
    if (res.status === 404) throw notFound();
    if (!res.ok || !res.body) {
      const body = (await res.json().catch(() => ({}))) as NanoError;
      throw c.fail(`reading ${name} of ${docId}`, { ...body, statusCode: res.status });
    }
    const src = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
    let received = 0;
    const counter = new Transform({
      transform: (chunk: Buffer, _enc, cb) => {
        received += chunk.length;
        cb(null, chunk);
      },
      flush: (cb) => {
        if (received === info.length) return cb();
        cb(new StoreError(`${docId}/${name}: got ${received} bytes from the store at ${c.url}, not the ${info.length} stored (was it replaced meanwhile?)`));
      },
    });
    src.once('error', (err) => {
      if (!out.destroyed) out.destroy(c.unreachable(`the download of ${name} of ${docId} broke off: ${String(err.cause ?? err.message)}`));
    });
    counter.once('error', (err) => out.destroy(err));
    src.pipe(counter).pipe(out);
  })().catch((err: unknown) => out.destroy(c.fail(`reading ${name} of ${docId}`, err)));
  return out;
}
