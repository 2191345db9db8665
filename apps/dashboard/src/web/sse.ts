/**
 * Server-sent events over fetch(): EventSource cannot send an Authorization header, so the
 * dashboard reads GET /v1/events as a stream and parses it here. Reconnects (with
 * Last-Event-ID) only when the connection drops; there is no polling.
 */
export interface SseMessage {
  id: string | undefined;
  event: string;
  data: string;
}

/** Incremental text/event-stream parser (the WHATWG rules: fields, comments, CR/LF/CRLF). */
export class SseParser {
  private buf = '';
  private data: string[] = [];
  private event = '';
  private id: string | undefined;
  lastEventId: string | undefined;
  retryMs: number | undefined;

  push(text: string): SseMessage[] {
    this.buf += text;
    const out: SseMessage[] = [];
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.buf);
      if (!m) break;
      // A lone CR at the very end may be the first half of CRLF: wait for more.
      if (m[0] === '\r' && m.index === this.buf.length - 1) break;
      const line = this.buf.slice(0, m.index);
      this.buf = this.buf.slice(m.index + m[0].length);
      this.line(line, out);
    }
    return out;
  }

  private line(line: string, out: SseMessage[]): void {
    if (line === '') {
      if (this.data.length > 0) {
        if (this.id !== undefined) this.lastEventId = this.id;
        out.push({ id: this.id ?? this.lastEventId, event: this.event || 'message', data: this.data.join('\n') });
      }
      this.data = [];
      this.event = '';
      this.id = undefined;
      return;
    }
    if (line.startsWith(':')) return;
    const i = line.indexOf(':');
    const field = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? '' : line.slice(i + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this.data.push(value);
    else if (field === 'event') this.event = value;
    else if (field === 'id' && !value.includes('\0')) this.id = value;
    else if (field === 'retry' && /^\d+$/.test(value)) this.retryMs = Number(value);
  }
}

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
