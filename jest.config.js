/**
 * Tests run from TypeScript sources, transpiled file by file (no type
 * checking here: `npm run typecheck` does that for every package and test).
 */
module.exports = {
  // node's, holding console.log/info/debug back unless the test fails (tools/jest/quiet-environment.js)
  testEnvironment: '<rootDir>/tools/jest/quiet-environment.js',
  roots: ['<rootDir>/packages', '<rootDir>/tools'],
  testMatch: ['**/test/**/*.test.ts'],
  transform: { '^.+\\.tsx?$': ['ts-jest', { tsconfig: '<rootDir>/tsconfig.json', diagnostics: false }] },
  moduleNameMapper: { '^@nvx/(.*)$': '<rootDir>/packages/$1/src' },
  testPathIgnorePatterns: ['/node_modules/', '/dist/'],
  // a hang still fails; 5 s (jest's default) fails tests that start processes on a busy 2-core CI machine
  testTimeout: 60_000,
};
