// What the Node tests share: the stack tests/sdk/test_sdk_js.py started (its address, an account's key,
// the orchestrator's clock), the `artifacts` CLI for the steps seed 003 does with it (workspace
// create on the backend, mount in the runtime), a runtime with its own HOME and XDG directories
// and no API key, and the revocation probe.

import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run these tests through tests/sdk/test_sdk_js.py`);
  return value;
}

export const stack = {
  url: required('ARTIFACTS_ORCHESTRATOR_URL'),
  handle: required('ARTIFACTS_TEST_HANDLE'),
  adminToken: required('ARTIFACTS_TEST_ADMIN_TOKEN'),
  bin: required('ARTIFACTS_TEST_BIN'),
  tmp: required('ARTIFACTS_TEST_TMP'),
  clockFile: required('ARTIFACTS_TEST_CLOCK_FILE'),
};

/** docs/platform.md: revocation reaches a live mount within about a second; tests assert 3x. */
export const REVOCATION_BOUND_MS = 3000;

export function unique(prefix) {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

/** A fresh account on the stack (the admin bootstrap route): `{ key, handle }`. */
export async function newAccount(prefix = 'node') {
  const handle = unique(prefix);
  const res = await fetch(`${stack.url}/admin/accounts`, {
    method: 'POST',
    headers: { authorization: `Bearer ${stack.adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ handle }),
  });
  const body = await res.json();
  if (res.status !== 201) throw new Error(`account bootstrap failed: ${res.status} ${JSON.stringify(body)}`);
  return { key: body.key.key, handle: body.account.handle };
}

function cleanEnv(root) {
  const env = { PATH: process.env.PATH, LANG: 'C.UTF-8', HOME: join(root, 'home'),
    XDG_CONFIG_HOME: join(root, 'config'), XDG_CACHE_HOME: join(root, 'cache'), XDG_STATE_HOME: join(root, 'state') };
  for (const d of ['home', 'config', 'cache', 'state']) mkdirSync(join(root, d), { recursive: true });
  return env;
}

/** Seed 003 step 5 on the platform's backend: `artifacts workspace create NAME` with TONBO_API_KEY. */
export function createWorkspace(name, apiKey = process.env.TONBO_API_KEY) {
  const root = join(stack.tmp, unique('backend'));
  const env = { ...cleanEnv(root), TONBO_API_KEY: apiKey, ARTIFACTS_ORCHESTRATOR_URL: stack.url };
  const p = spawnSync(stack.bin, ['workspace', 'create', name], { env, encoding: 'utf8', timeout: 180_000 });
  if (p.status !== 0) throw new Error(`artifacts workspace create ${name} failed (${p.status}): ${p.stderr}`);
  return p;
}

/** A customer runtime: its own HOME and XDG directories, a ticket file path, no platform key. */
export class Runtime {
  constructor(name) {
    this.root = join(stack.tmp, unique(name));
    this.env = cleanEnv(this.root);
    this.ticketFile = join(this.root, 'run', 'tonbo', 'artifacts', 'mount-ticket.json');
    this.mounts = [];
  }

  /** `artifacts mount --ticket-file FILE [WORKSPACE] MOUNTPOINT` in a separate process. */
  mount(mountpoint, workspace) {
    mkdirSync(mountpoint, { recursive: true });
    this.mounts.push(mountpoint);
    const args = ['mount', '--ticket-file', this.ticketFile, ...(workspace ? [workspace] : []), mountpoint];
    return spawnSync(stack.bin, args, { env: this.env, encoding: 'utf8', timeout: 180_000, cwd: this.env.HOME });
  }

  unmountAll() {
    for (const mp of this.mounts.splice(0)) {
      const p = spawnSync(stack.bin, ['unmount', mp], { env: this.env, encoding: 'utf8', timeout: 60_000 });
      if (p.status !== 0) spawnSync('fusermount3', ['-uz', mp]);
    }
  }
}

/**
 * Stats a fresh name in the mount (a negative lookup always reaches the FUSE process) until one
 * fails with EACCES; resolves with the milliseconds it took, rejects after `boundMs`.
 */
export async function firstEacces(mountpoint, boundMs) {
  const started = performance.now();
  for (let n = 0; performance.now() - started < boundMs; n++) {
    try {
      await stat(join(mountpoint, `probe-${n}`));
    } catch (err) {
      if (err.code === 'EACCES') return performance.now() - started;
      if (err.code !== 'ENOENT') throw err;
    }
  }
  throw new Error(`no EACCES within ${boundMs} ms after revocation`);
}

/** Moves the orchestrator's clock `seconds` ahead (0: back to real time). */
export function setClockOffset(seconds) {
  const tmp = `${stack.clockFile}.${process.pid}.tmp`;
  writeFileSync(tmp, String(seconds));
  renameSync(tmp, stack.clockFile);
}

/** A mount ticket's claims (base64url JSON). */
export function claimsOf(mountTicket) {
  return JSON.parse(Buffer.from(mountTicket.claims, 'base64url').toString('utf8'));
}

export function readJson(path) {
  return JSON.parse(readFileSync(path, 'utf8'));
}
