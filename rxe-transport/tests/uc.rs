//! Unreliable connection: no ACKs, completion on transmission, and a broken message dropped
//! whole while the connection carries on (IBTA 9.8, Linux `check_psn` for UC).

mod common;

use core::net::IpAddr;

use common::*;
use rxe_transport::{
    Access, AddressVector, Mtu, Pd, PostSendError, QpAttr, QpConfig, QpState, RecvWr, Remote,
    SendFlags, SendWr, Sge, WcOpcode, WcStatus, WrOpcode,
};
use rxe_wire::{ImmDt, Opcode as O, Psn, Qpn, Rkey};

const ALL: Access = Access::LOCAL_WRITE.union(Access::REMOTE_WRITE);

/// A pair of UC QPs, connected, with one region each (a's filled with a pattern).
fn uc_pair() -> (Pair, u32, u32) {
    let mut p = Pair::new();
    p.a.qp = TestQp::new(QpConfig::uc(Qpn::new(0x11), Pd(1))).expect("qp");
    p.b.qp = TestQp::new(QpConfig::uc(Qpn::new(0x12), Pd(1))).expect("qp");
    let (a_ip, b_ip) = (p.a.ip, p.b.ip);
    for (node, local, remote, dest) in [(&mut p.a, a_ip, b_ip, 0x12), (&mut p.b, b_ip, a_ip, 0x11)]
    {
        let init = QpAttr {
            state: Some(QpState::Init),
            pkey_index: Some(0),
            port: Some(1),
            access: Some(ALL),
            ..Default::default()
        };
        node.qp.modify(&init).expect("INIT");
        let av = AddressVector {
            sgid: IpAddr::V4(local),
            dgid: IpAddr::V4(remote),
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
            udp_sport: None,
        };
        let rtr = QpAttr {
            state: Some(QpState::Rtr),
            av: Some(av),
            path_mtu: Some(Mtu::M1024),
            dest_qp: Some(Qpn::new(dest)),
            rq_psn: Some(Psn::new(500)),
            ..Default::default()
        };
        node.qp.modify(&rtr).expect("RTR");
        node.qp
            .modify(&QpAttr {
                state: Some(QpState::Rts),
                sq_psn: Some(Psn::new(500)),
                ..Default::default()
            })
            .expect("RTS");
        // UC refuses RC-only attributes at RTS.
        let rc_only = QpAttr {
            state: Some(QpState::Rts),
            timeout: Some(14),
            ..Default::default()
        };
        assert!(node.qp.modify(&rc_only).is_err());
    }
    let ak = p.a.mem.register(Pd(1), 0x10000, 64 * 1024, ALL, 0);
    let bk = p.b.mem.register(Pd(1), 0x20000, 64 * 1024, ALL, 0);
    p.a.mem.fill_pattern(ak, 5);
    (p, ak, bk)
}

fn send(p: &mut Pair, id: u64, op: WrOpcode, addr: u64, len: u32, key: u32) {
    let wr = SendWr::new(
        id,
        op,
        Some(Sge {
            addr,
            length: len,
            lkey: key,
        }),
        SendFlags::SIGNALED,
    );
    p.a.qp.post_send(wr, &p.a.mem).expect("post_send");
}

#[test]
fn uc_requests_complete_on_transmission_and_nothing_is_acknowledged() {
    let (mut p, ak, bk) = uc_pair();
    p.b.qp
        .post_recv(RecvWr::new(
            7,
            Sge {
                addr: 0x20000,
                length: 4096,
                lkey: bk,
            },
        ))
        .unwrap();
    send(&mut p, 1, WrOpcode::Send, 0x10000, 3000, ak);
    let imm = ImmDt::from_be_u32(0xabcd_0001);
    send(
        &mut p,
        2,
        WrOpcode::RdmaWriteWithImm(
            Remote {
                addr: 0x28000,
                rkey: Rkey(bk),
            },
            imm,
        ),
        0x11000,
        2048,
        ak,
    );
    p.b.qp
        .post_recv(RecvWr::new(
            8,
            Sge {
                addr: 0x2f000,
                length: 16,
                lkey: bk,
            },
        ))
        .unwrap();
    p.drive();
    let w = wire_summary(&p);
    let ops: Vec<_> = w.iter().map(|x| x.1).collect();
    assert_eq!(
        ops,
        vec![
            O::UC_SEND_FIRST,
            O::UC_SEND_MIDDLE,
            O::UC_SEND_LAST,
            O::UC_RDMA_WRITE_FIRST,
            O::UC_RDMA_WRITE_LAST_WITH_IMMEDIATE
        ]
    );
    assert!(w.iter().all(|x| x.0 && !x.3), "only a sends, never AckReq");
    let st: Vec<_> =
        p.a.send_wcs
            .iter()
            .map(|c| (c.wr_id, c.status, c.opcode))
            .collect();
    assert_eq!(
        st,
        vec![
            (1, WcStatus::Success, WcOpcode::Send),
            (2, WcStatus::Success, WcOpcode::RdmaWrite)
        ]
    );
    assert_eq!(p.b.recv_wcs.len(), 2);
    assert_eq!((p.b.recv_wcs[0].wr_id, p.b.recv_wcs[0].byte_len), (7, 3000));
    assert_eq!(
        (
            p.b.recv_wcs[1].opcode,
            p.b.recv_wcs[1].imm_data,
            p.b.recv_wcs[1].byte_len
        ),
        (WcOpcode::RecvRdmaWithImm, Some(imm), 2048)
    );
    assert_same(
        "send",
        p.b.mem.bytes(bk, 0x20000, 3000),
        p.a.mem.bytes(ak, 0x10000, 3000),
    );
    assert_same(
        "write",
        p.b.mem.bytes(bk, 0x28000, 2048),
        p.a.mem.bytes(ak, 0x11000, 2048),
    );
    assert_eq!(p.a.qp.poll_timeout(), None, "UC arms no timer");
}

#[test]
fn a_lost_packet_drops_its_message_and_the_next_message_reuses_the_receive() {
    let (mut p, ak, bk) = uc_pair();
    p.drop_if = Some(Box::new(|w: &WirePacket| {
        w.opcode == O::UC_SEND_MIDDLE && w.index == 1
    }));
    p.b.qp
        .post_recv(RecvWr::new(
            7,
            Sge {
                addr: 0x20000,
                length: 4096,
                lkey: bk,
            },
        ))
        .unwrap();
    send(&mut p, 1, WrOpcode::Send, 0x10000, 3000, ak);
    send(&mut p, 2, WrOpcode::Send, 0x12000, 100, ak);
    p.drive();
    // The sender cannot know: both requests succeed.
    assert_eq!(
        p.a.send_wcs.iter().map(|c| c.status).collect::<Vec<_>>(),
        vec![WcStatus::Success; 2]
    );
    // The receiver got only the second message, in the receive the first one had started.
    assert_eq!(p.b.recv_wcs.len(), 1);
    assert_eq!(
        (
            p.b.recv_wcs[0].wr_id,
            p.b.recv_wcs[0].byte_len,
            p.b.recv_wcs[0].status
        ),
        (7, 100, WcStatus::Success)
    );
    assert_same(
        "second message",
        p.b.mem.bytes(bk, 0x20000, 100),
        p.a.mem.bytes(ak, 0x12000, 100),
    );
    assert_eq!(p.b.qp.state(), QpState::Rts);
    assert_eq!(p.b.qp.counters().out_of_seq_request, 1);
    assert!(wire_summary(&p).iter().all(|x| x.0), "no NAK, no ACK");
}

#[test]
fn a_corrupted_uc_write_packet_never_reaches_memory() {
    // UC resends nothing, so nothing is placed before its ICRC is checked (no cut-through): the
    // broken message leaves memory as the good packets made it, never with corrupted bytes.
    let (mut p, ak, bk) = uc_pair();
    p.corrupt_if = Some(Box::new(|w: &WirePacket| {
        w.opcode == O::UC_RDMA_WRITE_MIDDLE
    }));
    let remote = Remote {
        addr: 0x20000,
        rkey: Rkey(bk),
    };
    let before = p.b.mem.bytes(bk, 0x20000, 4096).to_vec();
    send(&mut p, 1, WrOpcode::RdmaWrite(remote), 0x10000, 4096, ak);
    p.drive();
    assert_eq!(p.b.qp.counters().icrc_err, 2);
    let after = p.b.mem.bytes(bk, 0x20000, 4096);
    // FIRST landed; both MIDDLEs were dropped; LAST was dropped as the rest of a broken message.
    assert_same("first", &after[..1024], p.a.mem.bytes(ak, 0x10000, 1024));
    assert_same("rest", &after[1024..], &before[1024..]);
}

#[test]
fn uc_refuses_read_and_atomic_requests() {
    let (mut p, ak, bk) = uc_pair();
    let remote = Remote {
        addr: 0x20000,
        rkey: Rkey(bk),
    };
    for op in [
        WrOpcode::RdmaRead(remote),
        WrOpcode::AtomicFetchAdd { remote, add: 1 },
        WrOpcode::SendWithInv(Rkey(bk)),
    ] {
        let wr = SendWr::new(
            1,
            op,
            Some(Sge {
                addr: 0x10000,
                length: 8,
                lkey: ak,
            }),
            SendFlags::SIGNALED,
        );
        assert_eq!(
            p.a.qp.post_send(wr, &p.a.mem),
            Err(PostSendError::InvalidOpcode)
        );
    }
}

#[test]
fn without_a_receive_or_with_a_bad_rkey_the_message_is_dropped_and_the_qp_carries_on() {
    let (mut p, ak, bk) = uc_pair();
    send(&mut p, 1, WrOpcode::Send, 0x10000, 64, ak); // no receive posted: dropped, no RNR NAK
    send(
        &mut p,
        2,
        WrOpcode::RdmaWrite(Remote {
            addr: 0x20000,
            rkey: Rkey(0xdead),
        }),
        0x10000,
        64,
        ak,
    );
    p.drive();
    assert!(p.b.recv_wcs.is_empty());
    assert_eq!(p.b.qp.state(), QpState::Rts);
    assert!(
        wire_summary(&p).iter().all(|x| x.0),
        "no RNR NAK, no access NAK"
    );
    p.b.qp
        .post_recv(RecvWr::new(
            9,
            Sge {
                addr: 0x20000,
                length: 64,
                lkey: bk,
            },
        ))
        .unwrap();
    send(&mut p, 3, WrOpcode::Send, 0x10000, 64, ak);
    p.drive();
    assert_eq!(p.b.recv_wcs.len(), 1);
    assert_eq!(p.b.recv_wcs[0].wr_id, 9);
    assert_eq!(p.a.send_wcs.len(), 3);
}
