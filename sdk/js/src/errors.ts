// Typed errors. Every failure the SDK reports is an ArtifactsError carrying the orchestrator's
// error `code` (docs/orchestrator.md, docs/platform.md; the same codes the Python SDK's exception
// classes are named after) and the HTTP `status`. Failures with no HTTP answer (refused connection,
// reset, DNS, timeout) are ArtifactsConnectionError, code `orchestrator_unavailable` and status
// 503, as in the Python SDK; ArtifactsTimeoutError is the timeout among them. Checks the SDK makes
// before sending (a malformed workspace reference, a missing API key) use the code the server
// would have answered (`invalid_request` 422, `unauthorized` 401) and send nothing.

import type { ErrorCode } from './generated/openapi.js';

/**
 * Codes the SDK itself produces (never sent by the orchestrator): no HTTP answer
 * (`orchestrator_unavailable`, status 503), or `workspaces.waitForStatus` gave up (`wait_timeout`,
 * status 0: no HTTP status applies).
 */
export type ClientErrorCode = 'orchestrator_unavailable' | 'wait_timeout';

/** Any code an ArtifactsError may carry; unknown future codes from a newer orchestrator stay strings. */
export type ArtifactsErrorCode = ErrorCode | ClientErrorCode | (string & {});

export class ArtifactsError extends Error {
  /** The orchestrator's machine-readable error code, e.g. `ticket_used`. */
  readonly code: ArtifactsErrorCode;
  /** The HTTP status (503 for ArtifactsConnectionError, 0 for `wait_timeout`). */
  readonly status: number;
  /** The whole error body (e.g. `existing` for `workspace_exists`), when there was one. */
  readonly body: Record<string, unknown> | undefined;

  constructor(code: ArtifactsErrorCode, status: number, message: string,
    options: { body?: Record<string, unknown>; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ArtifactsError';
    this.code = code;
    this.status = status;
    this.body = options.body;
  }
}

export class ArtifactsConnectionError extends ArtifactsError {
  constructor(message: string, cause?: unknown) {
    super('orchestrator_unavailable', 503, message, { cause });
    this.name = 'ArtifactsConnectionError';
  }
}

export class ArtifactsTimeoutError extends ArtifactsConnectionError {
  constructor(message: string) {
    super(message);
    this.name = 'ArtifactsTimeoutError';
  }
}

/** `err` is an ArtifactsError (with that `code`, when given). */
export function isArtifactsError(err: unknown, code?: ArtifactsErrorCode): err is ArtifactsError {
  return err instanceof ArtifactsError && (code === undefined || err.code === code);
}

/** The error for an HTTP error answer (`text` is its body). */
export function errorFromResponse(status: number, text: string): ArtifactsError {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (body && typeof body === 'object' && typeof (body as { code?: unknown }).code === 'string') {
    const b = body as Record<string, unknown> & { code: string };
    const message = typeof b.message === 'string' && b.message ? b.message : b.code;
    return new ArtifactsError(b.code, status, message, { body: b });
  }
  const snippet = text.trim().slice(0, 200);
  return new ArtifactsError(status >= 500 ? 'internal' : 'invalid_request', status,
    `HTTP ${status} without an error body${snippet ? `: ${snippet}` : ''}`);
}
