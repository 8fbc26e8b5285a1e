/** Tests run from TypeScript sources through swc; `npm run typecheck` does the type checking. */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/packages', '<rootDir>/tools'],
  testMatch: ['**/test/**/*.test.ts'],
  transform: { '^.+\\.tsx?$': ['@swc/jest', { jsc: { target: 'es2022', parser: { syntax: 'typescript' } } }] },
  moduleNameMapper: { '^@nvx/(.*)$': '<rootDir>/packages/$1/src' },
  testPathIgnorePatterns: ['/node_modules/', '/dist/'],
};
