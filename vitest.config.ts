import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Training tests are CPU-heavy; two cores, so at most two files at once.
    maxWorkers: 2,
    pool: 'forks',
  },
});
