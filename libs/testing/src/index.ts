export * from './s3';
export * from './proc';
export * from './real-xen';
