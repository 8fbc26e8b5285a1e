import * as errors from './errors';
import * as events from './events';
import * as outcome from './outcome';
import * as header from './header';
import * as validate from './validate';
import * as binary from './binary';
import * as text from './text';
import * as io from './io';
import * as atomic from './atomic';
import * as shape from './shape';
import * as readfile from './readfile';
// The TypeScript compiler's CommonJS output re-exports `export *` as one
// getter per name, run on every use of the name through this index; the
// lockstep and the fuzz loop use such names on every event. Copying the names
// first makes them plain properties (`export *` leaves a name the index
// already has alone); every binding here is a constant.
Object.assign(exports, errors, events, outcome, header, validate, binary, text, io, atomic, shape, readfile);
export * from './errors';
export * from './events';
export * from './outcome';
export * from './header';
export * from './validate';
export * from './binary';
export * from './text';
export * from './io';
export * from './atomic';
export * from './shape';
export * from './readfile';
