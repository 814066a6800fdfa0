// Workspace references, as everywhere in Artifacts: `name` (your own handle), `handle/name` or
// `artifacts://handle/name`. A bare name is sent as handle `~`, which the orchestrator resolves to
// the caller's own handle.

import { ArtifactsError } from './errors.js';

/** Workspace names (SPEC.md section 1): 1-63 characters, letters, digits, `-` and `_`. */
export const WORKSPACE_NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_-]{0,62}$/;

/** `ref` as `{ handle, name }`; `handle` is `~` for a bare name. Throws `invalid_request`. */
export function parseWorkspaceRef(ref: string): { handle: string; name: string } {
  const text = typeof ref === 'string' ? ref.replace(/^artifacts:\/\//, '') : '';
  const slash = text.lastIndexOf('/');
  const handle = slash < 0 ? '~' : text.slice(0, slash);
  const name = slash < 0 ? text : text.slice(slash + 1);
  if (!WORKSPACE_NAME_RE.test(name) || handle.includes('/')) {
    throw new ArtifactsError('invalid_request', 422,
      `invalid workspace reference ${JSON.stringify(ref)}: use name, handle/name or artifacts://handle/name`);
  }
  return { handle: handle || '~', name };
}
