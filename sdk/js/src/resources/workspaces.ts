// `artifacts.workspaces`: list, get, delete, inspect, events, waitForStatus. Creating a workspace stays a
// CLI step (`artifacts workspace create`): its format step initialises the workspace's storage from
// the machine that runs it, which an HTTP call cannot do (seed 003, step 5).

import { ArtifactsConnectionError, ArtifactsError } from '../errors.js';
import type { WorkspaceList, WorkspaceView } from '../generated/openapi.js';
import { parseWorkspaceRef } from '../refs.js';
import type { RequestOptions, Transport } from '../transport.js';

export type WorkspaceStatus = WorkspaceView['status'];

export interface WaitOptions extends RequestOptions {
  /** Give up after this many milliseconds (default 60000). */
  waitTimeout?: number;
  /** Milliseconds between polls (default 200). */
  interval?: number;
}

export class Workspaces {
  readonly #t: Transport;

  constructor(transport: Transport) {
    this.#t = transport;
  }

  /** Your workspaces (`{ workspaces: [] }` on a fresh account). */
  async list(options: { includeDeleted?: boolean } = {}, req?: RequestOptions): Promise<WorkspaceList> {
    return this.#t.call('listWorkspaces', { query: { include_deleted: options.includeDeleted } }, req);
  }

  /** One workspace: `name`, `handle/name` or `artifacts://handle/name`. */
  async get(ref: string, req?: RequestOptions): Promise<WorkspaceView> {
    return this.#t.call('getWorkspace', { path: parseWorkspaceRef(ref) }, req);
  }

  /** A summary of the workspace's metadata keyspace (key kinds, counters, live mounts). */
  async inspect(ref: string, req?: RequestOptions): Promise<Record<string, unknown>> {
    return this.#t.call('inspectWorkspace', { path: parseWorkspaceRef(ref) }, req);
  }

  /**
   * One page of the workspace's journal: events from `since` (an event id — the `cursor` a previous
   * page returned —, an ISO time or an age like `10m`; default the oldest kept), optionally under
   * `path` or by one `actor` (`key=value`). `more` says another page is ready now. `reads`: the read
   * audit's events too, from `readsSince` (the `reads_cursor` a previous page returned). Live:
   * `streamEvents`.
   */
  async events(ref: string, options: { since?: string | number; path?: string; actor?: string; limit?: number;
    reads?: boolean; readsSince?: number } = {}, req?: RequestOptions): Promise<Record<string, unknown>> {
    const query = { since: options.since === undefined ? undefined : String(options.since), path: options.path,
      actor: options.actor, limit: options.limit, reads: options.reads ? '1' : undefined,
      reads_since: options.readsSince };
    return this.#t.call('workspaceEvents', { path: parseWorkspaceRef(ref), query }, req);
  }

  /**
   * The workspace's journal live (the server-sent events endpoint): every event from `since` (an
   * event id, an ISO time, an age like `10m`, or `now`; default `now`), then each new one as it
   * happens, until `signal` aborts or the loop breaks. With `reads`, the read audit's events too
   * (kind `read`). A dropped connection is resumed from the last event seen (up to `maxRetries`
   * times in a row, with backoff), so no event is lost or repeated.
   *
   * ```js
   * for await (const ev of artifacts.workspaces.streamEvents('notes', { path: '/out' })) console.log(ev.op, ev.path);
   * ```
   */
  async *streamEvents(ref: string, options: { since?: string | number; path?: string; actor?: string;
    reads?: boolean } = {}, req: RequestOptions = {}): AsyncGenerator<Record<string, unknown>> {
    const query = { since: options.since === undefined ? 'now' : String(options.since), path: options.path,
      actor: options.actor, reads: options.reads ? '1' : undefined };
    const retries = req.maxRetries ?? 3;
    let lastEventId: string | undefined;
    for (let failures = 0; ;) {
      try {
        const q = lastEventId === undefined ? query : { ...query, since: undefined };  // the id resumes
        for await (const msg of this.#t.stream('workspaceEventsStream', { path: parseWorkspaceRef(ref), query: q },
          { ...req, lastEventId })) {
          if (msg.id !== undefined) lastEventId = msg.id;
          failures = 0;
          yield JSON.parse(msg.data) as Record<string, unknown>;
        }
        if (req.signal?.aborted) return;
      } catch (err) {
        if (!(err instanceof ArtifactsConnectionError) || ++failures > retries) throw err;
      }
      if (req.signal?.aborted) return;
      await new Promise((resolve) => setTimeout(resolve, 200 * 2 ** failures));
    }
  }

  /**
   * Starts deleting the workspace: its grants are revoked and its unused tickets voided at once,
   * its live mounts are cut and its data removed in the background. Resolves with the workspace in
   * status `deleting` (or `deleted`); `waitForStatus(ref, 'deleted')` waits for the end.
   */
  async delete(ref: string, req?: RequestOptions): Promise<WorkspaceView> {
    return this.#t.call('deleteWorkspace', { path: parseWorkspaceRef(ref) }, req);
  }

  /** Polls `get(ref)` until the workspace reports `status`; rejects with `ArtifactsError` code `wait_timeout` after `waitTimeout`. */
  async waitForStatus(ref: string, status: WorkspaceStatus = 'deleted', options: WaitOptions = {}):
  Promise<WorkspaceView> {
    const { waitTimeout = 60_000, interval = 200, ...req } = options;
    const deadline = Date.now() + waitTimeout;
    for (;;) {
      const ws = await this.get(ref, req);
      if (ws.status === status) return ws;
      if (Date.now() >= deadline) {
        throw new ArtifactsError('wait_timeout', 0,
          `${ref} is still ${ws.status} after ${waitTimeout} ms (waiting for ${status})`);
      }
      await new Promise((resolve) => setTimeout(resolve, interval));
    }
  }
}
