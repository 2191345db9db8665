#!/usr/bin/env python
# Writes a small legacy (pre-v2) HVM save image, the input Xen's
# convert-legacy-stream turns into the golden v2 streams. Layout (legacy format,
# toolstack word size W = 4 or 8): p2m_size (W); page batches (i32 count, count
# pfns (W), pages); CHUNK_end (i32 0); magic pfns io, bufio, store (3 x u64);
# HVM context (u32 size + blob); qemu record ("DeviceModelRecord0002", u32 size, data).
# Optionally preceded by an xl header (mandatory flags 0 = legacy stream).
import struct, sys

def main():
    width = int(sys.argv[1])          # 32 or 64
    with_xl = len(sys.argv) > 2 and sys.argv[2] == "xl"
    ul = "<I" if width == 32 else "<Q"
    out = []
    if with_xl:
        config = b'{"c_info": {"type": "hvm", "name": "golden"}}\0'
        opt = struct.pack("<I", len(config)) + config
        out.append(b"Xen saved domain, xl format\n \0 \r" + struct.pack("<IIII", 0x01020304, 1, 0, len(opt)) + opt)
    out.append(struct.pack(ul, 0x100))                     # p2m_size
    pfns = [0, 0xf0000000 | 3]                             # one page, one XTAB entry (dropped by the converter)
    out.append(struct.pack("<i", len(pfns)))
    out.append(b"".join(struct.pack(ul, p) for p in pfns))
    for i, p in enumerate(pfns):
        if p & 0xf0000000 == 0:
            out.append(bytes(bytearray([(i * 17 + j) & 0xff for j in range(4096)])))
    out.append(struct.pack("<i", 0))                       # CHUNK_end
    out.append(struct.pack("<QQQ", 0xfeffe, 0xfeffd, 0xfeffc))
    ctx = struct.pack("<HHI", 1, 0, 24) + b"\x86\x12\x38\x54" + b"\0" * 20
    ctx += struct.pack("<HHI", 2, 0, 64) + b"\0" * 64
    ctx += struct.pack("<HHI", 0, 0, 0)
    out.append(struct.pack("<I", len(ctx)) + ctx)
    qemu = b"QEVM" + struct.pack(">I", 3) + b"\x1f"
    out.append(b"DeviceModelRecord0002" + struct.pack("<I", len(qemu)) + qemu)
    getattr(sys.stdout, "buffer", sys.stdout).write(b"".join(out))

main()
