// Seed 003's code as written (only `<your-handle>` stays a placeholder), type-checked against the
// built package's declarations by tests/test_sdk_js.py; then misuse the types must refuse.

import fs from 'node:fs/promises';

import { Artifacts, ArtifactsError, type TicketIssued, writeMountTicketFile } from '@tonbo/artifacts';

declare const taskId: string;

export async function quickstart(): Promise<void> {
  // 2. Install the SDK
  const artifacts = new Artifacts();

  // 4. Choose a runtime id for the task
  const tenantSlug = 'acme';
  const runtimeId = taskId;

  // 6. Create a short-lived mount ticket
  const { mount_ticket } = await artifacts.platform.createMountTicket(tenantSlug, runtimeId, {
    workspace: `<your-handle>/task-${taskId}`,
    mode: 'rw',
    ttlSeconds: 3600,
  });

  // 7. Inject the mount ticket into your runtime
  await writeMountTicketFile('/run/tonbo/artifacts/mount-ticket.json', mount_ticket);

  // 8. The customer's agent code, in the runtime
  await fs.writeFile('/mnt/work/output.txt', 'hello');

  // 9. Tear down when the task ends
  await artifacts.platform.revokeAccessGrants({ tenantSlug, runtimeId });
  await artifacts.workspaces.delete(`<your-handle>/task-${taskId}`);
}

export async function misuse(artifacts: Artifacts, issued: TicketIssued): Promise<void> {
  // @ts-expect-error ttlSeconds is required
  await artifacts.platform.createMountTicket('acme', 'r1', { workspace: 'w' });
  // @ts-expect-error mode is ro or rw
  await artifacts.platform.createMountTicket('acme', 'r1', { workspace: 'w', mode: 'rwx', ttlSeconds: 60 });
  // @ts-expect-error a grant id, or a tenant (and runtime): not both
  await artifacts.platform.revokeAccessGrants({ grantId: 'g', tenantSlug: 'acme' });
  // @ts-expect-error the seed's names are camelCase options, not the wire's snake_case
  await artifacts.platform.revokeAccessGrants({ tenant_slug: 'acme' });
  // @ts-expect-error results keep the wire's names: there is no camelCase mountTicket
  void issued.mountTicket;
  try {
    await artifacts.workspaces.get('notes');
  } catch (err) {
    if (err instanceof ArtifactsError && err.code === 'workspace_not_found') {
      const status: number = err.status;
      void status;
    }
  }
}
