//! Unreliable datagram: Q_Key rules, the GRH area of the receive buffer, completion on
//! transmission, and what UD refuses.

mod common;

use core::net::{IpAddr, Ipv4Addr};

use common::*;
use rxe_transport::{
    Access, AddressVector, Instant, Pd, PostSendError, QpAttr, QpConfig, QpState, RecvWr, Remote,
    SendFlags, SendWr, Sge, UdDest, WcFlags, WcStatus, WrOpcode, GRH_LEN,
};
use rxe_wire::{Checks, IpRepr, Psn, QKey, Qpn, Rkey, RoceV2Packet};

const QKEY: u32 = 0x1111_1111;

fn ud(qpn: u32) -> (TestQp, TestMemory, u32) {
    let mut qp = TestQp::new(QpConfig::ud(Qpn::new(qpn), Pd(1))).expect("qp");
    let init = QpAttr {
        state: Some(QpState::Init),
        pkey_index: Some(0),
        port: Some(1),
        qkey: Some(QKey(QKEY)),
        ..Default::default()
    };
    qp.modify(&init).expect("INIT");
    qp.modify(&QpAttr {
        state: Some(QpState::Rtr),
        ..Default::default()
    })
    .expect("RTR");
    qp.modify(&QpAttr {
        state: Some(QpState::Rts),
        sq_psn: Some(Psn::new(7)),
        ..Default::default()
    })
    .expect("RTS");
    let mut mem = TestMemory::default();
    let key = mem.register(Pd(1), 0x10000, 8192, Access::LOCAL_WRITE, 0);
    mem.fill_pattern(key, qpn as u8);
    (qp, mem, key)
}

fn dest(qpn: u32, qkey: u32) -> UdDest {
    UdDest {
        ah: AddressVector {
            sgid: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            dgid: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
            udp_sport: None,
        },
        remote_qpn: Qpn::new(qpn),
        remote_qkey: QKey(qkey),
    }
}

fn send(
    qp: &mut TestQp,
    mem: &TestMemory,
    key: u32,
    len: u32,
    to: Option<UdDest>,
) -> Result<(), PostSendError> {
    let mut wr = SendWr::new(
        1,
        WrOpcode::Send,
        Some(Sge {
            addr: 0x10000,
            length: len,
            lkey: key,
        }),
        SendFlags::SIGNALED,
    );
    wr.ud = to;
    qp.post_send(wr, mem)
}

/// Moves every packet `a` has to `b`; returns them.
fn deliver(
    a: &mut TestQp,
    am: &mut TestMemory,
    b: &mut TestQp,
    bm: &mut TestMemory,
) -> Vec<Vec<u8>> {
    let now = Instant::from_nanos(1);
    let mut out = Vec::new();
    let mut buf = vec![0u8; 4096];
    while let Some(n) = a.poll_transmit(now, &mut buf, am).expect("buffer") {
        let p = RoceV2Packet::new_checked(&buf[..n], &Checks::ALL).expect("valid");
        b.handle_packet(now, &p, bm);
        out.push(buf[..n].to_vec());
    }
    out
}

#[test]
fn a_datagram_lands_after_the_grh_area_which_holds_the_ipv4_header() {
    let (mut a, mut am, ak) = ud(0x20);
    let (mut b, mut bm, bk) = ud(0x30);
    b.post_recv(RecvWr::new(
        5,
        Sge {
            addr: 0x10000,
            length: 1024,
            lkey: bk,
        },
    ))
    .unwrap();
    send(&mut a, &am, ak, 300, Some(dest(0x30, QKEY))).unwrap();
    let sent = deliver(&mut a, &mut am, &mut b, &mut bm);
    assert_eq!(sent.len(), 1);
    // The sender's request completed on transmission.
    assert_eq!(
        a.poll_send_completion().map(|w| w.status),
        Some(WcStatus::Success)
    );
    let wc = b.poll_recv_completion().expect("received");
    assert_eq!(
        (wc.status, wc.byte_len, wc.src_qp),
        (WcStatus::Success, GRH_LEN as u32 + 300, 0x20)
    );
    assert!(wc.wc_flags.contains(WcFlags::GRH));
    // GRH area: 20 zero bytes, then the IPv4 header exactly as it was on the wire.
    assert_eq!(bm.bytes(bk, 0x10000, 20), &[0u8; 20]);
    assert_eq!(bm.bytes(bk, 0x10000 + 20, 20), &sent[0][..20]);
    assert_same(
        "payload",
        bm.bytes(bk, 0x10000 + 40, 300),
        am.bytes(ak, 0x10000, 300),
    );
    let p = RoceV2Packet::new_checked(&sent[0], &Checks::ALL).unwrap();
    assert!(matches!(p.ip(), IpRepr::V4(_)));
    // Linux: a UD QP's source port is 0xc000 + hash_32(qpn, 14).
    assert_eq!(
        p.udp().src_port,
        0xc000 | ((0x20u32.wrapping_mul(0x61c8_8647) >> 18) as u16)
    );
}

#[test]
fn a_wrong_q_key_drops_the_datagram_and_a_privileged_one_means_the_qps_own() {
    let (mut a, mut am, ak) = ud(0x20);
    let (mut b, mut bm, bk) = ud(0x30);
    b.post_recv(RecvWr::new(
        5,
        Sge {
            addr: 0x10000,
            length: 1024,
            lkey: bk,
        },
    ))
    .unwrap();
    send(&mut a, &am, ak, 16, Some(dest(0x30, 0x2222_2222))).unwrap();
    deliver(&mut a, &mut am, &mut b, &mut bm);
    assert!(b.poll_recv_completion().is_none(), "wrong Q_Key: dropped");
    // A Q_Key with bit 31 set sends the QP's own Q_Key instead (IBTA 10.2.4).
    send(&mut a, &am, ak, 16, Some(dest(0x30, 0x8000_0000))).unwrap();
    let sent = deliver(&mut a, &mut am, &mut b, &mut bm);
    let p = RoceV2Packet::new_checked(&sent[0], &Checks::ALL).unwrap();
    assert_eq!(p.roce().deth().map(|d| d.qkey()), Some(QKey(QKEY)));
    assert_eq!(b.poll_recv_completion().map(|w| w.byte_len), Some(40 + 16));
}

#[test]
fn without_a_receive_the_datagram_is_dropped_and_a_small_receive_fails_loc_len_err() {
    let (mut a, mut am, ak) = ud(0x20);
    let (mut b, mut bm, bk) = ud(0x30);
    send(&mut a, &am, ak, 100, Some(dest(0x30, QKEY))).unwrap();
    deliver(&mut a, &mut am, &mut b, &mut bm);
    assert!(b.poll_recv_completion().is_none());
    // Room for the payload but not the GRH area.
    b.post_recv(RecvWr::new(
        6,
        Sge {
            addr: 0x10000,
            length: 100,
            lkey: bk,
        },
    ))
    .unwrap();
    send(&mut a, &am, ak, 100, Some(dest(0x30, QKEY))).unwrap();
    deliver(&mut a, &mut am, &mut b, &mut bm);
    assert_eq!(
        b.poll_recv_completion().map(|w| (w.wr_id, w.status)),
        Some((6, WcStatus::LocLenErr))
    );
    assert_eq!(b.state(), QpState::Rts);
}

#[test]
fn ud_refuses_rdma_missing_destinations_and_messages_over_the_port_mtu() {
    let (mut a, am, ak) = ud(0x20);
    assert_eq!(
        send(&mut a, &am, ak, 16, None),
        Err(PostSendError::InvalidOpcode)
    );
    assert_eq!(
        send(&mut a, &am, ak, 1025, Some(dest(0x30, QKEY))),
        Err(PostSendError::MessageTooLong)
    );
    let mut wr = SendWr::new(
        1,
        WrOpcode::RdmaWrite(Remote {
            addr: 0,
            rkey: Rkey(1),
        }),
        Some(Sge {
            addr: 0x10000,
            length: 8,
            lkey: ak,
        }),
        SendFlags::empty(),
    );
    wr.ud = Some(dest(0x30, QKEY));
    assert_eq!(a.post_send(wr, &am), Err(PostSendError::InvalidOpcode));
}

#[test]
fn over_ipv6_the_grh_area_holds_the_whole_ipv6_header() {
    let (mut a, mut am, ak) = ud(0x20);
    let (mut b, mut bm, bk) = ud(0x30);
    b.post_recv(RecvWr::new(
        5,
        Sge {
            addr: 0x10000,
            length: 1024,
            lkey: bk,
        },
    ))
    .unwrap();
    let mut to = dest(0x30, QKEY);
    to.ah.sgid = "fe80::5054:ff:fe77:2".parse().unwrap();
    to.ah.dgid = "fe80::5054:ff:fe77:1".parse().unwrap();
    to.ah.traffic_class = 0x60;
    to.ah.flow_label = 0x12345;
    let imm = rxe_wire::ImmDt::from_be_u32(7);
    let mut wr = SendWr::new(
        1,
        WrOpcode::SendWithImm(imm),
        Some(Sge {
            addr: 0x10000,
            length: 77,
            lkey: ak,
        }),
        SendFlags::SIGNALED,
    );
    wr.ud = Some(to);
    a.post_send(wr, &am).unwrap();
    let sent = deliver(&mut a, &mut am, &mut b, &mut bm);
    let p = RoceV2Packet::new_checked(&sent[0], &Checks::ALL).unwrap();
    match p.ip() {
        IpRepr::V6(h) => assert_eq!((h.traffic_class, h.flow_label), (0x60, 0x12345)),
        IpRepr::V4(_) => panic!("IPv6 address handle"),
    }
    let wc = b.poll_recv_completion().expect("received");
    assert_eq!((wc.byte_len, wc.imm_data), (40 + 77, Some(imm)));
    assert!(wc.wc_flags.contains(WcFlags::GRH | WcFlags::WITH_IMM));
    assert_eq!(bm.bytes(bk, 0x10000, 40), &sent[0][..40]);
    assert_same(
        "payload",
        bm.bytes(bk, 0x10000 + 40, 77),
        am.bytes(ak, 0x10000, 77),
    );
}
