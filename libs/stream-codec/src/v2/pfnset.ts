/**
 * A reusable set of pfns (52-bit numbers) for the duplicate-pfn check of one
 * PAGE_DATA record: open addressing with generation stamps, so starting a new
 * record is O(1) and nothing is allocated per record once the table is big enough.
 */
export class PfnSet {
  private keys = new Float64Array(0);
  private stamps = new Uint32Array(0);
  private mask = 0;
  private gen = 0;

  /** Empties the set and makes room for n entries at a load factor <= 1/2. */
  reset(n: number): void {
    let cap = 16;
    while (cap < n * 2) cap *= 2;
    if (cap > this.keys.length) {
      this.keys = new Float64Array(cap);
      this.stamps = new Uint32Array(cap);
      this.mask = cap - 1;
      this.gen = 0;
    }
    this.gen++;
    if (this.gen === 0xffffffff) {
      this.stamps.fill(0);
      this.gen = 1;
    }
  }

  /** Adds (hi, lo) (pfn = hi * 2^32 + lo, hi < 2^20); false when it was already there. */
  add(hi: number, lo: number): boolean {
    const key = hi * 0x1_0000_0000 + lo;
    let i = (Math.imul(lo ^ Math.imul(hi, 0x27d4eb2d), 0x9e3779b1) >>> 0) & this.mask;
    for (;;) {
      if (this.stamps[i] !== this.gen) {
        this.stamps[i] = this.gen;
        this.keys[i] = key;
        return true;
      }
      if (this.keys[i] === key) return false;
      i = (i + 1) & this.mask;
    }
  }
}
