export * from './toolstack';
export * from './migration';
export * from './jobs';
export * from './agent';
export * from './api';
export * from './checkpoints';
export * from './client';
export * from './sse';
