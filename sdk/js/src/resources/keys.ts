// `artifacts.keys`: the account's API keys (a new key is shown once, in `create`'s result).

import type { KeyList, KeyView, NewKey } from '../generated/openapi.js';
import type { RequestOptions, Transport } from '../transport.js';

export class Keys {
  readonly #t: Transport;

  constructor(transport: Transport) {
    this.#t = transport;
  }

  async create(name = '', req?: RequestOptions): Promise<NewKey> {
    return this.#t.call('createKey', { body: { name } }, req);
  }

  async list(req?: RequestOptions): Promise<KeyList> {
    return this.#t.call('listKeys', {}, req);
  }

  /** Revokes an API key at once (sessions it opened keep running: revoke grants for that). */
  async revoke(keyId: string, req?: RequestOptions): Promise<KeyView> {
    return this.#t.call('revokeKey', { path: { key_id: keyId } }, req);
  }
}
