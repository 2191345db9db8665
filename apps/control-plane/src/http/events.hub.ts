import { Inject, Injectable, Logger, type OnModuleDestroy } from '@nestjs/common';
import type Redis from 'ioredis';
import { Observable, Subject } from 'rxjs';
import type { FerryEvent } from '@ferry/contracts';
import { RedisStateLog } from '@ferry/queue';
import { REDIS } from '../config';
import { RedisKeys } from '../core/repos';

export interface SseMessage {
  id: string;
  type: string;
  data: FerryEvent | { hello: true; at: string };
}

function toEvent(id: string, fields: string[]): FerryEvent | null {
  const i = fields.indexOf('e');
  if (i < 0) return null;
  try {
    return { id, ...(JSON.parse(fields[i + 1] ?? '') as Omit<FerryEvent, 'id'>) };
  } catch {
    return null;
  }
}

/** One XREAD loop per replica over the Redis event stream, fanned out to every SSE client. */
@Injectable()
export class EventsHub implements OnModuleDestroy {
  private readonly log = new Logger('events');
  private readonly subject = new Subject<FerryEvent>();
  private reader: Redis | null = null;
  private loop: Promise<void> | null = null;
  private stopped = false;
  private subscribers = 0;

  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    private readonly k: RedisKeys,
    private readonly redisState: RedisStateLog,
  ) {}

  private start(): void {
    if (this.reader || this.stopped) return;
    this.reader = this.redisState.watch(this.redis.duplicate());
    const reader = this.reader;
    this.loop = (async () => {
      let last = '$';
      while (!this.stopped) {
        try {
          const res = (await reader.xread('COUNT', 500, 'BLOCK', 1000, 'STREAMS', this.k.events(), last)) as [string, [string, string[]][]][] | null;
          for (const [, entries] of res ?? []) {
            for (const [id, fields] of entries) {
              last = id;
              const e = toEvent(id, fields);
              if (e) this.subject.next(e);
            }
          }
        } catch (e) {
          if (this.stopped) break;
          this.log.warn(`xread: ${e instanceof Error ? e.message : String(e)}`);
          await new Promise((r) => setTimeout(r, 500));
        }
      }
    })();
  }

  /** Live events, preceded by the backlog after `lastEventId` (SSE Last-Event-ID) when given. */
  stream(lastEventId: string | undefined, filter: (e: FerryEvent) => boolean): Observable<SseMessage> {
    return new Observable<SseMessage>((sub) => {
      this.subscribers++;
      this.start();
      let cursor = lastEventId ?? '';
      const buffered: FerryEvent[] = [];
      let replaying = !!lastEventId;
      const emit = (e: FerryEvent) => {
        if (cursor && compareIds(e.id, cursor) <= 0) return;
        cursor = e.id;
        if (filter(e)) sub.next({ id: e.id, type: e.type, data: e });
      };
      const s = this.subject.subscribe((e) => (replaying ? buffered.push(e) : emit(e)));
      if (lastEventId) {
        this.redis
          .xrange(this.k.events(), `(${lastEventId}`, '+', 'COUNT', 5000)
          .then((entries) => {
            for (const [id, fields] of entries) {
              const e = toEvent(id, fields);
              if (e) emit(e);
            }
          })
          .catch(() => undefined)
          .finally(() => {
            replaying = false;
            for (const e of buffered.splice(0)) emit(e);
          });
      }
      sub.next({ id: '0-0', type: 'hello', data: { hello: true, at: new Date().toISOString() } });
      return () => {
        s.unsubscribe();
        this.subscribers--;
      };
    });
  }

  async onModuleDestroy(): Promise<void> {
    this.stopped = true;
    this.subject.complete();
    this.reader?.disconnect();
    await this.loop?.catch(() => undefined);
  }
}

function compareIds(a: string, b: string): number {
  const [am, as] = a.split('-').map(Number);
  const [bm, bs] = b.split('-').map(Number);
  return (am ?? 0) - (bm ?? 0) || (as ?? 0) - (bs ?? 0);
}
