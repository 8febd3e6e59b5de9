"""Wireshark's InfiniBand CM dissector (tshark) decodes the CM MADs Linux rdma_cm sent (rping) and
the ones rxe-wire emits (`rxe samples --cm`) with the same values `rxe dump` prints, and finds
nothing malformed in ours."""

import ipaddress
import shutil
import subprocess

import pytest

from conftest import CAPTURES, parse_dump

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed (.ci/run installs it)")

FIELDS = [
    "frame.number",
    "infiniband.cm.req.serviceid", "infiniband.cm.req.localqpn", "infiniband.cm.req.startpsn",
    "infiniband.cm.req.responderres", "infiniband.cm.req.initdepth", "infiniband.cm.req.retrcount",
    "infiniband.cm.req.rnrretrcount", "infiniband.cm.req.pppmtu", "infiniband.cm.req.prim_localacktout",
    "infiniband.cm.req.prim_localgid", "infiniband.cm.req.prim_localgid_ipv4",
    "infiniband.cm.req.prim_remotegid", "infiniband.cm.req.prim_remotegid_ipv4",
    "infiniband.cm.req.ip_cm.sport", "infiniband.cm.req.ip_cm.sip4", "infiniband.cm.req.ip_cm.dip4",
    "infiniband.cm.req.ip_cm.sip6", "infiniband.cm.req.ip_cm.dip6",
    "infiniband.cm.rep.remotecommid", "infiniband.cm.rep.localqpn", "infiniband.cm.rep.startpsn",
    "infiniband.cm.rep.respres", "infiniband.cm.rep.initdepth", "infiniband.cm.rep.rnrretrcount",
    "infiniband.cm.rtu.localcommid", "infiniband.cm.rtu.remotecommid",
    "infiniband.cm.rej.localcommid", "infiniband.cm.rej.remotecommid", "infiniband.cm.rej.reason",
    "infiniband.cm.dreq.localcommid", "infiniband.cm.dreq.remotecommid",
    "infiniband.cm.drsp.localcommid", "infiniband.cm.drsp.remotecommid",
    "_ws.malformed", "_ws.expert.message",
]


def tshark(pcap):
    cmd = ["tshark", "-n", "-r", str(pcap), "-T", "fields", "-E", "separator=\t", "-E", "occurrence=f"]
    for f in FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return {int(c[0]): dict(zip(FIELDS, c)) for c in (line.split("\t") for line in out.splitlines())}


def num(v):
    return int(v, 0)


def compare(row, ours, where):
    """Checks one CM message of `rxe dump` against tshark's row; returns the message name."""
    key = next(k for k in ours if k.startswith("cm_"))
    cm = ours[key]
    name = key[3:]
    if name == "req":
        assert num(row["infiniband.cm.req.serviceid"]) == num(cm["sid"]), where
        assert num(row["infiniband.cm.req.localqpn"]) == num(cm["qpn"]), where
        assert num(row["infiniband.cm.req.startpsn"]) == num(cm["psn"]), where
        assert num(row["infiniband.cm.req.responderres"]) == num(cm["rr"]), where
        assert num(row["infiniband.cm.req.initdepth"]) == num(cm["id"]), where
        assert num(row["infiniband.cm.req.retrcount"]) == num(cm["retry"]), where
        assert num(row["infiniband.cm.req.rnrretrcount"]) == num(cm["rnr"]), where
        assert 256 << (num(row["infiniband.cm.req.pppmtu"]) - 1) == num(cm["mtu"]), where
        assert num(row["infiniband.cm.req.prim_localacktout"]) == num(cm["timeout"]), where
        sgid, dgid = ipaddress.ip_address(cm["sgid"]), ipaddress.ip_address(cm["dgid"])
        if sgid.ipv4_mapped:
            assert row["infiniband.cm.req.prim_localgid_ipv4"] == str(sgid.ipv4_mapped), where
            assert row["infiniband.cm.req.prim_remotegid_ipv4"] == str(dgid.ipv4_mapped), where
        else:
            assert ipaddress.ip_address(row["infiniband.cm.req.prim_localgid"]) == sgid, where
            assert ipaddress.ip_address(row["infiniband.cm.req.prim_remotegid"]) == dgid, where
        assert num(row["infiniband.cm.req.ip_cm.sport"]) == int(cm["cma_sport"]), where
        family = "4" if sgid.ipv4_mapped else "6"
        assert ipaddress.ip_address(row[f"infiniband.cm.req.ip_cm.sip{family}"]) == ipaddress.ip_address(cm["cma_src"]), where
        assert ipaddress.ip_address(row[f"infiniband.cm.req.ip_cm.dip{family}"]) == ipaddress.ip_address(cm["cma_dst"]), where
    elif name == "rep":
        assert num(row["infiniband.cm.rep.remotecommid"]) == num(cm["remote"]), where
        assert num(row["infiniband.cm.rep.localqpn"]) == num(cm["qpn"]), where
        assert num(row["infiniband.cm.rep.startpsn"]) == num(cm["psn"]), where
        assert num(row["infiniband.cm.rep.respres"]) == num(cm["rr"]), where
        assert num(row["infiniband.cm.rep.initdepth"]) == num(cm["id"]), where
        assert num(row["infiniband.cm.rep.rnrretrcount"]) == num(cm["rnr"]), where
    elif name in ("rtu", "rej", "dreq", "drep"):
        prefix = "drsp" if name == "drep" else name
        assert num(row[f"infiniband.cm.{prefix}.localcommid"]) == num(cm["comm"]), where
        assert num(row[f"infiniband.cm.{prefix}.remotecommid"]) == num(cm["remote"]), where
        if name == "rej":
            assert num(row["infiniband.cm.rej.reason"]) == num(cm["reason"]), where
    return name


def cm_frames(rxe, pcap):
    run = subprocess.run([str(rxe), "dump", str(pcap)], capture_output=True, text=True)
    frames, _ = parse_dump(run.stdout)
    return run.returncode, {n: f for n, f in frames.items() if any(k.startswith("cm_") for k in f)}


def test_linux_rping_cm_messages_decode_the_same_in_tshark(rxe):
    pcap = CAPTURES / "rping.pcap"
    code, ours = cm_frames(rxe, pcap)
    assert code == 0
    rows = tshark(pcap)
    names = [compare(rows[n], f, f"rping.pcap frame {n}") for n, f in sorted(ours.items())]
    assert names == ["req", "rep", "rtu", "dreq", "drep"]


def test_our_cm_messages_decode_in_tshark_without_errors(rxe, tmp_path):
    pcap = tmp_path / "cm.pcap"
    subprocess.run([str(rxe), "samples", "--cm", "-o", str(pcap)], check=True, capture_output=True)
    code, ours = cm_frames(rxe, pcap)
    assert code == 0
    rows = tshark(pcap)
    names = []
    for n, f in sorted(ours.items()):
        row = rows[n]
        assert row["_ws.malformed"] == "", f"frame {n}"
        assert row["_ws.expert.message"] == "", f"frame {n}: {row['_ws.expert.message']}"
        names.append(compare(row, f, f"samples frame {n}"))
    assert names == ["req", "rep", "rtu", "dreq", "drep", "rej", "mra"] * 2
