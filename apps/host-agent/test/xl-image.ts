/**
 * A small real v2 migration stream as `xl migrate` sends it: the xl header with the domain config,
 * the libxl stream, and libxc page data in pre-copy rounds (the first round every page, later rounds
 * re-send the first batches, as pages dirtied meanwhile), then the records after memory and END.
 */
import { REC, encodeV2, synthStream, type V2Item } from '@ferry/stream-codec';

export async function xlMigrationImage(o: { pages?: number; batch?: number; rounds?: number } = {}): Promise<Buffer> {
  const items = [...synthStream({ guest: 'pv', framing: 'xl', pages: o.pages ?? 600, batch: o.batch ?? 100, vcpus: 2 })];
  const isPages = (it: V2Item): boolean => it.kind === 'libxc-record' && it.type === REC.PAGE_DATA;
  const first = items.findIndex(isPages);
  let end = first;
  while (isPages(items[end]!)) end++;
  const extra: V2Item[] = [];
  for (let r = 2; r <= (o.rounds ?? 3); r++) extra.push(...items.slice(first, first + Math.max(1, 4 - r)));
  items.splice(end, 0, ...extra);
  const parts: Buffer[] = [];
  for await (const c of encodeV2(items)) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}
