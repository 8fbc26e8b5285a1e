export * from './errors';
export * from './events';
export * from './outcome';
export * from './header';
export * from './validate';
export * from './binary';
export * from './text';
export * from './io';
