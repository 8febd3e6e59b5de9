//! The connection manager: two `Cm`s joined by a simulated QP1 link (loss and duplication under
//! the test's control, a virtual clock) move two real QPs through INIT/RTR/RTS, carry data, and
//! disconnect; and what our CM sends matches what Linux rdma_cm sent in the rping capture.

mod common;

use core::net::{IpAddr, Ipv4Addr};
use core::time::Duration;
use std::path::Path;

use common::*;
use pcap_file::pcap::PcapReader;
use rxe_transport::cm::{
    AcceptParams, Cm, CmConfig, CmEvent, ConnId, ConnState, ConnectParams, Outgoing,
};
use rxe_transport::{
    Access, Instant, Pd, QpState, RecvWr, SendFlags, SendWr, Sge, WcStatus, WrOpcode,
};
use rxe_wire::cm::{Message, RejReason};
use rxe_wire::mad::MAD_LEN;
use rxe_wire::{Psn, Qpn};

type TestCm = Cm<8>;

const PORT: u16 = 7174;
const A_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

/// A MAD in flight: (from a, deliver at, bytes).
type Mad = (bool, Instant, [u8; MAD_LEN]);

struct Net {
    p: Pair,
    a: TestCm,
    b: TestCm,
    flight: Vec<Mad>,
    /// Every MAD put on the link: (from a, message name).
    log: Vec<(bool, &'static str)>,
    /// Drops the MAD if this returns true: (from a, message name, how many of that name from
    /// that side went before).
    drop: Box<dyn FnMut(bool, &'static str, usize) -> bool>,
    /// Delivers a second copy of MADs for which this returns true.
    dup: Box<dyn FnMut(bool, &'static str) -> bool>,
    a_events: Vec<CmEvent>,
    b_events: Vec<CmEvent>,
}

fn cfg(ip: Ipv4Addr, seed: u64) -> CmConfig {
    CmConfig::new(IpAddr::V4(ip), 0x5054_00ff_fe00_0000 | seed, seed)
}

impl Net {
    fn new() -> Net {
        let p = Pair::new();
        assert_eq!((p.a.ip, p.b.ip), (A_IP, B_IP));
        Net {
            p,
            a: TestCm::new(cfg(A_IP, 1)),
            b: TestCm::new(cfg(B_IP, 2)),
            flight: Vec::new(),
            log: Vec::new(),
            drop: Box::new(|_, _, _| false),
            dup: Box::new(|_, _| false),
            a_events: Vec::new(),
            b_events: Vec::new(),
        }
    }

    fn now(&self) -> Instant {
        self.p.now
    }

    /// Moves MADs out of both CMs onto the link.
    fn transmit(&mut self) {
        let now = self.now();
        for from_a in [true, false] {
            loop {
                let out: Option<Outgoing> = if from_a {
                    self.a.poll_transmit()
                } else {
                    self.b.poll_transmit()
                };
                let Some(o) = out else { break };
                let want = if from_a { B_IP } else { A_IP };
                assert_eq!(o.dst, IpAddr::V4(want));
                let name = Message::parse(&o.mad).expect("our MAD parses").1.name();
                let before = self
                    .log
                    .iter()
                    .filter(|&&(f, n)| f == from_a && n == name)
                    .count();
                self.log.push((from_a, name));
                if (self.drop)(from_a, name, before) {
                    continue;
                }
                let at = now + Duration::from_micros(10);
                if (self.dup)(from_a, name) {
                    self.flight
                        .push((from_a, at + Duration::from_micros(1), o.mad));
                }
                self.flight.push((from_a, at, o.mad));
            }
        }
    }

    /// One step: send, deliver what is due, react to events, or jump the clock. False when
    /// nothing is left to happen.
    fn step(&mut self) -> bool {
        self.transmit();
        let now = self.now();
        self.flight.sort_by_key(|m| m.1);
        let due: Vec<Mad> = self.flight.iter().filter(|m| m.1 <= now).copied().collect();
        self.flight.retain(|m| m.1 > now);
        let mut any = !due.is_empty();
        for (from_a, _, mad) in due {
            if from_a {
                self.b.handle_mad(now, IpAddr::V4(A_IP), &mad);
            } else {
                self.a.handle_mad(now, IpAddr::V4(B_IP), &mad);
            }
        }
        while let Some(e) = self.a.poll_event() {
            any = true;
            self.a_events.push(e);
        }
        while let Some(e) = self.b.poll_event() {
            any = true;
            self.b_events.push(e);
        }
        if any {
            return true;
        }
        let next = [
            self.flight.iter().map(|m| m.1).min(),
            self.a.poll_timeout(),
            self.b.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min();
        match next {
            Some(t) => {
                self.p.now = t.max(now);
                self.a.handle_timeout(self.p.now);
                self.b.handle_timeout(self.p.now);
                true
            }
            None => false,
        }
    }

    /// Steps until `done` (bounded); panics if it never holds.
    fn until(&mut self, what: &str, mut done: impl FnMut(&Net) -> bool) {
        for _ in 0..10_000 {
            if done(self) {
                return;
            }
            if !self.step() && !done(self) {
                panic!("{what}: nothing left to happen; log {:?}", self.log);
            }
        }
        panic!("{what}: never happened; log {:?}", self.log);
    }

    fn connect_params(&self) -> ConnectParams<'static> {
        ConnectParams {
            dst: IpAddr::V4(B_IP),
            dst_port: PORT,
            src_port: 40001,
            qpn: self.p.a.qp.qpn(),
            psn: Psn::new(0x00ab_cdef),
            responder_resources: 4,
            initiator_depth: 4,
            retry_count: 7,
            rnr_retry_count: 7,
            private_data: b"hello",
        }
    }

    fn modify(node: &mut Node, cm: &TestCm, id: ConnId, states: &[QpState]) {
        for &s in states {
            let attr = cm.qp_attr(id, s).expect("qp_attr");
            node.qp
                .modify(&attr)
                .unwrap_or_else(|e| panic!("{s:?}: {e}"));
        }
    }

    /// Runs connect → accept → RTU, moving both QPs as the events say; returns (a's id, b's id).
    fn establish(&mut self) -> (ConnId, ConnId) {
        self.b.listen(PORT).expect("listen");
        let now = self.now();
        let params = self.connect_params();
        let a_id = self.a.connect(now, &params).expect("connect");
        self.until("connect request", |n| {
            n.b_events
                .iter()
                .any(|e| matches!(e, CmEvent::ConnectRequest { .. }))
        });
        let Some(CmEvent::ConnectRequest {
            id: b_id,
            src,
            src_port,
            port,
            remote_qpn,
            private_data,
            ..
        }) = self.b_events.first().cloned()
        else {
            panic!("{:?}", self.b_events)
        };
        assert_eq!(
            (src, src_port, port, remote_qpn),
            (IpAddr::V4(A_IP), 40001, PORT, self.p.a.qp.qpn())
        );
        assert_eq!(&private_data[..5], b"hello");
        let now = self.now();
        let accept = AcceptParams {
            qpn: self.p.b.qp.qpn(),
            psn: Psn::new(0x0012_3456),
            responder_resources: 2,
            initiator_depth: 8,
            rnr_retry_count: 6,
            private_data: b"welcome",
        };
        // accept fixes the negotiated values; the QP reaches RTR before the REP is sent.
        self.b.accept(now, b_id, &accept).expect("accept");
        Self::modify(&mut self.p.b, &self.b, b_id, &[QpState::Init, QpState::Rtr]);
        self.until("connect reply", |n| {
            n.a_events
                .iter()
                .any(|e| matches!(e, CmEvent::ConnectReply { .. }))
        });
        Self::modify(
            &mut self.p.a,
            &self.a,
            a_id,
            &[QpState::Init, QpState::Rtr, QpState::Rts],
        );
        self.a.rtu(a_id).expect("rtu");
        self.until("established at b", |n| {
            n.b_events
                .iter()
                .any(|e| matches!(e, CmEvent::Established { .. }))
        });
        Self::modify(&mut self.p.b, &self.b, b_id, &[QpState::Rts]);
        (a_id, b_id)
    }
}

/// A SEND and a READ over the QPs the CM connected.
fn exchange_data(n: &mut Net) {
    let p = &mut n.p;
    let ak =
        p.a.mem
            .register(Pd(1), 0x1000, 8192, Access::LOCAL_WRITE, 0);
    let bk = p.b.mem.register(
        Pd(1),
        0x9000,
        8192,
        Access::LOCAL_WRITE | Access::REMOTE_READ,
        0,
    );
    p.a.mem.fill_pattern(ak, 3);
    p.b.mem.fill_pattern(bk, 9);
    p.b.qp
        .post_recv(RecvWr::new(
            5,
            Sge {
                addr: 0x9000,
                length: 4096,
                lkey: bk,
            },
        ))
        .expect("post_recv");
    let send = SendWr::new(
        1,
        WrOpcode::Send,
        Some(Sge {
            addr: 0x1000,
            length: 3000,
            lkey: ak,
        }),
        SendFlags::SIGNALED,
    );
    let read = SendWr::new(
        2,
        WrOpcode::RdmaRead(rxe_transport::Remote {
            addr: 0xa000,
            rkey: rxe_wire::Rkey(bk),
        }),
        Some(Sge {
            addr: 0x1000 + 4096,
            length: 4096,
            lkey: ak,
        }),
        SendFlags::SIGNALED,
    );
    p.a.qp.post_send(send, &p.a.mem).expect("send");
    p.a.qp.post_send(read, &p.a.mem).expect("read");
    p.drive();
    let st: Vec<_> = p.a.send_wcs.iter().map(|w| (w.wr_id, w.status)).collect();
    assert_eq!(st, [(1, WcStatus::Success), (2, WcStatus::Success)]);
    assert_eq!(p.b.recv_wcs.len(), 1);
    assert_same(
        "send",
        p.b.mem.bytes(bk, 0x9000, 3000),
        p.a.mem.bytes(ak, 0x1000, 3000),
    );
    assert_same(
        "read",
        p.a.mem.bytes(ak, 0x2000, 4096),
        p.b.mem.bytes(bk, 0xa000, 4096),
    );
}

fn names(log: &[(bool, &'static str)]) -> Vec<String> {
    log.iter()
        .map(|(a, n)| format!("{}{n}", if *a { "a:" } else { "b:" }))
        .collect()
}

#[test]
fn connect_accept_carry_data_and_disconnect() {
    let mut n = Net::new();
    let (a_id, b_id) = n.establish();
    // The QPs got the negotiated values.
    // rdma_cm's PSNs: each side's REQ/REP carries the PSN its responder expects; each side
    // sends from the other's.
    let a_attr = n.a.qp_attr(a_id, QpState::Rtr).unwrap();
    assert_eq!(a_attr.rq_psn, Some(Psn::new(0x00ab_cdef)));
    assert_eq!(a_attr.dest_qp, Some(n.p.b.qp.qpn()));
    let a_rts = n.a.qp_attr(a_id, QpState::Rts).unwrap();
    // a issues at most what b accepts (2) and retries RNR as b asked (6).
    assert_eq!((a_rts.max_rd_atomic, a_rts.rnr_retry), (Some(2), Some(6)));
    let b_rts = n.b.qp_attr(b_id, QpState::Rts).unwrap();
    // b asked for 8 but a accepts 4.
    assert_eq!(b_rts.max_rd_atomic, Some(4));
    assert_eq!(b_rts.sq_psn, Some(Psn::new(0x00ab_cdef)));
    assert_eq!(
        n.b.qp_attr(b_id, QpState::Rtr).unwrap().rq_psn,
        Some(Psn::new(0x0012_3456))
    );
    assert_eq!(a_rts.sq_psn, Some(Psn::new(0x0012_3456)));
    assert_eq!(n.a.state(a_id), Some(ConnState::Established));
    assert_eq!(n.b.state(b_id), Some(ConnState::Established));
    assert_eq!(n.p.a.qp.state(), QpState::Rts);
    assert_eq!(n.p.b.qp.state(), QpState::Rts);
    let reply_pd = n.a_events.iter().find_map(|e| match e {
        CmEvent::ConnectReply { private_data, .. } => Some(private_data.clone()),
        _ => None,
    });
    assert_eq!(&reply_pd.unwrap()[..7], b"welcome");

    exchange_data(&mut n);

    let now = n.now();
    n.a.disconnect(now, a_id, b"bye").expect("disconnect");
    n.until("disconnected both sides", |n| {
        n.a_events
            .iter()
            .any(|e| matches!(e, CmEvent::Disconnected { .. }))
            && n.b_events
                .iter()
                .any(|e| matches!(e, CmEvent::Disconnected { .. }))
    });
    n.until("timewait ends", |n| {
        n.a_events
            .iter()
            .any(|e| matches!(e, CmEvent::TimewaitExit { .. }))
            && n.b_events
                .iter()
                .any(|e| matches!(e, CmEvent::TimewaitExit { .. }))
    });
    assert_eq!(
        names(&n.log),
        ["a:REQ", "b:REP", "a:RTU", "a:DREQ", "b:DREP"]
    );
    assert_eq!(n.a.connections().count(), 0);
    assert_eq!(n.b.connections().count(), 0);
    assert_eq!(
        n.a.counters().retransmitted + n.b.counters().retransmitted,
        0
    );
}

#[test]
fn connecting_to_a_port_nobody_listens_on_is_rejected_with_invalid_service_id() {
    let mut n = Net::new();
    n.b.listen(PORT + 1).unwrap();
    let now = n.now();
    let params = n.connect_params();
    let id = n.a.connect(now, &params).unwrap();
    n.until("rejected", |n| !n.a_events.is_empty());
    assert!(
        matches!(&n.a_events[..], [CmEvent::Rejected { id: i, reason, .. }]
            if *i == id && *reason == RejReason::INVALID_SERVICE_ID),
        "{:?}",
        n.a_events
    );
    assert!(n.b_events.is_empty());
    assert_eq!(n.a.state(id), None);
    assert_eq!(names(&n.log), ["a:REQ", "b:REJ"]);
}

#[test]
fn the_application_can_reject_with_private_data() {
    let mut n = Net::new();
    n.b.listen(PORT).unwrap();
    let now = n.now();
    let params = n.connect_params();
    n.a.connect(now, &params).unwrap();
    n.until("request", |n| !n.b_events.is_empty());
    let Some(CmEvent::ConnectRequest { id, .. }) = n.b_events.first().cloned() else {
        panic!()
    };
    n.b.reject(id, b"busy").unwrap();
    n.until("rejected", |n| !n.a_events.is_empty());
    let CmEvent::Rejected {
        reason,
        private_data,
        ..
    } = &n.a_events[0]
    else {
        panic!("{:?}", n.a_events)
    };
    assert_eq!(*reason, RejReason::CONSUMER_DEFINED);
    assert_eq!(&private_data[..4], b"busy");
    assert_eq!(n.b.connections().count(), 0);
}

#[test]
fn a_lost_req_is_resent_after_the_cm_response_timeout_and_the_connection_comes_up() {
    let mut n = Net::new();
    n.drop = Box::new(|from_a, name, before| from_a && name == "REQ" && before == 0);
    let t0 = n.now();
    let (a_id, _) = n.establish();
    assert_eq!(&names(&n.log)[..3], ["a:REQ", "a:REQ", "b:REP"]);
    // 2 × 4.096 µs × 2^18 + 4.096 µs × 2^20 ≈ 6.4 s.
    let waited = n.now().saturating_duration_since(t0);
    assert!(
        waited >= Duration::from_millis(6400) && waited < Duration::from_millis(6500),
        "{waited:?}"
    );
    assert_eq!(n.a.counters().retransmitted, 1);
    assert_eq!(n.a.state(a_id), Some(ConnState::Established));
    exchange_data(&mut n);
}

#[test]
fn a_lost_rep_is_recovered_and_the_connection_comes_up_once() {
    let mut n = Net::new();
    n.drop = Box::new(|from_a, name, before| !from_a && name == "REP" && before == 0);
    n.establish();
    let reqs = n
        .b_events
        .iter()
        .filter(|e| matches!(e, CmEvent::ConnectRequest { .. }))
        .count();
    assert_eq!(reqs, 1, "one connect request despite the resent REQ");
    assert_eq!(n.log.iter().filter(|(a, m)| !a && *m == "REP").count(), 2);
    exchange_data(&mut n);
}

#[test]
fn a_lost_rtu_is_recovered_by_the_resent_rep_or_by_the_first_data_packet() {
    // By the REP resent after the timeout: a answers the duplicate REP with the RTU again.
    let mut n = Net::new();
    n.drop = Box::new(|from_a, name, before| from_a && name == "RTU" && before == 0);
    n.establish();
    assert_eq!(names(&n.log), ["a:REQ", "b:REP", "a:RTU", "b:REP", "a:RTU"]);
    assert!(n.a.counters().duplicates >= 1);

    // By the first data packet: the host tells b's CM the connection is in use.
    let mut n = Net::new();
    n.drop = Box::new(|from_a, name, _| from_a && name == "RTU");
    n.b.listen(PORT).unwrap();
    let now = n.now();
    let params = n.connect_params();
    let a_id = n.a.connect(now, &params).unwrap();
    n.until("request", |n| !n.b_events.is_empty());
    let Some(CmEvent::ConnectRequest { id: b_id, .. }) = n.b_events.first().cloned() else {
        panic!()
    };
    let accept = AcceptParams {
        qpn: n.p.b.qp.qpn(),
        psn: Psn::new(7),
        responder_resources: 1,
        initiator_depth: 1,
        rnr_retry_count: 7,
        private_data: &[],
    };
    let now = n.now();
    n.b.accept(now, b_id, &accept).unwrap();
    Net::modify(&mut n.p.b, &n.b, b_id, &[QpState::Init, QpState::Rtr]);
    n.until("reply", |n| n.a_events.len() == 1);
    Net::modify(
        &mut n.p.a,
        &n.a,
        a_id,
        &[QpState::Init, QpState::Rtr, QpState::Rts],
    );
    n.a.rtu(a_id).unwrap();
    n.transmit();
    assert_eq!(n.b.state(b_id), Some(ConnState::RepSent));
    n.b.notify_established(b_id).unwrap();
    assert_eq!(n.b.poll_event(), Some(CmEvent::Established { id: b_id }));
    assert_eq!(n.b.state(b_id), Some(ConnState::Established));
}

#[test]
fn a_duplicated_req_makes_one_connection_and_an_mra_while_the_host_thinks() {
    let mut n = Net::new();
    n.dup = Box::new(|from_a, name| from_a && name == "REQ");
    n.b.listen(PORT).unwrap();
    let now = n.now();
    let params = n.connect_params();
    let a_id = n.a.connect(now, &params).unwrap();
    n.until("two REQs delivered", |n| n.b.counters().received == 2);
    n.step();
    assert_eq!(n.b_events.len(), 1);
    assert_eq!(n.b.connections().count(), 1);
    // The duplicate arrived while the host had not answered: b sends an MRA, and a waits
    // longer instead of resending.
    n.transmit();
    n.until("MRA handled", |n| n.a.counters().received == 1);
    assert_eq!(n.a.state(a_id), Some(ConnState::MraReqRcvd));
    assert_eq!(names(&n.log), ["a:REQ", "b:MRA"]);
}

#[test]
fn simultaneous_disconnects_both_end_in_timewait_and_exit() {
    let mut n = Net::new();
    let (a_id, b_id) = n.establish();
    let now = n.now();
    n.a.disconnect(now, a_id, &[]).unwrap();
    n.b.disconnect(now, b_id, &[]).unwrap();
    n.until("both disconnected", |n| {
        n.a_events
            .iter()
            .any(|e| matches!(e, CmEvent::Disconnected { .. }))
            && n.b_events
                .iter()
                .any(|e| matches!(e, CmEvent::Disconnected { .. }))
    });
    assert_eq!(n.a.state(a_id), Some(ConnState::Timewait));
    assert_eq!(n.b.state(b_id), Some(ConnState::Timewait));
    n.until("exits", |n| {
        n.a.connections().count() == 0 && n.b.connections().count() == 0
    });
    let tail: Vec<_> = names(&n.log)[3..].to_vec();
    assert_eq!(tail, ["a:DREQ", "b:DREQ", "a:DREP", "b:DREP"]);
    // Exactly one Disconnected per side.
    for ev in [&n.a_events, &n.b_events] {
        let d = ev
            .iter()
            .filter(|e| matches!(e, CmEvent::Disconnected { .. }))
            .count();
        assert_eq!(d, 1);
    }
}

#[test]
fn a_lost_dreq_is_resent_and_a_lost_drep_is_answered_again() {
    let mut n = Net::new();
    n.drop = Box::new(|_, name, before| (name == "DREQ" || name == "DREP") && before == 0);
    let (a_id, _) = n.establish();
    let now = n.now();
    n.a.disconnect(now, a_id, &[]).unwrap();
    n.until("disconnected both sides", |n| {
        n.a_events
            .iter()
            .any(|e| matches!(e, CmEvent::Disconnected { .. }))
            && n.b_events
                .iter()
                .any(|e| matches!(e, CmEvent::Disconnected { .. }))
    });
    // DREQ lost, resent; b answers, DREP lost; DREQ resent again; b (in timewait) answers again.
    assert_eq!(
        names(&n.log)[3..],
        ["a:DREQ", "a:DREQ", "b:DREP", "a:DREQ", "b:DREP"]
    );
    assert_eq!(n.a.counters().retransmitted, 2);
}

#[test]
fn a_peer_that_never_answers_is_unreachable_after_the_retries() {
    let mut n = Net::new();
    n.b.listen(PORT).unwrap();
    n.drop = Box::new(|from_a, _, _| from_a);
    let now = n.now();
    let params = n.connect_params();
    let id = n.a.connect(now, &params).unwrap();
    n.until("unreachable", |n| !n.a_events.is_empty());
    assert_eq!(n.a_events, [CmEvent::Unreachable { id }]);
    // The REQ and 15 retries, then a REJ (timeout) for the peer.
    let sent: Vec<_> = n.log.iter().map(|(_, m)| *m).collect();
    assert_eq!(sent.len(), 17);
    assert!(sent[..16].iter().all(|m| *m == "REQ"));
    assert_eq!(sent[16], "REJ");
    assert_eq!(n.a.connections().count(), 0);
}

#[test]
fn a_second_req_from_a_connected_qp_is_rejected_as_stale() {
    let mut n = Net::new();
    n.establish();
    // The same QP asks again under a new comm ID (say, a restarted peer).
    let now = n.now();
    let params = n.connect_params();
    let again = n.a.connect(now, &params).unwrap();
    n.until("rejected", |n| {
        n.a_events
            .iter()
            .any(|e| matches!(e, CmEvent::Rejected { .. }))
    });
    assert!(n.a_events.iter().any(|e| matches!(e,
        CmEvent::Rejected { id, reason, .. } if *id == again && *reason == RejReason::STALE_CONN)));
}

#[test]
fn api_misuse_is_refused_with_typed_errors() {
    let mut n = Net::new();
    n.b.listen(PORT).unwrap();
    assert!(n.b.listen(PORT).is_err());
    let now = n.now();
    let mut params = n.connect_params();
    params.private_data = &[0; 57];
    assert!(n.a.connect(now, &params).is_err());
    params.private_data = &[];
    params.dst = IpAddr::V6(core::net::Ipv6Addr::LOCALHOST);
    assert!(n.a.connect(now, &params).is_err());
    assert!(n.a.rtu(ConnId(99)).is_err());
    let params = n.connect_params();
    let id = n.a.connect(now, &params).unwrap();
    assert!(n.a.rtu(id).is_err(), "no REP yet");
    assert!(n.a.disconnect(now, id, &[]).is_err());
    assert!(n.a.qp_attr(id, QpState::Rtr).is_err());
}

// ---- against Linux ----

fn rping_mads() -> Vec<(IpAddr, [u8; MAD_LEN])> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rxe-wire/tests/data/rping.pcap");
    let mut r = PcapReader::new(std::fs::File::open(&path).expect("capture")).expect("pcap");
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        let f = p.expect("record").data.into_owned();
        // IPv4, UD SEND_ONLY to QP1: the MAD follows BTH and DETH.
        if f.len() >= 42 + 20 + MAD_LEN && f[42] == 0x64 && f[47..50] == [0, 0, 1] {
            let src = IpAddr::V4(Ipv4Addr::new(f[26], f[27], f[28], f[29]));
            let mut mad = [0u8; MAD_LEN];
            mad.copy_from_slice(&f[62..62 + MAD_LEN]);
            out.push((src, mad));
        }
    }
    assert_eq!(out.len(), 5);
    out
}

/// Byte positions (within the MAD) where `a` and `b` differ.
fn diff(a: &[u8; MAD_LEN], b: &[u8; MAD_LEN]) -> Vec<usize> {
    (0..MAD_LEN).filter(|&i| a[i] != b[i]).collect()
}

/// Whether every position in `d` lies in one of the `[start, end)` ranges.
fn in_ranges(d: &[usize], ranges: &[(usize, usize)]) -> bool {
    d.iter()
        .all(|&i| ranges.iter().any(|&(s, e)| (s..e).contains(&i)))
}

#[test]
fn our_req_rep_and_rtu_match_linux_rdma_cm_byte_for_byte_but_ids() {
    let mads = rping_mads();
    let client = Ipv4Addr::new(10, 77, 0, 12);
    let server = Ipv4Addr::new(10, 77, 0, 11);
    // The CA GUIDs of the capture's two guests.
    let mut a_cfg = CmConfig::new(IpAddr::V4(client), 0x5054_00ff_fe77_0002, 5);
    a_cfg.port_mtu = rxe_transport::Mtu::M1024;
    let b_cfg = CmConfig::new(IpAddr::V4(server), 0x5054_00ff_fe77_0001, 6);
    let now = Instant::from_nanos(1);

    // REQ: rping's connect from 10.77.0.12:39498 to 10.77.0.11:7174, QP 0x14, PSN 0x54e9f2.
    let mut a: TestCm = Cm::new(a_cfg);
    let id = a
        .connect(
            now,
            &ConnectParams {
                dst: IpAddr::V4(server),
                dst_port: 7174,
                src_port: 39498,
                qpn: Qpn::new(0x14),
                psn: Psn::new(0x54e9f2),
                responder_resources: 1,
                initiator_depth: 1,
                retry_count: 7,
                rnr_retry_count: 7,
                private_data: &[],
            },
        )
        .unwrap();
    let req = a.poll_transmit().unwrap().mad;
    // Only the transaction ID (MAD bytes 8..16) and the local comm ID (24..28) differ.
    let d = diff(&req, &mads[0].1);
    assert!(in_ranges(&d, &[(8, 16), (24, 28)]), "REQ differs at {d:?}");

    // REP: our passive side given the captured REQ, accepting as rping's server does.
    let mut b: TestCm = Cm::new(b_cfg);
    b.listen(7174).unwrap();
    b.handle_mad(now, mads[0].0, &mads[0].1);
    let Some(CmEvent::ConnectRequest { id: b_id, src, .. }) = b.poll_event() else {
        panic!()
    };
    assert_eq!(src, IpAddr::V4(client));
    let attr = b.qp_attr(b_id, QpState::Rtr).unwrap();
    assert_eq!(attr.dest_qp, Some(Qpn::new(0x14)));
    assert_eq!(attr.path_mtu, Some(rxe_transport::Mtu::M1024));
    // The flow label rdma_cm chose gives the UDP source port the capture's RC packets use.
    let av = attr.av.unwrap();
    assert_eq!(
        rxe_transport::qp::udp_sport(av.flow_label, Qpn::new(0x14), Qpn::new(0x14)),
        51959
    );
    b.accept(
        now,
        b_id,
        &AcceptParams {
            qpn: Qpn::new(0x14),
            psn: Psn::new(0x3baddb),
            responder_resources: 1,
            initiator_depth: 1,
            rnr_retry_count: 7,
            private_data: &[],
        },
    )
    .unwrap();
    let rep = b.poll_transmit().unwrap().mad;
    // As in the capture: the server expects 0x3baddb (its REP) and sends from 0x54e9f2 (the
    // client's REQ): its first READ request carries 0x54e9f2.
    let rtr = b.qp_attr(b_id, QpState::Rtr).unwrap();
    let rts = b.qp_attr(b_id, QpState::Rts).unwrap();
    assert_eq!(
        (rtr.rq_psn, rts.sq_psn),
        (Some(Psn::new(0x3baddb)), Some(Psn::new(0x54e9f2)))
    );
    let d = diff(&rep, &mads[1].1);
    assert!(in_ranges(&d, &[(24, 28)]), "REP differs at {d:?}");

    // RTU: our active side given the captured REP (addressed to our comm ID).
    let mut cap_rep = mads[1].1;
    cap_rep[28..32].copy_from_slice(&req[24..28]);
    a.handle_mad(now, IpAddr::V4(server), &cap_rep);
    assert!(matches!(a.poll_event(), Some(CmEvent::ConnectReply { .. })));
    let rts = a.qp_attr(id, QpState::Rts).unwrap();
    // The client sends from the server's 0x3baddb: its first SEND in the capture.
    assert_eq!(rts.sq_psn, Some(Psn::new(0x3baddb)));
    assert_eq!(
        (rts.retry_cnt, rts.rnr_retry, rts.timeout),
        (Some(7), Some(7), Some(19))
    );
    a.rtu(id).unwrap();
    let rtu = a.poll_transmit().unwrap().mad;
    let d = diff(&rtu, &mads[2].1);
    assert!(in_ranges(&d, &[(8, 16), (24, 28)]), "RTU differs at {d:?}");

    // DREQ from the client and the server's DREP.
    a.disconnect(now, id, &[]).unwrap();
    let dreq = a.poll_transmit().unwrap().mad;
    let d = diff(&dreq, &mads[3].1);
    assert!(
        in_ranges(&d, &[(8, 16), (24, 28), (28, 32)]),
        "DREQ differs at {d:?}"
    );
}

#[test]
fn arbitrary_and_mutated_mads_never_panic_or_grow_state() {
    let mads = rping_mads();
    let mut cm: TestCm = Cm::new(cfg(B_IP, 3));
    cm.listen(7174).unwrap();
    let mut rng = Rng::new(99);
    let mut now = Instant::from_nanos(1);
    for i in 0..20_000u64 {
        let mut mad = mads[(i % 5) as usize].1;
        for _ in 0..(rng.below(6)) {
            let at = rng.below(MAD_LEN as u64) as usize;
            mad[at] ^= 1 << rng.below(8);
        }
        cm.handle_mad(now, IpAddr::V4(A_IP), &mad);
        now = now + Duration::from_millis(rng.below(3000));
        cm.handle_timeout(now);
        while cm.poll_transmit().is_some() {}
        while let Some(e) = cm.poll_event() {
            if let CmEvent::ConnectRequest { id, .. } = e {
                if rng.chance(0.5) {
                    let _ = cm.reject(id, &[]);
                }
            }
        }
        assert!(cm.connections().count() <= 8);
    }
}

#[test]
fn a_connection_over_ipv6_carries_ipv6_gids_and_the_rdma_cm_header() {
    let a_ip: IpAddr = "fe80::5054:ff:fe77:2".parse().unwrap();
    let b_ip: IpAddr = "fe80::5054:ff:fe77:1".parse().unwrap();
    let mut a: TestCm = Cm::new(CmConfig::new(a_ip, 0xa, 1));
    let mut b: TestCm = Cm::new(CmConfig::new(b_ip, 0xb, 2));
    b.listen(4791).unwrap();
    let now = Instant::from_nanos(1);
    let id = a
        .connect(
            now,
            &ConnectParams {
                dst: b_ip,
                dst_port: 4791,
                src_port: 50000,
                qpn: Qpn::new(0x31),
                psn: Psn::new(1),
                responder_resources: 1,
                initiator_depth: 1,
                retry_count: 7,
                rnr_retry_count: 7,
                private_data: b"v6",
            },
        )
        .unwrap();
    let req = a.poll_transmit().unwrap();
    assert_eq!(req.dst, b_ip);
    let (_, Message::Req(r)) = Message::parse(&req.mad).unwrap() else {
        panic!()
    };
    assert_eq!(IpAddr::V6(r.primary.local_gid), a_ip);
    assert_eq!(IpAddr::V6(r.primary.remote_gid), b_ip);
    b.handle_mad(now, a_ip, &req.mad);
    let Some(CmEvent::ConnectRequest {
        id: bid,
        src,
        src_port,
        private_data,
        ..
    }) = b.poll_event()
    else {
        panic!()
    };
    assert_eq!(
        (src, src_port, &private_data[..2]),
        (a_ip, 50000, &b"v6"[..])
    );
    let rtr = b.qp_attr(bid, QpState::Rtr).unwrap();
    let av = rtr.av.unwrap();
    assert_eq!((av.sgid, av.dgid), (b_ip, a_ip));
    b.accept(
        now,
        bid,
        &AcceptParams {
            qpn: Qpn::new(0x41),
            psn: Psn::new(2),
            responder_resources: 1,
            initiator_depth: 1,
            rnr_retry_count: 7,
            private_data: &[],
        },
    )
    .unwrap();
    let rep = b.poll_transmit().unwrap();
    a.handle_mad(now, b_ip, &rep.mad);
    assert!(matches!(a.poll_event(), Some(CmEvent::ConnectReply { .. })));
    a.rtu(id).unwrap();
    let rtu = a.poll_transmit().unwrap();
    b.handle_mad(now, a_ip, &rtu.mad);
    assert_eq!(b.poll_event(), Some(CmEvent::Established { id: bid }));
}
