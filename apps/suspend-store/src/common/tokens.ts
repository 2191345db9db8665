/** Injection tokens for values that are not classes. */
export const STORE_CONFIG = Symbol('STORE_CONFIG');
