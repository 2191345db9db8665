export * from './errors';
export * from './source';
export * from './bytes';
export { StreamReader } from './reader';
export * from './v2/constants';
export * from './v2/frame';
