import { describe, expect, it } from 'vitest';
import { NO_INCREMENTAL_MARKING, SINGLE_THREADED_GC, dataPathNodeFlags } from './gc';

const SMALL = [SINGLE_THREADED_GC, NO_INCREMENTAL_MARKING];

describe('data-path GC flags (FERRY_NODE_GC)', () => {
  it('auto: single-threaded, non-incremental GC on hosts with at most 4 CPUs, V8 default above', () => {
    expect(dataPathNodeFlags({}, 2)).toEqual(SMALL);
    expect(dataPathNodeFlags({ FERRY_NODE_GC: 'auto' }, 4)).toEqual(SMALL);
    expect(dataPathNodeFlags({}, 16)).toEqual([]);
  });
  it('single and parallel force it either way; anything else is refused naming the variable', () => {
    expect(dataPathNodeFlags({ FERRY_NODE_GC: 'single' }, 64)).toEqual(SMALL);
    expect(dataPathNodeFlags({ FERRY_NODE_GC: 'parallel' }, 2)).toEqual([]);
    expect(() => dataPathNodeFlags({ FERRY_NODE_GC: 'fast' }, 2)).toThrow(/FERRY_NODE_GC: must be auto, single or parallel/);
  });
});
