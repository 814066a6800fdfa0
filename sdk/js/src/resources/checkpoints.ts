// `artifacts.checkpoints`: a workspace's history (docs/history.md). The orchestrator runs these on
// the workspace's metadata with its admin rights, never on the data path: what clients have
// committed (closed or fsynced) is in a checkpoint, a running mount's unflushed writes are not.

import type {
  ChangeList,
  CheckpointDetail,
  CheckpointList,
  CheckpointView,
  DeletedCheckpoint,
  RestoreResult,
} from '../generated/openapi.js';
import { parseWorkspaceRef } from '../refs.js';
import type { RequestOptions, Transport } from '../transport.js';

export interface CreateCheckpointOptions {
  /** 1-63 letters, digits, `_ . -` (default `ckpt-<UTC time>`). */
  name?: string;
  /** Retention, e.g. `3600`, `90m`, `12h`, `7d` (default: until deleted). */
  keep?: string;
}

export class Checkpoints {
  readonly #t: Transport;

  constructor(transport: Transport) {
    this.#t = transport;
  }

  /** Every checkpoint of the workspace, oldest first. */
  async list(ref: string, req?: RequestOptions): Promise<CheckpointList> {
    return this.#t.call('listCheckpoints', { path: parseWorkspaceRef(ref) }, req);
  }

  /** Takes a checkpoint of the whole workspace, in constant time. */
  async create(ref: string, options: CreateCheckpointOptions = {}, req?: RequestOptions): Promise<CheckpointView> {
    return this.#t.call('createCheckpoint', { path: parseWorkspaceRef(ref), body: { name: options.name,
      keep: options.keep } }, req);
  }

  /** A checkpoint, how many paths changed since, and the bytes only it keeps. */
  async get(ref: string, checkpoint: string, req?: RequestOptions): Promise<CheckpointDetail> {
    return this.#t.call('getCheckpoint', { path: { ...parseWorkspaceRef(ref), checkpoint } }, req);
  }

  /** Paths added, removed, modified, renamed since `checkpoint` (or up to the later `to`). */
  async diff(ref: string, checkpoint: string, options: { to?: string } = {}, req?: RequestOptions):
  Promise<ChangeList> {
    return this.#t.call('diffCheckpoint', { path: { ...parseWorkspaceRef(ref), checkpoint },
      query: { to: options.to } }, req);
  }

  /** Makes the workspace what `checkpoint` was, atomically; the result names the safety checkpoint. */
  async restore(ref: string, checkpoint: string, options: { safety?: string } = {}, req?: RequestOptions):
  Promise<RestoreResult> {
    return this.#t.call('restoreCheckpoint', { path: { ...parseWorkspaceRef(ref), checkpoint },
      body: { safety: options.safety } }, req);
  }

  /** Deletes a checkpoint; what only it kept is freed by the workspace's reclaim. */
  async delete(ref: string, checkpoint: string, req?: RequestOptions): Promise<DeletedCheckpoint> {
    return this.#t.call('deleteCheckpoint', { path: { ...parseWorkspaceRef(ref), checkpoint } }, req);
  }
}
