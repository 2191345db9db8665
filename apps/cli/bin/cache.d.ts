/** Types of cache.js (plain JavaScript: the TypeScript loader needs it before any TypeScript runs). */
export function fnv(text: string): string;
export function cacheDirs(name: string, override?: string): Generator<string, void, undefined>;
