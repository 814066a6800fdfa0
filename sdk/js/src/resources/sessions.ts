// `artifacts.sessions`: the mount sessions of a workspace (each live mount holds one; a session a
// mount ticket was exchanged for carries its runtime, grant and ticket ids).

import type { CreateSessionRequest, SessionGrant, SessionList, SessionView } from '../generated/openapi.js';
import { parseWorkspaceRef } from '../refs.js';
import type { RequestOptions, Transport } from '../transport.js';

export interface CreateSessionOptions {
  mode?: CreateSessionRequest['mode'];
  ttlSeconds?: number;
  host?: string;
  mountpoint?: string;
}

export class Sessions {
  readonly #t: Transport;

  constructor(transport: Transport) {
    this.#t = transport;
  }

  /** Opens a mount session: the result holds the credentials a mount uses (handle it as a secret). */
  async create(ref: string, options: CreateSessionOptions = {}, req?: RequestOptions): Promise<SessionGrant> {
    const body: CreateSessionRequest = { mode: options.mode, ttl_seconds: options.ttlSeconds, host: options.host,
      mountpoint: options.mountpoint };
    return this.#t.call('createSession', { path: parseWorkspaceRef(ref), body }, req);
  }

  /** Live sessions (also revoked and expired ones with `includeRevoked`). */
  async list(ref: string, options: { includeRevoked?: boolean } = {}, req?: RequestOptions): Promise<SessionList> {
    return this.#t.call('listSessions',
      { path: parseWorkspaceRef(ref), query: { include_revoked: options.includeRevoked } }, req);
  }

  /** Revokes a session: the mount holding it fails with EACCES on its next operation. */
  async revoke(ref: string, sessionId: string, req?: RequestOptions): Promise<SessionView> {
    return this.#t.call('revokeSession', { path: { ...parseWorkspaceRef(ref), sid: sessionId } }, req);
  }

  async renew(ref: string, sessionId: string, options: { ttlSeconds?: number } = {}, req?: RequestOptions):
  Promise<SessionView> {
    return this.#t.call('renewSession',
      { path: { ...parseWorkspaceRef(ref), sid: sessionId }, body: { ttl_seconds: options.ttlSeconds } }, req);
  }
}
