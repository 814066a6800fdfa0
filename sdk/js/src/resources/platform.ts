// `artifacts.platform`: tenants, access grants and signed mount tickets (docs/platform.md,
// seed 003). Options are camelCase, as seed 003 writes them; results are the HTTP API's JSON as it
// is (snake_case: `const { mount_ticket } = await createMountTicket(...)`), typed by the types
// generated from the orchestrator's OpenAPI description.

import { ArtifactsError } from '../errors.js';
import type {
  CreateGrantRequest,
  CreateTicketRequest,
  ExchangeRequest,
  ExchangeResult,
  GrantList,
  GrantView,
  MountTicket,
  PublicKeyList,
  RevokeGrantsRequest,
  RevokeResult,
  TenantList,
  TenantView,
  TicketIssued,
} from '../generated/openapi.js';
import type { RequestOptions, Transport } from '../transport.js';

export type Mode = CreateTicketRequest['mode'] & string;

export interface CreateTenantOptions {
  /** Your own id for this customer (at most 256 characters). */
  externalId?: string;
  /** Free-form JSON object (at most 4 KiB), stored and returned verbatim. */
  metadata?: Record<string, unknown>;
}

export interface CreateAccessGrantOptions {
  tenantSlug: string;
  /** Leave out for a tenant-wide grant (every runtime of the tenant). */
  runtimeId?: string;
  /** Default `rw`. */
  mode?: Mode;
  /** Makes the grant expire (60 s to 366 days); default: until revoked. */
  ttlSeconds?: number;
}

export interface ListAccessGrantsOptions {
  tenantSlug?: string;
  runtimeId?: string;
  /** `name`, `handle/name` or `artifacts://handle/name`. */
  workspace?: string;
  /** Also revoked and expired grants. */
  includeRevoked?: boolean;
}

/** What `revokeAccessGrants` revokes: one grant, a whole tenant, or one runtime of a tenant. */
export type RevokeSelector =
  | { grantId: string; tenantSlug?: undefined; runtimeId?: undefined }
  | { tenantSlug: string; runtimeId?: string; grantId?: undefined };

export interface CreateMountTicketOptions {
  /** `handle/name` (or `name`, `artifacts://handle/name`); the workspace must be `active`. */
  workspace: string;
  /** Default `rw`; at most the grant's mode. */
  mode?: Mode;
  /** Required: 60 s to 24 h. */
  ttlSeconds: number;
}

export interface ExchangeMountTicketOptions {
  /** What the runtime means to mount (`handle/name`); another workspace's ticket is `forbidden`. */
  workspace?: string;
  /** `ro` narrows an `rw` ticket to a read-only session (never the other way: `forbidden`). */
  mode?: Mode;
  host?: string;
  mountpoint?: string;
}

/** A mount ticket as `createMountTicket` returns it, its `mount_ticket`, or the JSON text of either. */
export type MountTicketInput = MountTicket | TicketIssued | string;

function ticketOf(input: MountTicketInput): Record<string, unknown> {
  let value: unknown = input;
  if (typeof input === 'string') {
    try {
      value = JSON.parse(input);
    } catch {
      throw new ArtifactsError('ticket_invalid', 401, 'the mount ticket is not JSON');
    }
  }
  if (value && typeof value === 'object' && 'mount_ticket' in value) {
    value = (value as { mount_ticket: unknown }).mount_ticket;
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) {
    throw new ArtifactsError('ticket_invalid', 401, 'the mount ticket is not a JSON object');
  }
  return value as Record<string, unknown>;
}

export class Platform {
  readonly #t: Transport;

  constructor(transport: Transport) {
    this.#t = transport;
  }

  /** Creates a tenant (`tenant_exists` if you already have that slug). */
  async createTenant(slug: string, options: CreateTenantOptions = {}, req?: RequestOptions): Promise<TenantView> {
    return this.#t.call('createTenant',
      { body: { slug, external_id: options.externalId, metadata: options.metadata } }, req);
  }

  async listTenants(req?: RequestOptions): Promise<TenantList> {
    return this.#t.call('listTenants', {}, req);
  }

  async getTenant(slug: string, req?: RequestOptions): Promise<TenantView> {
    return this.#t.call('getTenant', { path: { slug } }, req);
  }

  /** Lets a tenant (tenant-wide) or one of its runtimes mount `workspaceRef`; creates a missing tenant. */
  async createAccessGrant(workspaceRef: string, options: CreateAccessGrantOptions, req?: RequestOptions):
  Promise<GrantView> {
    const body: CreateGrantRequest = { workspace: workspaceRef, tenant_slug: options.tenantSlug,
      runtime_id: options.runtimeId, mode: options.mode, ttl_seconds: options.ttlSeconds };
    return this.#t.call('createAccessGrant', { body }, req);
  }

  async listAccessGrants(options: ListAccessGrantsOptions = {}, req?: RequestOptions): Promise<GrantList> {
    return this.#t.call('listAccessGrants', { query: { tenant: options.tenantSlug, runtime_id: options.runtimeId,
      workspace: options.workspace, include_revoked: options.includeRevoked } }, req);
  }

  async getAccessGrant(grantId: string, req?: RequestOptions): Promise<GrantView> {
    return this.#t.call('getAccessGrant', { path: { grant_id: grantId } }, req);
  }

  /**
   * Revokes by `{ grantId }`, `{ tenantSlug }` (the whole tenant) or `{ tenantSlug, runtimeId }`
   * (one runtime, also its access under tenant-wide grants): unused tickets are voided, and live
   * mounts fail with EACCES within about a second. Safe to repeat (a repeat finishes a revocation
   * cut short), so it is retried like a read.
   */
  async revokeAccessGrants(selector: RevokeSelector, req?: RequestOptions): Promise<RevokeResult> {
    const body: RevokeGrantsRequest = { grant_id: selector.grantId, tenant_slug: selector.tenantSlug,
      runtime_id: selector.runtimeId };
    return this.#t.call('revokeAccessGrants', { body }, req);
  }

  /**
   * The fast path of seed 003: creates the tenant and a runtime-scoped grant if missing, then signs a
   * short-lived, single-use ticket for `runtimeId` to mount `workspace`. Its `mount_ticket` is what
   * the runtime's `mount-ticket.json` holds (`writeMountTicketFile` writes it 0600). Never retried:
   * each call issues a new ticket.
   */
  async createMountTicket(tenantSlug: string, runtimeId: string, options: CreateMountTicketOptions,
    req?: RequestOptions): Promise<TicketIssued> {
    const body: CreateTicketRequest = { tenant_slug: tenantSlug, runtime_id: runtimeId,
      workspace: options.workspace, mode: options.mode, ttl_seconds: options.ttlSeconds };
    return this.#t.call('createMountTicket', { body }, req);
  }

  /**
   * What a runtime does with its ticket (the CLI's `artifacts mount --ticket-file`): exchanges it for
   * a mount session. No API key is sent. A ticket is single-use; this call is never retried.
   */
  async exchangeMountTicket(ticket: MountTicketInput, options: ExchangeMountTicketOptions = {}, req?: RequestOptions):
  Promise<ExchangeResult> {
    const body: ExchangeRequest = { mount_ticket: ticketOf(ticket), workspace: options.workspace,
      mode: options.mode, host: options.host, mountpoint: options.mountpoint };
    return this.#t.call('exchangeMountTicket', { body }, req);
  }

  /** The public keys tickets are verified with (no API key needed). */
  async publicKeys(req?: RequestOptions): Promise<PublicKeyList> {
    return this.#t.call('listTicketKeys', {}, req);
  }
}
