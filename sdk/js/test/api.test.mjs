// The SDK's calls and typed errors on the real orchestrator: every error carries the server's
// code and HTTP status (bad key, missing key, unknown workspace, another account's workspace,
// a taken tenant slug, an expired / used / revoked ticket, mode narrowing), tenants and grants,
// the ticket exchange a runtime makes, and the HTTP API accepting seed 003's camelCase names.

import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import { after, before, describe, test } from 'node:test';

import { Artifacts, ArtifactsError, isArtifactsError } from '@tonbo/artifacts';

import { claimsOf, createWorkspace, newAccount, setClockOffset, stack, unique } from './helpers.mjs';

/** `promise` rejects with an ArtifactsError of this code and status. */
async function rejectsWith(promise, code, status) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof ArtifactsError, `expected an ArtifactsError, got ${err}`);
    assert.equal(err.code, code, err.message);
    assert.equal(err.status, status);
    return true;
  });
}

describe('against one account with one active workspace', () => {
  let account;
  let artifacts;
  let ws;

  before(async () => {
    account = await newAccount('api');
    artifacts = new Artifacts({ apiKey: account.key, baseUrl: stack.url });
    ws = `${account.handle}/${unique('ws')}`;
    createWorkspace(ws.split('/')[1], account.key);
  });
  after(() => setClockOffset(0));

  test('the configuration comes from the environment, and the key never shows', async () => {
    const fromEnv = new Artifacts();
    assert.equal(fromEnv.baseUrl, stack.url);
    assert.equal((await fromEnv.whoami()).account.handle, stack.handle);
    const shown = inspect(artifacts, { depth: 5, showHidden: true });
    assert.ok(!shown.includes(account.key), 'util.inspect does not show the API key');
    assert.deepEqual(await artifacts.health(), { status: 'ok' });
  });

  test('a bad key is unauthorized (401), and the error does not repeat the key', async () => {
    const badKey = `tbo_${'x'.repeat(32)}`;
    const bad = new Artifacts({ apiKey: badKey, baseUrl: stack.url });
    const err = await bad.workspaces.list().catch((e) => e);
    assert.ok(isArtifactsError(err, 'unauthorized'));
    assert.equal(err.status, 401);
    assert.ok(!err.message.includes(badKey) && !inspect(err).includes(badKey));
  });

  test('no key at all is reported before anything is sent', async () => {
    const none = new Artifacts({ apiKey: '', baseUrl: 'http://127.0.0.1:9' }); // nothing listens there
    await assert.rejects(none.platform.listTenants(), (err) => err.code === 'unauthorized'
      && err.status === 401 && /TONBO_API_KEY/.test(err.message));
  });

  test('an unknown workspace is workspace_not_found (404); a malformed reference is refused locally', async () => {
    await rejectsWith(artifacts.workspaces.get('no-such-workspace'), 'workspace_not_found', 404);
    await rejectsWith(artifacts.workspaces.delete(`${account.handle}/no-such-workspace`), 'workspace_not_found', 404);
    await rejectsWith(artifacts.workspaces.get('a/b/c'), 'invalid_request', 422);
    await rejectsWith(artifacts.workspaces.get('-bad'), 'invalid_request', 422);
    await rejectsWith(artifacts.workspaces.get(`${stack.handle}/anything`), 'forbidden', 403);
  });

  test('checkpoints: create, list, get, diff, restore, delete, and their errors', async () => {
    const made = await artifacts.checkpoints.create(ws, { name: 'node-1', keep: '1d' });
    assert.equal(made.name, 'node-1');
    assert.equal(made.keep, 86400);
    assert.deepEqual((await artifacts.checkpoints.list(ws)).checkpoints.map((c) => c.name), ['node-1']);
    const detail = await artifacts.checkpoints.get(ws, 'node-1');
    assert.equal(detail.checkpoint.name, 'node-1');
    assert.equal(detail.changes_since, 0);
    assert.deepEqual((await artifacts.checkpoints.diff(ws, 'node-1')).changes, []);
    const r = await artifacts.checkpoints.restore(ws, 'node-1', { safety: 'node-undo' });
    assert.equal(r.safety, 'node-undo');
    assert.deepEqual((await artifacts.checkpoints.delete(ws, 'node-undo')), { deleted: 'node-undo' });
    await rejectsWith(artifacts.checkpoints.get(ws, 'nope'), 'checkpoint_not_found', 404);
    await rejectsWith(artifacts.checkpoints.create(ws, { name: 'node-1' }), 'checkpoint_exists', 409);
    await rejectsWith(artifacts.checkpoints.create(ws, { name: 'bad name!' }), 'invalid_request', 422);
    await artifacts.checkpoints.delete(ws, 'node-1');
  });

  test('workspaces: list, get by every reference form, inspect', async () => {
    const name = ws.split('/')[1];
    const { workspaces } = await artifacts.workspaces.list();
    assert.deepEqual(workspaces.map((w) => w.name), [name]);
    for (const ref of [name, ws, `artifacts://${ws}`]) {
      const view = await artifacts.workspaces.get(ref);
      assert.equal(view.identifier, `artifacts://${ws}`);
      assert.equal(view.status, 'active');
    }
    const summary = await artifacts.workspaces.inspect(name);
    assert.equal(summary.workspace.name, name);
  });

  test('tenants and grants, with typed conflicts', async () => {
    const tenant = await artifacts.platform.createTenant('globex', { externalId: 'cus_42',
      metadata: { planTier: 'pro', seats_max: 5 } });
    assert.equal(tenant.external_id, 'cus_42');
    assert.deepEqual(tenant.metadata, { planTier: 'pro', seats_max: 5 }, 'metadata is kept verbatim');
    const dup = await artifacts.platform.createTenant('globex').catch((e) => e);
    assert.ok(isArtifactsError(dup, 'tenant_exists'));
    assert.equal(dup.status, 409);
    assert.equal(dup.body.code, 'tenant_exists');
    await rejectsWith(artifacts.platform.getTenant('nope'), 'tenant_not_found', 404);
    await rejectsWith(artifacts.platform.createTenant('Not_A_Slug'), 'invalid_request', 422);

    const wide = await artifacts.platform.createAccessGrant(ws, { tenantSlug: 'globex', mode: 'ro' });
    assert.equal(wide.runtime_id, null);
    const one = await artifacts.platform.createAccessGrant(ws, { tenantSlug: 'globex', runtimeId: 'job-1',
      ttlSeconds: 3600 });
    assert.equal(one.mode, 'rw');
    assert.ok(one.expires_at > Date.now() / 1000);
    assert.equal((await artifacts.platform.getAccessGrant(one.id)).id, one.id);
    const listed = await artifacts.platform.listAccessGrants({ tenantSlug: 'globex', runtimeId: 'job-1' });
    assert.deepEqual(listed.grants.map((g) => g.id), [one.id]);
    const byId = await artifacts.platform.revokeAccessGrants({ grantId: one.id });
    assert.deepEqual(byId.grants.map((g) => g.id), [one.id]);
    assert.equal((await artifacts.platform.getAccessGrant(one.id)).status, 'revoked');
    const all = await artifacts.platform.revokeAccessGrants({ tenantSlug: 'globex' });
    assert.deepEqual(all.grants.map((g) => g.id), [wide.id]);
    assert.deepEqual((await artifacts.platform.listAccessGrants({ tenantSlug: 'globex' })).grants, []);
    await rejectsWith(artifacts.platform.getAccessGrant('nope'), 'grant_not_found', 404);
  });

  test('a ticket: TTL required, single use, expired, mode narrowing, no key sent by the runtime', async () => {
    // JavaScript callers can leave out what TypeScript requires: the server says what is missing.
    await rejectsWith(artifacts.platform.createMountTicket('acme', 'r0', { workspace: ws }), 'invalid_request', 422);
    const runtime = new Artifacts({ apiKey: '', baseUrl: stack.url }); // what a runtime holds

    const rw = await artifacts.platform.createMountTicket('acme', 'r1', { workspace: ws, ttlSeconds: 60 });
    const { keys } = await runtime.platform.publicKeys(); // no API key needed
    assert.ok(keys.some((k) => k.kid === rw.mount_ticket.kid && k.alg === 'Ed25519'), JSON.stringify(keys));
    setClockOffset(61);
    await rejectsWith(runtime.platform.exchangeMountTicket(rw.mount_ticket), 'ticket_expired', 401);
    setClockOffset(0);
    // Refusals do not consume the ticket; narrowing an rw ticket to ro is allowed.
    const session = await runtime.platform.exchangeMountTicket(rw, { workspace: ws, mode: 'ro', host: 'vm-1' });
    assert.equal(session.mount.session.mode, 'ro');
    assert.equal(session.runtime_id, 'r1');
    assert.equal(session.mount.session.host, 'vm-1');
    await rejectsWith(runtime.platform.exchangeMountTicket(JSON.stringify(rw.mount_ticket)), 'ticket_used', 409);

    // An ro ticket cannot be widened to rw, nor used for another workspace.
    const ro = await artifacts.platform.createMountTicket('acme', 'r2', { workspace: ws, mode: 'ro', ttlSeconds: 60 });
    assert.equal(claimsOf(ro.mount_ticket).mode, 'ro');
    await rejectsWith(runtime.platform.exchangeMountTicket(ro, { mode: 'rw' }), 'forbidden', 403);
    await rejectsWith(runtime.platform.exchangeMountTicket(ro, { workspace: `${account.handle}/other` }),
      'forbidden', 403);
    assert.equal((await runtime.platform.exchangeMountTicket(ro)).mount.session.mode, 'ro');

    // A revoked runtime's tickets are refused; an altered ticket is invalid.
    const late = await artifacts.platform.createMountTicket('acme', 'r3', { workspace: ws, ttlSeconds: 60 });
    await artifacts.platform.revokeAccessGrants({ tenantSlug: 'acme', runtimeId: 'r3' });
    await rejectsWith(runtime.platform.exchangeMountTicket(late), 'grant_revoked', 403);
    const forged = { ...late.mount_ticket, claims: `${late.mount_ticket.claims.slice(0, -2)}AA` };
    await rejectsWith(runtime.platform.exchangeMountTicket(forged), 'ticket_invalid', 401);
    await rejectsWith(runtime.platform.exchangeMountTicket('not json'), 'ticket_invalid', 401);
    // A ticket grants nothing on the platform's own API.
    await rejectsWith(runtime.platform.listTenants(), 'unauthorized', 401);
  });

  test("the HTTP API takes seed 003's camelCase names (and answers in snake_case)", async () => {
    const post = (path, body) => fetch(`${stack.url}${path}`, {
      method: 'POST', body: JSON.stringify(body),
      headers: { authorization: `Bearer ${account.key}`, 'content-type': 'application/json' } });
    const res = await post('/mount-tickets', { tenantSlug: 'initech', runtimeId: 'task-9', workspace: ws,
      mode: 'rw', ttlSeconds: 3600 });
    const issued = await res.json();
    assert.equal(res.status, 201, JSON.stringify(issued));
    assert.ok(issued.mount_ticket && issued.ticket_id && issued.grant.runtime_id === 'task-9');
    const both = await post('/mount-tickets', { tenantSlug: 'initech', tenant_slug: 'initech', runtimeId: 'x',
      workspace: ws, ttlSeconds: 60 });
    assert.equal(both.status, 422);
    assert.match((await both.json()).message, /tenant_slug.*tenantSlug/);
    const revoke = await post('/grants/revoke', { tenantSlug: 'initech', runtimeId: 'task-9' });
    assert.equal(revoke.status, 200);
    assert.equal((await revoke.json()).sessions_revoked, 0);
    const listed = await fetch(`${stack.url}/grants?tenant=initech&runtimeId=task-9&includeRevoked=true`,
      { headers: { authorization: `Bearer ${account.key}` } });
    assert.equal((await listed.json()).grants[0].status, 'revoked');
  });
});
