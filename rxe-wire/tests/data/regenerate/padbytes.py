#!/usr/bin/env python3
"""For every RoCEv2 frame with BTH PadCnt != 0: print opcode, PadCnt, payload length,
the last payload bytes and the pad bytes (the PadCnt bytes right before the 4-byte ICRC).
Usage: padbytes.py F.pcap [...]"""
import struct, sys

EXT = {  # extra header bytes after BTH, by opcode (only the ones that can carry data)
    0: 0, 1: 0, 2: 0, 3: 4, 4: 0, 5: 4, 6: 16, 7: 0, 8: 0, 9: 4, 10: 16, 11: 20,
    13: 4, 14: 0, 15: 4, 16: 4, 22: 4, 23: 4,
    32: 0, 33: 0, 34: 0, 35: 4, 36: 0, 37: 4, 38: 16, 39: 0, 40: 0, 41: 4, 42: 16, 43: 20,
    100: 8, 101: 12,
}
NAMES = {0: "SEND_FIRST", 2: "SEND_LAST", 4: "SEND_ONLY", 6: "WRITE_FIRST", 8: "WRITE_LAST",
         10: "WRITE_ONLY", 13: "READ_RESP_FIRST", 14: "READ_RESP_MIDDLE", 15: "READ_RESP_LAST",
         16: "READ_RESP_ONLY", 100: "UD_SEND_ONLY"}

def frames(path):
    data = open(path, "rb").read()
    e = "<" if struct.unpack("<I", data[:4])[0] in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    off, n = 24, 0
    while off + 16 <= len(data):
        incl = struct.unpack(e + "IIII", data[off:off + 16])[2]
        off += 16; n += 1
        yield n, data[off:off + incl]
        off += incl

def l4_of(fr):
    et = struct.unpack(">H", fr[12:14])[0]; p = fr[14:]
    if et == 0x0800:
        ihl = (p[0] & 15) * 4
        return p[ihl:struct.unpack(">H", p[2:4])[0]]
    if et == 0x86DD:
        return p[40:40 + struct.unpack(">H", p[4:6])[0]]
    return None

total = nonzero = 0
for path in sys.argv[1:]:
    for n, fr in frames(path):
        l4 = l4_of(fr)
        if l4 is None or struct.unpack(">H", l4[2:4])[0] != 4791:
            continue
        bth = l4[8:20]; op = bth[0]; pad = (bth[1] >> 4) & 3
        if pad == 0:
            continue
        body = l4[20:-4]                 # after BTH, before ICRC
        hdr = EXT.get(op, 0)
        payload = body[hdr:len(body) - pad]
        padb = body[len(body) - pad:]
        total += 1
        if any(padb):
            nonzero += 1
        print(f"{path.split('/')[-1]} #{n}: op {op} {NAMES.get(op, '')} padcnt {pad} "
              f"payload {len(payload)} B (+{pad} pad = {len(payload) + pad}, %4 = {(len(payload) + pad) % 4}) "
              f"tail {payload[-4:].hex(' ')} | pad {padb.hex(' ')}")
print(f"frames with PadCnt != 0: {total}; with any non-zero pad byte: {nonzero}")
