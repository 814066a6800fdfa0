// The one place the SDK talks HTTP: Node's own fetch, one request per attempt, typed by the
// generated `Operations` (so every call's path parameters, query, body and result are the
// orchestrator's OpenAPI description's).
//
// - Auth: `Authorization: Bearer <API key>` on operations that need it; the key lives in a private
//   field and never appears in an error, a log line or `util.inspect` output. Operations that take
//   no key (exchanging a mount ticket, the ticket keys) never send it.
// - Timeout: per attempt, covering the answer's body too (default 30 s: every route answers in
//   well under a second; Redis or S3 trouble surfaces as an error body long before).
// - Retries: only operations the description marks `x-idempotent`, on 408, 429, 5xx and on
//   failures with no HTTP answer (refused, reset, timed out); at most `maxRetries` more attempts
//   (default 2), waiting `Retry-After` when the answer has one (up to a minute), else exponential
//   backoff from 0.5 s doubling to at most 8 s, minus up to 25 % jitter so clients that failed
//   together do not retry together. Non-idempotent calls (creating a ticket, exchanging one, which
//   is single-use) are sent once: a retry could do the work twice.

import {
  ArtifactsConnectionError,
  ArtifactsError,
  ArtifactsTimeoutError,
  errorFromResponse,
} from './errors.js';
import { type OperationId, type Operations, operations } from './generated/openapi.js';
import { VERSION } from './version.js';

/** Where `artifacts up` serves the orchestrator when nothing else is configured. */
export const DEFAULT_BASE_URL = 'http://127.0.0.1:8720';
export const API_KEY_ENV = 'TONBO_API_KEY';
export const BASE_URL_ENV = 'ARTIFACTS_ORCHESTRATOR_URL';
export const DEFAULT_TIMEOUT_MS = 30_000;
export const DEFAULT_MAX_RETRIES = 2;
const INITIAL_RETRY_DELAY_MS = 500;
const MAX_RETRY_DELAY_MS = 8_000;
/** A Retry-After beyond this is not waited for (the error is returned instead). */
const MAX_RETRY_AFTER_MS = 60_000;

export interface ClientOptions {
  /** The account's API key (`tbo_…`). Default: `process.env.TONBO_API_KEY`. */
  apiKey?: string;
  /** The orchestrator's URL. Default: `process.env.ARTIFACTS_ORCHESTRATOR_URL`, else `http://127.0.0.1:8720`. */
  baseUrl?: string;
  /** Milliseconds per attempt (default 30000). */
  timeout?: number;
  /** Extra attempts for idempotent calls (default 2; 0 disables retries). */
  maxRetries?: number;
  /** A fetch implementation (default: Node's global fetch). */
  fetch?: typeof globalThis.fetch;
}

/** Per-call options, the last argument of every method. */
export interface RequestOptions {
  /** Milliseconds per attempt, for this call. */
  timeout?: number;
  /** Extra attempts for this call (idempotent calls only). */
  maxRetries?: number;
  /** Aborts the call (and its retries); the promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

type NoParams = Record<string, never>;

/** The arguments of operation `K`: `path` when it has path parameters, `body` when it takes one. */
export type CallArgs<K extends OperationId> =
  (Operations[K]['path'] extends NoParams ? { path?: undefined } : { path: Operations[K]['path'] })
  & { query?: Operations[K]['query'] }
  & (Operations[K]['body'] extends undefined ? { body?: undefined } : { body: Operations[K]['body'] });

function fillPath(template: string, params: Record<string, string> | undefined): string {
  return template.replace(/\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => {
    const value = params?.[name];
    if (typeof value !== 'string' || value === '') {
      throw new ArtifactsError('invalid_request', 422, `missing path parameter ${name}`);
    }
    return encodeURIComponent(value);
  });
}

function queryString(query: Record<string, unknown> | undefined): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) {
    if (v !== undefined && v !== null && v !== false) q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

function retryAfterMs(header: string | null): number | undefined {
  if (header === null) return undefined;
  const seconds = Number(header);
  const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(header) - Date.now();
  return Number.isFinite(ms) && ms >= 0 && ms <= MAX_RETRY_AFTER_MS ? ms : undefined;
}

function backoffMs(attempt: number): number {
  const full = Math.min(MAX_RETRY_DELAY_MS, INITIAL_RETRY_DELAY_MS * 2 ** attempt);
  return full * (1 - Math.random() * 0.25);
}

function retryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function describe(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } })?.cause;
  return cause?.code ?? cause?.message ?? (err as Error)?.message ?? String(err);
}

function parseJson(text: string, status: number): unknown {
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    throw new ArtifactsError('internal', status, `the orchestrator answered ${status} with a body that is not JSON`);
  }
}

export class Transport {
  readonly baseUrl: string;
  readonly timeout: number;
  readonly maxRetries: number;
  readonly #apiKey: string;
  readonly #fetch: typeof globalThis.fetch;

  constructor(options: ClientOptions = {}) {
    this.#apiKey = options.apiKey ?? process.env[API_KEY_ENV] ?? '';
    this.baseUrl = (options.baseUrl ?? process.env[BASE_URL_ENV] ?? DEFAULT_BASE_URL).replace(/\/+$/, '');
    this.timeout = options.timeout ?? DEFAULT_TIMEOUT_MS;
    this.maxRetries = options.maxRetries ?? DEFAULT_MAX_RETRIES;
    const f = options.fetch ?? globalThis.fetch;
    if (typeof f !== 'function') {
      throw new TypeError('@tonbo/artifacts needs a global fetch (Node.js 18 or later) or the fetch option');
    }
    this.#fetch = f;
  }

  /** Whether an API key is configured (never the key itself). */
  get hasApiKey(): boolean {
    return this.#apiKey !== '';
  }

  async call<K extends OperationId>(op: K, args: CallArgs<K>, options: RequestOptions = {}):
  Promise<Operations[K]['response']> {
    const spec = operations[op];
    const url = this.baseUrl + fillPath(spec.path, args.path as Record<string, string> | undefined)
      + queryString(args.query as Record<string, unknown> | undefined);
    const headers: Record<string, string> = {
      accept: 'application/json',
      'user-agent': `tonbo-artifacts-node/${VERSION} node/${process.version}`,
    };
    if (spec.auth === 'api_key' || spec.auth === 'agent') {  // agent: an agent token or the API key
      if (!this.#apiKey) {
        throw new ArtifactsError('unauthorized', 401,
          `no API key: set ${API_KEY_ENV} or pass { apiKey } to new Artifacts()`);
      }
      headers.authorization = `Bearer ${this.#apiKey}`;
    } else if (spec.auth === 'admin') {
      throw new ArtifactsError('unauthorized', 401, `${op} needs the orchestrator's admin token, not an API key`);
    }
    let body: string | undefined;
    if (args.body !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(args.body);
    }
    const retries = spec.idempotent ? (options.maxRetries ?? this.maxRetries) : 0;
    const timeout = options.timeout ?? this.timeout;
    for (let attempt = 0; ; attempt++) {
      let failure: ArtifactsError;
      let wait: number | undefined;
      try {
        const { status, text, retryAfter } = await this.#attempt(url, spec.method, headers, body, timeout,
          options.signal);
        if ((spec.success as readonly number[]).includes(status)) {
          return parseJson(text, status) as Operations[K]['response'];
        }
        failure = errorFromResponse(status, text);
        if (!retryableStatus(status)) throw failure;
        wait = retryAfterMs(retryAfter);
      } catch (err) {
        if (!(err instanceof ArtifactsConnectionError)) throw err;
        failure = err;
      }
      if (attempt >= retries) throw failure;
      await sleep(wait ?? backoffMs(attempt), options.signal);
    }
  }

  /**
   * A server-sent events endpoint (`op`), parsed: yields `{ event, id, data }` per message until
   * the server ends the stream or `options.signal` aborts. `lastEventId` resumes a stream (the
   * `Last-Event-ID` header). An HTTP error rejects with its `ArtifactsError`; a lost connection
   * with `ArtifactsConnectionError` (the caller reconnects with the last id it saw).
   */
  async *stream<K extends OperationId>(op: K, args: CallArgs<K>, options: RequestOptions & { lastEventId?: string } = {}):
  AsyncGenerator<{ event: string; id: string | undefined; data: string }> {
    const spec = operations[op];
    const url = this.baseUrl + fillPath(spec.path, args.path as Record<string, string> | undefined)
      + queryString(args.query as Record<string, unknown> | undefined);
    if (!this.#apiKey) {
      throw new ArtifactsError('unauthorized', 401, `no API key: set ${API_KEY_ENV} or pass { apiKey } to new Artifacts()`);
    }
    const headers: Record<string, string> = {
      accept: 'text/event-stream',
      'user-agent': `tonbo-artifacts-node/${VERSION} node/${process.version}`,
      authorization: `Bearer ${this.#apiKey}`,
    };
    if (options.lastEventId !== undefined) headers['last-event-id'] = options.lastEventId;
    let res: Response;
    try {
      res = await this.#fetch(url, { method: 'GET', headers, signal: options.signal });
    } catch (err) {
      if (options.signal?.aborted) return;
      throw new ArtifactsConnectionError(`cannot reach the orchestrator at ${this.baseUrl}: ${describe(err)}`, err);
    }
    if (res.status !== 200 || res.body === null) throw errorFromResponse(res.status, await res.text());
    const decoder = new TextDecoder();
    let buffer = '';
    let event = 'message';
    let id: string | undefined;
    let data: string[] = [];
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let nl: number;
        while ((nl = buffer.search(/\r?\n/)) >= 0) {
          const line = buffer.slice(0, nl);
          buffer = buffer.slice(nl + (buffer[nl] === '\r' ? 2 : 1));
          if (line === '') {  // a blank line ends a message
            if (data.length) yield { event, id, data: data.join('\n') };
            event = 'message';
            data = [];
            continue;
          }
          if (line.startsWith(':')) continue;  // a comment: the server's keepalive
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
          if (field === 'data') data.push(value);
          else if (field === 'event') event = value;
          else if (field === 'id') id = value;
        }
      }
    } catch (err) {
      if (options.signal?.aborted) return;
      throw new ArtifactsConnectionError(`the event stream from ${this.baseUrl} broke: ${describe(err)}`, err);
    }
  }

  async #attempt(url: string, method: string, headers: Record<string, string>, body: string | undefined,
    timeout: number, signal: AbortSignal | undefined): Promise<{ status: number; text: string; retryAfter: string | null }> {
    if (signal?.aborted) throw signal.reason;
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeout);
    const onAbort = () => controller.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const res = await this.#fetch(url, { method, headers, body, signal: controller.signal });
      const text = await res.text();
      return { status: res.status, text, retryAfter: res.headers.get('retry-after') };
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      if (timedOut) {
        throw new ArtifactsTimeoutError(`no answer from the orchestrator at ${this.baseUrl} within ${timeout} ms`);
      }
      throw new ArtifactsConnectionError(`cannot reach the orchestrator at ${this.baseUrl}: ${describe(err)}`, err);
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
  }
}
