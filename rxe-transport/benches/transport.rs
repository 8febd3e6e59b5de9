//! The RC transport in memory, no sockets: RDMA WRITE of 64 KiB and RDMA READ of 4 KiB and 64 KiB
//! messages through requester → responder → completer, every packet emitted with its ICRC and its ICRC
//! verified by the receiving QP (the host parses with `Checks { icrc: false, .. }` and the QP
//! checks, placing in-order continuations while it computes the ICRC: cut-through).
//!
//! Printed beside a baseline measured in the same run: `memcpy` of the message plus one CRC-32
//! (`crc32fast`, PCLMUL/AVX-512) over it, i.e. what one copy and one ICRC of the same bytes cost.
//! Target: >= 50%. The transport moves every byte twice (memory → packet at the sender, packet
//! → memory at the receiver), each time with a CRC; with copy and CRC fused into one pass
//! (`rxe_wire::icrc::fused_copy_available`) the least it can cost is two fused passes, which is
//! printed too.
//!
//! `cargo bench -p rxe-transport --bench transport`; `-- --test` for a quick smoke run.

use core::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant as StdInstant};

use criterion::{Criterion, Throughput};
use rxe_transport::{
    Access, AccessError, AddressVector, AtomicOp, Instant, KeyKind, Memory, MrInfo, Mtu, Pd, Qp,
    QpAttr, QpConfig, QpState, Remote, SendFlags, SendWr, Sge, WrOpcode,
};
use rxe_wire::{Checks, Psn, Qpn, Rkey, RoceV2Packet};

type BenchQp = Qp<256, 256>;

/// One region per node, key 1.
struct Flat {
    addr: u64,
    data: Vec<u8>,
}

impl Memory for Flat {
    fn lookup(&self, key: u32) -> Option<MrInfo> {
        (key == 1).then_some(MrInfo {
            pd: Pd(1),
            addr: self.addr,
            length: self.data.len() as u64,
            access: Access::LOCAL_WRITE | Access::REMOTE_WRITE | Access::REMOTE_READ,
            kind: KeyKind::Mr,
        })
    }
    fn read(&self, _: u32, addr: u64, out: &mut [u8]) {
        let o = (addr - self.addr) as usize;
        out.copy_from_slice(&self.data[o..o + out.len()]);
    }
    fn write(&mut self, _: u32, addr: u64, d: &[u8]) {
        let o = (addr - self.addr) as usize;
        self.data[o..o + d.len()].copy_from_slice(d);
    }
    fn slice(&self, _: u32, addr: u64, len: usize) -> Option<&[u8]> {
        let o = (addr - self.addr) as usize;
        self.data.get(o..o + len)
    }
    fn slice_mut(&mut self, _: u32, addr: u64, len: usize) -> Option<&mut [u8]> {
        let o = (addr - self.addr) as usize;
        self.data.get_mut(o..o + len)
    }
    fn atomic(&mut self, _: u32, _: u64, _: AtomicOp) -> u64 {
        0
    }
    fn invalidate(&mut self, _: u32, _: Pd) -> Result<(), AccessError> {
        Ok(())
    }
}

struct Rig {
    a: BenchQp,
    b: BenchQp,
    am: Flat,
    bm: Flat,
    buf: Vec<u8>,
    now: Instant,
    wr_id: u64,
}

const REGION: usize = 1 << 20;

/// What the host checks before a QP sees a packet: everything but the ICRC, which the QP checks.
const HOST_CHECKS: Checks = Checks {
    icrc: false,
    ..Checks::ALL
};

impl Rig {
    fn new(mtu: Mtu) -> Rig {
        let qp = |n| BenchQp::new(QpConfig::rc(Qpn::new(n), Pd(1))).expect("qp");
        let (mut a, mut b) = (qp(0x11), qp(0x12));
        let ips = [Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)];
        for (i, q) in [&mut a, &mut b].into_iter().enumerate() {
            let access = Some(Access::REMOTE_WRITE | Access::REMOTE_READ);
            q.modify(&QpAttr {
                state: Some(QpState::Init),
                pkey_index: Some(0),
                port: Some(1),
                access,
                ..Default::default()
            })
            .expect("INIT");
            let av = AddressVector {
                sgid: IpAddr::V4(ips[i]),
                dgid: IpAddr::V4(ips[1 - i]),
                hop_limit: 64,
                traffic_class: 0,
                flow_label: 0,
                udp_sport: None,
            };
            q.modify(&QpAttr {
                state: Some(QpState::Rtr),
                av: Some(av),
                path_mtu: Some(mtu),
                dest_qp: Some(Qpn::new(if i == 0 { 0x12 } else { 0x11 })),
                rq_psn: Some(Psn::new(0)),
                max_dest_rd_atomic: Some(16),
                min_rnr_timer: Some(12),
                ..Default::default()
            })
            .expect("RTR");
            q.modify(&QpAttr {
                state: Some(QpState::Rts),
                sq_psn: Some(Psn::new(0)),
                timeout: Some(14),
                retry_cnt: Some(7),
                rnr_retry: Some(7),
                max_rd_atomic: Some(16),
                ..Default::default()
            })
            .expect("RTS");
        }
        let fill = |seed: u8| {
            (0..REGION)
                .map(|i| (i as u8).wrapping_mul(131).wrapping_add(seed))
                .collect()
        };
        Rig {
            a,
            b,
            am: Flat {
                addr: 0x1000_0000,
                data: fill(1),
            },
            bm: Flat {
                addr: 0x2000_0000,
                data: fill(2),
            },
            buf: vec![0u8; 8192],
            now: Instant::from_nanos(1),
            wr_id: 0,
        }
    }

    /// Moves packets between the QPs until both are idle; returns packets moved.
    fn pump(&mut self) -> usize {
        let mut moved = 0;
        loop {
            let mut progress = false;
            while let Some(n) = self
                .a
                .poll_transmit(self.now, &mut self.buf, &mut self.am)
                .expect("buffer")
            {
                let p = RoceV2Packet::new_checked(&self.buf[..n], &HOST_CHECKS).expect("valid");
                self.b.handle_packet(self.now, &p, &mut self.bm);
                moved += 1;
                progress = true;
            }
            while let Some(n) = self
                .b
                .poll_transmit(self.now, &mut self.buf, &mut self.bm)
                .expect("buffer")
            {
                let p = RoceV2Packet::new_checked(&self.buf[..n], &HOST_CHECKS).expect("valid");
                self.a.handle_packet(self.now, &p, &mut self.am);
                moved += 1;
                progress = true;
            }
            if !progress {
                return moved;
            }
        }
    }

    /// Posts `count` operations of `len` bytes (WRITE a→b or READ b→a) and runs them to completion.
    fn run(&mut self, read: bool, len: u32, count: u32) {
        for i in 0..count {
            // The same buffers every time, as perftest does (and as the baseline does).
            let remote = Remote {
                addr: 0x2000_0000,
                rkey: Rkey(1),
            };
            let op = if read {
                WrOpcode::RdmaRead(remote)
            } else {
                WrOpcode::RdmaWrite(remote)
            };
            let sge = Sge {
                addr: 0x1000_0000,
                length: len,
                lkey: 1,
            };
            let flags = if i + 1 == count {
                SendFlags::SIGNALED
            } else {
                SendFlags::empty()
            };
            self.wr_id += 1;
            self.a
                .post_send(SendWr::new(self.wr_id, op, Some(sge), flags), &self.am)
                .expect("post");
        }
        self.pump();
        let wc = self.a.poll_send_completion().expect("completion");
        assert_eq!(wc.status, rxe_transport::WcStatus::Success);
        // Every packet was received through the ICRC check and none failed it.
        assert_eq!(self.a.counters().icrc_err + self.b.counters().icrc_err, 0);
    }
}

fn baseline(src: &[u8], dst: &mut [u8]) {
    dst.copy_from_slice(src);
    black_box(crc32fast::hash(dst));
}

/// The least a RoCE pipeline does per packet with copy and CRC fused: the sender copies from
/// memory into the packet computing the ICRC, the receiver copies into memory checking it.
fn fused_minimum(src: &[u8], pkt: &mut [u8], dst: &mut [u8], mtu: usize) {
    for (s, d) in src.chunks(mtu).zip(dst.chunks_mut(mtu)) {
        let p = &mut pkt[..s.len()];
        let mut c = rxe_wire::icrc::Crc32::new(0);
        c.copy_update(p, s);
        black_box(c.finalize());
        let mut c = rxe_wire::icrc::Crc32::new(0);
        c.copy_update(d, p);
        black_box(c.finalize());
    }
}

/// Bytes per second of `f`, which moves `bytes` per call, timed for about `budget`.
fn rate(budget: Duration, bytes: u64, mut f: impl FnMut()) -> f64 {
    f();
    let mut iters = 1u64;
    loop {
        let t = StdInstant::now();
        for _ in 0..iters {
            f();
        }
        let e = t.elapsed();
        if e >= budget / 4 || iters > 1 << 30 {
            let mut best = e;
            for _ in 0..3 {
                let t = StdInstant::now();
                for _ in 0..iters {
                    f();
                }
                best = best.min(t.elapsed());
            }
            return (bytes * iters) as f64 / best.as_secs_f64();
        }
        iters *= 2;
    }
}

fn main() {
    let cases = [
        ("write_64k", false, 65536u32, 8u32, Mtu::M4096),
        ("read_4k", true, 4096, 64, Mtu::M4096),
        ("read_64k", true, 65536, 8, Mtu::M4096),
    ];
    // `RXE_BENCH_PROFILE=write_64k` (or read_4k, read_64k): run only that case's transport loop for a few
    // seconds, for `perf record` / `perf stat` of the hot path without baselines mixed in.
    if let Ok(only) = std::env::var("RXE_BENCH_PROFILE") {
        for (name, read, len, count, mtu) in cases {
            if name == only {
                let mut rig = Rig::new(mtu);
                let t = StdInstant::now();
                let mut bytes = 0u64;
                while t.elapsed() < Duration::from_secs(3) {
                    rig.run(read, len, count);
                    bytes += u64::from(len) * u64::from(count);
                }
                println!(
                    "{name}: {:.2} GB/s",
                    bytes as f64 / t.elapsed().as_secs_f64() / 1e9
                );
            }
        }
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    {
        let mut g = c.benchmark_group("transport");
        let mut baselines = Vec::new();
        for (name, read, len, count, mtu) in cases {
            let mut rig = Rig::new(mtu);
            g.throughput(Throughput::Bytes(u64::from(len) * u64::from(count)));
            g.bench_function(name, |bch| bch.iter(|| rig.run(read, len, count)));
            // One baseline per message size: criterion refuses two benchmarks of one name.
            if baselines.contains(&len) {
                continue;
            }
            baselines.push(len);
            let src = vec![7u8; len as usize];
            let mut dst = vec![0u8; len as usize];
            g.throughput(Throughput::Bytes(u64::from(len)));
            g.bench_function(format!("baseline_memcpy_crc_{}", len), |bch| {
                bch.iter(|| baseline(&src, &mut dst))
            });
        }
        g.finish();
    }
    c.final_summary();

    let quick = std::env::args().any(|a| a == "--test");
    let budget = if quick {
        Duration::from_millis(20)
    } else {
        Duration::from_millis(800)
    };
    println!();
    println!("== rxe-transport summary: in memory, ICRC emitted and verified on every packet ==");
    for (name, read, len, count, mtu) in cases {
        let mut rig = Rig::new(mtu);
        let ours = rate(budget, u64::from(len) * u64::from(count), || {
            rig.run(read, len, count)
        });
        let src = vec![7u8; len as usize];
        let mut dst = vec![0u8; len as usize];
        let base = rate(budget, u64::from(len), || baseline(&src, &mut dst));
        let mut pkt = vec![0u8; mtu_bytes(mtu) as usize];
        let mtu_len = mtu_bytes(mtu) as usize;
        let e2e = rate(budget, u64::from(len), || {
            fused_minimum(&src, &mut pkt, &mut dst, mtu_len)
        });
        let ratio = ours / base;
        println!(
            "{name:<10} MTU {:>4}: {:>6.2} GB/s   baseline memcpy+CRC of {} B: {:>6.2} GB/s   ratio {:>5.1}% (target >= 50%) {}",
            mtu_bytes(mtu),
            ours / 1e9,
            len,
            base / 1e9,
            ratio * 100.0,
            if ratio >= 0.5 { "ok" } else { "MISSED" }
        );
        println!(
            "{:<21} least possible (2 fused copy+CRC passes per packet, fused: {}): {:>6.2} GB/s, ours {:>5.1}% of it",
            "",
            rxe_wire::icrc::fused_copy_available(),
            e2e / 1e9,
            ours / e2e * 100.0
        );
    }
}

fn mtu_bytes(m: Mtu) -> u32 {
    m.bytes()
}
