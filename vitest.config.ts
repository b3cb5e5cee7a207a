import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['**/*.test.ts'],
    exclude: ['node_modules/**', 'dist/**'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Process tests start real nodes; two cores cannot run many of them at once.
    maxWorkers: 2,
    minWorkers: 1,
  },
});
