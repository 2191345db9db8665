/**
 * Fixed-width field access over the caller's bytes through DataView, in either
 * byte order, without copying. 64-bit fields come back as numbers when they fit
 * in 2^53 (`u64`) or as bigint (`u64big`); pfn-style fields are split into halves.
 */
export type ByteOrder = 'little' | 'big';

/** Whether this host stores numbers little-endian (typed arrays then read little-endian streams as they are). */
export const LITTLE_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export function viewOf(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

const TWO32 = 0x1_0000_0000;

/** A cursor over one buffer; `base` is the absolute stream offset of b[0], for error messages. */
export class Cursor {
  readonly dv: DataView;
  pos = 0;
  constructor(
    readonly bytes: Uint8Array,
    readonly le: boolean,
    readonly base = 0,
  ) {
    this.dv = viewOf(bytes);
  }
  get remaining(): number {
    return this.bytes.byteLength - this.pos;
  }
  get absolute(): number {
    return this.base + this.pos;
  }
  u8(): number {
    return this.dv.getUint8(this.pos++);
  }
  u16(): number {
    const v = this.dv.getUint16(this.pos, this.le);
    this.pos += 2;
    return v;
  }
  u32(): number {
    const v = this.dv.getUint32(this.pos, this.le);
    this.pos += 4;
    return v;
  }
  i32(): number {
    const v = this.dv.getInt32(this.pos, this.le);
    this.pos += 4;
    return v;
  }
  /** A 64-bit field as a number; exact below 2^53 (callers check `u64big` when it may be larger). */
  u64(): number {
    const a = this.dv.getUint32(this.pos, this.le);
    const b = this.dv.getUint32(this.pos + 4, this.le);
    this.pos += 8;
    return this.le ? b * TWO32 + a : a * TWO32 + b;
  }
  u64big(): bigint {
    const v = this.dv.getBigUint64(this.pos, this.le);
    this.pos += 8;
    return v;
  }
  bytesView(n: number): Uint8Array {
    const v = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }
}

/** Writes fixed-width fields into a fresh buffer. */
export class Writer {
  readonly bytes: Uint8Array;
  readonly dv: DataView;
  pos = 0;
  constructor(
    size: number,
    readonly le: boolean,
  ) {
    this.bytes = new Uint8Array(size);
    this.dv = viewOf(this.bytes);
  }
  u8(v: number): this {
    this.dv.setUint8(this.pos++, v);
    return this;
  }
  u16(v: number): this {
    this.dv.setUint16(this.pos, v, this.le);
    this.pos += 2;
    return this;
  }
  u32(v: number): this {
    this.dv.setUint32(this.pos, v >>> 0, this.le);
    this.pos += 4;
    return this;
  }
  i32(v: number): this {
    this.dv.setInt32(this.pos, v, this.le);
    this.pos += 4;
    return this;
  }
  u64(v: number | bigint): this {
    this.dv.setBigUint64(this.pos, BigInt(v), this.le);
    this.pos += 8;
    return this;
  }
  /** Writes a 64-bit value given as its high and low 32-bit halves. */
  u64hl(hi: number, lo: number): this {
    if (this.le) {
      this.dv.setUint32(this.pos, lo >>> 0, true);
      this.dv.setUint32(this.pos + 4, hi >>> 0, true);
    } else {
      this.dv.setUint32(this.pos, hi >>> 0, false);
      this.dv.setUint32(this.pos + 4, lo >>> 0, false);
    }
    this.pos += 8;
    return this;
  }
  raw(b: Uint8Array): this {
    this.bytes.set(b, this.pos);
    this.pos += b.byteLength;
    return this;
  }
  zero(n: number): this {
    this.pos += n;
    return this;
  }
}

export function padTo8(n: number): number {
  return (8 - (n & 7)) & 7;
}

export const ascii = {
  encode(s: string): Uint8Array {
    const out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0xff;
    return out;
  },
  decode(b: Uint8Array): string {
    let s = '';
    for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]!);
    return s;
  },
};

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}
