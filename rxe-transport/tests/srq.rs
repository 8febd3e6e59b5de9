//! Shared receive queues: several QPs (RC and UD) draw receive requests from one SRQ, in order;
//! the limit event fires once when the queue drops below the armed limit; an empty SRQ makes RC
//! answer RNR until a request is posted; a QP on an SRQ refuses its own post_recv.

mod common;

use core::net::{IpAddr, Ipv4Addr};
use std::cell::RefCell;
use std::rc::Rc;

use common::*;
use rxe_transport::{
    Access, AddressVector, Instant, Pd, PostRecvError, QpAttr, QpConfig, QpState, RecvWr,
    SendFlags, SendWr, Sge, SrqEvent, UdDest, WcStatus, WrOpcode, GRH_LEN,
};
use rxe_wire::{Checks, Psn, QKey, Qpn, RoceV2Packet};

const BUF: u64 = 0x40_0000;

/// A pair whose b-side QP draws from `srq`; both memories have one region (key 0x117) at BUF.
fn pair_on(srq: &SharedSrq, seed: u8) -> (Pair, u32) {
    let mut p = Pair::new();
    let cfg = QpConfig {
        srq: true,
        ..QpConfig::rc(Qpn::new(0x12), Pd(1))
    };
    p.b.qp = TestQp::new(cfg).expect("qp");
    p.b_srq = Some(srq.clone());
    p.connect(ConnParams::default());
    let ak =
        p.a.mem
            .register(Pd(1), BUF, 64 * 1024, Access::LOCAL_WRITE, 0);
    let bk =
        p.b.mem
            .register(Pd(1), BUF, 64 * 1024, Access::LOCAL_WRITE, 0);
    assert_eq!(ak, bk);
    p.a.mem.fill_pattern(ak, seed);
    (p, ak)
}

fn recv(wr_id: u64, slot: u64, key: u32) -> RecvWr {
    RecvWr::new(
        wr_id,
        Sge {
            addr: BUF + slot * 4096,
            length: 4096,
            lkey: key,
        },
    )
}

fn send(p: &mut Pair, wr_id: u64, key: u32, len: u32, from_slot: u64) {
    let wr = SendWr::new(
        wr_id,
        WrOpcode::Send,
        Some(Sge {
            addr: BUF + from_slot * 4096,
            length: len,
            lkey: key,
        }),
        SendFlags::SIGNALED,
    );
    p.a.qp.post_send(wr, &p.a.mem).expect("post_send");
}

fn recv_ids(p: &Pair) -> Vec<u64> {
    p.b.recv_wcs.iter().map(|w| w.wr_id).collect()
}

#[test]
fn two_rc_qps_share_one_srq_in_order_with_the_limit_event_and_rnr_when_empty() {
    let srq: SharedSrq = Rc::new(RefCell::new(TestSrq::new()));
    let (mut p1, k) = pair_on(&srq, 1);
    let (mut p2, _) = pair_on(&srq, 2);
    assert_eq!(p1.b.qp.post_recv(recv(1, 0, k)), Err(PostRecvError::HasSrq));
    for (i, slot) in (100..104).zip(0..) {
        srq.borrow_mut().post_recv(recv(i, slot, k)).unwrap();
    }
    srq.borrow_mut().arm_limit(2).unwrap();

    send(&mut p1, 1, k, 3000, 0);
    p1.drive();
    send(&mut p2, 1, k, 2000, 1);
    p2.drive();
    assert_eq!(srq.borrow_mut().poll_event(), None, "2 left: not below 2");
    send(&mut p1, 2, k, 1000, 2);
    p1.drive();
    // 1 left: below the limit, once; the limit disarms.
    assert_eq!(srq.borrow_mut().poll_event(), Some(SrqEvent::LimitReached));
    assert_eq!(srq.borrow_mut().poll_event(), None);
    assert_eq!(srq.borrow().limit(), 0);
    assert_eq!(recv_ids(&p1), [100, 102]);
    assert_eq!(recv_ids(&p2), [101]);
    // Each message landed in the buffer of the request that took it.
    assert_same(
        "p1 first",
        p1.b.mem.bytes(k, BUF, 3000),
        p1.a.mem.bytes(k, BUF, 3000),
    );
    assert_same(
        "p2",
        p2.b.mem.bytes(k, BUF + 4096, 2000),
        p2.a.mem.bytes(k, BUF + 4096, 2000),
    );
    assert_same(
        "p1 second",
        p1.b.mem.bytes(k, BUF + 2 * 4096, 1000),
        p1.a.mem.bytes(k, BUF + 2 * 4096, 1000),
    );

    // p2 sends two: the first takes the last request, the second meets an empty SRQ (RNR)
    // until one is posted.
    send(&mut p2, 2, k, 500, 3);
    send(&mut p2, 3, k, 600, 4);
    p2.drive_until(10_000, |p| p.a.qp.counters().rcvd_rnr_err > 0);
    assert_eq!(recv_ids(&p2), [101, 103]);
    assert!(srq.borrow().is_empty());
    srq.borrow_mut().post_recv(recv(104, 4, k)).unwrap();
    p2.drive();
    assert_eq!(recv_ids(&p2), [101, 103, 104]);
    let st: Vec<_> = p2.a.send_wcs.iter().map(|w| w.status).collect();
    assert_eq!(st, [WcStatus::Success; 3]);
    assert_same(
        "after RNR",
        p2.b.mem.bytes(k, BUF + 4 * 4096, 600),
        p2.a.mem.bytes(k, BUF + 4 * 4096, 600),
    );
}

#[test]
fn a_qp_in_error_flushes_only_the_request_it_took() {
    let srq: SharedSrq = Rc::new(RefCell::new(TestSrq::new()));
    let (mut p, k) = pair_on(&srq, 3);
    for i in 0..3 {
        srq.borrow_mut().post_recv(recv(200 + i, i, k)).unwrap();
    }
    // A SEND larger than the request: LOC_LEN_ERR on the request taken, the QP fails, the
    // other two stay in the SRQ for other QPs.
    send(&mut p, 1, k, 5000, 0);
    p.drive();
    assert_eq!(
        p.b.recv_wcs
            .iter()
            .map(|w| (w.wr_id, w.status))
            .collect::<Vec<_>>(),
        [(200, WcStatus::LocLenErr)]
    );
    assert_eq!(p.b.qp.state(), QpState::Err);
    assert_eq!(srq.borrow().len(), 2);
}

#[test]
fn a_ud_qp_on_an_srq_receives_datagrams_with_the_grh_area() {
    let mut srq = TestSrq::new();
    let mut a = TestQp::new(QpConfig::ud(Qpn::new(0x21), Pd(1))).expect("qp");
    let mut b = TestQp::new(QpConfig {
        srq: true,
        ..QpConfig::ud(Qpn::new(0x22), Pd(1))
    })
    .expect("qp");
    for qp in [&mut a, &mut b] {
        qp.modify(&QpAttr {
            state: Some(QpState::Init),
            pkey_index: Some(0),
            port: Some(1),
            qkey: Some(QKey(0x42)),
            ..Default::default()
        })
        .unwrap();
        qp.modify(&QpAttr {
            state: Some(QpState::Rtr),
            ..Default::default()
        })
        .unwrap();
        qp.modify(&QpAttr {
            state: Some(QpState::Rts),
            sq_psn: Some(Psn::new(1)),
            ..Default::default()
        })
        .unwrap();
    }
    let mut am = TestMemory::default();
    let mut bm = TestMemory::default();
    let ak = am.register(Pd(1), BUF, 8192, Access::LOCAL_WRITE, 0);
    let bk = bm.register(Pd(1), BUF, 8192, Access::LOCAL_WRITE, 0);
    am.fill_pattern(ak, 5);
    srq.post_recv(recv(7, 0, bk)).unwrap();
    let mut wr = SendWr::new(
        1,
        WrOpcode::Send,
        Some(Sge {
            addr: BUF,
            length: 300,
            lkey: ak,
        }),
        SendFlags::SIGNALED,
    );
    wr.ud = Some(UdDest {
        ah: AddressVector {
            sgid: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            dgid: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
            udp_sport: None,
        },
        remote_qpn: Qpn::new(0x22),
        remote_qkey: QKey(0x42),
    });
    let dest = wr.ud;
    a.post_send(wr, &am).unwrap();
    let now = Instant::from_nanos(1);
    let mut buf = vec![0u8; 4096];
    let n = a.poll_transmit(now, &mut buf, &mut am).unwrap().unwrap();
    let pkt = RoceV2Packet::new_checked(&buf[..n], &Checks::ALL).unwrap();
    b.handle_packet_srq(now, &pkt, &mut bm, &mut srq);
    let wc = b.poll_recv_completion().expect("datagram received");
    assert_eq!((wc.wr_id, wc.byte_len), (7, (GRH_LEN + 300) as u32));
    assert_same(
        "payload after the GRH area",
        bm.bytes(bk, BUF + GRH_LEN as u64, 300),
        am.bytes(ak, BUF, 300),
    );
    assert!(srq.is_empty());
    // A second datagram finds the SRQ empty and is dropped.
    let mut wr2 = SendWr::new(
        2,
        WrOpcode::Send,
        Some(Sge {
            addr: BUF,
            length: 10,
            lkey: ak,
        }),
        SendFlags::empty(),
    );
    wr2.ud = dest;
    a.post_send(wr2, &am).unwrap();
    let n = a.poll_transmit(now, &mut buf, &mut am).unwrap().unwrap();
    let pkt = RoceV2Packet::new_checked(&buf[..n], &Checks::ALL).unwrap();
    b.handle_packet_srq(now, &pkt, &mut bm, &mut srq);
    assert!(b.poll_recv_completion().is_none());
}
