"""Shared fixtures: the `rxe` binary, sample frames it emits, and a parser for `rxe dump` lines."""

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = ROOT / "rxe-wire" / "tests" / "data"


def _find_rxe() -> Path:
    if os.environ.get("RXE_BIN"):
        return Path(os.environ["RXE_BIN"])
    for profile in ("release", "debug"):
        p = ROOT / "target" / profile / "rxe"
        if p.exists():
            return p
    subprocess.run(["cargo", "build", "-q", "-p", "rxe-examples", "--bin", "rxe"], cwd=ROOT, check=True)
    return ROOT / "target" / "debug" / "rxe"


@pytest.fixture(scope="session")
def rxe() -> Path:
    """Path to the `rxe` binary (RXE_BIN, else target/{release,debug}/rxe, else built)."""
    return _find_rxe()


@pytest.fixture(scope="session")
def samples_pcap(rxe, tmp_path_factory) -> Path:
    """A pcap of frames emitted by rxe-wire: every opcode, IPv4 and IPv6, with and without pad."""
    out = tmp_path_factory.mktemp("samples") / "samples.pcap"
    subprocess.run([str(rxe), "samples", "-o", str(out)], check=True, capture_output=True)
    return out


def linux_captures():
    return sorted(CAPTURES.glob("*.pcap"))


LINE = re.compile(r"^\s*(\d+) (\S+) > (\S+) (\S+) (.*)$")
TOKEN = re.compile(r"(\w+)=(\[[^\]]*\]|\S+)")


def parse_dump(text: str):
    """Parses `rxe dump` output into ({frame_number: fields}, summary_line).

    Bracketed groups become dicts: `reth=[va=0x1 rkey=0x2 dlen=3]` -> {"reth": {"va": ...}}.
    """
    frames = {}
    lines = text.strip().splitlines()
    for line in lines[:-1]:
        m = LINE.match(line)
        if not m:
            continue
        num, src, dst, opcode, rest = m.groups()
        fields = {"src": src, "dst": dst, "opcode": opcode, "flags": set()}
        for key, value in TOKEN.findall(rest):
            if value.startswith("["):
                inner = value[1:-1]
                group = dict(TOKEN.findall(inner))
                group["_text"] = inner
                fields[key] = group
            else:
                fields[key] = value
        for flag in ("se", "migreq", "fecn", "becn"):
            if re.search(rf"(^| ){flag}( |$)", rest):
                fields["flags"].add(flag)
        frames[int(num)] = fields
    return frames, lines[-1]
