//! Wire-format speed on one 4 KiB RC RDMA WRITE ONLY packet (IPv4, RETH), against the bare
//! `crc32fast` CRC over the same bytes.
//!
//! Criterion runs the `wire` group (`bare_crc32fast`, `bare_crc_soft`, `parse_headers`,
//! `parse_verify`, `parse_repr`, `emit`); then a short calibrated loop measures the same in this
//! process and prints their ratios to the bare CRC with the targets:
//!
//! - `verify/bare <= 1.3x`: the receive path (`RoceV2Packet::new_checked` with every check, the
//!   ICRC included, then reading opcode, QP, PSN, RETH and payload) costs little more than the
//!   ICRC itself;
//! - `parse_headers <= 20 ns`: the same without checksums and ICRC.
//!
//! `parse_repr` builds the whole `RoceV2Repr` (all checks) for comparison; `emit` writes the
//! packet with its ICRC, `emit_fused` the same with the payload copied in through a
//! `PayloadSink` (copy and ICRC in one pass), `emit_template` that through a `PacketTemplate`
//! (a connected QP's IP and UDP headers rendered once); `icrc_headers` is `parse_headers` plus the ICRC of
//! the 56 header bytes (IPv4, UDP, BTH, RETH) loaded in place from the packet, the part of
//! every packet's ICRC that is not payload;
//! `verify_ipv4_ident` is the UDP-socket receive check, which solves the IPv4 Identification
//! from the ICRC (`icrc::ipv4_ident`).
//!
//! `cargo bench -p rxe-wire --bench wire` runs everything; `-- --test` runs each benchmark once
//! and shortens the summary loops to a few milliseconds.

use core::hint::black_box;
use core::net::Ipv4Addr;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use rxe_wire::{
    bth, ethernet, icrc, ipv4, reth, udp, Checks, ExtHeaders, FrameRepr, IpRepr, IpVersion,
    MacAddr, Opcode, PKey, PacketTemplate, Psn, Qpn, Rkey, RoceRepr, RoceV2Packet, RoceV2Repr,
};

/// Payload of the benchmark packet: one 4 KiB page, as rxe sends with a 4096 MTU.
const PAYLOAD_LEN: usize = 4096;

/// Pseudo-random payload bytes (xorshift64*, fixed seed), so the CRC sees no pattern.
fn payload() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..PAYLOAD_LEN)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// The benchmark frame: Ethernet, IPv4, UDP, BTH (RC RDMA WRITE ONLY), RETH, payload, ICRC.
fn frame_repr(payload: &[u8]) -> FrameRepr<'_> {
    let bth = bth::Repr {
        opcode: Opcode::RC_RDMA_WRITE_ONLY,
        solicited: false,
        mig_req: false,
        pad_count: 0,
        pkey: PKey::DEFAULT,
        fecn: false,
        becn: false,
        dest_qp: Qpn::new(0x11),
        ack_req: true,
        psn: Psn::new(0x00c8_263b),
    };
    let ext = ExtHeaders {
        reth: Some(reth::Repr {
            va: 0x558e_1b2c_3000,
            rkey: Rkey(0x1234),
            dma_len: PAYLOAD_LEN as u32,
        }),
        ..ExtHeaders::default()
    };
    FrameRepr {
        eth: ethernet::Repr {
            dst: MacAddr([0x52, 0x54, 0x00, 0x77, 0x00, 0x0b]),
            src: MacAddr([0x52, 0x54, 0x00, 0x77, 0x00, 0x0c]),
            vlan: None,
            ip_version: IpVersion::V4,
        },
        packet: RoceV2Repr {
            ip: IpRepr::V4(ipv4::Repr {
                src: Ipv4Addr::new(10, 77, 0, 12),
                dst: Ipv4Addr::new(10, 77, 0, 11),
                tos: 0,
                ident: 0x1234,
                dont_frag: true,
                ttl: 64,
            }),
            udp: udp::Repr {
                src_port: 0xd872,
                dst_port: udp::ROCE_PORT,
                checksum: false,
            },
            roce: RoceRepr::new(bth, ext, payload),
        },
    }
}

/// Reads what a responder reads of a WRITE: opcode, QP, PSN, RETH and the payload slice.
fn touch(p: &RoceV2Packet<'_>) -> (u8, u32, u32, u64, usize) {
    let r = p.roce();
    let bth = r.bth();
    let va = r.reth().map_or(0, |h| h.va());
    (
        bth.opcode().0,
        bth.dest_qp().value(),
        bth.psn().value(),
        va,
        r.payload().len(),
    )
}

/// One benchmark: a name and a closure run once per iteration.
type Bench<'a> = (&'static str, Box<dyn FnMut() + 'a>);

/// The benchmarks over `ip` (the emitted IP packet) and `packet` (its repr), writing into
/// `out` for `emit`.
fn benches<'a>(ip: &'a [u8], packet: &'a RoceV2Repr<'a>, out: &'a mut [u8]) -> Vec<Bench<'a>> {
    let third = out.len() / 3;
    let (out, rest) = out.split_at_mut(third);
    let (out2, out3) = rest.split_at_mut(third);
    let template = PacketTemplate::new(&packet.ip, &packet.udp).expect("template");
    let ident = match packet.ip {
        IpRepr::V4(r) => r.ident,
        IpRepr::V6(_) => 0,
    };
    let solver = icrc::ipv4_ident::IdentSolver::new(ip.len() - 28 - 4);
    vec![
        (
            "bare_crc32fast",
            Box::new(move || {
                black_box(crc32fast::hash(black_box(ip)));
            }),
        ),
        (
            "bare_crc_soft",
            Box::new(move || {
                black_box(icrc::soft::crc32(0, black_box(ip)));
            }),
        ),
        (
            "parse_headers",
            Box::new(move || {
                let p =
                    RoceV2Packet::new_checked(black_box(ip), black_box(&Checks::STRUCTURE_ONLY));
                black_box(touch(&p.expect("parse_headers")));
            }),
        ),
        (
            "parse_verify",
            Box::new(move || {
                let p = RoceV2Packet::new_checked(black_box(ip), black_box(&Checks::ALL));
                black_box(touch(&p.expect("parse_verify")));
            }),
        ),
        (
            "parse_repr",
            Box::new(move || {
                black_box(RoceV2Repr::parse(black_box(ip)).expect("parse_repr"));
            }),
        ),
        (
            "emit",
            Box::new(move || {
                let n = black_box(packet).emit(black_box(&mut *out));
                black_box(n.expect("emit"));
            }),
        ),
        (
            "emit_fused",
            Box::new(move || {
                let payload = black_box(packet).roce.payload;
                let n =
                    black_box(packet).emit_with_sink(black_box(&mut *out2), payload.len(), |s| {
                        s.copy_from(payload);
                    });
                black_box(n.expect("emit_fused"));
            }),
        ),
        (
            "emit_template",
            Box::new(move || {
                // The connected-QP send path: IP and UDP from a PacketTemplate, payload fused.
                let roce = &black_box(packet).roce;
                let n = template.emit_with_sink(
                    black_box(&mut *out3),
                    ident,
                    &roce.bth,
                    &roce.ext,
                    roce.payload.len(),
                    |s| {
                        s.copy_from(roce.payload);
                    },
                );
                black_box(n.expect("emit_template"));
            }),
        ),
        (
            "verify_ipv4_ident",
            Box::new(move || {
                // The UDP-socket receive path: the Identification solved from the ICRC.
                let (t, icrc) = ip[28..].split_at(ip.len() - 28 - 4);
                let icrc = u32::from_le_bytes([icrc[0], icrc[1], icrc[2], icrc[3]]);
                let IpRepr::V4(v4) = packet.ip else { return };
                let blind = ipv4::Repr { ident: 0, ..v4 };
                black_box(
                    solver
                        .solve(&blind, &packet.udp, black_box(t), icrc)
                        .expect("solves"),
                );
            }),
        ),
        (
            "icrc_headers",
            Box::new(move || {
                // IPv4 + UDP + BTH + RETH: what every packet hashes besides its payload. Parsed
                // without the ICRC, then the cut-through source starts the ICRC over the
                // headers in place (what a receiving QP does): subtract parse_headers.
                let p =
                    RoceV2Packet::new_checked(black_box(ip), black_box(&Checks::STRUCTURE_ONLY))
                        .expect("parse");
                black_box(p.payload_source());
            }),
        ),
    ]
}

/// Calls per timed batch: doubles from 1 until one batch of `f` takes at least `target`.
fn calibrate(f: &mut dyn FnMut(), target: Duration) -> u64 {
    let mut batch: u64 = 1;
    loop {
        let t = Instant::now();
        for _ in 0..batch {
            f();
        }
        if t.elapsed() >= target || batch >= 1 << 30 {
            return batch;
        }
        batch *= 2;
    }
}

/// Runs batches of `batch` calls of `f` for `time` (at least 3 batches), pushing the nanoseconds
/// per call of each batch to `out`.
fn sample(f: &mut dyn FnMut(), batch: u64, time: Duration, out: &mut Vec<f64>) {
    let end = Instant::now() + time;
    let mut n = 0;
    while Instant::now() < end || n < 3 {
        let t = Instant::now();
        for _ in 0..batch {
            f();
        }
        out.push(t.elapsed().as_nanos() as f64 / batch as f64);
        n += 1;
    }
}

/// Per-call nanoseconds of one benchmark: median, mean and 10th percentile of its batches.
struct Stats {
    name: &'static str,
    median: f64,
    mean: f64,
    p10: f64,
}

impl Stats {
    fn new(name: &'static str, mut v: Vec<f64>) -> Stats {
        v.sort_by(f64::total_cmp);
        Stats {
            name,
            median: v[v.len() / 2],
            mean: v.iter().sum::<f64>() / v.len() as f64,
            p10: v[v.len() / 10],
        }
    }
}

/// Runs the benchmarks again with plain timing loops and prints ratios and targets.
///
/// Each benchmark gets `budget` in all, spread over interleaved rounds (every benchmark runs once
/// per round), so that a burst of load from elsewhere on the machine hits the baseline and the
/// others alike; batches last about 1 ms (less in `--test` mode).
fn summary(ip: &[u8], packet: &RoceV2Repr<'_>, out: &mut [u8], budget: Duration) {
    const ROUNDS: u32 = 10;
    let mut benches = benches(ip, packet, out);
    let batch_target = (budget / (ROUNDS * 10)).min(Duration::from_millis(1));
    let batches: Vec<u64> = benches
        .iter_mut()
        .map(|(_, f)| {
            let batch = calibrate(&mut **f, batch_target);
            // Warm-up: a tenth of the budget.
            sample(&mut **f, batch, budget / 10, &mut Vec::new());
            batch
        })
        .collect();
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); benches.len()];
    for _ in 0..ROUNDS {
        for (((_, f), &batch), v) in benches.iter_mut().zip(&batches).zip(&mut samples) {
            sample(&mut **f, batch, budget / ROUNDS, v);
        }
    }
    let results: Vec<Stats> = benches
        .iter()
        .zip(samples)
        .map(|((name, _), v)| Stats::new(name, v))
        .collect();
    let ns = |name: &str| {
        results
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.median)
            .expect("benchmark name")
    };
    let bare = ns("bare_crc32fast");
    let bytes = ip.len() as f64;

    println!();
    println!(
        "== rxe-wire summary: RC RDMA_WRITE_ONLY, IPv4 + RETH, {PAYLOAD_LEN}-byte payload, {} bytes \
         of IP packet; ICRC engine {}; {} ms per benchmark in {ROUNDS} interleaved rounds ==",
        ip.len(),
        icrc::ENGINE,
        budget.as_millis()
    );
    println!(
        "{:<16} {:>10} {:>10} {:>10} {:>9}",
        "benchmark", "median ns", "mean ns", "p10 ns", "GiB/s"
    );
    for r in &results {
        println!(
            "{:<16} {:>10.1} {:>10.1} {:>10.1} {:>9.2}",
            r.name,
            r.median,
            r.mean,
            r.p10,
            bytes / r.median / 1.073_741_824
        );
    }
    let verify = ns("parse_verify") / bare;
    let headers = ns("parse_headers");
    let check = |ok: bool| if ok { "ok" } else { "MISSED" };
    println!("(ratios and targets use the medians)");
    println!(
        "verify/bare   = {verify:.2}x (target <= 1.3x) {}",
        check(verify <= 1.3)
    );
    println!(
        "repr/bare     = {:.2}x (parse with every check and build the whole Repr)",
        ns("parse_repr") / bare
    );
    println!("emit/bare     = {:.2}x", ns("emit") / bare);
    println!(
        "emit_fused/bare = {:.2}x (fused copy+ICRC: {})",
        ns("emit_fused") / bare,
        icrc::fused_copy_available()
    );
    println!(
        "emit_template/bare = {:.2}x (PacketTemplate: IP and UDP rendered once)",
        ns("emit_template") / bare
    );
    println!(
        "icrc_headers  = {:.1} ns ({:.1} ns over parse_headers)",
        ns("icrc_headers"),
        ns("icrc_headers") - ns("parse_headers")
    );
    println!(
        "verify_ipv4_ident/bare = {:.2}x (UDP-socket receive: Identification solved from the ICRC)",
        ns("verify_ipv4_ident") / bare
    );
    println!(
        "parse_headers = {headers:.1} ns (target <= 20 ns) {}",
        check(headers <= 20.0)
    );
    println!("soft/bare     = {:.2}x", ns("bare_crc_soft") / bare);
}

fn main() {
    let payload = payload();
    let frame = frame_repr(&payload);
    let mut frame_buf = vec![0u8; frame.buffer_len()];
    frame
        .emit(&mut frame_buf)
        .expect("emit the benchmark frame");
    let ip = &frame_buf[frame.eth.header_len()..];
    let packet = RoceV2Repr::parse(ip).expect("the benchmark frame parses with every check");
    assert_eq!(packet, frame.packet);
    let mut out = vec![0u8; 3 * packet.buffer_len()];

    let mut c = Criterion::default().configure_from_args();
    {
        let mut group = c.benchmark_group("wire");
        group.throughput(Throughput::Bytes(ip.len() as u64));
        for (name, mut f) in benches(ip, &packet, &mut out) {
            group.bench_function(name, |b| b.iter(&mut f));
        }
        group.finish();
    }
    c.final_summary();

    let quick = std::env::args().any(|a| a == "--test");
    let budget = if quick {
        Duration::from_millis(5)
    } else {
        Duration::from_millis(500)
    };
    summary(ip, &packet, &mut out, budget);
}
