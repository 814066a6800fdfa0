// Writing a mount ticket file the way `artifacts mount --ticket-file` accepts it (seed 003, step 7:
// "an init-time file write"): the JSON of the ticket, in a regular file only its owner can read
// (the CLI refuses a file group or others can access, and does not use the ticket).

import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

import type { MountTicket, TicketIssued } from './generated/openapi.js';

/**
 * Writes `ticket` (what `createMountTicket` returned, or its `mount_ticket`) to `path` with mode
 * 0600, atomically (a temporary file in the same directory, renamed over `path`), creating missing
 * parent directories with mode 0700. Resolves with `path`.
 */
export async function writeMountTicketFile(path: string, ticket: MountTicket | TicketIssued): Promise<string> {
  const mountTicket = 'mount_ticket' in ticket ? ticket.mount_ticket : ticket;
  const dir = dirname(path);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const file = await open(tmp, 'wx', 0o600);
  try {
    await file.writeFile(JSON.stringify(mountTicket));
    await file.chmod(0o600); // whatever the umask left
    await file.sync();
  } catch (err) {
    await file.close();
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await file.close();
  try {
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await chmod(path, 0o600);
  return path;
}
