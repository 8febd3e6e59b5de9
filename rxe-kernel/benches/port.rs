//! Two rxe-kernel ports joined by an in-memory NIC pair (frames handed over as the host's driver
//! would, no line rate): 64 KiB RDMA WRITEs at path MTU 4096, through receive classification,
//! the device core (ICRC emitted and verified on every packet), Ethernet framing and
//! transmission control (`none`). Printed beside a baseline measured in the same run: `memcpy`
//! of the message plus one CRC-32 of it (what one copy and one ICRC of the bytes cost), the same
//! baseline as `rxe-transport`'s bench, so the two read side by side.
//!
//! `cargo bench -p rxe-kernel --bench port`; `-- --test` for a quick smoke run.

use core::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant as StdInstant};

use criterion::{Criterion, Throughput};
use rxe_kernel::netdev::{MacAddr, Neighbour, NetDev, TxError};
use rxe_kernel::port::Port;
use rxe_transport::device::{CqId, QpInit, RcConnect};
use rxe_transport::{Access, Instant, Mtu, Remote, SendFlags, SendWr, Sge, WcStatus, WrOpcode};
use rxe_wire::{Psn, Qpn, Rkey};

const LEN: u32 = 65536;
const COUNT: u32 = 8;
const BASE: u64 = 0x100_0000;

/// A NIC that takes every frame at once into `out` (buffers recycled).
struct MemNic {
    mac: MacAddr,
    ip: IpAddr,
    peer: (IpAddr, MacAddr),
    out: Vec<Vec<u8>>,
    spare: Vec<Vec<u8>>,
    taken: u64,
}

impl NetDev for MemNic {
    fn transmit(&mut self, frame: &[u8]) -> Result<(), TxError> {
        let mut b = self.spare.pop().unwrap_or_default();
        b.clear();
        b.extend_from_slice(frame);
        self.out.push(b);
        self.taken += 1;
        Ok(())
    }
    fn mtu(&self) -> u32 {
        9000
    }
    fn mac(&self) -> MacAddr {
        self.mac
    }
    fn addresses(&self) -> Vec<IpAddr> {
        vec![self.ip]
    }
    fn has_address(&self, ip: IpAddr) -> bool {
        ip == self.ip
    }
    fn resolve(&mut self, ip: IpAddr) -> Neighbour {
        if ip == self.peer.0 {
            Neighbour::Known(self.peer.1)
        } else {
            Neighbour::Pending
        }
    }
    fn link_up(&self) -> bool {
        true
    }
    fn frames_taken(&self) -> u64 {
        self.taken
    }
}

struct Rig {
    a: Port<MemNic>,
    b: Port<MemNic>,
    qa: Qpn,
    cqa: CqId,
    ka: u32,
    kb: u32,
    now: u64,
}

impl Rig {
    fn new() -> Rig {
        let nic = |last: u8, peer: u8| MemNic {
            mac: MacAddr([2, 0, 0, 0, 0, last]),
            ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)),
            peer: (
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, peer)),
                MacAddr([2, 0, 0, 0, 0, peer]),
            ),
            out: Vec::new(),
            spare: Vec::new(),
            taken: 0,
        };
        let (na, nb) = (nic(1, 2), nic(2, 1));
        let (ipa, ipb) = (na.ip, nb.ip);
        let mut a = Port::new("rxe0", na, 1).expect("port");
        let mut b = Port::new("rxe1", nb, 2).expect("port");
        let access = Access::LOCAL_WRITE | Access::REMOTE_WRITE;
        let setup = |p: &mut Port<MemNic>| {
            let c = p.core();
            let pd = c.alloc_pd().expect("pd");
            let mr = c
                .reg_mr(pd, BASE, (LEN * COUNT) as usize, access)
                .expect("mr");
            let cq = c.create_cq(64).expect("cq");
            let qp = c.create_qp(&QpInit::rc(pd, cq)).expect("qp");
            (qp, cq, mr.lkey)
        };
        let (qa, cqa, ka) = setup(&mut a);
        let (qb, _, kb) = setup(&mut b);
        let mut rc = RcConnect::new(ipa, ipb, qb, Psn::new(1), Psn::new(2));
        rc.mtu = Mtu::M4096;
        a.core().connect_rc(qa, &rc).expect("connect");
        let mut rc = RcConnect::new(ipb, ipa, qa, Psn::new(2), Psn::new(1));
        rc.mtu = Mtu::M4096;
        b.core().connect_rc(qb, &rc).expect("connect");
        Rig {
            a,
            b,
            qa,
            cqa,
            ka,
            kb,
            now: 1_000,
        }
    }

    /// `COUNT` WRITEs of `LEN` bytes, the last signaled; until its completion.
    fn run(&mut self) {
        for i in 0..COUNT {
            let off = u64::from(i * LEN);
            let wr = SendWr::new(
                u64::from(i),
                WrOpcode::RdmaWrite(Remote {
                    addr: BASE + off,
                    rkey: Rkey(self.kb),
                }),
                Some(Sge {
                    addr: BASE + off,
                    length: LEN,
                    lkey: self.ka,
                }),
                if i + 1 == COUNT {
                    SendFlags::SIGNALED
                } else {
                    SendFlags::empty()
                },
            );
            self.a.core().post_send(self.qa, wr).expect("post");
        }
        loop {
            self.now += 1_000;
            let t = Instant::from_nanos(self.now);
            self.a.poll(t);
            let frames = std::mem::take(&mut self.a.netdev_mut().out);
            for f in &frames {
                self.b.receive(t, f);
            }
            self.a.netdev_mut().spare.extend(frames);
            self.b.poll(t);
            let frames = std::mem::take(&mut self.b.netdev_mut().out);
            for f in &frames {
                self.a.receive(t, f);
            }
            self.b.netdev_mut().spare.extend(frames);
            if let Some(wc) = self.a.core().poll_cq(self.cqa) {
                assert_eq!(wc.status, WcStatus::Success);
                return;
            }
        }
    }
}

fn baseline(src: &[u8], dst: &mut [u8]) {
    dst.copy_from_slice(src);
    let mut h = crc32fast::Hasher::new();
    h.update(dst);
    black_box(h.finalize());
}

/// Bytes per second of `f`, which moves `bytes`, best of a few rounds within `budget`.
fn rate(budget: Duration, bytes: u64, mut f: impl FnMut()) -> f64 {
    let start = StdInstant::now();
    let mut best = f64::MAX;
    while start.elapsed() < budget || best == f64::MAX {
        let t = StdInstant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    bytes as f64 / best.max(1e-9)
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    {
        let mut g = c.benchmark_group("port");
        let mut rig = Rig::new();
        g.throughput(Throughput::Bytes(u64::from(LEN * COUNT)));
        g.bench_function("write_64k_x8", |b| b.iter(|| rig.run()));
        let src = vec![7u8; LEN as usize];
        let mut dst = vec![0u8; LEN as usize];
        g.throughput(Throughput::Bytes(u64::from(LEN)));
        g.bench_function("baseline_memcpy_crc_65536", |b| {
            b.iter(|| baseline(&src, &mut dst))
        });
        g.finish();
    }
    c.final_summary();
    let quick = std::env::args().any(|a| a == "--test");
    let budget = Duration::from_millis(if quick { 20 } else { 800 });
    let mut rig = Rig::new();
    let ours = rate(budget, u64::from(LEN * COUNT), || rig.run());
    // The data made it.
    let a = rig.a.core().mr_bytes(rig.ka).expect("mr").to_vec();
    assert!(rig.b.core().mr_bytes(rig.kb).expect("mr") == &a[..]);
    let src = vec![7u8; LEN as usize];
    let mut dst = vec![0u8; LEN as usize];
    let base = rate(budget, u64::from(LEN), || baseline(&src, &mut dst));
    println!();
    println!("== rxe-kernel summary: two ports, in-memory NICs, Ethernet framing, ICRC on every packet ==");
    println!(
        "write_64k  MTU 4096: {:>6.2} GB/s   baseline memcpy+CRC of {LEN} B: {:>6.2} GB/s   ratio {:>5.1}%",
        ours / 1e9,
        base / 1e9,
        ours / base * 100.0
    );
}
