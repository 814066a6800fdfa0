// @tonbo/artifacts: the Node.js SDK of the Artifacts orchestrator (docs/sdk-js.md).

export { Artifacts } from './client.js';
export {
  ArtifactsConnectionError,
  ArtifactsError,
  type ArtifactsErrorCode,
  ArtifactsTimeoutError,
  type ClientErrorCode,
  isArtifactsError,
} from './errors.js';
export * from './generated/openapi.js';
export { parseWorkspaceRef, WORKSPACE_NAME_RE } from './refs.js';
export type { CreateCheckpointOptions } from './resources/checkpoints.js';
export type { CreateSessionOptions } from './resources/sessions.js';
export type {
  CreateAccessGrantOptions,
  CreateMountTicketOptions,
  CreateTenantOptions,
  ExchangeMountTicketOptions,
  ListAccessGrantsOptions,
  Mode,
  MountTicketInput,
  RevokeSelector,
} from './resources/platform.js';
export type { WaitOptions, WorkspaceStatus } from './resources/workspaces.js';
export { writeMountTicketFile } from './ticket-file.js';
export {
  API_KEY_ENV,
  BASE_URL_ENV,
  type ClientOptions,
  DEFAULT_BASE_URL,
  DEFAULT_MAX_RETRIES,
  DEFAULT_TIMEOUT_MS,
  type RequestOptions,
} from './transport.js';
export type { HealthzResponse } from './types.js';
export { VERSION } from './version.js';
