import { describe, expect, it } from 'vitest';
import { decodeOffsetCursor, encodeOffsetCursor, nextOffsetCursor } from './page';
import { PROBLEM_KINDS, PROBLEM_KIND_NAMES, problem, problemKindForStatus, problemSchema, problemType, wwwAuthenticate } from './problem';

describe('problem details', () => {
  it('every kind has a stable type URI, its status and title; bodies validate', () => {
    for (const k of PROBLEM_KIND_NAMES) {
      const p = problem(k, 'first line\nsecond line', '/v1/x');
      expect(problemSchema.strict().parse(p)).toEqual({ type: problemType(k), title: PROBLEM_KINDS[k].title, status: PROBLEM_KINDS[k].status, detail: 'first line', instance: '/v1/x' });
    }
    expect(problemType('not-found')).toBe('https://ferry.dev/problems/not-found');
    expect(new Set(PROBLEM_KIND_NAMES.map(problemType)).size).toBe(PROBLEM_KIND_NAMES.length);
  });
  it('a bare status maps to its generic kind', () => {
    expect(problemKindForStatus(400)).toBe('bad-request');
    expect(problemKindForStatus(409)).toBe('conflict');
    expect(problemKindForStatus(422)).toBe('unprocessable');
    expect(problemKindForStatus(418)).toBe('bad-request');
    expect(problemKindForStatus(507)).toBe('internal');
  });
  it('WWW-Authenticate names invalid_token only when a token was given', () => {
    expect(wwwAuthenticate('ferry', false)).toBe('Bearer realm="ferry"');
    expect(wwwAuthenticate('ferry', true)).toBe('Bearer realm="ferry", error="invalid_token"');
  });
});

describe('cursors', () => {
  it('round-trip, end with null, and refuse what was not handed out', () => {
    for (const n of [0, 1, 49, 50, 123_456]) expect(decodeOffsetCursor(encodeOffsetCursor(n))).toBe(n);
    expect(nextOffsetCursor(0, 50, 120)).toBe(encodeOffsetCursor(50));
    expect(nextOffsetCursor(100, 20, 120)).toBeNull();
    expect(nextOffsetCursor(0, 0, 5)).toBeNull();
    for (const bad of ['', 'zzz', 'c', 'c-1', 'C10', 'c1234567', 'o10']) expect(decodeOffsetCursor(bad), bad).toBeNull();
  });
});
