"""Wireshark's RoCE dissector (tshark) decodes what rxe-wire emits, with the same field values that
`rxe dump` prints, and without malformed-packet or expert errors in the RoCE headers."""

import os
import shutil
import subprocess

import pytest

from conftest import linux_captures, parse_dump

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed (.ci/run installs it)")

# IBTA opcode numbers -> the names `rxe dump` prints (written out here, independently of rxe-wire).
_OPS = ["SEND_FIRST", "SEND_MIDDLE", "SEND_LAST", "SEND_LAST_WITH_IMMEDIATE", "SEND_ONLY",
        "SEND_ONLY_WITH_IMMEDIATE", "RDMA_WRITE_FIRST", "RDMA_WRITE_MIDDLE", "RDMA_WRITE_LAST",
        "RDMA_WRITE_LAST_WITH_IMMEDIATE", "RDMA_WRITE_ONLY", "RDMA_WRITE_ONLY_WITH_IMMEDIATE"]
_RC_ONLY = {12: "RDMA_READ_REQUEST", 13: "RDMA_READ_RESPONSE_FIRST", 14: "RDMA_READ_RESPONSE_MIDDLE",
            15: "RDMA_READ_RESPONSE_LAST", 16: "RDMA_READ_RESPONSE_ONLY", 17: "ACKNOWLEDGE",
            18: "ATOMIC_ACKNOWLEDGE", 19: "COMPARE_SWAP", 20: "FETCH_ADD", 22: "SEND_LAST_WITH_INVALIDATE",
            23: "SEND_ONLY_WITH_INVALIDATE", 28: "FLUSH", 29: "ATOMIC_WRITE"}
OPCODE_NAMES = {i: "RC_" + n for i, n in enumerate(_OPS)}
OPCODE_NAMES.update({k: "RC_" + v for k, v in _RC_ONLY.items()})
OPCODE_NAMES.update({0x20 + i: "UC_" + n for i, n in enumerate(_OPS)})
OPCODE_NAMES.update({0x64: "UD_SEND_ONLY", 0x65: "UD_SEND_ONLY_WITH_IMMEDIATE"})
# Wireshark 4.0 predates FLUSH and ATOMIC WRITE: it shows "Unknown OpCode" and decodes only the BTH.
UNKNOWN_TO_WIRESHARK_4_0 = {28, 29}

FIELDS = ["frame.number", "ipv6.version", "udp.checksum", "infiniband.bth.opcode", "infiniband.bth.destqp",
          "infiniband.bth.psn", "infiniband.bth.a", "infiniband.bth.se", "infiniband.bth.padcnt",
          "infiniband.reth.va", "infiniband.reth.r_key", "infiniband.reth.dmalen", "infiniband.aeth.syndrome",
          "infiniband.aeth.msn", "infiniband.deth.q_key", "infiniband.deth.srcqp", "infiniband.immdt",
          "infiniband.ieth", "infiniband.atomiceth.swapdt", "infiniband.atomiceth.cmpdt",
          "infiniband.atomicacketh.origremdt", "_ws.malformed", "_ws.expert.message"]


def tshark_fields(pcap, *extra):
    cmd = ["tshark", "-n", "-r", str(pcap), *extra, "-T", "fields", "-E", "separator=\t", "-E", "occurrence=f"]
    for f in FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = {}
    for line in out.splitlines():
        cols = line.split("\t")
        rows[int(cols[0])] = dict(zip(FIELDS, cols))
    return rows


def rxe_dump(rxe, pcap):
    run = subprocess.run([str(rxe), "dump", str(pcap)], capture_output=True, text=True)
    frames, summary = parse_dump(run.stdout)
    return run.returncode, frames, summary


def hexbytes(v):
    """tshark prints FT_BYTES as hex digits; return them as an int."""
    return int(v.split(",")[0].replace(":", ""), 16)


def compare(row, ours, where):
    op = int(row["infiniband.bth.opcode"])
    assert ours["opcode"] == OPCODE_NAMES[op], where
    assert int(ours["qp"], 16) == int(row["infiniband.bth.destqp"], 16), where
    assert int(ours["psn"], 16) == int(row["infiniband.bth.psn"]), where
    assert ours["ack"] == row["infiniband.bth.a"], where
    assert ("se" in ours["flags"]) == (row["infiniband.bth.se"] == "1"), where
    assert int(ours.get("pad", "0")) == int(row["infiniband.bth.padcnt"]), where
    if op in UNKNOWN_TO_WIRESHARK_4_0:
        return
    if "reth" in ours:
        assert int(ours["reth"]["va"], 16) == int(row["infiniband.reth.va"], 16), where
        assert int(ours["reth"]["rkey"], 16) == int(row["infiniband.reth.r_key"], 16), where
        assert int(ours["reth"]["dlen"]) == int(row["infiniband.reth.dmalen"]), where
    else:
        assert row["infiniband.reth.dmalen"] == "", where
    if "aeth" in ours:
        assert int(ours["aeth"]["msn"], 16) == int(row["infiniband.aeth.msn"]), where
        syndrome = int(row["infiniband.aeth.syndrome"])
        text = ours["aeth"]["_text"]
        kind = syndrome >> 5
        if kind == 0:
            assert text.startswith(f"ACK credits={syndrome & 0x1f} "), where
        elif kind == 1:
            assert text.startswith(f"RNR_NAK timer={syndrome & 0x1f}("), where
        else:
            assert kind == 3 and text.startswith("NAK "), where
    else:
        assert row["infiniband.aeth.msn"] == "", where
    if "deth" in ours:
        assert int(ours["deth"]["qkey"], 16) == int(row["infiniband.deth.q_key"], 16), where
        assert int(ours["deth"]["srcqp"], 16) == int(row["infiniband.deth.srcqp"], 16), where
    if "imm" in ours:
        assert int(ours["imm"], 16) == hexbytes(row["infiniband.immdt"]), where
    else:
        assert row["infiniband.immdt"] == "", where
    if "ieth" in ours:
        assert int(ours["ieth"]["rkey"], 16) == hexbytes(row["infiniband.ieth"]), where
    if "atomiceth" in ours:
        assert int(ours["atomiceth"]["swap_add"], 16) == int(row["infiniband.atomiceth.swapdt"]), where
        assert int(ours["atomiceth"]["cmp"], 16) == int(row["infiniband.atomiceth.cmpdt"]), where
        assert int(ours["atomiceth"]["va"], 16) == int(row["infiniband.reth.va"], 16), where
    if "atomicacketh" in ours:
        assert int(ours["atomicacketh"]["orig"], 16) == int(row["infiniband.atomicacketh.origremdt"]), where


def allowed_expert(row):
    """The one expert note allowed: Wireshark calls a zero UDP checksum over IPv6 illegal, yet Linux
    rxe sends exactly that (see test_linux_rxe_ipv6_frames_carry_the_same_udp_note). It concerns the
    UDP header, not RoCE's."""
    msg = row["_ws.expert.message"]
    return msg == "" or (msg == "Illegal checksum value (0)" and row["ipv6.version"] == "6"
                         and int(row["udp.checksum"], 16) == 0)


def test_tshark_decodes_every_sample_frame_like_rxe_dump(rxe, samples_pcap):
    code, ours, summary = rxe_dump(rxe, samples_pcap)
    assert code == 0, summary
    rows = tshark_fields(samples_pcap)
    assert len(rows) == len(ours) > 150
    opcodes = set()
    for num, row in rows.items():
        where = f"frame {num}: {row}"
        assert row["infiniband.bth.opcode"] != "", "not decoded as RoCE: " + where
        assert row["_ws.malformed"] == "", where
        assert allowed_expert(row), where
        compare(row, ours[num], where)
        opcodes.add(int(row["infiniband.bth.opcode"]))
    assert opcodes == set(OPCODE_NAMES)


def test_tshark_validates_the_udp_checksums_rxe_wire_computes(samples_pcap):
    rows = tshark_fields(samples_pcap, "-o", "udp.check_checksum:TRUE")
    with_checksum = [r for r in rows.values() if int(r["udp.checksum"], 16) != 0]
    assert len(with_checksum) > 40
    for r in rows.values():
        assert allowed_expert(r), r


def test_linux_rxe_ipv6_frames_carry_the_same_udp_note():
    rows = tshark_fields(next(p for p in linux_captures() if p.name == "ib_write_bw_ipv6.pcap"))
    assert rows and all(r["_ws.expert.message"] == "Illegal checksum value (0)" for r in rows.values())


@pytest.mark.parametrize("pcap", linux_captures(), ids=lambda p: p.name)
def test_rxe_dump_agrees_with_tshark_on_linux_captures(rxe, pcap):
    code, ours, summary = rxe_dump(rxe, pcap)
    rows = tshark_fields(pcap)
    if pcap.name == "host_to_guest_udp4791.pcap":
        # ARP, ICMP and three junk datagrams to port 4791 among two real CM MADs.
        assert code == 1 and summary == "15 frames, 5 roce, 2 icrc-ok, 0 icrc-bad, 3 malformed"
    else:
        assert code == 0 and summary.endswith("0 icrc-bad, 0 malformed"), summary
    for num, fields in ours.items():
        compare(rows[num], fields, f"{pcap.name} frame {num}")


def test_tshark_decodes_the_rxe_user_pcap_tap(rxe, tmp_path):
    """`rxe demo --pcap` records what one rxe-user device sends and receives over real UDP sockets
    (receive side: headers rebuilt, IPv4 Identification solved from the ICRC). tshark decodes every
    frame as RoCE with nothing malformed, and agrees with `rxe dump`, which verifies every ICRC."""
    pcap = tmp_path / "tap.pcap"
    port = 21000 + os.getpid() % 9000
    subprocess.run([str(rxe), "demo", "--port", str(port), "-n", "5", "-C", "4", "--pcap", str(pcap)],
                   check=True, capture_output=True, timeout=120)
    code, ours, summary = rxe_dump(rxe, pcap)
    assert code == 0 and summary == "48 frames, 48 roce, 48 icrc-ok, 0 icrc-bad, 0 malformed", summary
    rows = tshark_fields(pcap)
    assert len(rows) == 48
    names = set()
    for num, row in rows.items():
        where = f"frame {num}: {row}"
        assert row["infiniband.bth.opcode"] != "", "not decoded as RoCE: " + where
        assert row["_ws.malformed"] == "" and row["_ws.expert.message"] == "", where
        compare(row, ours[num], where)
        names.add(OPCODE_NAMES[int(row["infiniband.bth.opcode"])])
    assert names == {"RC_SEND_ONLY", "RC_RDMA_READ_REQUEST", "RC_RDMA_READ_RESPONSE_ONLY",
                     "RC_RDMA_WRITE_ONLY", "RC_ACKNOWLEDGE"}
