// Runs every mitata micro-benchmark of the hot paths in one go: `npm run bench`.
// Each *.bench.ts registers its benches on import and runs alone when executed directly.

import { run } from 'mitata';
import './protocol.bench.js';
import './produce-check.bench.js';
import './storage.bench.js';
import './handlers.bench.js';
import './cleaner.bench.js';
import './secure-channel.bench.js';

await run();
