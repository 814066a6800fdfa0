// The CommonJS entry's declarations: `require('@tonbo/artifacts')` is typed too.

import sdk = require('@tonbo/artifacts');

export const client: sdk.Artifacts = new sdk.Artifacts({ timeout: 5_000, maxRetries: 0 });
export const pending: Promise<sdk.TicketIssued> = client.platform.createMountTicket('acme', 'r1', {
  workspace: 'acme/w', ttlSeconds: 60 });
