export * from './contracts';
export * from './diff';
export * from './corpus';
export * from './arbitraries-cpuid';
export * from './workloads-cpuid';
