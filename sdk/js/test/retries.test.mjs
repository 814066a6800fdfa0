// Retries, timeouts and connection failures, through a fault-injecting HTTP proxy in front of the
// real orchestrator (tests/s3faults.py does the same for S3): the proxy forwards every request
// unless a fault is queued for it — an error status (with or without Retry-After), a reset
// connection, or a delay — and records what it saw, so the tests count attempts and check
// headers. Idempotent calls are retried on 408/429/5xx and on failures with no answer; others
// are sent once.

import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';

import {
  Artifacts,
  ArtifactsConnectionError,
  ArtifactsError,
  ArtifactsTimeoutError,
} from '@tonbo/artifacts';

import { createWorkspace, newAccount, stack, unique } from './helpers.mjs';

class FaultProxy {
  constructor(target) {
    this.target = new URL(target);
    this.faults = []; // [{ match: (req) => bool, fault }]
    this.seen = [];
    this.server = http.createServer((req, res) => this.#handle(req, res));
    this.upstreams = new Set();
  }

  async start() {
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${this.server.address().port}`;
    return this;
  }

  stop() {
    const closed = new Promise((resolve) => this.server.close(resolve));
    this.server.closeAllConnections();
    for (const upstream of this.upstreams) upstream.destroy();
    return closed;
  }

  /** Queue `fault` for the next `times` requests whose "METHOD /path" starts with `prefix`. */
  inject(prefix, fault, times = 1) {
    for (let i = 0; i < times; i++) this.faults.push({ prefix, fault });
  }

  attempts(prefix) {
    return this.seen.filter((s) => s.line.startsWith(prefix)).length;
  }

  #handle(req, res) {
    const line = `${req.method} ${req.url}`;
    this.seen.push({ line, headers: req.headers, at: performance.now() });
    const i = this.faults.findIndex((f) => line.startsWith(f.prefix));
    const fault = i >= 0 ? this.faults.splice(i, 1)[0].fault : null;
    if (fault?.reset) {
      req.socket.destroy();
      return;
    }
    if (fault?.status) {
      const headers = { 'content-type': 'application/json', ...(fault.retryAfter !== undefined
        ? { 'retry-after': String(fault.retryAfter) } : {}) };
      res.writeHead(fault.status, headers);
      res.end(JSON.stringify({ code: fault.code ?? 'internal', message: 'injected by the test proxy' }));
      return;
    }
    const forward = () => {
      if (res.destroyed) return; // the client gave up (a timeout) while the answer was held back
      const headers = { ...req.headers, connection: 'close' };
      const upstream = http.request({ host: this.target.hostname, port: this.target.port, method: req.method,
        path: req.url, headers, agent: false }, (up) => {
        if (res.destroyed) {
          upstream.destroy();
          return;
        }
        res.writeHead(up.statusCode, up.headers);
        up.pipe(res);
      });
      this.upstreams.add(upstream);
      upstream.on('close', () => this.upstreams.delete(upstream));
      upstream.on('error', () => res.destroy());
      res.on('close', () => upstream.destroy()); // the client gave up (a timeout): so do we
      req.pipe(upstream);
    };
    if (fault?.delayMs) setTimeout(forward, fault.delayMs);
    else forward();
  }
}

describe('through a fault-injecting proxy', () => {
  let proxy;
  let account;
  let artifacts;
  let ws;

  before(async () => {
    account = await newAccount('retry');
    ws = `${account.handle}/${unique('ws')}`;
    createWorkspace(ws.split('/')[1], account.key);
    proxy = await new FaultProxy(stack.url).start();
    artifacts = new Artifacts({ apiKey: account.key, baseUrl: proxy.url });
  });
  after(() => proxy.stop());

  test('an idempotent call is retried on 503 with backoff, then succeeds', async () => {
    proxy.inject('GET /tenants', { status: 503, code: 'metadata_acl_provisioning_failed' }, 2);
    const before = proxy.attempts('GET /tenants');
    const { tenants } = await artifacts.platform.listTenants();
    assert.ok(Array.isArray(tenants));
    const tries = proxy.seen.filter((s) => s.line.startsWith('GET /tenants')).slice(before);
    assert.equal(tries.length, 3);
    // 0.5 s then 1 s, each minus at most 25 % jitter.
    assert.ok(tries[1].at - tries[0].at >= 370, `first backoff ${tries[1].at - tries[0].at} ms`);
    assert.ok(tries[2].at - tries[1].at >= 740, `second backoff ${tries[2].at - tries[1].at} ms`);
  });

  test('429 waits for Retry-After', async () => {
    proxy.inject('GET /whoami', { status: 429, code: 'rate_limited', retryAfter: 1 });
    const before = proxy.seen.length;
    assert.equal((await artifacts.whoami()).account.handle, account.handle);
    const tries = proxy.seen.slice(before);
    assert.equal(tries.length, 2);
    assert.ok(tries[1].at - tries[0].at >= 950, `waited ${tries[1].at - tries[0].at} ms`);
  });

  test('a reset connection is retried for an idempotent call (revoking is one)', async () => {
    await artifacts.platform.createAccessGrant(ws, { tenantSlug: 'acme', runtimeId: 'job-7' });
    proxy.inject('POST /grants/revoke', { reset: true });
    const before = proxy.attempts('POST /grants/revoke');
    const result = await artifacts.platform.revokeAccessGrants({ tenantSlug: 'acme', runtimeId: 'job-7' });
    assert.equal(result.grants.length, 1);
    assert.equal(proxy.attempts('POST /grants/revoke') - before, 2);
  });

  test('retries stop after maxRetries, with the last error typed', async () => {
    proxy.inject('GET /workspaces', { status: 500, code: 'internal' }, 5);
    const before = proxy.attempts('GET /workspaces');
    await assert.rejects(artifacts.workspaces.list({}, { maxRetries: 1 }),
      (err) => err instanceof ArtifactsError && err.code === 'internal' && err.status === 500);
    assert.equal(proxy.attempts('GET /workspaces') - before, 2);
    proxy.faults = [];
  });

  test('non-idempotent calls are sent once: no second ticket, no second tenant', async () => {
    proxy.inject('POST /mount-tickets', { status: 503, code: 'internal' });
    let before = proxy.attempts('POST /mount-tickets');
    await assert.rejects(artifacts.platform.createMountTicket('acme', 'job-8', { workspace: ws, ttlSeconds: 60 }),
      (err) => err.status === 503);
    assert.equal(proxy.attempts('POST /mount-tickets') - before, 1);

    proxy.inject('POST /tenants', { reset: true });
    before = proxy.attempts('POST /tenants');
    await assert.rejects(artifacts.platform.createTenant('hooli'),
      (err) => err instanceof ArtifactsConnectionError && err.code === 'orchestrator_unavailable');
    assert.equal(proxy.attempts('POST /tenants') - before, 1);

    const issued = await artifacts.platform.createMountTicket('acme', 'job-8', { workspace: ws, ttlSeconds: 60 });
    proxy.inject('POST /mount-tickets/exchange', { status: 502, code: 'internal' });
    const runtime = new Artifacts({ apiKey: '', baseUrl: proxy.url });
    before = proxy.attempts('POST /mount-tickets/exchange');
    await assert.rejects(runtime.platform.exchangeMountTicket(issued), (err) => err.status === 502);
    assert.equal(proxy.attempts('POST /mount-tickets/exchange') - before, 1);
  });

  test('the ticket exchange never carries the API key, even from a client that has one', async () => {
    const issued = await artifacts.platform.createMountTicket('acme', 'job-9', { workspace: ws, ttlSeconds: 60 });
    const exchanged = await artifacts.platform.exchangeMountTicket(issued.mount_ticket);
    assert.equal(exchanged.runtime_id, 'job-9');
    const exchange = proxy.seen.filter((s) => s.line === 'POST /mount-tickets/exchange').at(-1);
    assert.equal(exchange.headers.authorization, undefined);
    const other = proxy.seen.filter((s) => s.line === 'POST /mount-tickets').at(-1);
    assert.equal(other.headers.authorization, `Bearer ${account.key}`);
  });

  test('timeouts: an idempotent call retries past a slow answer; a non-idempotent one fails once', async () => {
    proxy.inject('GET /tenants', { delayMs: 1500 });
    const before = proxy.attempts('GET /tenants');
    assert.ok((await artifacts.platform.listTenants({ timeout: 500 })).tenants);
    assert.equal(proxy.attempts('GET /tenants') - before, 2);

    proxy.inject('POST /tenants', { delayMs: 1500 });
    await assert.rejects(artifacts.platform.createTenant(unique('slow'), {}, { timeout: 300 }),
      (err) => err instanceof ArtifactsTimeoutError && err.code === 'orchestrator_unavailable'
        && /within 300 ms/.test(err.message));
  });

  test('an abort signal stops a call and its retries at once', async () => {
    proxy.inject('GET /keys', { status: 503 }, 3);
    const controller = new AbortController();
    const started = performance.now();
    setTimeout(() => controller.abort(), 100);
    await assert.rejects(artifacts.keys.list({ signal: controller.signal }), { name: 'AbortError' });
    assert.ok(performance.now() - started < 400, 'aborted during the backoff, not after it');
    proxy.faults = [];
  });
});

test('nothing listening: a typed connection error after the retries, naming the address, not the key', async () => {
  const server = http.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve)); // a port nobody listens on now
  const key = `tbo_${'k'.repeat(32)}`;
  const client = new Artifacts({ apiKey: key, baseUrl: `http://127.0.0.1:${port}`, maxRetries: 1 });
  const started = performance.now();
  const err = await client.workspaces.list().catch((e) => e);
  assert.ok(err instanceof ArtifactsConnectionError, String(err));
  assert.equal(err.code, 'orchestrator_unavailable');
  assert.equal(err.status, 503);
  assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port}.*ECONNREFUSED`));
  assert.ok(!err.message.includes(key));
  assert.ok(performance.now() - started >= 370, 'one retry after a backoff');
});
