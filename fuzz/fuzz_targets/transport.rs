//! Arbitrary packets into an RC, UC or UD QP pair that is mid-conversation: the responder in RTS with
//! receives posted, the requester with SEND, WRITE, READ and atomic requests outstanding.
//!
//! The input is a script: each step either moves real traffic between the QPs, fires timers,
//! or injects a packet built from the input bytes (opcode, PSN, flags, extension headers and
//! payload chosen by the fuzzer, addressed so the QP accepts it for processing). Nothing may
//! panic, queues stay within their capacities, and the QPs end in a legal state.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use rxe_transport::{
    Access, AccessError, AddressVector, AtomicOp, Instant, KeyKind, Memory, MrInfo, Mtu, Pd, Qp, QpAttr, QpConfig,
    QpState, RecvWr, Remote, SendFlags, SendWr, Sge, UdDest, WrOpcode,
};
use rxe_wire::aeth::Syndrome;
use rxe_wire::{
    atmack, atmeth, bth, deth, feth, ieth, ipv4, reth, udp, AethRepr, Checks, ExtHeaders, HeaderSet, ImmDt, IpRepr,
    Msn, Opcode, PKey, Psn, QKey, Qpn, Rkey, RoceRepr, RoceV2Packet, RoceV2Repr,
};

const SQ: usize = 16;
const RQ: usize = 16;
type FQp = Qp<SQ, RQ>;

struct Mem {
    data: Vec<u8>,
}

impl Memory for Mem {
    fn lookup(&self, key: u32) -> Option<MrInfo> {
        (key == 1).then_some(MrInfo {
            pd: Pd(1),
            addr: 0x1000,
            length: self.data.len() as u64,
            access: Access::LOCAL_WRITE | Access::REMOTE_WRITE | Access::REMOTE_READ | Access::REMOTE_ATOMIC,
            kind: KeyKind::Mr,
        })
    }
    fn read(&self, _: u32, addr: u64, out: &mut [u8]) {
        let o = (addr - 0x1000) as usize;
        out.copy_from_slice(&self.data[o..o + out.len()]);
    }
    fn write(&mut self, _: u32, addr: u64, d: &[u8]) {
        let o = (addr - 0x1000) as usize;
        self.data[o..o + d.len()].copy_from_slice(d);
    }
    fn slice(&self, _: u32, addr: u64, len: usize) -> Option<&[u8]> {
        let o = (addr - 0x1000) as usize;
        self.data.get(o..o + len)
    }
    fn slice_mut(&mut self, _: u32, addr: u64, len: usize) -> Option<&mut [u8]> {
        let o = (addr - 0x1000) as usize;
        self.data.get_mut(o..o + len)
    }
    fn atomic(&mut self, _: u32, addr: u64, op: AtomicOp) -> u64 {
        let o = (addr - 0x1000) as usize;
        let old = u64::from_ne_bytes(self.data[o..o + 8].try_into().unwrap());
        let new = match op {
            AtomicOp::FetchAdd(v) => old.wrapping_add(v),
            AtomicOp::CmpSwp { compare, swap } => if old == compare { swap } else { old },
        };
        self.data[o..o + 8].copy_from_slice(&new.to_ne_bytes());
        old
    }
    fn invalidate(&mut self, _: u32, _: Pd) -> Result<(), AccessError> {
        Ok(())
    }
}

const IPS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)];

#[derive(Clone, Copy, PartialEq)]
enum Service {
    Rc,
    Uc,
    Ud,
}

fn qp(n: u32, i: usize, svc: Service) -> FQp {
    let cfg = match svc {
        Service::Rc => QpConfig::rc(Qpn::new(n), Pd(1)),
        Service::Uc => QpConfig::uc(Qpn::new(n), Pd(1)),
        Service::Ud => QpConfig::ud(Qpn::new(n), Pd(1)),
    };
    let mut q = FQp::new(cfg).unwrap();
    if svc == Service::Ud {
        let init = QpAttr { state: Some(QpState::Init), pkey_index: Some(0), port: Some(1), qkey: Some(QKey(0x1111_1111)), ..Default::default() };
        q.modify(&init).unwrap();
        q.modify(&QpAttr { state: Some(QpState::Rtr), ..Default::default() }).unwrap();
        q.modify(&QpAttr { state: Some(QpState::Rts), sq_psn: Some(Psn::new(100)), ..Default::default() }).unwrap();
        return q;
    }
    let access = Some(Access::REMOTE_WRITE | Access::REMOTE_READ | Access::REMOTE_ATOMIC);
    q.modify(&QpAttr { state: Some(QpState::Init), pkey_index: Some(0), port: Some(1), access, ..Default::default() })
        .unwrap();
    let av = AddressVector {
        sgid: IpAddr::V4(IPS[i]),
        dgid: IpAddr::V4(IPS[1 - i]),
        hop_limit: 64,
        traffic_class: 0,
        flow_label: 0,
        udp_sport: None,
    };
    let dest_qp = Some(Qpn::new(if i == 0 { 0x12 } else { 0x11 }));
    if svc == Service::Uc {
        let rtr = QpAttr { state: Some(QpState::Rtr), av: Some(av), path_mtu: Some(Mtu::M256), dest_qp, rq_psn: Some(Psn::new(100)), ..Default::default() };
        q.modify(&rtr).unwrap();
        q.modify(&QpAttr { state: Some(QpState::Rts), sq_psn: Some(Psn::new(100)), ..Default::default() }).unwrap();
        return q;
    }
    q.modify(&QpAttr {
        state: Some(QpState::Rtr),
        av: Some(av),
        path_mtu: Some(Mtu::M256),
        dest_qp,
        rq_psn: Some(Psn::new(100)),
        max_dest_rd_atomic: Some(4),
        min_rnr_timer: Some(1),
        ..Default::default()
    })
    .unwrap();
    q.modify(&QpAttr {
        state: Some(QpState::Rts),
        sq_psn: Some(Psn::new(100)),
        timeout: Some(1),
        retry_cnt: Some(3),
        rnr_retry: Some(3),
        max_rd_atomic: Some(4),
        ..Default::default()
    })
    .unwrap();
    q
}

/// Reads bytes off the input.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map(|(b, r)| (*b, r)).unwrap_or((0, &[]));
        self.0 = rest;
        b
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }
}

/// Builds a packet from the input, addressed from node `from` to the other node's QP.
fn forge(inp: &mut Input<'_>, from: usize, base_psn: u32) -> Option<Vec<u8>> {
    // Any RC, UC or UD opcode: a QP must drop what its service does not speak.
    let ops = rxe_wire::opcode::ALL;
    let opcode: Opcode = ops[usize::from(inp.u8()) % ops.len()];
    let info = opcode.info()?;
    let psn = Psn::new(base_psn.wrapping_add(u32::from(inp.u8())).wrapping_sub(8));
    let flags = inp.u8();
    let mut ext = ExtHeaders::default();
    let h = info.headers;
    // Addresses land in or near the one region so that both checks and execution are reached.
    let va = 0x1000 + u64::from(inp.u8()) * 8 - 64;
    let rkey = Rkey(if flags & 0x40 != 0 { inp.u32() } else { 1 });
    if h.contains(HeaderSet::DETH) {
        ext.deth = Some(deth::Repr { qkey: QKey(inp.u32()), src_qp: Qpn::new(inp.u32()) });
    }
    if h.contains(HeaderSet::FETH) {
        ext.feth = Some(feth::Repr { placement_type: inp.u8() & 0xf, selectivity: inp.u8() & 3 });
    }
    if h.contains(HeaderSet::RETH) {
        ext.reth = Some(reth::Repr { va, rkey, dma_len: u32::from(inp.u8()) * 16 });
    }
    if h.contains(HeaderSet::AETH) {
        ext.aeth = Some(AethRepr { syndrome: Syndrome::from_byte(inp.u8()), msn: Msn::new(u32::from(inp.u8())) });
    }
    if h.contains(HeaderSet::ATOMIC_ETH) {
        ext.atomic_eth = Some(atmeth::Repr { va, rkey, swap_add: inp.u64(), compare: inp.u64() });
    }
    if h.contains(HeaderSet::ATOMIC_ACK_ETH) {
        ext.atomic_ack_eth = Some(atmack::Repr { orig: inp.u64() });
    }
    if h.contains(HeaderSet::IMMDT) {
        ext.immdt = Some(ImmDt::from_be_u32(inp.u32()));
    }
    if h.contains(HeaderSet::IETH) {
        ext.ieth = Some(ieth::Repr { rkey });
    }
    let payload_len = match info.payload {
        rxe_wire::PayloadRule::None => 0,
        rxe_wire::PayloadRule::Exactly(n) => usize::from(n),
        rxe_wire::PayloadRule::Any => usize::from(inp.u8()) * 2,
    };
    let payload: Vec<u8> = (0..payload_len).map(|i| i as u8).collect();
    let bth = bth::Repr {
        opcode,
        solicited: flags & 1 != 0,
        mig_req: false,
        pad_count: 0,
        pkey: if flags & 0x80 != 0 { PKey(0x7fff) } else { PKey::DEFAULT },
        fecn: false,
        becn: false,
        dest_qp: Qpn::new(if from == 0 { 0x12 } else { 0x11 }),
        ack_req: flags & 2 != 0,
        psn,
    };
    let repr = RoceV2Repr {
        ip: IpRepr::V4(ipv4::Repr { src: IPS[from], dst: IPS[1 - from], tos: 0, ident: 0, dont_frag: true, ttl: 64 }),
        udp: udp::Repr { src_port: 0xc000, dst_port: udp::ROCE_PORT, checksum: false },
        roce: RoceRepr::new(bth, ext, &payload),
    };
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(&mut buf).ok()?;
    Some(buf)
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    // The first byte picks the service: RC, UC or UD.
    let svc = match inp.u8() % 3 {
        0 => Service::Rc,
        1 => Service::Uc,
        _ => Service::Ud,
    };
    let mut q = [qp(0x11, 0, svc), qp(0x12, 1, svc)];
    let mut m = [Mem { data: vec![0u8; 4096] }, Mem { data: vec![0u8; 4096] }];
    let sge = |addr: u64, length: u32| Sge { addr, length, lkey: 1 };
    for i in 0..2 {
        for r in 0..4 {
            let _ = q[i].post_recv(RecvWr::new(r, sge(0x1000 + 512 * r, 512)));
        }
        let remote = Remote { addr: 0x1800, rkey: Rkey(1) };
        let wrs = [
            WrOpcode::Send,
            WrOpcode::RdmaWrite(remote),
            WrOpcode::RdmaRead(remote),
            WrOpcode::AtomicFetchAdd { remote, add: 1 },
        ];
        for (n, op) in wrs.into_iter().enumerate() {
            let len = if matches!(op, WrOpcode::AtomicFetchAdd { .. }) { 8 } else { 700 };
            let mut wr = SendWr::new(n as u64, op, Some(sge(0x1000, len)), SendFlags::SIGNALED);
            if svc == Service::Ud {
                wr.ud = Some(UdDest {
                    ah: AddressVector {
                        sgid: IpAddr::V4(IPS[i]),
                        dgid: IpAddr::V4(IPS[1 - i]),
                        hop_limit: 64,
                        traffic_class: 0,
                        flow_label: 0,
                        udp_sport: None,
                    },
                    remote_qpn: Qpn::new(if i == 0 { 0x12 } else { 0x11 }),
                    remote_qkey: QKey(0x1111_1111),
                });
            }
            let _ = q[i].post_send(wr, &m[i]);
        }
    }
    let mut now = Instant::from_nanos(1);
    let mut buf = vec![0u8; 4096];
    for _ in 0..64 {
        if inp.0.is_empty() {
            break;
        }
        let step = inp.u8();
        let side = usize::from(step & 1);
        match step >> 1 & 3 {
            0 => {
                // Real traffic: everything side has to send goes to the other side.
                let (l, r) = q.split_at_mut(1);
                let (tx, rx) = if side == 0 { (&mut l[0], &mut r[0]) } else { (&mut r[0], &mut l[0]) };
                let (ml, mr) = m.split_at_mut(1);
                let (txm, rxm) = if side == 0 { (&mut ml[0], &mut mr[0]) } else { (&mut mr[0], &mut ml[0]) };
                // Sometimes flip one bit of one packet and let the receiving QP check the ICRC
                // (cut-through placement of in-order continuations).
                let flip = inp.u8();
                let at = usize::from(inp.u8()) * 17 + usize::from(inp.u8());
                let qp_checks = Checks { icrc: false, ..Checks::ALL };
                for i in 0..32u8 {
                    match tx.poll_transmit(now, &mut buf, txm) {
                        Ok(Some(n)) => {
                            if flip & 0x80 != 0 && flip & 0x1f == i {
                                let pkt = &mut buf[..n];
                                let bit = at % (n * 8);
                                pkt[bit / 8] ^= 1 << (bit % 8);
                                if let Ok(p) = RoceV2Packet::new_checked(pkt, &qp_checks) {
                                    rx.handle_packet(now, &p, rxm);
                                }
                                continue;
                            }
                            let checks = if flip & 0x40 != 0 { &qp_checks } else { &Checks::ALL };
                            let p = RoceV2Packet::new_checked(&buf[..n], checks).expect("QP emits valid packets");
                            rx.handle_packet(now, &p, rxm);
                        }
                        _ => break,
                    }
                }
            }
            1 => {
                now = now + core::time::Duration::from_micros(u64::from(inp.u8()) * 50);
                q[0].handle_timeout(now);
                q[1].handle_timeout(now);
            }
            _ => {
                let base = if side == 0 { q[1].rq_psn().value() } else { q[0].rq_psn().value() };
                if let Some(pkt) = forge(&mut inp, side, base) {
                    let p = RoceV2Packet::new_checked(&pkt, &Checks::ALL).expect("forged packets are valid");
                    q[1 - side].handle_packet(now, &p, &mut m[1 - side]);
                }
            }
        }
        for i in 0..2 {
            assert!(q[i].send_queue_len() <= SQ && q[i].recv_queue_len() <= RQ);
            while q[i].poll_send_completion().is_some() {}
            while q[i].poll_recv_completion().is_some() {}
            while q[i].poll_event().is_some() {}
        }
    }
    for qp in &q {
        assert!(matches!(qp.state(), QpState::Rts | QpState::Err), "{:?}", qp.state());
    }
});
