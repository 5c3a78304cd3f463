// `npm pack` / `npm publish`: copies the contract into the package (proto/saywell/v1/assessment.proto, where
// src/client.js looks first), and removes the copy afterwards (--clean) so the checkout keeps one contract.
import { cpSync, rmSync } from 'node:fs';

const bundled = new URL('../proto/', import.meta.url);
if (process.argv.includes('--clean')) {
  rmSync(bundled, { recursive: true, force: true });
} else {
  cpSync(new URL('../../../proto/saywell/v1/assessment.proto', import.meta.url),
    new URL('saywell/v1/assessment.proto', bundled));
}
