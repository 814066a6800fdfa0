// The journal live from Node: `workspaces.streamEvents` against the real orchestrator's
// server-sent events endpoint follows a change made meanwhile (a checkpoint restore, journaled as
// kind `workspace`), stops on abort, and resumes from an event id; `events` pages meanwhile.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';

import { Artifacts } from '@tonbo/artifacts';

import { createWorkspace, newAccount, stack, unique } from './helpers.mjs';

function cli(apiKey, ...args) {
  const root = join(stack.tmp, unique('cli'));
  for (const d of ['home', 'config', 'cache', 'state']) mkdirSync(join(root, d), { recursive: true });
  const env = { PATH: process.env.PATH, LANG: 'C.UTF-8', HOME: join(root, 'home'), XDG_CONFIG_HOME: join(root, 'config'),
    XDG_CACHE_HOME: join(root, 'cache'), XDG_STATE_HOME: join(root, 'state'), TONBO_API_KEY: apiKey,
    ARTIFACTS_ORCHESTRATOR_URL: stack.url };
  const p = spawnSync(stack.bin, args, { env, encoding: 'utf8', timeout: 120_000 });
  if (p.status !== 0) throw new Error(`artifacts ${args.join(' ')} failed (${p.status}): ${p.stderr}`);
  return p.stdout;
}

describe('streamEvents', () => {
  let account;
  let artifacts;
  let ws;

  before(async () => {
    account = await newAccount('sse');
    artifacts = new Artifacts({ apiKey: account.key, baseUrl: stack.url });
    ws = unique('ev');
    createWorkspace(ws, account.key);
    cli(account.key, 'checkpoint', 'create', ws, 'c1');
  });

  test('follows new events live, stops on abort, and resumes from an event id', async () => {
    const controller = new AbortController();
    const stream = artifacts.workspaces.streamEvents(ws, {}, { signal: controller.signal });
    const first = stream.next();  // connected from now on: a change made next arrives
    await new Promise((resolve) => setTimeout(resolve, 500));
    cli(account.key, 'checkpoint', 'restore', ws, 'c1');
    const got = await Promise.race([first, new Promise((_, reject) => setTimeout(() => reject(new Error('no event in 15 s')), 15_000))]);
    assert.equal(got.done, false);
    assert.equal(got.value.kind, 'workspace');
    assert.equal(got.value.op, 'restore');
    controller.abort();
    assert.deepEqual(await stream.next(), { done: true, value: undefined });
    // the same event again from its id, through the page API and the stream
    const page = await artifacts.workspaces.events(ws, { since: got.value.id });
    assert.equal(page.events[0].id, got.value.id);
    const again = new AbortController();
    for await (const ev of artifacts.workspaces.streamEvents(ws, { since: got.value.id }, { signal: again.signal })) {
      assert.equal(ev.id, got.value.id);
      again.abort();
    }
  });
});
