/** Deterministic stream mutations shared by the mutation test and the Xen differential (tools/golden). */
const INTERESTING = [0, 1, 7, 8, 0x7f, 0x80, 0xff, 0xffff, 0x7fffffff, 0x80000000, 0xfffffff8, 0xffffffff, 4096, 4104];

export function mutate(b: Uint8Array, r: () => number): Uint8Array {
  const pos = Math.floor(r() * b.byteLength);
  const kind = Math.floor(r() * 6);
  switch (kind) {
    case 0: {
      const m = b.slice();
      m[pos] = Math.floor(r() * 256);
      return m;
    }
    case 1: {
      const m = b.slice();
      for (let k = 0; k < 4; k++) {
        const at = Math.floor(r() * m.byteLength);
        m[at] = m[at]! ^ (1 << Math.floor(r() * 8));
      }
      return m;
    }
    case 2: {
      const m = b.slice();
      const p = pos & ~3;
      if (p + 4 <= m.byteLength) new DataView(m.buffer).setUint32(p, INTERESTING[Math.floor(r() * INTERESTING.length)]!, r() < 0.5);
      return m;
    }
    case 3:
      return b.slice(0, pos); // truncation
    case 4: {
      const n = 1 + Math.floor(r() * 16);
      const m = new Uint8Array(b.byteLength + n);
      m.set(b.subarray(0, pos));
      m.set(b.subarray(pos), pos + n);
      return m; // insertion (zeros)
    }
    default: {
      const n = 1 + Math.floor(r() * 16);
      const tail = b.subarray(Math.min(b.byteLength, pos + n));
      const m = new Uint8Array(pos + tail.byteLength);
      m.set(b.subarray(0, pos));
      m.set(tail, pos);
      return m; // deletion
    }
  }
}

