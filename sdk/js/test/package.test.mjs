// The package's two entry points: `import` gets the ES modules, `require` the CommonJS build, both
// with the same API; the version constant is package.json's.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { test } from 'node:test';

import * as esm from '@tonbo/artifacts';

const require = createRequire(import.meta.url);

test('ESM and CommonJS entry points export the same API', () => {
  const cjs = require('@tonbo/artifacts');
  assert.deepEqual(Object.keys(cjs).sort(), Object.keys(esm).sort());
  assert.notEqual(cjs.Artifacts, esm.Artifacts, 'two builds, not one re-exported');
  assert.match(require.resolve('@tonbo/artifacts'), /dist[\\/]cjs[\\/]index\.js$/);
  for (const mod of [esm, cjs]) {
    const client = new mod.Artifacts({ apiKey: 'tbo_x', baseUrl: 'http://127.0.0.1:1/' });
    assert.equal(client.baseUrl, 'http://127.0.0.1:1');
    for (const m of ['createTenant', 'createAccessGrant', 'createMountTicket', 'exchangeMountTicket',
      'revokeAccessGrants', 'listAccessGrants', 'publicKeys']) {
      assert.equal(typeof client.platform[m], 'function', m);
    }
    for (const m of ['list', 'get', 'delete', 'waitForStatus']) assert.equal(typeof client.workspaces[m], 'function');
    assert.equal(mod.operations.createMountTicket.path, '/mount-tickets');
  }
});

test('VERSION is the package version', () => {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  assert.equal(esm.VERSION, pkg.version);
});

test('workspace references are parsed as everywhere in Artifacts', () => {
  assert.deepEqual(esm.parseWorkspaceRef('notes'), { handle: '~', name: 'notes' });
  assert.deepEqual(esm.parseWorkspaceRef('acme/task-1'), { handle: 'acme', name: 'task-1' });
  assert.deepEqual(esm.parseWorkspaceRef('artifacts://acme/Task_1'), { handle: 'acme', name: 'Task_1' });
  for (const bad of ['', 'a/b/c', '-x', 'a/', 'x'.repeat(64)]) {
    assert.throws(() => esm.parseWorkspaceRef(bad), { code: 'invalid_request' }, bad);
  }
});
