"""An independent ICRC oracle: scapy's `scapy.contrib.roce` against frames rxe-wire emitted, and
rxe-wire against frames scapy built."""

import random
import struct
import subprocess

import pytest
from scapy.all import IP, UDP, Ether, IPv6, Raw, rdpcap, wrpcap
from scapy.contrib.roce import BTH

from conftest import linux_captures, parse_dump


def scapy_icrc(pkt) -> bytes:
    """The 4 ICRC bytes scapy computes for a parsed packet (little-endian, as on the wire)."""
    return pkt[BTH].compute_icrc(b"")


def test_scapy_oracle_agrees_with_linux_rxe():
    # The oracle must first reproduce the kernel's own ICRCs, or it proves nothing.
    checked = 0
    for path in linux_captures():
        for pkt in rdpcap(str(path)):
            if BTH not in pkt or b"hello-rxe" in bytes(pkt):
                continue
            assert scapy_icrc(pkt) == bytes(pkt)[-4:], f"{path.name}: {pkt.summary()}"
            checked += 1
    # Every RoCE frame of the captures (612 from the interop harness, 458 + 194 of ours).
    assert checked == 612 + 458 + 194


def test_every_frame_rxe_wire_emits_has_the_icrc_scapy_computes(samples_pcap):
    pkts = rdpcap(str(samples_pcap))
    assert len(pkts) > 150
    opcodes, versions, pads = set(), set(), set()
    for pkt in pkts:
        bth = pkt[BTH]
        assert scapy_icrc(pkt) == bytes(pkt)[-4:], pkt.summary()
        opcodes.add(bth.opcode)
        versions.add(6 if IPv6 in pkt else 4)
        pads.add(bth.padcount)
        # Lengths scapy reads must agree with the bytes.
        udp_len = pkt[UDP].len
        assert udp_len == len(pkt[UDP]), pkt.summary()
    assert versions == {4, 6}
    assert {0, 2, 3} <= pads
    # RC 25, UC 12, UD 2 opcodes.
    assert len(opcodes) == 39


def _ext(opcode: int, rng: random.Random) -> bytes:
    """Extension headers for an opcode, built by hand from the IBTA layout."""
    reth = lambda: struct.pack("!QII", rng.getrandbits(64), rng.getrandbits(32), rng.getrandbits(32))
    aeth = lambda: struct.pack("!I", (0x1F << 24) | rng.getrandbits(24))
    imm = lambda: struct.pack("!I", rng.getrandbits(32))
    deth = lambda: struct.pack("!II", rng.getrandbits(32), rng.getrandbits(24))
    op = opcode & 0x1F
    if opcode >= 0x60:  # UD SEND_ONLY [_WITH_IMMEDIATE]
        return deth() + (imm() if op == 5 else b"")
    table = {
        3: imm, 5: imm, 6: reth, 9: imm, 10: reth, 12: reth, 13: aeth, 15: aeth, 16: aeth, 17: aeth,
        22: lambda: struct.pack("!I", rng.getrandbits(32)), 23: lambda: struct.pack("!I", rng.getrandbits(32)),
    }
    if op == 11:
        return reth() + imm()
    if op == 18:
        return aeth() + struct.pack("!Q", rng.getrandbits(64))
    if op in (19, 20):
        return struct.pack("!QIQQ", rng.getrandbits(64), rng.getrandbits(32), rng.getrandbits(64), rng.getrandbits(64))
    return table[op]() if op in table else b""


NO_PAYLOAD = {12, 17, 18, 19, 20}
OPCODES = list(range(0, 0x15)) + [0x16, 0x17] + list(range(0x20, 0x2C)) + [0x64, 0x65]


@pytest.mark.parametrize("ipv6", [False, True])
def test_rxe_dump_verifies_frames_scapy_built(rxe, tmp_path, ipv6):
    rng = random.Random(4791 + ipv6)
    frames = []
    for opcode in OPCODES:
        payload_len = 0 if (opcode & 0x1F) in NO_PAYLOAD and opcode < 0x20 else rng.choice([0, 1, 7, 64, 333])
        pad = (4 - payload_len % 4) % 4
        bth = BTH(opcode=opcode, padcount=pad, dqpn=rng.getrandbits(24) | 2, psn=rng.getrandbits(24),
                  ackreq=rng.getrandbits(1), solicited=rng.getrandbits(1))
        body = _ext(opcode, rng) + bytes(rng.getrandbits(8) for _ in range(payload_len)) + b"\0" * pad
        ip = (IPv6(src="fe80::1", dst="fe80::2", tc=rng.getrandbits(8), fl=rng.getrandbits(20), hlim=64)
              if ipv6 else IP(src="10.0.0.1", dst="10.0.0.2", id=rng.getrandbits(16), flags="DF", ttl=64))
        # UDP checksum 0 as Linux rxe sends it (scapy would otherwise fill one in).
        frames.append(Ether(src="52:54:00:00:00:01", dst="52:54:00:00:00:02") / ip / UDP(sport=0xC000 | rng.getrandbits(14), dport=4791, chksum=0) / bth / Raw(body))
    path = tmp_path / "scapy.pcap"
    wrpcap(str(path), frames)
    run = subprocess.run([str(rxe), "dump", str(path)], capture_output=True, text=True)
    parsed, summary = parse_dump(run.stdout)
    assert run.returncode == 0, run.stdout + run.stderr
    n = len(OPCODES)
    assert summary == f"{n} frames, {n} roce, {n} icrc-ok, 0 icrc-bad, 0 malformed"
    for i, pkt in enumerate(frames, start=1):
        b = pkt[BTH]
        assert int(parsed[i]["qp"], 16) == b.dqpn
        assert int(parsed[i]["psn"], 16) == b.psn
        assert parsed[i]["ack"] == str(b.ackreq)

    # One flipped payload or header bit: that frame is reported BAD and the exit status is 1.
    raw = bytearray(bytes(frames[5]))
    raw[-6] ^= 0x10
    wrpcap(str(path), [Ether(bytes(raw))])
    run = subprocess.run([str(rxe), "dump", str(path)], capture_output=True, text=True)
    assert run.returncode == 1
    assert "icrc=BAD" in run.stdout
    assert run.stdout.strip().splitlines()[-1] == "1 frames, 1 roce, 0 icrc-ok, 1 icrc-bad, 0 malformed"
