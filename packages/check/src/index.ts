export * from './contracts';
export * from './diff';
