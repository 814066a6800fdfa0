// Names for results the generated types describe inline.

import type { Operations } from './generated/openapi.js';

export type HealthzResponse = Operations['healthz']['response'];
