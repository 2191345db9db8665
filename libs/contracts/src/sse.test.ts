import { describe, expect, it } from 'vitest';
import { SseParser } from './sse';

describe('SseParser', () => {
  it('parses events split across chunks, with ids, types and multi-line data', () => {
    const p = new SseParser();
    expect(p.push('id: 1-0\nevent: migration.progress\nda')).toEqual([]);
    const got = p.push('ta: {"a":1}\n\n: comment\nid: 1-1\ndata: x\ndata: y\n\n');
    expect(got).toEqual([
      { id: '1-0', event: 'migration.progress', data: '{"a":1}' },
      { id: '1-1', event: 'message', data: 'x\ny' },
    ]);
    expect(p.lastEventId).toBe('1-1');
  });
  it('handles CRLF, a CR split from its LF, and retry', () => {
    const p = new SseParser();
    expect(p.push('retry: 2500\r\ndata: a\r')).toEqual([]);
    expect(p.push('\n\r\n')).toEqual([{ id: undefined, event: 'message', data: 'a' }]);
    expect(p.retryMs).toBe(2500);
  });
  it('ignores events without data', () => {
    const p = new SseParser();
    expect(p.push('event: x\n\n')).toEqual([]);
  });
});
