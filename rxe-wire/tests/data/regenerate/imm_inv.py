#!/usr/bin/env python3
"""Post SEND_WITH_IMM, RDMA_WRITE_WITH_IMM and SEND_WITH_INV on one RC or UC QP
pair between two hosts with pyverbs (kernel rxe), for golden packet captures.

  server (passive, receives):  imm_inv.py server rc|uc  [gid_index] [tcp_port]
  client (active, posts sends): imm_inv.py client rc|uc  <server_ip> [gid_index] [tcp_port]

QPN/PSN/GID/rkey/addr (and the server's type-2 memory window rkeys) are
exchanged as JSON lines over a plain TCP socket. The client posts, in order:
  1 SEND_WITH_IMM        64 B   imm 0x11223344            (SEND_ONLY_WITH_IMM)
  2 SEND_WITH_IMM      2048 B   imm 0x11223345            (SEND_FIRST + SEND_LAST_WITH_IMM)
  3 RDMA_WRITE_WITH_IMM  64 B   imm 0x55667788            (WRITE_ONLY_WITH_IMM)
  4 RDMA_WRITE_WITH_IMM 2048 B  imm 0x55667789            (WRITE_FIRST + WRITE_LAST_WITH_IMM)
  5 SEND_WITH_INV        64 B   invalidate = server MW #1 (SEND_ONLY_WITH_INVALIDATE)
  6 SEND_WITH_INV      2048 B   invalidate = server MW #2 (SEND_FIRST + SEND_LAST_WITH_INVALIDATE)
Each is posted and its completion polled before the next one is posted.
Immediate data is given to the verbs in network byte order, so the bytes on
the wire are 11 22 33 44 etc.
"""
import json
import random
import select
import socket
import sys
import time

import pyverbs.enums as e
from pyverbs.addr import AHAttr, GlobalRoute, GID
from pyverbs.cq import CQ
from pyverbs.device import Context
from pyverbs.mr import MR, MW, MWBindInfo
from pyverbs.pd import PD
from pyverbs.qp import QP, QPAttr, QPCap, QPInitAttr
from pyverbs.wr import RecvWR, SendWR, SGE

DEV, PORT = "rxe0", 1
BUF = 8192          # MR size; the two halves: [0,4096) send/recv, [4096,8192) RDMA target
NRECV = 8


def log(*a):
    print(*a, flush=True)


def poll(cq, what, timeout=60.0):
    t0 = time.time()
    while True:
        n, wcs = cq.poll(1)
        if n > 0:
            wc = wcs[0]
            log(f"  CQE for {what}: status={wc.status} ({'ok' if wc.status == 0 else 'ERROR'}) "
                f"opcode={wc.opcode} byte_len={wc.byte_len} wc_flags={wc.wc_flags:#x} "
                f"imm_data/inv_rkey={wc.imm_data:#010x} (ntohl {socket.ntohl(wc.imm_data):#010x}) "
                f"qp_num={wc.qp_num:#x} wr_id={wc.wr_id}")
            return wc
        if time.time() - t0 > timeout:
            log(f"  no CQE for {what} within {timeout}s")
            return None
        time.sleep(0.001)


def jsend(f, obj):
    f.write((json.dumps(obj) + "\n").encode())
    f.flush()


def jrecv(f):
    line = f.readline()
    if not line:
        raise SystemExit("peer closed the TCP connection")
    return json.loads(line)


def main():
    role, qpt = sys.argv[1], sys.argv[2]
    args = sys.argv[3:]
    peer = args.pop(0) if role == "client" else None
    gid_index = int(args[0]) if len(args) > 0 else 1
    tcp_port = int(args[1]) if len(args) > 1 else 18600
    qp_type = {"rc": e.IBV_QPT_RC, "uc": e.IBV_QPT_UC}[qpt]

    ctx = Context(name=DEV)
    pd = PD(ctx)
    cq = CQ(ctx, 64, None, None, 0)
    port_attr = ctx.query_port(PORT)
    mtu = port_attr.active_mtu
    access = (e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_REMOTE_WRITE |
              e.IBV_ACCESS_REMOTE_READ | e.IBV_ACCESS_MW_BIND)
    mr = MR(pd, BUF, access)
    cap = QPCap(max_send_wr=16, max_recv_wr=16, max_send_sge=1, max_recv_sge=1)
    init = QPInitAttr(qp_type=qp_type, scq=cq, rcq=cq, cap=cap)
    a0 = QPAttr(port_num=PORT)
    a0.qp_access_flags = e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_REMOTE_WRITE | \
        (e.IBV_ACCESS_REMOTE_READ if qp_type == e.IBV_QPT_RC else 0)
    qp = QP(pd, init, a0)            # -> INIT
    psn = random.getrandbits(24)
    gid = ctx.query_gid(PORT, gid_index)
    me = {"qpn": qp.qp_num, "psn": psn, "gid": str(gid), "rkey": mr.rkey, "addr": mr.buf}
    log(f"{role} {qpt.upper()}: dev {DEV} port {PORT} gid[{gid_index}]={gid} active_mtu enum {mtu} "
        f"QPN {qp.qp_num:#x} PSN {psn:#08x} MR lkey {mr.lkey:#x} rkey {mr.rkey:#x} addr {mr.buf:#x}")

    if role == "server":
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("0.0.0.0", tcp_port))
        ls.listen(1)
        s, _ = ls.accept()
    else:
        s = None
        for _ in range(120):
            try:
                s = socket.create_connection((peer, tcp_port), timeout=5)
                break
            except OSError:
                time.sleep(0.5)
        if s is None:
            raise SystemExit("cannot connect to server")
        s.settimeout(None)
    f = s.makefile("rwb")

    def to_rts(rem):
        gr = GlobalRoute(dgid=GID(rem["gid"]), sgid_index=gid_index)
        ah = AHAttr(port_num=PORT, is_global=1, gr=gr, dlid=0)
        at = QPAttr(port_num=PORT)
        at.path_mtu = mtu
        at.dest_qp_num = rem["qpn"]
        at.rq_psn = rem["psn"]       # expected PSN of the peer's requests
        at.sq_psn = psn              # our own first PSN
        at.ah_attr = ah
        if qp_type == e.IBV_QPT_RC:
            at.max_dest_rd_atomic = 1
            at.max_rd_atomic = 1
            at.min_rnr_timer = 12
            at.timeout = 14
            at.retry_cnt = 7
            at.rnr_retry = 7
        qp.to_rts(at)
        log(f"  QP -> RTS: dest QPN {rem['qpn']:#x} rq_psn {rem['psn']:#08x} sq_psn {psn:#08x} dgid {rem['gid']}")

    if role == "server":
        rem = jrecv(f)
        log(f"  peer: {rem}")
        to_rts(rem)
        for i in range(NRECV):
            qp.post_recv(RecvWR(wr_id=100 + i, num_sge=1, sg=[SGE(mr.buf, 4096, mr.lkey)]))
        mws = []
        for i in range(2):
            try:
                mw = MW(pd, e.IBV_MW_TYPE_2)
                bi = MWBindInfo(mr, mr.buf + 4096, 4096,
                                e.IBV_ACCESS_REMOTE_WRITE | e.IBV_ACCESS_LOCAL_WRITE)
                wr = SendWR(wr_id=200 + i, opcode=e.IBV_WR_BIND_MW)
                wr.set_bind_wr(mw, bi)
                qp.post_send(wr)
                wc = poll(cq, f"BIND_MW #{i + 1}")
                if wc is None or wc.status != 0:
                    raise RuntimeError("bind failed")
                log(f"  MW type 2 #{i + 1} bound: rkey {wr.rkey:#x}")
                mws.append((mw, wr.rkey))
            except Exception as ex:           # report, continue without invalidate
                log(f"  MW type 2 #{i + 1}: not available ({ex!r})")
                break
        me["mw_rkeys"] = [k for _, k in mws]
        jsend(f, me)
        log("  waiting for receive completions (6 expected: 2 SEND_IMM, 2 WRITE_IMM, 2 SEND_INV)")
        got = 0
        while True:
            ctl = None
            wc = poll(cq, f"receive #{got + 1}", timeout=3.0)
            if wc is not None:
                got += 1
                continue
            # idle: has the client said it is done?
            r, _, _ = select.select([s], [], [], 0)
            if r:
                ctl = f.readline()
            if ctl:
                log(f"  client says: {ctl.decode().strip()}")
                while True:       # drain anything left
                    wc = poll(cq, f"receive #{got + 1}", timeout=3.0)
                    if wc is None:
                        break
                    got += 1
                break
        log(f"server: {got} receive completions")
        jsend(f, {"bye": 1})
    else:
        jsend(f, me)
        rem = jrecv(f)
        log(f"  peer: {rem}")
        to_rts(rem)
        time.sleep(0.5)
        mr.write(b"S" * 4096, 4096, 0)
        results = []

        def post(name, opcode, length, imm=None, inv=None, rdma=False):
            wr = SendWR(wr_id=len(results) + 1, opcode=opcode, num_sge=1,
                        sg=[SGE(mr.buf, length, mr.lkey)], send_flags=e.IBV_SEND_SIGNALED)
            if imm is not None:
                wr.imm_data = socket.htonl(imm)
            if inv is not None:
                wr.imm_data = inv        # invalidate_rkey shares the union with imm_data
            if rdma:
                wr.set_wr_rdma(rem["rkey"], rem["addr"] + 4096)
            try:
                qp.post_send(wr)
            except Exception as ex:
                log(f"  post {name}: post_send failed: {ex!r}")
                results.append((name, "post failed"))
                return False
            wc = poll(cq, name, timeout=30)
            st = "no CQE" if wc is None else ("ok" if wc.status == 0 else f"status {wc.status}")
            results.append((name, st))
            time.sleep(0.3)
            return wc is not None and wc.status == 0

        post("SEND_WITH_IMM 64B", e.IBV_WR_SEND_WITH_IMM, 64, imm=0x11223344)
        post("SEND_WITH_IMM 2048B", e.IBV_WR_SEND_WITH_IMM, 2048, imm=0x11223345)
        post("RDMA_WRITE_WITH_IMM 64B", e.IBV_WR_RDMA_WRITE_WITH_IMM, 64, imm=0x55667788, rdma=True)
        post("RDMA_WRITE_WITH_IMM 2048B", e.IBV_WR_RDMA_WRITE_WITH_IMM, 2048, imm=0x55667789, rdma=True)
        mwk = rem.get("mw_rkeys", [])
        for i, ln in enumerate((64, 2048)):
            k = mwk[i] if i < len(mwk) else 0xdeadbe00
            if not post(f"SEND_WITH_INV {ln}B inv_rkey {k:#x}", e.IBV_WR_SEND_WITH_INV, ln, inv=k):
                break
        jsend(f, {"done": results})
        try:
            jrecv(f)
        except SystemExit:
            pass
        log("client results:")
        for n, st in results:
            log(f"  {n}: {st}")


if __name__ == "__main__":
    main()
