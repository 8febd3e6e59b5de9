//! Transmit scheduling across 100 QPs: each posts a 16 KiB WRITE at once; the port's frames take
//! the QPs in turn, one packet each, so after every 100 frames each QP has sent as many as every
//! other; and all the data lands.

mod common;

use common::SimNic;
use rxe_kernel::port::Port;
use rxe_transport::device::{QpInit, RcConnect};
use rxe_transport::{Access, Instant, Remote, SendFlags, SendWr, Sge, WcStatus, WrOpcode};
use rxe_wire::{Psn, Qpn, Rkey};

const QPS: usize = 100;
const CHUNK: u64 = 16 * 1024;

#[test]
fn one_hundred_qps_take_turns_packet_by_packet() {
    let (mut na, mut nb) = (SimNic::new(1, 64), SimNic::new(2, 64));
    na.neighbours.push((nb.ip, nb.mac));
    nb.neighbours.push((na.ip, na.mac));
    let (ipa, ipb) = (na.ip, nb.ip);
    let mut a = Port::new("rxe0", na, 1).unwrap();
    let mut b = Port::new("rxe1", nb, 2).unwrap();
    let access = Access::LOCAL_WRITE | Access::REMOTE_WRITE;
    let setup = |p: &mut Port<SimNic>| {
        let c = p.core();
        let pd = c.alloc_pd().expect("pd");
        let mr = c
            .reg_mr(pd, 0x100_0000, QPS * CHUNK as usize, access)
            .unwrap();
        let cq = c.create_cq(4 * QPS).expect("cq");
        let qps: Vec<Qpn> = (0..QPS)
            .map(|_| c.create_qp(&QpInit::rc(pd, cq)).unwrap())
            .collect();
        (qps, cq, mr.lkey)
    };
    let (qa, cqa, ka) = setup(&mut a);
    let (qb, _, kb) = setup(&mut b);
    for i in 0..QPS {
        let psn = |q: Qpn| Psn::new(q.value() * 7);
        a.core()
            .connect_rc(
                qa[i],
                &RcConnect::new(ipa, ipb, qb[i], psn(qa[i]), psn(qb[i])),
            )
            .unwrap();
        b.core()
            .connect_rc(
                qb[i],
                &RcConnect::new(ipb, ipa, qa[i], psn(qb[i]), psn(qa[i])),
            )
            .unwrap();
    }
    for (j, x) in a.core().mr_bytes_mut(ka).unwrap().iter_mut().enumerate() {
        *x = ((j as u64 / CHUNK) as u8).wrapping_mul(37) ^ (j as u8);
    }
    for (i, &q) in qa.iter().enumerate() {
        let off = i as u64 * CHUNK;
        let wr = SendWr::new(
            i as u64,
            WrOpcode::RdmaWrite(Remote {
                addr: 0x100_0000 + off,
                rkey: Rkey(kb),
            }),
            Some(Sge {
                addr: 0x100_0000 + off,
                length: CHUNK as u32,
                lkey: ka,
            }),
            SendFlags::SIGNALED,
        );
        a.core().post_send(q, wr).unwrap();
    }
    // Run the wire; note the destination QP of every request frame A sends.
    let mut order: Vec<u32> = Vec::new();
    let mut done = 0;
    let mut now = 1_000u64;
    while done < QPS {
        assert!(now < 10_000_000_000, "timed out after {done} completions");
        let t = Instant::from_nanos(now);
        for f in a.netdev_mut().run(now) {
            // Ethernet 14 + IPv4 20 + UDP 8, then the BTH: opcode, ..., dest QP in bytes 5..8.
            let bth = &f[42..54];
            if bth[0] != 0x11 {
                order.push(u32::from_be_bytes([0, bth[5], bth[6], bth[7]]));
            }
            b.receive(t, &f);
        }
        for f in b.netdev_mut().run(now) {
            a.receive(t, &f);
        }
        a.poll(t);
        b.poll(t);
        while let Some(wc) = a.core().poll_cq(cqa) {
            assert_eq!(wc.status, WcStatus::Success, "{wc:?}");
            done += 1;
        }
        now += 1_000;
    }
    // 16 packets per QP at MTU 1024, none lost on this wire.
    assert_eq!(order.len(), QPS * 16);
    let index = |qpn: u32| qb.iter().position(|q| q.value() == qpn).unwrap();
    let mut sent = [0usize; QPS];
    for (k, &qpn) in order.iter().enumerate() {
        sent[index(qpn)] += 1;
        if (k + 1) % QPS == 0 {
            let round = (k + 1) / QPS;
            assert!(
                sent.iter().all(|&s| s == round),
                "after {} frames: {:?}",
                k + 1,
                sent
            );
        }
    }
    let am = a.core().mr_bytes(ka).unwrap().to_vec();
    assert!(
        b.core().mr_bytes(kb).unwrap() == &am[..],
        "every QP's chunk landed"
    );
}
