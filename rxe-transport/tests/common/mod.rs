//! The deterministic test harness: memory backed by vectors, and a `Pair` of QPs joined by a
//! simulated link with latency, loss, duplication, reordering and corruption, on a virtual clock
//! (after quinn-proto's `Pair`).
#![allow(dead_code, unreachable_pub)]

use core::net::{IpAddr, Ipv4Addr};
use core::time::Duration;
use std::collections::VecDeque;

use rxe_transport::{
    Access, AccessError, AddressVector, AtomicOp, Instant, KeyKind, Memory, MrInfo, Mtu, MwBinding,
    MwInfo, MwType, Pd, Qp, QpAttr, QpConfig, QpState, WorkCompletion,
};
use rxe_wire::{Checks, Opcode, Psn, Qpn, RoceV2Packet};

/// A shared receive queue of the tests.
pub type TestSrq = rxe_transport::Srq<16>;
/// An SRQ shared by several pairs' QPs.
pub type SharedSrq = std::rc::Rc<std::cell::RefCell<TestSrq>>;

/// Send and receive queue depth of the test QPs.
pub const SQ: usize = 64;
pub const RQ: usize = 64;
pub type TestQp = Qp<SQ, RQ>;

#[derive(Debug, Clone)]
pub struct Region {
    pub key: u32,
    pub pd: Pd,
    pub addr: u64,
    pub data: Vec<u8>,
    pub access: Access,
    pub valid: bool,
    /// A memory window (no data of its own): its type and binding.
    pub window: Option<MwInfo>,
    /// A window's range length.
    pub window_len: u64,
}

/// Host memory: regions in vectors, keys handed out in order.
#[derive(Debug, Clone, Default)]
pub struct TestMemory {
    pub regions: Vec<Region>,
    pub atomics_run: u64,
    /// Offer regions as slices (`Memory::slice`/`slice_mut`: fused copy+ICRC) instead of only
    /// `read`/`write`.
    pub no_slices: bool,
}

impl TestMemory {
    /// Registers `len` bytes at `addr`, filled with `fill`; returns the key (lkey == rkey).
    pub fn register(&mut self, pd: Pd, addr: u64, len: usize, access: Access, fill: u8) -> u32 {
        let key = 0x100 + (self.regions.len() as u32) * 0x100 + 0x17;
        self.regions.push(Region {
            key,
            pd,
            addr,
            data: vec![fill; len],
            access,
            valid: true,
            window: None,
            window_len: 0,
        });
        key
    }
    /// Allocates an unbound memory window; returns its key.
    pub fn alloc_mw(&mut self, pd: Pd, mw_type: MwType) -> u32 {
        let key = 0x100 + (self.regions.len() as u32) * 0x100 + 0x17;
        self.regions.push(Region {
            key,
            pd,
            addr: 0,
            data: Vec::new(),
            access: Access::empty(),
            valid: true,
            window: Some(MwInfo {
                mw_type,
                mr: None,
                qp: None,
            }),
            window_len: 0,
        });
        key
    }
    pub fn region(&self, key: u32) -> &Region {
        self.regions.iter().find(|r| r.key == key).expect("region")
    }
    pub fn region_mut(&mut self, key: u32) -> &mut Region {
        self.regions
            .iter_mut()
            .find(|r| r.key == key)
            .expect("region")
    }
    pub fn bytes(&self, key: u32, addr: u64, len: usize) -> &[u8] {
        let r = self.region(key);
        let off = (addr - r.addr) as usize;
        &r.data[off..off + len]
    }
    pub fn fill_pattern(&mut self, key: u32, seed: u8) {
        let r = self.region_mut(key);
        for (i, b) in r.data.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31).wrapping_add(seed);
        }
    }
}

impl Memory for TestMemory {
    fn lookup(&self, key: u32) -> Option<MrInfo> {
        self.regions
            .iter()
            .find(|r| r.key == key && r.valid)
            .map(|r| MrInfo {
                pd: r.pd,
                addr: r.addr,
                length: match r.window {
                    Some(_) => r.window_len,
                    None => r.data.len() as u64,
                },
                access: r.access,
                kind: match r.window {
                    Some(w) => KeyKind::Mw(w),
                    None => KeyKind::Mr,
                },
            })
    }
    fn bind_mw(&mut self, mw_key: u32, b: &MwBinding) -> Result<(), AccessError> {
        let r = self
            .regions
            .iter_mut()
            .find(|r| r.key == mw_key && r.window.is_some())
            .ok_or(AccessError::UnknownKey(mw_key))?;
        r.key = b.key;
        r.addr = b.addr;
        r.window_len = b.length;
        r.access = b.access;
        if let Some(w) = r.window.as_mut() {
            w.mr = b.mr;
            w.qp = b.qp;
        }
        Ok(())
    }
    fn reg_mr(
        &mut self,
        key: u32,
        new_key: u32,
        access: Access,
        pd: Pd,
    ) -> Result<(), AccessError> {
        let r = self
            .regions
            .iter_mut()
            .find(|r| r.key == key && r.window.is_none())
            .ok_or(AccessError::UnknownKey(key))?;
        if r.pd != pd {
            return Err(AccessError::WrongPd);
        }
        if r.valid {
            return Err(AccessError::WindowState);
        }
        r.key = new_key;
        r.access = access;
        r.valid = true;
        Ok(())
    }
    fn read(&self, key: u32, addr: u64, out: &mut [u8]) {
        let r = self.region(key);
        let off = (addr - r.addr) as usize;
        out.copy_from_slice(&r.data[off..off + out.len()]);
    }
    fn write(&mut self, key: u32, addr: u64, data: &[u8]) {
        let r = self.region_mut(key);
        let off = (addr - r.addr) as usize;
        r.data[off..off + data.len()].copy_from_slice(data);
    }
    fn slice(&self, key: u32, addr: u64, len: usize) -> Option<&[u8]> {
        if self.no_slices {
            return None;
        }
        let r = self.region(key);
        let off = (addr - r.addr) as usize;
        Some(&r.data[off..off + len])
    }
    fn slice_mut(&mut self, key: u32, addr: u64, len: usize) -> Option<&mut [u8]> {
        if self.no_slices {
            return None;
        }
        let r = self.region_mut(key);
        let off = (addr - r.addr) as usize;
        Some(&mut r.data[off..off + len])
    }
    fn atomic(&mut self, key: u32, addr: u64, op: AtomicOp) -> u64 {
        self.atomics_run += 1;
        let r = self.region_mut(key);
        let off = (addr - r.addr) as usize;
        let cell: &mut [u8] = &mut r.data[off..off + 8];
        let old = u64::from_ne_bytes(cell.try_into().expect("8 bytes"));
        let new = match op {
            AtomicOp::CmpSwp { compare, swap } => {
                if old == compare {
                    swap
                } else {
                    old
                }
            }
            AtomicOp::FetchAdd(a) => old.wrapping_add(a),
        };
        cell.copy_from_slice(&new.to_ne_bytes());
        old
    }
    fn invalidate(&mut self, key: u32, pd: Pd) -> Result<(), AccessError> {
        let r = self
            .regions
            .iter_mut()
            .find(|r| r.key == key && r.valid)
            .ok_or(AccessError::UnknownKey(key))?;
        if r.pd != pd {
            return Err(AccessError::WrongPd);
        }
        match r.window.as_mut() {
            // A type 2 window goes back to free: findable, unbound.
            Some(w) => {
                w.mr = None;
                w.qp = None;
                r.window_len = 0;
                r.access = Access::empty();
            }
            None => r.valid = false,
        }
        Ok(())
    }
}

/// A small deterministic generator (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// Link faults, each a probability per packet.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    pub loss: f64,
    pub duplicate: f64,
    pub reorder: f64,
    pub corrupt: f64,
}

/// One end: a QP, its memory, and what it sent.
#[derive(Debug)]
pub struct Node {
    pub qp: TestQp,
    pub mem: TestMemory,
    pub ip: Ipv4Addr,
    /// Every packet this node transmitted, in order (opcode, PSN, AckReq, AETH syndrome byte).
    pub sent: Vec<Vec<u8>>,
    pub send_wcs: Vec<WorkCompletion>,
    pub recv_wcs: Vec<WorkCompletion>,
    pub rejected: u64,
}

impl Node {
    fn new(qpn: u32, ip: Ipv4Addr) -> Node {
        let cfg = QpConfig {
            ipv4_ident: qpn as u16 * 1000,
            ..QpConfig::rc(Qpn::new(qpn), Pd(1))
        };
        Node {
            qp: Qp::new(cfg).expect("qp"),
            mem: TestMemory::default(),
            ip,
            sent: Vec::new(),
            send_wcs: Vec::new(),
            recv_wcs: Vec::new(),
            rejected: 0,
        }
    }
    fn drain_completions(&mut self) {
        while let Some(wc) = self.qp.poll_send_completion() {
            self.send_wcs.push(wc);
        }
        while let Some(wc) = self.qp.poll_recv_completion() {
            self.recv_wcs.push(wc);
        }
    }
}

/// Connection parameters for [`Pair::connect`].
#[derive(Debug, Clone, Copy)]
pub struct ConnParams {
    pub mtu: Mtu,
    pub timeout: u8,
    pub retry_cnt: u8,
    pub rnr_retry: u8,
    pub min_rnr_timer: u8,
    pub max_rd_atomic: u8,
    pub access: Access,
    pub a_psn: u32,
    pub b_psn: u32,
}

impl Default for ConnParams {
    fn default() -> ConnParams {
        ConnParams {
            mtu: Mtu::M1024,
            timeout: 14,
            retry_cnt: 7,
            rnr_retry: 7,
            min_rnr_timer: 12,
            max_rd_atomic: 16,
            access: Access::REMOTE_WRITE | Access::REMOTE_READ | Access::REMOTE_ATOMIC,
            a_psn: 0x00ff_fff0,
            b_psn: 0x0012_3456,
        }
    }
}

#[derive(Debug)]
struct InFlight {
    at: Instant,
    to_b: bool,
    bytes: Vec<u8>,
}

/// A packet as the link sees it, for [`Pair::drop_if`].
#[derive(Debug, Clone, Copy)]
pub struct WirePacket {
    /// Sent by `a` (else by `b`).
    pub from_a: bool,
    pub opcode: Opcode,
    pub psn: Psn,
    /// Position in the whole wire history, from 0.
    pub index: usize,
}

/// Decides which packets the link drops.
pub type DropFn = Box<dyn FnMut(&WirePacket) -> bool>;

/// Two QPs on a simulated link.
pub struct Pair {
    pub a: Node,
    pub b: Node,
    pub now: Instant,
    pub latency: Duration,
    pub faults: Faults,
    pub rng: Rng,
    /// Drops packets for which this returns true (after `faults`).
    pub drop_if: Option<DropFn>,
    /// Flips one bit of the last payload byte of packets for which this returns true (after
    /// `faults` and `drop_if`).
    pub corrupt_if: Option<DropFn>,
    /// The SRQ b's QP draws from (b's QP must be created with `QpConfig::srq`).
    pub b_srq: Option<SharedSrq>,
    /// What the "host" checks before handing a packet to a QP. The default leaves the ICRC to
    /// the QP (cut-through placement, as the device core does); `Checks::ALL` verifies first.
    pub host_checks: Checks,
    inflight: Vec<InFlight>,
    /// Packets seen on the wire in order: (from_a, bytes).
    pub wire: Vec<(bool, Vec<u8>)>,
    seq: usize,
}

impl Pair {
    pub fn new() -> Pair {
        Pair {
            a: Node::new(0x11, Ipv4Addr::new(10, 0, 0, 1)),
            b: Node::new(0x12, Ipv4Addr::new(10, 0, 0, 2)),
            now: Instant::from_nanos(1_000_000),
            latency: Duration::from_micros(5),
            faults: Faults::default(),
            rng: Rng::new(1),
            drop_if: None,
            corrupt_if: None,
            b_srq: None,
            host_checks: Checks {
                icrc: false,
                ..Checks::ALL
            },
            inflight: Vec::new(),
            wire: Vec::new(),
            seq: 0,
        }
    }

    /// Moves both QPs RESET → INIT → RTR → RTS, connected to each other.
    pub fn connect(&mut self, p: ConnParams) {
        let (a_qpn, b_qpn) = (self.a.qp.qpn(), self.b.qp.qpn());
        let (a_ip, b_ip) = (self.a.ip, self.b.ip);
        for (node, local, remote, rq_psn, sq_psn, dest) in [
            (&mut self.a, a_ip, b_ip, p.b_psn, p.a_psn, b_qpn),
            (&mut self.b, b_ip, a_ip, p.a_psn, p.b_psn, a_qpn),
        ] {
            node.qp
                .modify(&QpAttr {
                    state: Some(QpState::Init),
                    pkey_index: Some(0),
                    port: Some(1),
                    access: Some(p.access),
                    ..QpAttr::default()
                })
                .expect("INIT");
            node.qp
                .modify(&QpAttr {
                    state: Some(QpState::Rtr),
                    av: Some(AddressVector {
                        sgid: IpAddr::V4(local),
                        dgid: IpAddr::V4(remote),
                        hop_limit: 64,
                        traffic_class: 0,
                        flow_label: 0,
                        udp_sport: None,
                    }),
                    path_mtu: Some(p.mtu),
                    dest_qp: Some(dest),
                    rq_psn: Some(Psn::new(rq_psn)),
                    max_dest_rd_atomic: Some(p.max_rd_atomic),
                    min_rnr_timer: Some(p.min_rnr_timer),
                    ..QpAttr::default()
                })
                .expect("RTR");
            node.qp
                .modify(&QpAttr {
                    state: Some(QpState::Rts),
                    sq_psn: Some(Psn::new(sq_psn)),
                    timeout: Some(p.timeout),
                    retry_cnt: Some(p.retry_cnt),
                    rnr_retry: Some(p.rnr_retry),
                    max_rd_atomic: Some(p.max_rd_atomic),
                    ..QpAttr::default()
                })
                .expect("RTS");
        }
    }

    fn transmit(&mut self) -> bool {
        let mut any = false;
        for from_a in [true, false] {
            loop {
                let mut buf = vec![0u8; 4096 + 200];
                let node = if from_a { &mut self.a } else { &mut self.b };
                let n = match node.qp.poll_transmit(self.now, &mut buf, &mut node.mem) {
                    Ok(Some(n)) => n,
                    Ok(None) => break,
                    Err(e) => panic!("poll_transmit: {e}"),
                };
                buf.truncate(n);
                node.sent.push(buf.clone());
                any = true;
                self.wire.push((from_a, buf.clone()));
                let (opcode, psn) = {
                    let p = RoceV2Packet::new_checked(&buf, &Checks::ALL)
                        .expect("QP emits valid packets");
                    (p.roce().opcode(), p.roce().bth().psn())
                };
                let idx = self.seq;
                self.seq += 1;
                if self.rng.chance(self.faults.loss) {
                    continue;
                }
                if let Some(f) = self.drop_if.as_mut() {
                    if f(&WirePacket {
                        from_a,
                        opcode,
                        psn,
                        index: idx,
                    }) {
                        continue;
                    }
                }
                if let Some(f) = self.corrupt_if.as_mut() {
                    if f(&WirePacket {
                        from_a,
                        opcode,
                        psn,
                        index: idx,
                    }) {
                        // Before the pad and the 4-byte ICRC.
                        let n = buf.len();
                        buf[n - 9] ^= 0x40;
                    }
                }
                let mut at = self.now + self.latency;
                if self.rng.chance(self.faults.reorder) {
                    at = at + Duration::from_micros(1 + self.rng.below(20));
                }
                if self.rng.chance(self.faults.corrupt) {
                    let bit = self.rng.below(buf.len() as u64 * 8) as usize;
                    buf[bit / 8] ^= 1 << (bit % 8);
                }
                if self.rng.chance(self.faults.duplicate) {
                    self.inflight.push(InFlight {
                        at: at + Duration::from_micros(3),
                        to_b: from_a,
                        bytes: buf.clone(),
                    });
                }
                self.inflight.push(InFlight {
                    at,
                    to_b: from_a,
                    bytes: buf,
                });
            }
        }
        any
    }

    fn deliver(&mut self) -> bool {
        let now = self.now;
        let mut due: Vec<InFlight> = Vec::new();
        let mut i = 0;
        while i < self.inflight.len() {
            if self.inflight[i].at <= now {
                due.push(self.inflight.remove(i));
            } else {
                i += 1;
            }
        }
        due.sort_by_key(|p| p.at);
        let any = !due.is_empty();
        for p in due {
            let node = if p.to_b { &mut self.b } else { &mut self.a };
            let srq = if p.to_b { self.b_srq.clone() } else { None };
            match RoceV2Packet::new_checked(&p.bytes, &self.host_checks) {
                Ok(pkt) => match srq {
                    Some(s) => {
                        node.qp
                            .handle_packet_srq(now, &pkt, &mut node.mem, &mut *s.borrow_mut())
                    }
                    None => node.qp.handle_packet(now, &pkt, &mut node.mem),
                },
                Err(_) => node.rejected += 1,
            }
        }
        any
    }

    /// One step: send everything ready, deliver what is due, or jump the clock to the next
    /// event. Returns false when nothing will ever happen again.
    pub fn step(&mut self) -> bool {
        let sent = self.transmit();
        let delivered = self.deliver();
        self.a.drain_completions();
        self.b.drain_completions();
        if sent || delivered {
            return true;
        }
        let next_pkt = self.inflight.iter().map(|p| p.at).min();
        let next_timer = [self.a.qp.poll_timeout(), self.b.qp.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let Some(next) = [next_pkt, next_timer].into_iter().flatten().min() else {
            return false;
        };
        if next > self.now {
            self.now = next;
        }
        self.a.qp.handle_timeout(self.now);
        self.b.qp.handle_timeout(self.now);
        true
    }

    /// Steps until `done` holds or `max_steps` pass; returns whether `done` held.
    pub fn drive_until(&mut self, max_steps: usize, mut done: impl FnMut(&Pair) -> bool) -> bool {
        for _ in 0..max_steps {
            if done(self) {
                return true;
            }
            if !self.step() {
                return done(self);
            }
        }
        done(self)
    }

    /// Steps until nothing is left to do (bounded).
    pub fn drive(&mut self) {
        for _ in 0..1_000_000 {
            if !self.step() {
                return;
            }
        }
        panic!("did not settle in a million steps");
    }
}

/// (from_a, opcode, PSN, AckReq, AETH syndrome byte, payload len) of every packet on the wire.
pub fn wire_summary(p: &Pair) -> Vec<(bool, Opcode, u32, bool, Option<u8>, usize)> {
    p.wire
        .iter()
        .map(|(a, b)| {
            let pkt = RoceV2Packet::new_checked(b, &Checks::ALL).expect("valid");
            let r = pkt.roce();
            let syn = r.aeth().map(|x| x.syndrome().to_byte());
            (
                *a,
                r.opcode(),
                r.bth().psn().value(),
                r.bth().ack_req(),
                syn,
                r.payload().len(),
            )
        })
        .collect()
}

/// A queue of pending work for property tests.
pub type Queue<T> = VecDeque<T>;

/// Asserts two byte ranges are equal, reporting the first difference instead of both ranges.
#[track_caller]
pub fn assert_same(what: &str, got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!(
            "{what}: first difference at byte {i}: {} != {}",
            got[i], want[i]
        );
    }
}
