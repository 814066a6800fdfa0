// Seed 003 ("Quickstart for platform users") end to end, in Node, on the real local stack: the
// platform's backend uses the SDK exactly as the seed writes it; the runtime is a separate process
// (`artifacts mount --ticket-file`) with its own HOME and no API key; the customer's agent code
// writes with plain `fs.writeFile`.

import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';

import { Artifacts, writeMountTicketFile } from '@tonbo/artifacts';

import {
  claimsOf,
  createWorkspace,
  firstEacces,
  REVOCATION_BOUND_MS,
  Runtime,
  stack,
  unique,
} from './helpers.mjs';

test('seed 003: ticket, inject 0600, mount in another process, fs.writeFile, revoke, EACCES, delete', async (t) => {
  // 2. Install the SDK: TONBO_API_KEY (and the orchestrator's URL) come from the environment.
  const artifacts = new Artifacts();
  const handle = stack.handle; // the seed's `<your-handle>`

  // 4. Choose a runtime id for the task.
  const taskId = unique('4711');
  const tenantSlug = 'acme';
  const runtimeId = taskId;

  // 5. Provision the workspace with the CLI, from the backend, with the same API key.
  createWorkspace(`task-${taskId}`);
  assert.equal((await artifacts.workspaces.get(`task-${taskId}`)).status, 'active');

  // 6. Create a short-lived mount ticket: the one call that matters.
  const before = Date.now() / 1000;
  const { mount_ticket } = await artifacts.platform.createMountTicket(tenantSlug, runtimeId, {
    workspace: `${handle}/task-${taskId}`,
    mode: 'rw',
    ttlSeconds: 3600,
  });
  const claims = claimsOf(mount_ticket);
  assert.equal(claims.mode, 'rw');
  assert.equal(claims.runtime_id, runtimeId);
  assert.equal(claims.tenant, tenantSlug);
  assert.equal(claims.workspace.ref, `${handle}/task-${taskId}`);
  assert.ok(Math.abs(claims.exp - before - 3600) < 60, `expires one hour from now (exp ${claims.exp})`);
  assert.ok(!JSON.stringify(mount_ticket).includes(process.env.TONBO_API_KEY), 'the API key is not in the ticket');

  // 7. Inject it: a 0600 file in a 0700 directory.
  const runtime = new Runtime('runtime');
  t.after(() => runtime.unmountAll());
  await writeMountTicketFile(runtime.ticketFile, mount_ticket);
  assert.equal((await fs.stat(runtime.ticketFile)).mode & 0o777, 0o600);
  assert.equal((await fs.stat(join(runtime.ticketFile, '..'))).mode & 0o777, 0o700);
  assert.deepEqual(JSON.parse(await fs.readFile(runtime.ticketFile, 'utf8')), mount_ticket);

  // 8. Mount in the VM (a separate process), and the agent's code uses it as a local directory.
  const work = join(runtime.root, 'mnt', 'work');
  const mounted = runtime.mount(work);
  assert.equal(mounted.status, 0, mounted.stderr);
  await fs.writeFile(`${work}/output.txt`, 'hello');
  assert.equal(await fs.readFile(`${work}/output.txt`, 'utf8'), 'hello');
  const { sessions } = await artifacts.sessions.list(`task-${taskId}`);
  assert.equal(sessions.length, 1);
  assert.equal(sessions[0].runtime_id, runtimeId);
  assert.equal(sessions[0].mountpoint, work);
  assert.equal(sessions[0].mode, 'rw');

  // Another runtime of the same tenant mounts read-only and sees what the agent wrote: the file
  // is in the workspace, not only in the first machine's caches.
  const reader = new Runtime('reader');
  t.after(() => reader.unmountAll());
  await writeMountTicketFile(reader.ticketFile, await artifacts.platform.createMountTicket(tenantSlug, `${taskId}-r`, {
    workspace: `${handle}/task-${taskId}`, mode: 'ro', ttlSeconds: 600,
  }));
  const view = join(reader.root, 'mnt', 'view');
  const readOnly = reader.mount(view);
  assert.equal(readOnly.status, 0, readOnly.stderr);
  assert.equal(await fs.readFile(`${view}/output.txt`, 'utf8'), 'hello');
  await assert.rejects(fs.writeFile(`${view}/nope.txt`, 'x'), (err) => ['EROFS', 'EACCES'].includes(err.code));

  // 9. Tear down: revoke the runtime's grant; its mount errors on the next syscall.
  const revoked = await artifacts.platform.revokeAccessGrants({ tenantSlug, runtimeId });
  assert.equal(revoked.grants.length, 1);
  assert.equal(revoked.sessions_revoked, 1);
  const took = await firstEacces(work, REVOCATION_BOUND_MS);
  t.diagnostic(`first EACCES ${took.toFixed(0)} ms after the revoke call returned (bound ${REVOCATION_BOUND_MS} ms)`);
  await assert.rejects(fs.writeFile(`${work}/after.txt`, 'no'), { code: 'EACCES' });
  // Only that runtime: the reader's own grant still works (a fresh name reaches its mount process).
  await assert.rejects(fs.stat(`${view}/fresh-name`), { code: 'ENOENT' });
  runtime.unmountAll();
  reader.unmountAll();

  await artifacts.workspaces.delete(`${handle}/task-${taskId}`);
  const gone = await artifacts.workspaces.waitForStatus(`${handle}/task-${taskId}`, 'deleted', { waitTimeout: 60_000 });
  assert.equal(gone.status, 'deleted');
  const grants = await artifacts.platform.listAccessGrants({ tenantSlug, includeRevoked: true });
  assert.ok(grants.grants.every((g) => g.status !== 'active'), 'deleting the workspace revoked every grant on it');
});
