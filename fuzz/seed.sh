#!/usr/bin/env bash
# Writes every frame of every ../rxe-wire/tests/data/*.pcap as one seed file in
# corpus/wire_parse/ (named <capture>-<frame number>), for `cargo fuzz run wire_parse`, and every
# CM MAD among them in corpus/cm/ for `cargo fuzz run cm`, and runs of frames in
# corpus/kernel_port/ (each with a length and a mode byte) for `cargo fuzz run kernel_port`.
# Also seeds corpus/wire_parse/ with the IP packet and the UDP payload of the first frames, so the
# RoceV2Repr and RoceRepr entry points start from valid input as well.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

out=corpus/wire_parse
mkdir -p "$out" corpus/cm corpus/kernel_port
python3 - ../rxe-wire/tests/data "$out" corpus/cm corpus/kernel_port <<'PY'
import glob, os, struct, sys

data_dir, out, cm_out, kp_out = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
cm = 0
files = sorted(glob.glob(os.path.join(data_dir, "*.pcap")))
if not files:
    sys.exit(f"seed.sh: no .pcap in {data_dir}")
total = 0
for path in files:
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 24:
        sys.exit(f"seed.sh: {path}: short pcap header")
    magic = blob[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        sys.exit(f"seed.sh: {path}: not a classic pcap (magic {magic.hex()})")
    linktype = struct.unpack_from(endian + "I", blob, 20)[0]
    if linktype != 1:
        sys.exit(f"seed.sh: {path}: link type {linktype}, expected Ethernet (1)")
    name = os.path.splitext(os.path.basename(path))[0]
    off, n = 24, 0
    while off + 16 <= len(blob):
        incl_len = struct.unpack_from(endian + "I", blob, off + 8)[0]
        frame = blob[off + 16 : off + 16 + incl_len]
        if len(frame) != incl_len:
            sys.exit(f"seed.sh: {path}: record {n} truncated")
        off += 16 + incl_len
        n += 1
        with open(os.path.join(out, f"{name}-{n:04d}"), "wb") as s:
            s.write(frame)
        # kernel_port: runs of up to 8 frames (2-byte length, mode 3: aimed at the port, ICRC
        # fixed), one seed per run.
        if n % 8 == 1:
            run_file = open(os.path.join(kp_out, f"{name}-{n:04d}"), "wb")
        run_file.write(struct.pack("<H", len(frame)) + b"\x03" + frame)
        if n % 8 == 0:
            run_file.close()
        # CM MADs (IPv4, UD SEND_ONLY to QP1) seed the cm target.
        if frame[12:14] == b"\x08\x00" and len(frame) >= 42 + 20 + 256:
            bth = frame[42:54]
            if bth[0] == 0x64 and bth[5:8] == b"\x00\x00\x01":
                cm += 1
                with open(os.path.join(cm_out, f"{name}-{n:04d}"), "wb") as s:
                    s.write(frame[42 + 20 : 42 + 20 + 256])
        # The IP packet and the UDP payload of the first few frames (untagged Ethernet only).
        if n <= 4 and len(frame) >= 14 + 40 + 8:
            ethertype = frame[12:14]
            ip = frame[14:]
            ip_len = {b"\x08\x00": 20, b"\x86\xdd": 40}.get(ethertype)
            if ip_len == 20:
                ip = ip[: struct.unpack_from(">H", ip, 2)[0]]  # drop Ethernet padding
            elif ip_len == 40:
                ip = ip[: 40 + struct.unpack_from(">H", ip, 4)[0]]
            if ip_len is not None and len(ip) > ip_len + 8:
                with open(os.path.join(out, f"{name}-{n:04d}-ip"), "wb") as s:
                    s.write(ip)
                with open(os.path.join(out, f"{name}-{n:04d}-udp"), "wb") as s:
                    s.write(ip[ip_len + 8 :])
    if n % 8 != 0:
        run_file.close()
    total += n
print(f"seed.sh: {total} frames from {len(files)} captures in fuzz/{out}/, {cm} CM MADs in fuzz/{cm_out}/")
PY
