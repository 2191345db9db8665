/**
 * The one pagination style of every collection: `?limit=&cursor=` (plus the collection's filters)
 * and `{ items, nextCursor }` in the body; `nextCursor` is null on the last page. A cursor is opaque
 * to clients: pass back exactly what the previous page returned. The control plane's pages also
 * carry `total`; the suspend-store's do not (its backends cannot count cheaply).
 */
import { z } from 'zod';

export interface Page<T> {
  items: T[];
  /** Pass as `cursor` to get the next page; null when this is the last one. */
  nextCursor: string | null;
  limit: number;
  /** How many items match the filters in all. */
  total: number;
}

const CURSOR_RE = /^c([0-9a-z]{1,6})$/;

/** The control plane's cursors: a position in a newest-first index, opaque to clients. */
export function encodeOffsetCursor(offset: number): string {
  return `c${offset.toString(36)}`;
}

export function decodeOffsetCursor(cursor: string): number | null {
  const m = CURSOR_RE.exec(cursor);
  return m ? parseInt(m[1]!, 36) : null;
}

/** The cursor after `offset + count` items of `total`, or null at the end. */
export function nextOffsetCursor(offset: number, count: number, total: number): string | null {
  return offset + count < total && count > 0 ? encodeOffsetCursor(offset + count) : null;
}

/** `limit` and `cursor`, the query parameters every collection takes (with its own filters). */
export const cursorPageQuery = {
  limit: z.coerce.number().int('must be an integer').min(1, 'must be >= 1').max(500, 'must be <= 500').default(50).describe('items per page, 1-500'),
  cursor: z.string().min(1).max(200).regex(/^[A-Za-z0-9_-]+$/, 'must be a nextCursor of a previous page').optional().describe('nextCursor of the previous page'),
};
