/**
 * Server-sent events over fetch(): EventSource cannot send an Authorization header, so the
 * dashboard reads GET /v1/events as a stream and parses it here. Reconnects (with
 * Last-Event-ID) only when the connection drops; there is no polling.
 */
import { SseParser, type SseMessage } from '@ferry/contracts';

export type { SseMessage };
export type SseStatus = 'connecting' | 'live' | 'reconnecting' | 'unauthorized';

export interface SseOptions {
  url: string;
  token: string;
  onMessage: (m: SseMessage) => void;
  onStatus: (s: SseStatus, detail?: string) => void;
  /** Called after every (re)connect, before events flow: reload snapshots. */
  onOpen?: () => Promise<void> | void;
}

/** Keeps one SSE connection open until stop() is called. */
export function connectSse(opts: SseOptions): { stop: () => void } {
  let stopped = false;
  let ctrl: AbortController | null = null;
  let lastId: string | undefined;
  let backoff = 500;
  let timer: ReturnType<typeof setTimeout> | undefined;

  const run = async (): Promise<void> => {
    ctrl = new AbortController();
    opts.onStatus(lastId === undefined ? 'connecting' : 'reconnecting');
    const headers: Record<string, string> = { Authorization: `Bearer ${opts.token}`, Accept: 'text/event-stream' };
    if (lastId !== undefined) headers['Last-Event-ID'] = lastId;
    const res = await fetch(opts.url, { headers, signal: ctrl.signal, cache: 'no-store' });
    if (res.status === 401 || res.status === 403) {
      opts.onStatus('unauthorized', `${res.status}`);
      stopped = true;
      return;
    }
    if (!res.ok || !res.body) throw new Error(`GET ${opts.url}: ${res.status}`);
    await opts.onOpen?.();
    opts.onStatus('live');
    backoff = 500;
    const parser = new SseParser();
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      for (const m of parser.push(value)) {
        if (m.id !== undefined) lastId = m.id;
        opts.onMessage(m);
      }
      if (parser.retryMs !== undefined) backoff = parser.retryMs;
    }
  };

  const loop = (): void => {
    if (stopped) return;
    run().then(
      () => schedule(),
      (e: unknown) => {
        if (stopped) return;
        opts.onStatus('reconnecting', e instanceof Error ? e.message : String(e));
        schedule();
      },
    );
  };
  const schedule = (): void => {
    if (stopped) return;
    opts.onStatus('reconnecting');
    timer = setTimeout(loop, backoff);
    backoff = Math.min(backoff * 2, 10_000);
  };
  loop();
  return {
    stop: () => {
      stopped = true;
      if (timer) clearTimeout(timer);
      ctrl?.abort();
    },
  };
}
