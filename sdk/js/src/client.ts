// `new Artifacts()`: the SDK's entry point (seed 003). One Transport (HTTP, auth, timeouts,
// retries) shared by one object per resource. Adding a resource (the agent file API once the
// orchestrator serves one over HTTP) is a module in resources/ and one property here.

import type { HealthzResponse } from './types.js';
import type { WhoAmI } from './generated/openapi.js';
import { Checkpoints } from './resources/checkpoints.js';
import { Keys } from './resources/keys.js';
import { Platform } from './resources/platform.js';
import { Sessions } from './resources/sessions.js';
import { Workspaces } from './resources/workspaces.js';
import { type ClientOptions, type RequestOptions, Transport } from './transport.js';

export class Artifacts {
  /** List, get, delete (and wait for) workspaces. */
  readonly workspaces: Workspaces;
  /** Tenants, access grants, mount tickets. */
  readonly platform: Platform;
  /** The mount sessions of a workspace. */
  readonly sessions: Sessions;
  /** The account's API keys. */
  readonly keys: Keys;
  /** A workspace's checkpoints: list, create, get, diff, restore, delete. */
  readonly checkpoints: Checkpoints;
  readonly #t: Transport;

  /**
   * Reads `TONBO_API_KEY` and `ARTIFACTS_ORCHESTRATOR_URL` from the environment unless `options`
   * gives `apiKey` / `baseUrl`. A missing key is reported by the first call that needs one.
   */
  constructor(options: ClientOptions = {}) {
    this.#t = new Transport(options);
    this.workspaces = new Workspaces(this.#t);
    this.platform = new Platform(this.#t);
    this.sessions = new Sessions(this.#t);
    this.keys = new Keys(this.#t);
    this.checkpoints = new Checkpoints(this.#t);
  }

  /** The orchestrator this client talks to. */
  get baseUrl(): string {
    return this.#t.baseUrl;
  }

  /** The account and API key this client authenticates as. */
  async whoami(req?: RequestOptions): Promise<WhoAmI> {
    return this.#t.call('whoami', {}, req);
  }

  /** `{ status: 'ok' }` when the orchestrator is up (no API key needed). */
  async health(req?: RequestOptions): Promise<HealthzResponse> {
    return this.#t.call('healthz', {}, req);
  }
}
