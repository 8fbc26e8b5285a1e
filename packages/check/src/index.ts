export * from './contracts';
export * from './diff';
export * from './corpus';
