//! The QP state machine of an RC QP: every `(from, to)` pair `modify` accepts or refuses, the
//! attributes each transition requires and allows, value checks, `cur_state`, and how posting
//! and the queues follow the state. The reference is Linux's `qp_state_table` /
//! `ib_modify_qp_is_ok` (drivers/infiniband/core/verbs.c) for `IB_QPT_RC`, which is IBTA
//! table 91.

mod common;

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::*;
use rxe_transport::{
    Access, AddressVector, AttrMask, ModifyQpError, Mtu, Pd, PostRecvError, PostSendError, QpAttr,
    QpConfig, QpEvent, QpState, RecvWr, SendFlags, SendWr, Sge, WcOpcode, WcStatus, WrOpcode,
};
use rxe_wire::{Psn, QKey, Qpn};

use QpState::{Err, Init, Reset, Rtr, Rts, Sqd, Sqe};

const STATES: [QpState; 7] = [Reset, Init, Rtr, Rts, Sqd, Sqe, Err];

/// States an RC QP can be brought to with `modify`. SQE exists for UC and UD only: an RC QP
/// never enters it (Linux has no transition into SQE at all), so it is never a `from` here.
const REACHABLE: [QpState; 6] = [Reset, Init, Rtr, Rts, Sqd, Err];

/// Every attribute `QpAttr` can carry. ALT_PATH and PATH_MIG_STATE (optional in several of
/// Linux's RC entries) do not exist here: there is no alternate path.
const SETTABLE: [AttrMask; 17] = [
    AttrMask::CUR_STATE,
    AttrMask::EN_SQD_ASYNC_NOTIFY,
    AttrMask::ACCESS_FLAGS,
    AttrMask::PKEY_INDEX,
    AttrMask::PORT,
    AttrMask::QKEY,
    AttrMask::AV,
    AttrMask::PATH_MTU,
    AttrMask::TIMEOUT,
    AttrMask::RETRY_CNT,
    AttrMask::RNR_RETRY,
    AttrMask::RQ_PSN,
    AttrMask::MAX_QP_RD_ATOMIC,
    AttrMask::MIN_RNR_TIMER,
    AttrMask::SQ_PSN,
    AttrMask::MAX_DEST_RD_ATOMIC,
    AttrMask::DEST_QPN,
];

/// Linux's RC entries: `(required, optional)` for a valid transition, `None` for an invalid one
/// (ALT_PATH and PATH_MIG_STATE left out, see [`SETTABLE`]).
fn linux_rc(from: QpState, to: QpState) -> Option<(AttrMask, AttrMask)> {
    type M = AttrMask;
    let none = M::empty();
    let to_rts_opt = M::CUR_STATE | M::ACCESS_FLAGS | M::MIN_RNR_TIMER;
    Some(match (from, to) {
        (_, Reset) | (_, Err) => (none, none),
        (Reset, Init) => (M::PKEY_INDEX | M::PORT | M::ACCESS_FLAGS, none),
        (Init, Init) => (none, M::PKEY_INDEX | M::PORT | M::ACCESS_FLAGS),
        (Init, Rtr) => (
            M::AV
                | M::PATH_MTU
                | M::DEST_QPN
                | M::RQ_PSN
                | M::MAX_DEST_RD_ATOMIC
                | M::MIN_RNR_TIMER,
            M::ACCESS_FLAGS | M::PKEY_INDEX,
        ),
        (Rtr, Rts) => (
            M::SQ_PSN | M::TIMEOUT | M::RETRY_CNT | M::RNR_RETRY | M::MAX_QP_RD_ATOMIC,
            to_rts_opt,
        ),
        (Rts, Rts) | (Sqd, Rts) => (none, to_rts_opt),
        (Rts, Sqd) => (none, M::EN_SQD_ASYNC_NOTIFY),
        (Sqd, Sqd) => (
            none,
            M::PORT
                | M::AV
                | M::TIMEOUT
                | M::RETRY_CNT
                | M::RNR_RETRY
                | M::MAX_QP_RD_ATOMIC
                | M::MAX_DEST_RD_ATOMIC
                | M::ACCESS_FLAGS
                | M::PKEY_INDEX
                | M::MIN_RNR_TIMER,
        ),
        _ => return None,
    })
}

fn av() -> AddressVector {
    AddressVector {
        sgid: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        dgid: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        hop_limit: 64,
        traffic_class: 0,
        flow_label: 0,
        udp_sport: None,
    }
}

/// `state = to` plus a valid value for every attribute in `mask` (`cur_state` = `from`).
fn attr(from: QpState, to: QpState, mask: AttrMask) -> QpAttr {
    let on = |bit: AttrMask| mask.contains(bit);
    let a = QpAttr {
        state: Some(to),
        cur_state: on(AttrMask::CUR_STATE).then_some(from),
        en_sqd_async_notify: on(AttrMask::EN_SQD_ASYNC_NOTIFY).then_some(false),
        access: on(AttrMask::ACCESS_FLAGS).then_some(Access::REMOTE_WRITE | Access::REMOTE_READ),
        pkey_index: on(AttrMask::PKEY_INDEX).then_some(0),
        port: on(AttrMask::PORT).then_some(1),
        qkey: on(AttrMask::QKEY).then_some(QKey(0x1111)),
        av: on(AttrMask::AV).then(av),
        path_mtu: on(AttrMask::PATH_MTU).then_some(Mtu::M1024),
        timeout: on(AttrMask::TIMEOUT).then_some(14),
        retry_cnt: on(AttrMask::RETRY_CNT).then_some(7),
        rnr_retry: on(AttrMask::RNR_RETRY).then_some(7),
        rq_psn: on(AttrMask::RQ_PSN).then_some(Psn::new(100)),
        max_rd_atomic: on(AttrMask::MAX_QP_RD_ATOMIC).then_some(4),
        min_rnr_timer: on(AttrMask::MIN_RNR_TIMER).then_some(12),
        sq_psn: on(AttrMask::SQ_PSN).then_some(Psn::new(200)),
        max_dest_rd_atomic: on(AttrMask::MAX_DEST_RD_ATOMIC).then_some(4),
        dest_qp: on(AttrMask::DEST_QPN).then_some(Qpn::new(0x12)),
    };
    assert_eq!(
        a.mask(),
        mask | AttrMask::STATE,
        "attr() sets exactly the mask"
    );
    a
}

fn new_qp() -> TestQp {
    TestQp::new(QpConfig::rc(Qpn::new(0x11), Pd(1))).expect("qp")
}

/// Moves `qp` along the path to `to` with Linux's required attributes.
fn step_to(qp: &mut TestQp, to: QpState) {
    let from = qp.state();
    let (req, _) = linux_rc(from, to).expect("valid step");
    qp.modify(&attr(from, to, req))
        .unwrap_or_else(|e| panic!("{from} -> {to}: {e}"));
    assert_eq!(qp.state(), to);
}

/// A fresh QP in `state`.
fn qp_in(state: QpState) -> TestQp {
    let mut qp = new_qp();
    let path: &[QpState] = match state {
        Reset => &[],
        Init => &[Init],
        Rtr => &[Init, Rtr],
        Rts => &[Init, Rtr, Rts],
        Sqd => &[Init, Rtr, Rts, Sqd],
        Err => &[Init, Rtr, Rts, Err],
        Sqe => unreachable!("an RC QP never enters SQE"),
    };
    for &s in path {
        step_to(&mut qp, s);
    }
    qp
}

fn bits(m: AttrMask) -> impl Iterator<Item = AttrMask> {
    SETTABLE.into_iter().filter(move |b| m.contains(*b))
}

fn send_wr(id: u64) -> SendWr {
    SendWr::new(
        id,
        WrOpcode::Send,
        Some(Sge {
            addr: 0x1000,
            length: 64,
            lkey: 0x117,
        }),
        SendFlags::SIGNALED,
    )
}

fn recv_wr(id: u64) -> RecvWr {
    RecvWr::new(
        id,
        Sge {
            addr: 0x2000,
            length: 64,
            lkey: 0x117,
        },
    )
}

/// Memory with the one region `send_wr` and `recv_wr` use.
fn mem() -> TestMemory {
    let mut m = TestMemory::default();
    let key = m.register(Pd(1), 0x1000, 0x2000, Access::LOCAL_WRITE, 0);
    assert_eq!(key, 0x117);
    m
}

#[test]
fn every_from_to_pair_is_accepted_or_refused_as_linux_ib_modify_qp_is_ok_decides_for_rc() {
    let mut accepted = Vec::new();
    for from in REACHABLE {
        for to in STATES {
            let mut qp = qp_in(from);
            let req = linux_rc(from, to).map_or(AttrMask::empty(), |(r, _)| r);
            let r = qp.modify(&attr(from, to, req));
            if linux_rc(from, to).is_some() {
                assert_eq!(r, Ok(()), "{from} -> {to}");
                assert_eq!(qp.state(), to);
                accepted.push((from, to));
            } else {
                assert_eq!(
                    r,
                    Result::Err(ModifyQpError::InvalidTransition { from, to }),
                    "{from} -> {to}"
                );
                assert_eq!(qp.state(), from, "a refused modify changes nothing");
            }
        }
    }
    assert_eq!(
        accepted,
        vec![
            (Reset, Reset),
            (Reset, Init),
            (Reset, Err),
            (Init, Reset),
            (Init, Init),
            (Init, Rtr),
            (Init, Err),
            (Rtr, Reset),
            (Rtr, Rts),
            (Rtr, Err),
            (Rts, Reset),
            (Rts, Rts),
            (Rts, Sqd),
            (Rts, Err),
            (Sqd, Reset),
            (Sqd, Rts),
            (Sqd, Sqd),
            (Sqd, Err),
            (Err, Reset),
            (Err, Err),
        ]
    );
}

#[test]
fn missing_and_unexpected_attributes_are_refused_with_their_exact_masks() {
    for from in REACHABLE {
        for to in STATES {
            let Some((req, opt)) = linux_rc(from, to) else {
                continue;
            };
            // Nothing but the state: every required attribute is missing.
            if !req.is_empty() {
                let mut qp = qp_in(from);
                assert_eq!(
                    qp.modify(&attr(from, to, AttrMask::empty())),
                    Result::Err(ModifyQpError::MissingAttributes(req)),
                    "{from} -> {to}"
                );
                assert_eq!(qp.state(), from);
            }
            // Each required attribute left out on its own.
            for bit in bits(req) {
                let mut qp = qp_in(from);
                let before = *qp.attrs();
                assert_eq!(
                    qp.modify(&attr(from, to, req - bit)),
                    Result::Err(ModifyQpError::MissingAttributes(bit)),
                    "{from} -> {to} without {bit:?}"
                );
                assert_eq!(qp.state(), from);
                assert_eq!(*qp.attrs(), before, "a refused modify changes nothing");
            }
            // Each attribute the transition does not take, added on its own.
            for bit in SETTABLE.into_iter().filter(|b| !(req | opt).contains(*b)) {
                let mut qp = qp_in(from);
                let before = *qp.attrs();
                assert_eq!(
                    qp.modify(&attr(from, to, req | bit)),
                    Result::Err(ModifyQpError::UnexpectedAttributes(bit)),
                    "{from} -> {to} with {bit:?}"
                );
                assert_eq!(qp.state(), from);
                assert_eq!(*qp.attrs(), before);
            }
            // Each optional attribute is taken, and all of them at once.
            for bit in bits(opt) {
                let mut qp = qp_in(from);
                assert_eq!(
                    qp.modify(&attr(from, to, req | bit)),
                    Ok(()),
                    "{from} -> {to} with optional {bit:?}"
                );
                assert_eq!(qp.state(), to);
            }
            let mut qp = qp_in(from);
            assert_eq!(
                qp.modify(&attr(from, to, req | opt)),
                Ok(()),
                "{from} -> {to}"
            );
        }
    }
    // Several unexpected attributes are reported together.
    let mut qp = qp_in(Rts);
    assert_eq!(
        qp.modify(&attr(Rts, Rts, AttrMask::SQ_PSN | AttrMask::PATH_MTU)),
        Result::Err(ModifyQpError::UnexpectedAttributes(
            AttrMask::SQ_PSN | AttrMask::PATH_MTU
        ))
    );
}

#[test]
fn out_of_range_values_are_refused_naming_the_attribute_and_change_nothing() {
    type M = AttrMask;
    let cases: Vec<(QpState, QpState, M, QpAttr)> = {
        let base = |from, to| attr(from, to, linux_rc(from, to).expect("valid").0);
        vec![
            (
                Reset,
                Init,
                M::PORT,
                QpAttr {
                    port: Some(2),
                    ..base(Reset, Init)
                },
            ),
            (
                Reset,
                Init,
                M::PORT,
                QpAttr {
                    port: Some(0),
                    ..base(Reset, Init)
                },
            ),
            (
                Reset,
                Init,
                M::PKEY_INDEX,
                QpAttr {
                    pkey_index: Some(1),
                    ..base(Reset, Init)
                },
            ),
            (
                Init,
                Init,
                M::PORT,
                QpAttr {
                    port: Some(2),
                    ..attr(Init, Init, M::empty())
                },
            ),
            (
                Init,
                Rtr,
                M::MIN_RNR_TIMER,
                QpAttr {
                    min_rnr_timer: Some(32),
                    ..base(Init, Rtr)
                },
            ),
            (
                Init,
                Rtr,
                M::MAX_DEST_RD_ATOMIC,
                QpAttr {
                    max_dest_rd_atomic: Some(17),
                    ..base(Init, Rtr)
                },
            ),
            (
                Init,
                Rtr,
                M::AV,
                QpAttr {
                    av: Some(AddressVector {
                        dgid: IpAddr::V6(Ipv6Addr::LOCALHOST),
                        ..av()
                    }),
                    ..base(Init, Rtr)
                },
            ),
            (
                Init,
                Rtr,
                M::AV,
                QpAttr {
                    av: Some(AddressVector {
                        flow_label: 1 << 20,
                        ..av()
                    }),
                    ..base(Init, Rtr)
                },
            ),
            (
                Rtr,
                Rts,
                M::RETRY_CNT,
                QpAttr {
                    retry_cnt: Some(8),
                    ..base(Rtr, Rts)
                },
            ),
            (
                Rtr,
                Rts,
                M::RNR_RETRY,
                QpAttr {
                    rnr_retry: Some(8),
                    ..base(Rtr, Rts)
                },
            ),
            (
                Rtr,
                Rts,
                M::TIMEOUT,
                QpAttr {
                    timeout: Some(32),
                    ..base(Rtr, Rts)
                },
            ),
            (
                Rtr,
                Rts,
                M::MAX_QP_RD_ATOMIC,
                QpAttr {
                    max_rd_atomic: Some(17),
                    ..base(Rtr, Rts)
                },
            ),
            (
                Sqd,
                Sqd,
                M::RETRY_CNT,
                QpAttr {
                    retry_cnt: Some(8),
                    ..attr(Sqd, Sqd, M::empty())
                },
            ),
            (
                Sqd,
                Sqd,
                M::PORT,
                QpAttr {
                    port: Some(2),
                    ..attr(Sqd, Sqd, M::empty())
                },
            ),
        ]
    };
    for (from, to, bit, a) in cases {
        let mut qp = qp_in(from);
        let before = *qp.attrs();
        assert_eq!(
            qp.modify(&a),
            Result::Err(ModifyQpError::InvalidValue(bit)),
            "{from} -> {to}: {a:?}"
        );
        assert_eq!(qp.state(), from);
        assert_eq!(*qp.attrs(), before);
    }
    // The largest valid values pass.
    let mut qp = qp_in(Rtr);
    let a = QpAttr {
        retry_cnt: Some(7),
        rnr_retry: Some(7),
        timeout: Some(31),
        max_rd_atomic: Some(rxe_transport::qp::MAX_RD_ATOMIC),
        min_rnr_timer: Some(31),
        ..attr(
            Rtr,
            Rts,
            linux_rc(Rtr, Rts).expect("valid").0 | AttrMask::MIN_RNR_TIMER,
        )
    };
    assert_eq!(qp.modify(&a), Ok(()));
    let t = qp.attrs();
    assert_eq!(
        (
            t.retry_cnt,
            t.rnr_retry,
            t.timeout,
            t.max_rd_atomic,
            t.min_rnr_timer
        ),
        (7, 7, 31, 16, 31)
    );
}

#[test]
fn cur_state_must_name_the_qps_state_and_a_state_is_required() {
    let mut qp = qp_in(Rtr);
    let req = linux_rc(Rtr, Rts).expect("valid").0 | AttrMask::CUR_STATE;
    // Claims RTS while the QP is in RTR.
    let wrong = QpAttr {
        cur_state: Some(Rts),
        ..attr(Rtr, Rts, req)
    };
    assert_eq!(
        qp.modify(&wrong),
        Result::Err(ModifyQpError::WrongCurrentState { actual: Rtr })
    );
    assert_eq!(qp.state(), Rtr);
    assert_eq!(qp.modify(&attr(Rtr, Rts, req)), Ok(()));
    assert_eq!(qp.state(), Rts);

    let mut qp = qp_in(Sqd);
    let wrong = QpAttr {
        cur_state: Some(Rts),
        ..attr(Sqd, Rts, AttrMask::CUR_STATE)
    };
    assert_eq!(
        qp.modify(&wrong),
        Result::Err(ModifyQpError::WrongCurrentState { actual: Sqd })
    );
    assert_eq!(qp.state(), Sqd);

    // Linux takes cur_state only from RTR, RTS, SQD (and SQE).
    let mut qp = qp_in(Init);
    assert_eq!(
        qp.modify(&attr(Init, Init, AttrMask::CUR_STATE)),
        Result::Err(ModifyQpError::UnexpectedAttributes(AttrMask::CUR_STATE))
    );

    let mut qp = qp_in(Rts);
    assert_eq!(
        qp.modify(&QpAttr {
            access: Some(Access::REMOTE_READ),
            ..QpAttr::default()
        }),
        Result::Err(ModifyQpError::NoState)
    );
    assert_eq!(
        qp.attrs().access,
        Access::REMOTE_WRITE | Access::REMOTE_READ
    );
}

#[test]
fn posting_follows_the_state_and_err_flushes_at_once() {
    let m = mem();
    for s in [Reset, Init, Rtr] {
        let mut qp = qp_in(s);
        assert_eq!(
            qp.post_send(send_wr(1), &m),
            Result::Err(PostSendError::InvalidState(s))
        );
        assert_eq!(qp.send_queue_len(), 0);
    }
    let mut qp = qp_in(Reset);
    assert_eq!(
        qp.post_recv(recv_wr(1)),
        Result::Err(PostRecvError::InvalidState(Reset))
    );
    for s in [Init, Rtr, Rts, Sqd] {
        let mut qp = qp_in(s);
        assert_eq!(qp.post_recv(recv_wr(1)), Ok(()), "{s}");
        assert_eq!(qp.recv_queue_len(), 1);
        assert!(qp.poll_recv_completion().is_none());
    }
    for s in [Rts, Sqd] {
        let mut qp = qp_in(s);
        assert_eq!(qp.post_send(send_wr(1), &m), Ok(()), "{s}");
        assert_eq!(qp.send_queue_len(), 1);
        assert!(qp.poll_send_completion().is_none());
    }
    // In ERR both queues complete at once with WR_FLUSH_ERR, in order.
    let mut qp = qp_in(Err);
    qp.post_send(send_wr(5), &m).expect("post_send in ERR");
    qp.post_send(send_wr(6), &m).expect("post_send in ERR");
    qp.post_recv(recv_wr(7)).expect("post_recv in ERR");
    let s: Vec<_> = core::iter::from_fn(|| qp.poll_send_completion())
        .map(|w| (w.wr_id, w.status, w.opcode))
        .collect();
    assert_eq!(
        s,
        vec![
            (5, WcStatus::WrFlushErr, WcOpcode::Send),
            (6, WcStatus::WrFlushErr, WcOpcode::Send)
        ]
    );
    let r = qp.poll_recv_completion().expect("flushed");
    assert_eq!((r.wr_id, r.status), (7, WcStatus::WrFlushErr));
    assert_eq!(qp.send_queue_len(), 0);
    assert_eq!(qp.recv_queue_len(), 0);
}

#[test]
fn moving_to_err_flushes_the_queues_and_reset_empties_them_for_a_fresh_start() {
    let m = mem();
    // RTS -> ERR: everything posted completes with WR_FLUSH_ERR, no fatal event (the user asked).
    let mut qp = qp_in(Rts);
    for id in 1..=3 {
        qp.post_send(send_wr(id), &m).expect("post_send");
    }
    qp.post_recv(recv_wr(10)).expect("post_recv");
    qp.post_recv(recv_wr(11)).expect("post_recv");
    step_to(&mut qp, Err);
    let s: Vec<_> = core::iter::from_fn(|| qp.poll_send_completion())
        .map(|w| (w.wr_id, w.status))
        .collect();
    assert_eq!(
        s,
        vec![
            (1, WcStatus::WrFlushErr),
            (2, WcStatus::WrFlushErr),
            (3, WcStatus::WrFlushErr)
        ]
    );
    let r: Vec<_> = core::iter::from_fn(|| qp.poll_recv_completion())
        .map(|w| (w.wr_id, w.status))
        .collect();
    assert_eq!(
        r,
        vec![(10, WcStatus::WrFlushErr), (11, WcStatus::WrFlushErr)]
    );
    assert_eq!(qp.poll_event(), None);
    assert_eq!(qp.poll_timeout(), None);

    // A connected pair with requests in flight, reset: the queues empty without completions,
    // the attributes go back to their defaults, and the pair reconnects with fresh PSNs.
    let mut p = Pair::new();
    p.connect(ConnParams::default());
    let ak =
        p.a.mem
            .register(Pd(1), 0x1_0000, 0x1_0000, Access::LOCAL_WRITE, 1);
    let bk =
        p.b.mem
            .register(Pd(1), 0x1_0000, 0x1_0000, Access::LOCAL_WRITE, 0);
    let sge = |lkey| Sge {
        addr: 0x1_0000,
        length: 4096,
        lkey,
    };
    for id in 1..=2 {
        let wr = SendWr::new(id, WrOpcode::Send, Some(sge(ak)), SendFlags::SIGNALED);
        p.a.qp.post_send(wr, &p.a.mem).expect("post_send");
    }
    p.b.qp
        .post_recv(RecvWr::new(9, sge(bk)))
        .expect("post_recv");
    // Let a few packets out, nothing acknowledged yet.
    p.step();
    assert!(!p.a.sent.is_empty());
    for node in [&mut p.a, &mut p.b] {
        node.qp
            .modify(&attr(node.qp.state(), Reset, AttrMask::empty()))
            .expect("-> RESET");
        assert_eq!(node.qp.state(), Reset);
        assert_eq!(node.qp.send_queue_len(), 0);
        assert_eq!(node.qp.recv_queue_len(), 0);
        assert!(node.qp.poll_send_completion().is_none());
        assert!(node.qp.poll_recv_completion().is_none());
        assert_eq!(node.qp.poll_timeout(), None);
        assert_eq!(node.qp.attrs().av, None);
        assert_eq!(node.qp.attrs().path_mtu, Mtu::M256);
    }
    // Packets still on the link reach QPs in RESET and are dropped; after reconnecting, a
    // SEND works from the new PSNs.
    p.drive();
    assert!(p.a.send_wcs.is_empty() && p.b.recv_wcs.is_empty());
    let params = ConnParams {
        a_psn: 0x42,
        b_psn: 0x4242,
        ..ConnParams::default()
    };
    p.connect(params);
    assert_eq!(p.a.qp.sq_psn(), Psn::new(0x42));
    assert_eq!(p.b.qp.rq_psn(), Psn::new(0x42));
    p.b.qp
        .post_recv(RecvWr::new(19, sge(bk)))
        .expect("post_recv");
    let wr = SendWr::new(3, WrOpcode::Send, Some(sge(ak)), SendFlags::SIGNALED);
    p.a.qp.post_send(wr, &p.a.mem).expect("post_send");
    let sent_before = p.a.sent.len();
    p.drive();
    assert_eq!(
        p.a.send_wcs
            .iter()
            .map(|w| (w.wr_id, w.status))
            .collect::<Vec<_>>(),
        vec![(3, WcStatus::Success)]
    );
    assert_eq!(
        p.b.recv_wcs
            .iter()
            .map(|w| (w.wr_id, w.status))
            .collect::<Vec<_>>(),
        vec![(19, WcStatus::Success)]
    );
    let first_new = &p.a.sent[sent_before];
    let pkt = rxe_wire::RoceV2Packet::new_checked(first_new, &rxe_wire::Checks::ALL).expect("ok");
    assert_eq!(pkt.roce().bth().psn(), Psn::new(0x42));
    assert_same(
        "data after reset",
        p.b.mem.bytes(bk, 0x1_0000, 4096),
        p.a.mem.bytes(ak, 0x1_0000, 4096),
    );
}

#[test]
fn sqd_starts_no_new_request_until_the_qp_is_back_in_rts_and_reports_the_drain() {
    let mut p = Pair::new();
    p.connect(ConnParams::default());
    let ak =
        p.a.mem
            .register(Pd(1), 0x1_0000, 0x1_0000, Access::LOCAL_WRITE, 1);
    let bk =
        p.b.mem
            .register(Pd(1), 0x1_0000, 0x1_0000, Access::LOCAL_WRITE, 0);
    let sge = |lkey| Sge {
        addr: 0x1_0000,
        length: 100,
        lkey,
    };
    p.b.qp
        .post_recv(RecvWr::new(9, sge(bk)))
        .expect("post_recv");
    p.a.qp
        .modify(&QpAttr {
            en_sqd_async_notify: Some(true),
            ..attr(Rts, Sqd, AttrMask::empty())
        })
        .expect("RTS -> SQD");
    assert_eq!(
        p.a.qp.poll_event(),
        Some(QpEvent::SqDrained),
        "nothing was in flight"
    );
    let wr = SendWr::new(1, WrOpcode::Send, Some(sge(ak)), SendFlags::SIGNALED);
    p.a.qp.post_send(wr, &p.a.mem).expect("post_send in SQD");
    p.drive();
    assert!(p.a.sent.is_empty(), "SQD starts no new request");
    // SQD -> SQD may change the port (only 1 exists) and the retry parameters.
    p.a.qp
        .modify(&attr(Sqd, Sqd, AttrMask::PORT | AttrMask::RETRY_CNT))
        .expect("SQD -> SQD");
    p.a.qp
        .modify(&attr(Sqd, Rts, AttrMask::CUR_STATE))
        .expect("SQD -> RTS");
    p.drive();
    assert_eq!(
        p.a.send_wcs
            .iter()
            .map(|w| (w.wr_id, w.status))
            .collect::<Vec<_>>(),
        vec![(1, WcStatus::Success)]
    );
    assert_eq!(p.b.recv_wcs.len(), 1);
}

#[test]
fn uc_and_ud_transitions_require_their_own_attributes() {
    let uc = |qp: &mut TestQp, attr: QpAttr| qp.modify(&attr);
    // UC: INIT needs access flags; RTR needs AV, MTU, destination QP and RQ PSN but no RC-only
    // READ/atomic or RNR attributes; RTS needs the SQ PSN and refuses RC's retry attributes.
    let mut q = TestQp::new(QpConfig::uc(Qpn::new(0x40), Pd(1))).expect("qp");
    let init = QpAttr {
        state: Some(Init),
        pkey_index: Some(0),
        port: Some(1),
        ..QpAttr::default()
    };
    assert_eq!(
        uc(&mut q, init),
        Result::Err(ModifyQpError::MissingAttributes(AttrMask::ACCESS_FLAGS))
    );
    uc(
        &mut q,
        QpAttr {
            access: Some(Access::REMOTE_WRITE),
            ..init
        },
    )
    .expect("INIT");
    let rtr = QpAttr {
        state: Some(Rtr),
        ..QpAttr::default()
    };
    assert_eq!(
        uc(&mut q, rtr),
        Result::Err(ModifyQpError::MissingAttributes(
            AttrMask::AV | AttrMask::PATH_MTU | AttrMask::DEST_QPN | AttrMask::RQ_PSN
        ))
    );
    let av = AddressVector {
        sgid: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        dgid: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        hop_limit: 64,
        traffic_class: 0,
        flow_label: 0,
        udp_sport: None,
    };
    let rtr = QpAttr {
        av: Some(av),
        path_mtu: Some(Mtu::M1024),
        dest_qp: Some(Qpn::new(0x41)),
        rq_psn: Some(Psn::new(1)),
        ..rtr
    };
    assert_eq!(
        uc(
            &mut q,
            QpAttr {
                max_dest_rd_atomic: Some(1),
                ..rtr
            }
        ),
        Result::Err(ModifyQpError::UnexpectedAttributes(
            AttrMask::MAX_DEST_RD_ATOMIC
        ))
    );
    uc(&mut q, rtr).expect("RTR");
    let rts = QpAttr {
        state: Some(Rts),
        sq_psn: Some(Psn::new(1)),
        ..QpAttr::default()
    };
    assert_eq!(
        uc(
            &mut q,
            QpAttr {
                retry_cnt: Some(7),
                ..rts
            }
        ),
        Result::Err(ModifyQpError::UnexpectedAttributes(AttrMask::RETRY_CNT))
    );
    uc(&mut q, rts).expect("RTS");

    // UD: INIT needs the Q_Key instead of access flags; RTR needs nothing; RTS the SQ PSN.
    let mut d = TestQp::new(QpConfig::ud(Qpn::new(0x42), Pd(1))).expect("qp");
    assert_eq!(
        uc(&mut d, init),
        Result::Err(ModifyQpError::MissingAttributes(AttrMask::QKEY))
    );
    uc(
        &mut d,
        QpAttr {
            qkey: Some(QKey(0x1111_1111)),
            ..init
        },
    )
    .expect("INIT");
    assert_eq!(
        uc(
            &mut d,
            QpAttr {
                state: Some(Rtr),
                av: Some(av),
                ..QpAttr::default()
            }
        ),
        Result::Err(ModifyQpError::UnexpectedAttributes(AttrMask::AV))
    );
    uc(
        &mut d,
        QpAttr {
            state: Some(Rtr),
            ..QpAttr::default()
        },
    )
    .expect("RTR");
    uc(&mut d, rts).expect("RTS");
    assert_eq!(d.attrs().qkey, QKey(0x1111_1111));
}
