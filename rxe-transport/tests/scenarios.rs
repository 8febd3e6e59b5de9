//! Scenario tests: RNR, retries, loss recovery, remote errors, fences, immediate data,
//! signaling, AckReq, PSN wrap and `max_rd_atomic`, checked on the wire, in memory, in the
//! completions and in the counters against Linux rxe's behaviour.

mod common;

use core::time::Duration;

use common::*;
use rxe_transport::{
    time::local_ack_timeout, Access, Instant, Memory, Pd, QpConfig, QpEvent, QpState, RecvWr,
    Remote, SendFlags, SendWr, Sge, WcFlags, WcOpcode, WcStatus, WrOpcode,
};
use rxe_wire::aeth::RnrTimer;
use rxe_wire::{Checks, ImmDt, Opcode as O, Qpn, Rkey, RoceV2Packet};

/// a's buffers: data to send at `A_SRC`, READ/atomic targets at `A_DST`.
const A_SRC: u64 = 0x10_0000;
const A_DST: u64 = 0x20_0000;
/// b's registered region.
const B_BUF: u64 = 0x80_0000;
const REGION: usize = 512 * 1024;
const ALL: Access = Access::LOCAL_WRITE
    .union(Access::REMOTE_READ)
    .union(Access::REMOTE_WRITE)
    .union(Access::REMOTE_ATOMIC);

/// AETH syndromes on the wire.
const SYN_ACK: u8 = 0x1f;
const SYN_SEQ_ERR: u8 = 0x60;
const SYN_INV_REQ: u8 = 0x61;
const SYN_REM_ACCESS: u8 = 0x62;

type Pkt = (bool, O, u32, bool, Option<u8>, usize);

/// Connects a pair with `params` and registers a's two buffers (one region) and b's region.
fn setup(params: ConnParams) -> (Pair, u32, u32) {
    setup_with(params, None)
}

fn setup_with(params: ConnParams, a_cfg: Option<QpConfig>) -> (Pair, u32, u32) {
    let mut p = Pair::new();
    if let Some(cfg) = a_cfg {
        p.a.qp = TestQp::new(cfg).expect("qp");
    }
    p.connect(params);
    let ak = p.a.mem.register(Pd(1), A_SRC, 2 * 1024 * 1024, ALL, 0);
    let bk = p.b.mem.register(Pd(1), B_BUF, REGION, ALL, 0);
    p.a.mem.fill_pattern(ak, 11);
    (p, ak, bk)
}

fn sge(addr: u64, length: u32, lkey: u32) -> Sge {
    Sge { addr, length, lkey }
}

fn remote(addr: u64, rkey: u32) -> Remote {
    Remote {
        addr,
        rkey: Rkey(rkey),
    }
}

fn psn(base: u32, off: u32) -> u32 {
    base.wrapping_add(off) & 0x00ff_ffff
}

fn post(p: &mut Pair, wr: SendWr) {
    p.a.qp.post_send(wr, &p.a.mem).expect("post_send");
}

fn from_a(w: &[Pkt]) -> Vec<Pkt> {
    w.iter().copied().filter(|x| x.0).collect()
}

fn from_b(w: &[Pkt]) -> Vec<Pkt> {
    w.iter().copied().filter(|x| !x.0).collect()
}

/// (va, rkey, dma_len) of the RETH of wire packet `i`.
fn reth_of(p: &Pair, i: usize) -> (u64, u32, u32) {
    let pkt = RoceV2Packet::new_checked(&p.wire[i].1, &Checks::ALL).expect("valid");
    let r = pkt.roce();
    let reth = r.reth().expect("RETH");
    (reth.va(), reth.rkey().0, reth.dma_len())
}

/// Steps like [`Pair::drive_until`] and records in `sent_at[i]` the virtual time at which wire
/// packet `i` was transmitted. Returns whether `done` held (false: the run ended or ran out of
/// steps first).
fn drive_timed(
    p: &mut Pair,
    sent_at: &mut Vec<Instant>,
    max_steps: usize,
    mut done: impl FnMut(&Pair) -> bool,
) -> bool {
    assert_eq!(sent_at.len(), p.wire.len(), "sent_at follows the wire");
    for _ in 0..max_steps {
        if done(p) {
            return true;
        }
        let now = p.now;
        let alive = p.step();
        sent_at.resize(p.wire.len(), now);
        if !alive {
            return done(p);
        }
    }
    done(p)
}

fn statuses(wcs: &[rxe_transport::WorkCompletion]) -> Vec<(u64, WcStatus)> {
    wcs.iter().map(|w| (w.wr_id, w.status)).collect()
}

fn rnr_syndrome(code: u8) -> u8 {
    0x20 | code
}

// ---- 1 ----

#[test]
fn an_rnr_nak_makes_the_requester_wait_the_rnr_timer_and_the_send_succeeds_once_a_receive_is_posted(
) {
    let params = ConnParams::default();
    let (mut p, ak, bk) = setup(params);
    let p0 = p.a.qp.sq_psn().value();
    post(
        &mut p,
        SendWr::new(
            1,
            WrOpcode::Send,
            Some(sge(A_SRC, 100, ak)),
            SendFlags::SIGNALED,
        ),
    );
    let mut at = Vec::new();
    // b has no receive posted: it answers with an RNR NAK.
    assert!(drive_timed(&mut p, &mut at, 1000, |p| !p.b.sent.is_empty()));
    p.b.qp
        .post_recv(RecvWr::new(7, sge(B_BUF, 4096, bk)))
        .expect("post_recv");
    drive_timed(&mut p, &mut at, 100_000, |_| false);

    let rnr = rnr_syndrome(params.min_rnr_timer);
    assert_eq!(rnr, 0x2c);
    assert_eq!(
        wire_summary(&p),
        vec![
            (true, O::RC_SEND_ONLY, p0, true, None, 100),
            (false, O::RC_ACKNOWLEDGE, p0, false, Some(rnr), 0),
            (true, O::RC_SEND_ONLY, p0, true, None, 100),
            (false, O::RC_ACKNOWLEDGE, p0, false, Some(SYN_ACK), 0),
        ]
    );
    // The retry leaves exactly the RNR delay (table 45: code 12 = 640 us) after the NAK arrived.
    let rnr_delay = Duration::from_micros(u64::from(RnrTimer::new(12).micros()));
    assert_eq!(rnr_delay, Duration::from_micros(640));
    assert_eq!(at[2] - at[1], p.latency + rnr_delay);

    assert_eq!(statuses(&p.a.send_wcs), vec![(1, WcStatus::Success)]);
    assert_eq!(p.b.recv_wcs.len(), 1);
    assert_eq!(p.b.recv_wcs[0].wr_id, 7);
    assert_eq!(p.b.recv_wcs[0].status, WcStatus::Success);
    assert_eq!(p.b.recv_wcs[0].byte_len, 100);
    assert_same(
        "received",
        p.b.mem.bytes(bk, B_BUF, 100),
        p.a.mem.bytes(ak, A_SRC, 100),
    );
    let (ca, cb) = (p.a.qp.counters(), p.b.qp.counters());
    assert_eq!(ca.rcvd_rnr_err, 1);
    assert_eq!(cb.send_rnr_err, 1);
    assert_eq!(ca.retry_rnr_exceeded_err, 0);
    assert_eq!(
        ca.completer_retry_err, 0,
        "an RNR retry is not a transport retry"
    );
    assert_eq!(cb.rdma_recvs, 1);
    assert_eq!(p.a.qp.state(), QpState::Rts);
    assert_eq!(p.b.qp.state(), QpState::Rts);
}

// ---- 2 ----

#[test]
fn rnr_retries_exhausted_fail_the_send_with_rnr_retry_exc_err_after_three_attempts_and_flush_the_rest(
) {
    let params = ConnParams {
        rnr_retry: 2,
        ..ConnParams::default()
    };
    let (mut p, ak, bk) = setup(params);
    let p0 = p.a.qp.sq_psn().value();
    post(
        &mut p,
        SendWr::new(
            1,
            WrOpcode::Send,
            Some(sge(A_SRC, 64, ak)),
            SendFlags::SIGNALED,
        ),
    );
    post(
        &mut p,
        SendWr::new(
            2,
            WrOpcode::RdmaWrite(remote(B_BUF, bk)),
            Some(sge(A_SRC, 64, ak)),
            SendFlags::SIGNALED,
        ),
    );
    let mut at = Vec::new();
    drive_timed(&mut p, &mut at, 100_000, |_| false);

    let w = wire_summary(&p);
    let rnr = rnr_syndrome(params.min_rnr_timer);
    let attempts: Vec<usize> = (0..w.len())
        .filter(|&i| w[i].0 && w[i].1 == O::RC_SEND_ONLY)
        .collect();
    let naks: Vec<usize> = (0..w.len())
        .filter(|&i| !w[i].0 && w[i].4 == Some(rnr))
        .collect();
    assert_eq!(attempts.len(), 3, "1 + rnr_retry attempts: {w:?}");
    assert_eq!(naks.len(), 3, "{w:?}");
    for &i in &attempts {
        assert_eq!(w[i].2, p0);
    }
    for &i in &naks {
        assert_eq!(w[i].2, p0, "the RNR NAK carries the SEND's PSN");
    }
    // Every retry waits the RNR timer after the NAK arrives.
    for k in 0..2 {
        assert_eq!(
            at[attempts[k + 1]] - at[naks[k]],
            p.latency + Duration::from_micros(640)
        );
    }
    assert_eq!(
        statuses(&p.a.send_wcs),
        vec![(1, WcStatus::RnrRetryExcErr), (2, WcStatus::WrFlushErr)]
    );
    assert_eq!(p.a.qp.state(), QpState::Err);
    assert_eq!(
        p.a.qp.poll_event(),
        Some(QpEvent::Fatal(WcStatus::RnrRetryExcErr))
    );
    // The WRITE behind the SEND never executed.
    assert!(p.b.mem.bytes(bk, B_BUF, 64).iter().all(|&b| b == 0));
    let ca = p.a.qp.counters();
    assert_eq!(ca.rcvd_rnr_err, 3);
    assert_eq!(ca.retry_rnr_exceeded_err, 1);
    assert_eq!(p.b.qp.counters().send_rnr_err, 3);
    // Later requests complete at once, flushed.
    post(
        &mut p,
        SendWr::new(
            3,
            WrOpcode::Send,
            Some(sge(A_SRC, 8, ak)),
            SendFlags::empty(),
        ),
    );
    let wc = p.a.qp.poll_send_completion().expect("flushed at once");
    assert_eq!((wc.wr_id, wc.status), (3, WcStatus::WrFlushErr));
    // b itself is fine.
    assert_eq!(p.b.qp.state(), QpState::Rts);
}

// ---- 3 ----

/// Connects with every packet from a lost and posts a one-packet WRITE (1) and a SEND (2).
fn all_requests_lost(retry_cnt: u8, seven_is_infinite: bool) -> (Pair, u32, u32, u32, Duration) {
    let cfg = QpConfig {
        retry_cnt_7_is_infinite: seven_is_infinite,
        ..QpConfig::rc(Qpn::new(0x11), Pd(1))
    };
    let params = ConnParams {
        timeout: 10,
        retry_cnt,
        ..ConnParams::default()
    };
    let (mut p, ak, bk) = setup_with(params, Some(cfg));
    let p0 = p.a.qp.sq_psn().value();
    p.drop_if = Some(Box::new(|w: &WirePacket| w.from_a));
    post(
        &mut p,
        SendWr::new(
            1,
            WrOpcode::RdmaWrite(remote(B_BUF, bk)),
            Some(sge(A_SRC, 1024, ak)),
            SendFlags::SIGNALED,
        ),
    );
    post(
        &mut p,
        SendWr::new(
            2,
            WrOpcode::Send,
            Some(sge(A_SRC, 16, ak)),
            SendFlags::SIGNALED,
        ),
    );
    let t = local_ack_timeout(10).expect("timer");
    assert_eq!(t, Duration::from_nanos(4096 << 10));
    (p, ak, bk, p0, t)
}

/// Times at which a sent the WRITE at PSN `p0`.
fn write_times(p: &Pair, at: &[Instant], p0: u32) -> Vec<Instant> {
    wire_summary(p)
        .iter()
        .zip(at)
        .filter(|(x, _)| x.0 && x.1 == O::RC_RDMA_WRITE_ONLY && x.2 == p0)
        .map(|(_, t)| *t)
        .collect()
}

fn assert_retry_exhaustion(retry_cnt: u8, seven_is_infinite: bool) {
    let (mut p, ak, _bk, p0, t) = all_requests_lost(retry_cnt, seven_is_infinite);
    let mut at = Vec::new();
    assert!(drive_timed(&mut p, &mut at, 100_000, |p| !p
        .a
        .send_wcs
        .is_empty()));
    let failed_at = p.now;
    drive_timed(&mut p, &mut at, 100_000, |_| false);

    let times = write_times(&p, &at, p0);
    let n = usize::from(retry_cnt) + 1;
    assert_eq!(times.len(), n, "1 + retry_cnt transmissions");
    for k in 1..n {
        assert_eq!(
            times[k] - times[k - 1],
            t,
            "retries are a local ACK timeout apart"
        );
    }
    assert_eq!(
        failed_at - times[n - 1],
        t,
        "fails one timeout after the last try"
    );
    // Every transmission of the WRITE was followed by the SEND (go-back-N resends both).
    let w = wire_summary(&p);
    assert_eq!(w.len(), 2 * n);
    assert!(w.chunks(2).all(|c| c[0].1 == O::RC_RDMA_WRITE_ONLY
        && c[1] == (true, O::RC_SEND_ONLY, psn(p0, 1), true, None, 16)));
    assert_eq!(
        statuses(&p.a.send_wcs),
        vec![(1, WcStatus::RetryExcErr), (2, WcStatus::WrFlushErr)]
    );
    assert_eq!(p.a.qp.state(), QpState::Err);
    let c = p.a.qp.counters();
    assert_eq!(c.retry_exceeded_err, 1);
    assert_eq!(c.completer_retry_err, u64::from(retry_cnt));
    assert_eq!(
        p.a.qp.poll_event(),
        Some(QpEvent::Fatal(WcStatus::RetryExcErr))
    );
    post(
        &mut p,
        SendWr::new(
            3,
            WrOpcode::Send,
            Some(sge(A_SRC, 8, ak)),
            SendFlags::SIGNALED,
        ),
    );
    let wc = p.a.qp.poll_send_completion().expect("flushed at once");
    assert_eq!((wc.wr_id, wc.status), (3, WcStatus::WrFlushErr));
}

#[test]
fn transport_retries_exhausted_fail_the_request_with_retry_exc_err_after_one_plus_retry_cnt_sends()
{
    assert_retry_exhaustion(3, true);
    // With the IBTA reading, 7 is an ordinary count.
    assert_retry_exhaustion(7, false);

    // Linux's quirk: retry_cnt 7 never runs out.
    let (mut p, _ak, _bk, p0, t) = all_requests_lost(7, true);
    let mut at = Vec::new();
    assert!(drive_timed(&mut p, &mut at, 100_000, |p| p.a.sent.len() >= 60));
    let times = write_times(&p, &at, p0);
    assert_eq!(times.len(), 30);
    assert!(times.windows(2).all(|w| w[1] - w[0] == t));
    assert!(p.a.send_wcs.is_empty());
    assert_eq!(p.a.qp.state(), QpState::Rts);
    assert_eq!(p.a.qp.counters().retry_exceeded_err, 0);
    assert_eq!(p.a.qp.counters().completer_retry_err, 29);
}

// ---- 4 ----

#[test]
fn a_lost_middle_packet_of_a_64_kib_write_is_naked_once_and_resent_from_the_expected_psn() {
    let params = ConnParams {
        retry_cnt: 1,
        ..ConnParams::default()
    };
    let (mut p, ak, bk) = setup(params);
    let p0 = p.a.qp.sq_psn().value();
    let lost = psn(p0, 10);
    let mut dropped = false;
    p.drop_if = Some(Box::new(move |w: &WirePacket| {
        let hit = !dropped && w.from_a && w.psn.value() == lost;
        dropped |= hit;
        hit
    }));
    post(
        &mut p,
        SendWr::new(
            1,
            WrOpcode::RdmaWrite(remote(B_BUF, bk)),
            Some(sge(A_SRC, 65536, ak)),
            SendFlags::SIGNALED,
        ),
    );
    p.drive();

    let mut want: Vec<Pkt> = Vec::new();
    for i in 0..64u32 {
        let op = match i {
            0 => O::RC_RDMA_WRITE_FIRST,
            63 => O::RC_RDMA_WRITE_LAST,
            _ => O::RC_RDMA_WRITE_MIDDLE,
        };
        want.push((true, op, psn(p0, i), i == 63, None, 1024));
    }
    // One NAK carrying the expected PSN; the packets after the gap are dropped silently.
    want.push((false, O::RC_ACKNOWLEDGE, lost, false, Some(SYN_SEQ_ERR), 0));
    for i in 10..64u32 {
        let op = if i == 63 {
            O::RC_RDMA_WRITE_LAST
        } else {
            O::RC_RDMA_WRITE_MIDDLE
        };
        want.push((true, op, psn(p0, i), i == 63, None, 1024));
    }
    want.push((
        false,
        O::RC_ACKNOWLEDGE,
        psn(p0, 63),
        false,
        Some(SYN_ACK),
        0,
    ));
    assert_eq!(wire_summary(&p), want);

    assert_same(
        "written",
        p.b.mem.bytes(bk, B_BUF, 65536),
        p.a.mem.bytes(ak, A_SRC, 65536),
    );
    assert_eq!(statuses(&p.a.send_wcs), vec![(1, WcStatus::Success)]);
    assert_eq!(p.a.send_wcs[0].byte_len, 65536);
    assert_eq!(p.a.send_wcs[0].opcode, WcOpcode::RdmaWrite);
    let (ca, cb) = (p.a.qp.counters(), p.b.qp.counters());
    // Linux counts the out-of-sequence request that got the NAK, not the 52 dropped after it.
    assert_eq!(cb.out_of_seq_request, 1);
    assert_eq!(cb.duplicate_request, 0);
    assert_eq!(ca.rcvd_seq_err, 1);
    assert_eq!(ca.completer_retry_err, 1);
    assert_eq!(p.a.qp.state(), QpState::Rts);
    assert_eq!(p.b.qp.state(), QpState::Rts);
}

// ---- 5 ----

#[test]
fn a_lost_read_response_is_recovered_by_one_read_request_for_the_rest_replayed_by_the_responder() {
    // One lost packet must cost one retry: with retry_cnt 1 the READ still succeeds.
    let params = ConnParams {
        retry_cnt: 1,
        ..ConnParams::default()
    };
    let (mut p, ak, bk) = setup(params);
    p.b.mem.fill_pattern(bk, 77);
    let p0 = p.a.qp.sq_psn().value();
    let lost = psn(p0, 10);
    let mut dropped = false;
    p.drop_if = Some(Box::new(move |w: &WirePacket| {
        let hit = !dropped
            && !w.from_a
            && w.opcode == O::RC_RDMA_READ_RESPONSE_MIDDLE
            && w.psn.value() == lost;
        dropped |= hit;
        hit
    }));
    post(
        &mut p,
        SendWr::new(
            1,
            WrOpcode::RdmaRead(remote(B_BUF + 0x1000, bk)),
            Some(sge(A_DST, 65536, ak)),
            SendFlags::SIGNALED,
        ),
    );
    p.drive();

    let w = wire_summary(&p);
    let reqs: Vec<usize> = (0..w.len())
        .filter(|&i| w[i].1 == O::RC_RDMA_READ_REQUEST)
        .collect();
    assert_eq!(reqs.len(), 2, "the original and one retry: {w:?}");
    assert_eq!(w[reqs[0]].2, p0);
    assert_eq!(reth_of(&p, reqs[0]), (B_BUF + 0x1000, bk, 65536));
    // The retry asks for the rest: from the missing PSN, 10 MTUs further, 54 KiB.
    assert_eq!(w[reqs[1]].2, lost);
    assert_eq!(
        reth_of(&p, reqs[1]),
        (B_BUF + 0x1000 + 10 * 1024, bk, 54 * 1024)
    );
    // b answered the first request with 64 responses, then replayed 54 from the missing PSN.
    assert_eq!(reqs[0], 0);
    assert_eq!(reqs[1], 65);
    let replay = &w[66..];
    assert_eq!(replay.len(), 54);
    for (i, x) in replay.iter().enumerate() {
        let op = match i {
            0 => O::RC_RDMA_READ_RESPONSE_FIRST,
            53 => O::RC_RDMA_READ_RESPONSE_LAST,
            _ => O::RC_RDMA_READ_RESPONSE_MIDDLE,
        };
        assert_eq!(*x, (false, op, psn(lost, i as u32), false, x.4, 1024));
    }
    assert_same(
        "read",
        p.a.mem.bytes(ak, A_DST, 65536),
        p.b.mem.bytes(bk, B_BUF + 0x1000, 65536),
    );
    assert_eq!(statuses(&p.a.send_wcs), vec![(1, WcStatus::Success)]);
    assert_eq!(p.a.send_wcs[0].byte_len, 65536);
    assert_eq!(p.a.send_wcs[0].opcode, WcOpcode::RdmaRead);
    assert_eq!(p.b.qp.counters().duplicate_request, 1);
    assert_eq!(p.a.qp.counters().completer_retry_err, 1);
    assert_eq!(p.a.qp.state(), QpState::Rts);
}

/// Every packet `node` has to send now.
fn pump(node: &mut Node, now: Instant) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let mut buf = vec![0u8; 4096 + 200];
        match node.qp.poll_transmit(now, &mut buf, &mut node.mem) {
            Ok(Some(n)) => {
                buf.truncate(n);
                out.push(buf);
            }
            Ok(None) => return out,
            Err(e) => panic!("poll_transmit: {e}"),
        }
    }
}

fn hand_to(node: &mut Node, now: Instant, bytes: &[u8]) {
    let pkt = RoceV2Packet::new_checked(bytes, &Checks::ALL).expect("valid");
    node.qp.handle_packet(now, &pkt, &mut node.mem);
}

fn opcode_psn(bytes: &[u8]) -> (O, u32) {
    let pkt = RoceV2Packet::new_checked(bytes, &Checks::ALL).expect("valid");
    (pkt.roce().opcode(), pkt.roce().bth().psn().value())
}

#[test]
fn read_responses_still_arriving_after_a_retry_started_do_not_start_more_retries() {
    // The link is driven by hand here: the first response stream keeps arriving (in order)
    // after a has reacted to the gap by sending its retry, and before b's replay arrives.
    let params = ConnParams {
        retry_cnt: 1,
        ..ConnParams::default()
    };
    let (mut p, ak, bk) = setup(params);
    p.b.mem.fill_pattern(bk, 3);
    let p0 = p.a.qp.sq_psn().value();
    post(
        &mut p,
        SendWr::new(
            1,
            WrOpcode::RdmaRead(remote(B_BUF, bk)),
            Some(sge(A_DST, 65536, ak)),
            SendFlags::SIGNALED,
        ),
    );
    let now = p.now;
    let req = pump(&mut p.a, now);
    assert_eq!(req.len(), 1);
    hand_to(&mut p.b, now, &req[0]);
    let first = pump(&mut p.b, now);
    assert_eq!(first.len(), 64);

    for bytes in &first[..10] {
        hand_to(&mut p.a, now, bytes);
        assert!(pump(&mut p.a, now).is_empty());
    }
    // PSN p0+10 is lost; p0+11 shows the gap and a asks for the rest at once.
    hand_to(&mut p.a, now, &first[11]);
    let retry = pump(&mut p.a, now);
    assert_eq!(
        retry.iter().map(|b| opcode_psn(b)).collect::<Vec<_>>(),
        vec![(O::RC_RDMA_READ_REQUEST, psn(p0, 10))]
    );
    // The rest of the first stream is stale: it starts no further retry.
    for bytes in &first[12..] {
        hand_to(&mut p.a, now, bytes);
        let out = pump(&mut p.a, now);
        assert!(
            out.is_empty(),
            "stale {:?} made a send {:?}",
            opcode_psn(bytes),
            out.iter().map(|b| opcode_psn(b)).collect::<Vec<_>>()
        );
    }
    hand_to(&mut p.b, now, &retry[0]);
    let replay = pump(&mut p.b, now);
    assert_eq!(replay.len(), 54);
    for bytes in &replay {
        hand_to(&mut p.a, now, bytes);
        assert!(pump(&mut p.a, now).is_empty());
    }
    let wc = p.a.qp.poll_send_completion().expect("READ completes");
    assert_eq!(
        (wc.wr_id, wc.status, wc.byte_len),
        (1, WcStatus::Success, 65536)
    );
    assert_same(
        "read",
        p.a.mem.bytes(ak, A_DST, 65536),
        p.b.mem.bytes(bk, B_BUF, 65536),
    );
    assert_eq!(p.a.qp.counters().completer_retry_err, 1);
    assert_eq!(p.b.qp.counters().duplicate_request, 1);
    assert_eq!(p.a.qp.state(), QpState::Rts);
}

#[test]
fn a_duplicated_read_request_does_not_count_against_max_dest_rd_atomic() {
    // max_rd_atomic = max_dest_rd_atomic = 2: a sends two READs at once. The link duplicates
    // the first; the replay it causes is queued at b when the second READ arrives, which is
    // still only the second request outstanding.
    let params = ConnParams {
        max_rd_atomic: 2,
        ..ConnParams::default()
    };
    let (mut p, ak, bk) = setup(params);
    p.b.mem.fill_pattern(bk, 6);
    let p0 = p.a.qp.sq_psn().value();
    for id in 0..2u64 {
        post(
            &mut p,
            SendWr::new(
                id,
                WrOpcode::RdmaRead(remote(B_BUF + id * 2048, bk)),
                Some(sge(A_DST + id * 2048, 2048, ak)),
                SendFlags::SIGNALED,
            ),
        );
    }
    let now = p.now;
    let reqs = pump(&mut p.a, now);
    assert_eq!(
        reqs.iter().map(|b| opcode_psn(b)).collect::<Vec<_>>(),
        vec![
            (O::RC_RDMA_READ_REQUEST, p0),
            (O::RC_RDMA_READ_REQUEST, psn(p0, 2))
        ]
    );
    hand_to(&mut p.b, now, &reqs[0]);
    hand_to(&mut p.b, now, &reqs[0]);
    hand_to(&mut p.b, now, &reqs[1]);
    let out = pump(&mut p.b, now);
    assert_eq!(
        out.iter().map(|b| opcode_psn(b)).collect::<Vec<_>>(),
        vec![
            (O::RC_RDMA_READ_RESPONSE_FIRST, p0),
            (O::RC_RDMA_READ_RESPONSE_LAST, psn(p0, 1)),
            (O::RC_RDMA_READ_RESPONSE_FIRST, p0),
            (O::RC_RDMA_READ_RESPONSE_LAST, psn(p0, 1)),
            (O::RC_RDMA_READ_RESPONSE_FIRST, psn(p0, 2)),
            (O::RC_RDMA_READ_RESPONSE_LAST, psn(p0, 3)),
        ]
    );
    assert_eq!(p.b.qp.state(), QpState::Rts);
    for bytes in &out {
        hand_to(&mut p.a, now, bytes);
    }
    assert!(pump(&mut p.a, now).is_empty());
    let wcs: Vec<_> = core::iter::from_fn(|| p.a.qp.poll_send_completion())
        .map(|w| (w.wr_id, w.status))
        .collect();
    assert_eq!(wcs, vec![(0, WcStatus::Success), (1, WcStatus::Success)]);
    assert_same(
        "reads",
        p.a.mem.bytes(ak, A_DST, 4096),
        p.b.mem.bytes(bk, B_BUF, 4096),
    );
    assert_eq!(p.b.qp.counters().duplicate_request, 1);
}

#[test]
fn a_sequence_nak_past_a_read_whose_last_response_was_lost_resends_the_rest_of_the_read() {
    // READ at p0 (4 responses, the last lost), WRITE at p0+4..p0+7 (p0+5 lost): b's NAK for
    // p0+5 implicitly acknowledges the READ request, not its lost response. a must go back to
    // p0+3 and ask for the READ's last KiB (Linux `check_psn`: a NAK past an unfinished READ
    // is a retry from the completer's PSN), not skip past the READ.
    let (mut p, ak, bk) = setup(ConnParams::default());
    p.b.mem.fill_pattern(bk, 12);
    let p0 = p.a.qp.sq_psn().value();
    let mut dropped = [false; 2];
    p.drop_if = Some(Box::new(move |w: &WirePacket| {
        let which = if !w.from_a && w.opcode == O::RC_RDMA_READ_RESPONSE_LAST {
            0
        } else if w.from_a && w.psn.value() == psn(p0, 5) {
            1
        } else {
            return false;
        };
        let hit = !dropped[which];
        dropped[which] = true;
        hit
    }));
    post(
        &mut p,
        SendWr::new(
            1,
            WrOpcode::RdmaRead(remote(B_BUF, bk)),
            Some(sge(A_DST, 4096, ak)),
            SendFlags::SIGNALED,
        ),
    );
    post(
        &mut p,
        SendWr::new(
            2,
            WrOpcode::RdmaWrite(remote(B_BUF + 0x1_0000, bk)),
            Some(sge(A_SRC, 4096, ak)),
            SendFlags::SIGNALED,
        ),
    );
    p.drive();

    let w = wire_summary(&p);
    let nak = w
        .iter()
        .position(|x| x.4 == Some(SYN_SEQ_ERR))
        .expect("sequence NAK");
    assert_eq!(w[nak].2, psn(p0, 5));
    let after: Vec<(bool, O, u32)> = w[nak + 1..].iter().map(|x| (x.0, x.1, x.2)).collect();
    assert_eq!(
        after,
        vec![
            (true, O::RC_RDMA_READ_REQUEST, psn(p0, 3)),
            (true, O::RC_RDMA_WRITE_FIRST, psn(p0, 4)),
            (true, O::RC_RDMA_WRITE_MIDDLE, psn(p0, 5)),
            (true, O::RC_RDMA_WRITE_MIDDLE, psn(p0, 6)),
            (true, O::RC_RDMA_WRITE_LAST, psn(p0, 7)),
            (false, O::RC_RDMA_READ_RESPONSE_ONLY, psn(p0, 3)),
            (false, O::RC_ACKNOWLEDGE, psn(p0, 7)),
        ],
        "{w:?}"
    );
    let retry = nak + 1;
    assert_eq!(reth_of(&p, retry), (B_BUF + 3 * 1024, bk, 1024));
    assert_eq!(
        statuses(&p.a.send_wcs),
        vec![(1, WcStatus::Success), (2, WcStatus::Success)]
    );
    assert_same(
        "read",
        p.a.mem.bytes(ak, A_DST, 4096),
        p.b.mem.bytes(bk, B_BUF, 4096),
    );
    assert_same(
        "write",
        p.b.mem.bytes(bk, B_BUF + 0x1_0000, 4096),
        p.a.mem.bytes(ak, A_SRC, 4096),
    );
    assert_eq!(p.b.qp.state(), QpState::Rts);
}

// ---- 6 ----

#[test]
fn a_lost_atomic_ack_is_answered_from_the_saved_result_without_running_the_atomic_again() {
    let params = ConnParams {
        timeout: 10,
        ..ConnParams::default()
    };
    let (mut p, ak, bk) = setup(params);
    let target = B_BUF + 0x100;
    p.b.mem.write(bk, target, &100u64.to_ne_bytes());
    let p0 = p.a.qp.sq_psn().value();
    let mut dropped = false;
    p.drop_if = Some(Box::new(move |w: &WirePacket| {
        let hit = !dropped && w.opcode == O::RC_ATOMIC_ACKNOWLEDGE;
        dropped |= hit;
        hit
    }));
    post(
        &mut p,
        SendWr::new(
            1,
            WrOpcode::AtomicFetchAdd {
                remote: remote(target, bk),
                add: 5,
            },
            Some(sge(A_DST, 8, ak)),
            SendFlags::SIGNALED,
        ),
    );
    let mut at = Vec::new();
    drive_timed(&mut p, &mut at, 100_000, |_| false);

    assert_eq!(
        wire_summary(&p),
        vec![
            (true, O::RC_FETCH_ADD, p0, true, None, 0),
            (false, O::RC_ATOMIC_ACKNOWLEDGE, p0, false, Some(SYN_ACK), 0),
            (true, O::RC_FETCH_ADD, p0, true, None, 0),
            (false, O::RC_ATOMIC_ACKNOWLEDGE, p0, false, Some(SYN_ACK), 0),
        ]
    );
    assert_eq!(at[2] - at[0], local_ack_timeout(10).expect("timer"));
    // Both ATOMIC ACKNOWLEDGEs carry the original value.
    for i in [1, 3] {
        let pkt = RoceV2Packet::new_checked(&p.wire[i].1, &Checks::ALL).expect("valid");
        assert_eq!(
            pkt.roce().atomic_ack_eth().expect("AtomicAckETH").orig(),
            100
        );
    }
    assert_eq!(p.b.mem.atomics_run, 1);
    assert_eq!(p.b.mem.bytes(bk, target, 8), &105u64.to_ne_bytes());
    assert_eq!(p.a.mem.bytes(ak, A_DST, 8), &100u64.to_ne_bytes());
    assert_eq!(statuses(&p.a.send_wcs), vec![(1, WcStatus::Success)]);
    assert_eq!(p.a.send_wcs[0].opcode, WcOpcode::FetchAdd);
    assert_eq!(p.a.send_wcs[0].byte_len, 8);
    assert_eq!(p.b.qp.counters().duplicate_request, 1);
    assert_eq!(p.a.qp.counters().completer_retry_err, 1);
}

// ---- 7 ----

#[test]
fn bad_rkey_out_of_bounds_and_missing_remote_write_are_naked_as_remote_access_errors_and_both_qps_fail(
) {
    #[derive(Debug, Clone, Copy)]
    enum Case {
        BadRkey,
        OutOfBounds,
        NoRemoteWrite,
        ReadOutOfBounds,
    }
    for case in [
        Case::BadRkey,
        Case::OutOfBounds,
        Case::NoRemoteWrite,
        Case::ReadOutOfBounds,
    ] {
        let (mut p, ak, bk) = setup(ConnParams::default());
        let ro = p.b.mem.register(
            Pd(1),
            0x90_0000,
            4096,
            Access::LOCAL_WRITE | Access::REMOTE_READ,
            0,
        );
        let p0 = p.a.qp.sq_psn().value();
        p.b.qp
            .post_recv(RecvWr::new(70, sge(B_BUF, 4096, bk)))
            .expect("post_recv");
        let (op, len) = match case {
            Case::BadRkey => (WrOpcode::RdmaWrite(remote(B_BUF, 0xdead_0017)), 2048),
            Case::OutOfBounds => (
                WrOpcode::RdmaWrite(remote(B_BUF + REGION as u64 - 1000, bk)),
                2048,
            ),
            Case::NoRemoteWrite => (WrOpcode::RdmaWrite(remote(0x90_0000, ro)), 100),
            Case::ReadOutOfBounds => (WrOpcode::RdmaRead(remote(0x90_0000 + 4000, ro)), 200),
        };
        let dst = if matches!(case, Case::ReadOutOfBounds) {
            A_DST
        } else {
            A_SRC
        };
        post(
            &mut p,
            SendWr::new(1, op, Some(sge(dst, len, ak)), SendFlags::SIGNALED),
        );
        post(
            &mut p,
            SendWr::new(
                2,
                WrOpcode::Send,
                Some(sge(A_SRC, 16, ak)),
                SendFlags::SIGNALED,
            ),
        );
        p.drive();

        let w = wire_summary(&p);
        let b_sent = from_b(&w);
        assert_eq!(
            b_sent,
            vec![(false, O::RC_ACKNOWLEDGE, p0, false, Some(SYN_REM_ACCESS), 0)],
            "{case:?}: {w:?}"
        );
        assert_eq!(
            statuses(&p.a.send_wcs),
            vec![(1, WcStatus::RemAccessErr), (2, WcStatus::WrFlushErr)],
            "{case:?}"
        );
        assert_eq!(p.a.qp.state(), QpState::Err, "{case:?}");
        assert_eq!(
            p.b.qp.state(),
            QpState::Err,
            "{case:?}: b moves to ERR after its NAK"
        );
        assert_eq!(
            p.a.qp.poll_event(),
            Some(QpEvent::Fatal(WcStatus::RemAccessErr)),
            "{case:?}"
        );
        assert_eq!(
            p.b.qp.poll_event(),
            Some(QpEvent::Fatal(WcStatus::RemAccessErr)),
            "{case:?}"
        );
        // b's receive request is flushed, nothing was written to b.
        assert_eq!(statuses(&p.b.recv_wcs), vec![(70, WcStatus::WrFlushErr)]);
        assert!(p.b.mem.bytes(bk, B_BUF, 4096).iter().all(|&x| x == 0));
        // Later requests are flushed on both sides.
        post(
            &mut p,
            SendWr::new(
                3,
                WrOpcode::Send,
                Some(sge(A_SRC, 8, ak)),
                SendFlags::SIGNALED,
            ),
        );
        let wc = p.a.qp.poll_send_completion().expect("flushed");
        assert_eq!((wc.wr_id, wc.status), (3, WcStatus::WrFlushErr));
        p.b.qp
            .post_recv(RecvWr::new(71, sge(B_BUF, 64, bk)))
            .expect("post_recv in ERR");
        let wc = p.b.qp.poll_recv_completion().expect("flushed");
        assert_eq!((wc.wr_id, wc.status), (71, WcStatus::WrFlushErr));
        // Nothing more goes on the wire.
        let n = p.wire.len();
        p.drive();
        assert_eq!(p.wire.len(), n);
    }
}

// ---- 8 ----

#[test]
fn a_send_larger_than_the_receive_buffer_fails_with_loc_len_err_and_an_invalid_request_nak() {
    let (mut p, ak, bk) = setup(ConnParams::default());
    let p0 = p.a.qp.sq_psn().value();
    p.b.qp
        .post_recv(RecvWr::new(50, sge(B_BUF, 2048, bk)))
        .expect("post_recv");
    p.b.qp
        .post_recv(RecvWr::new(51, sge(B_BUF + 4096, 8192, bk)))
        .expect("post_recv");
    post(
        &mut p,
        SendWr::new(
            1,
            WrOpcode::Send,
            Some(sge(A_SRC, 4096, ak)),
            SendFlags::SIGNALED,
        ),
    );
    p.drive();

    let w = wire_summary(&p);
    assert_eq!(
        from_a(&w).iter().map(|x| (x.1, x.2)).collect::<Vec<_>>(),
        vec![
            (O::RC_SEND_FIRST, p0),
            (O::RC_SEND_MIDDLE, psn(p0, 1)),
            (O::RC_SEND_MIDDLE, psn(p0, 2)),
            (O::RC_SEND_LAST, psn(p0, 3)),
        ]
    );
    // The third packet does not fit: NAK Invalid Request with its PSN.
    assert_eq!(
        from_b(&w),
        vec![(
            false,
            O::RC_ACKNOWLEDGE,
            psn(p0, 2),
            false,
            Some(SYN_INV_REQ),
            0
        )]
    );
    assert_eq!(
        statuses(&p.b.recv_wcs),
        vec![(50, WcStatus::LocLenErr), (51, WcStatus::WrFlushErr)]
    );
    assert_eq!(statuses(&p.a.send_wcs), vec![(1, WcStatus::RemInvReqErr)]);
    assert_eq!(p.a.qp.state(), QpState::Err);
    assert_eq!(p.b.qp.state(), QpState::Err);
    assert_eq!(
        p.b.qp.poll_event(),
        Some(QpEvent::Fatal(WcStatus::RemInvReqErr))
    );
}

// ---- 9 ----

#[test]
fn a_fenced_send_waits_for_the_last_response_of_the_read_before_it() {
    for fence in [false, true] {
        let (mut p, ak, bk) = setup(ConnParams::default());
        p.b.qp
            .post_recv(RecvWr::new(9, sge(B_BUF + 0x4_0000, 4096, bk)))
            .expect("post_recv");
        post(
            &mut p,
            SendWr::new(
                1,
                WrOpcode::RdmaRead(remote(B_BUF, bk)),
                Some(sge(A_DST, 8192, ak)),
                SendFlags::SIGNALED,
            ),
        );
        let flags = if fence {
            SendFlags::SIGNALED | SendFlags::FENCE
        } else {
            SendFlags::SIGNALED
        };
        post(
            &mut p,
            SendWr::new(2, WrOpcode::Send, Some(sge(A_SRC, 64, ak)), flags),
        );
        p.drive();
        let w = wire_summary(&p);
        let send = w
            .iter()
            .position(|x| x.1 == O::RC_SEND_ONLY)
            .expect("SEND on the wire");
        let last = w
            .iter()
            .position(|x| x.1 == O::RC_RDMA_READ_RESPONSE_LAST)
            .expect("READ response last");
        if fence {
            assert!(
                send > last,
                "fenced SEND at {send}, READ's last response at {last}: {w:?}"
            );
        } else {
            assert_eq!(
                send, 1,
                "without a fence the SEND follows the READ request at once"
            );
        }
        assert_eq!(
            statuses(&p.a.send_wcs),
            vec![(1, WcStatus::Success), (2, WcStatus::Success)]
        );
        assert_eq!(statuses(&p.b.recv_wcs), vec![(9, WcStatus::Success)]);
    }
}

// ---- 10 ----

#[test]
fn duplicate_send_and_write_are_reacked_with_the_last_executed_psn_and_not_delivered_twice() {
    let params = ConnParams {
        timeout: 10,
        ..ConnParams::default()
    };
    let (mut p, ak, bk) = setup(params);
    let p0 = p.a.qp.sq_psn().value();
    let mut dropped = false;
    p.drop_if = Some(Box::new(move |w: &WirePacket| {
        let hit = !dropped && !w.from_a && w.opcode == O::RC_ACKNOWLEDGE;
        dropped |= hit;
        hit
    }));
    p.b.qp
        .post_recv(RecvWr::new(20, sge(B_BUF, 4096, bk)))
        .expect("post_recv");
    p.b.qp
        .post_recv(RecvWr::new(21, sge(B_BUF + 4096, 4096, bk)))
        .expect("post_recv");
    post(
        &mut p,
        SendWr::new(
            1,
            WrOpcode::Send,
            Some(sge(A_SRC, 200, ak)),
            SendFlags::SIGNALED,
        ),
    );
    post(
        &mut p,
        SendWr::new(
            2,
            WrOpcode::RdmaWrite(remote(B_BUF + 0x1_0000, bk)),
            Some(sge(A_SRC + 4096, 300, ak)),
            SendFlags::SIGNALED,
        ),
    );
    let mut at = Vec::new();
    drive_timed(&mut p, &mut at, 100_000, |_| false);

    let p1 = psn(p0, 1);
    assert_eq!(
        wire_summary(&p),
        vec![
            (true, O::RC_SEND_ONLY, p0, true, None, 200),
            (true, O::RC_RDMA_WRITE_ONLY, p1, true, None, 300),
            // Lost.
            (false, O::RC_ACKNOWLEDGE, p1, false, Some(SYN_ACK), 0),
            // Resent after the local ACK timeout.
            (true, O::RC_SEND_ONLY, p0, true, None, 200),
            (true, O::RC_RDMA_WRITE_ONLY, p1, true, None, 300),
            // C9-105: the duplicates are ACKed with the PSN of the last request executed.
            (false, O::RC_ACKNOWLEDGE, p1, false, Some(SYN_ACK), 0),
        ]
    );
    assert_eq!(at[3] - at[0], local_ack_timeout(10).expect("timer"));
    assert_eq!(p.b.qp.counters().duplicate_request, 2);
    assert_eq!(statuses(&p.b.recv_wcs), vec![(20, WcStatus::Success)]);
    assert_eq!(
        p.b.qp.recv_queue_len(),
        1,
        "the second receive is untouched"
    );
    assert_eq!(p.b.qp.counters().rdma_recvs, 1);
    assert_eq!(
        statuses(&p.a.send_wcs),
        vec![(1, WcStatus::Success), (2, WcStatus::Success)]
    );
    assert_same(
        "send",
        p.b.mem.bytes(bk, B_BUF, 200),
        p.a.mem.bytes(ak, A_SRC, 200),
    );
    assert_same(
        "write",
        p.b.mem.bytes(bk, B_BUF + 0x1_0000, 300),
        p.a.mem.bytes(ak, A_SRC + 4096, 300),
    );
}

#[test]
fn a_duplicate_write_after_a_read_is_reacked_with_the_writes_psn_not_the_reads() {
    // Linux acknowledges a duplicate SEND/WRITE with `ack_psn - 1`: the PSN of the last
    // SEND/WRITE/atomic executed, never that of a READ (commit "IB/rxe: fix for duplicate
    // request processing and ack psns"). An ACK carrying the READ's PSN would tell the
    // requester the READ's response was lost.
    let params = ConnParams {
        timeout: 10,
        retry_cnt: 1,
        ..ConnParams::default()
    };
    let (mut p, ak, bk) = setup(params);
    p.b.mem.fill_pattern(bk, 8);
    let p0 = p.a.qp.sq_psn().value();
    let p1 = psn(p0, 1);
    // b's first ACK and first READ response are lost.
    let mut dropped = 0;
    p.drop_if = Some(Box::new(move |w: &WirePacket| {
        let hit = dropped < 2 && !w.from_a;
        dropped += usize::from(hit);
        hit
    }));
    post(
        &mut p,
        SendWr::new(
            1,
            WrOpcode::RdmaWrite(remote(B_BUF, bk)),
            Some(sge(A_SRC, 512, ak)),
            SendFlags::SIGNALED,
        ),
    );
    post(
        &mut p,
        SendWr::new(
            2,
            WrOpcode::RdmaRead(remote(B_BUF + 0x1_0000, bk)),
            Some(sge(A_DST, 1024, ak)),
            SendFlags::SIGNALED,
        ),
    );
    p.drive();

    assert_eq!(
        wire_summary(&p),
        vec![
            (true, O::RC_RDMA_WRITE_ONLY, p0, true, None, 512),
            (true, O::RC_RDMA_READ_REQUEST, p1, true, None, 0),
            (false, O::RC_ACKNOWLEDGE, p0, false, Some(SYN_ACK), 0),
            (
                false,
                O::RC_RDMA_READ_RESPONSE_ONLY,
                p1,
                false,
                Some(SYN_ACK),
                1024
            ),
            // Local ACK timeout: both resent.
            (true, O::RC_RDMA_WRITE_ONLY, p0, true, None, 512),
            (true, O::RC_RDMA_READ_REQUEST, p1, true, None, 0),
            // The duplicate WRITE: ACKed with its own PSN, the READ replayed.
            (false, O::RC_ACKNOWLEDGE, p0, false, Some(SYN_ACK), 0),
            (
                false,
                O::RC_RDMA_READ_RESPONSE_ONLY,
                p1,
                false,
                Some(SYN_ACK),
                1024
            ),
        ]
    );
    assert_eq!(
        statuses(&p.a.send_wcs),
        vec![(1, WcStatus::Success), (2, WcStatus::Success)]
    );
    assert_same(
        "read",
        p.a.mem.bytes(ak, A_DST, 1024),
        p.b.mem.bytes(bk, B_BUF + 0x1_0000, 1024),
    );
    assert_eq!(p.a.qp.counters().completer_retry_err, 1);
    assert_eq!(p.b.qp.counters().duplicate_request, 2);
}

// ---- 11 ----

#[test]
fn immediate_data_and_invalidate_reach_the_receive_completions() {
    let (mut p, ak, bk) = setup(ConnParams::default());
    let inv_key = p.b.mem.register(Pd(1), 0xa0_0000, 4096, ALL, 0);
    for id in 30..33 {
        p.b.qp
            .post_recv(RecvWr::new(id, sge(B_BUF + (id - 30) * 8192, 8192, bk)))
            .expect("post_recv");
    }
    post(
        &mut p,
        SendWr::new(
            1,
            WrOpcode::SendWithImm(ImmDt::from_be_u32(0x1122_3344)),
            Some(sge(A_SRC, 3000, ak)),
            SendFlags::SIGNALED | SendFlags::SOLICITED,
        ),
    );
    post(
        &mut p,
        SendWr::new(
            2,
            WrOpcode::RdmaWriteWithImm(remote(B_BUF + 0x4_0000, bk), ImmDt::from_be_u32(0xcafe)),
            Some(sge(A_SRC + 8192, 5000, ak)),
            SendFlags::SIGNALED | SendFlags::SOLICITED,
        ),
    );
    post(
        &mut p,
        SendWr::new(
            3,
            WrOpcode::SendWithInv(Rkey(inv_key)),
            Some(sge(A_SRC + 16384, 10, ak)),
            SendFlags::SIGNALED | SendFlags::SOLICITED,
        ),
    );
    // The solicited-event bit means something only for SEND and WRITE with immediate.
    post(
        &mut p,
        SendWr::new(
            4,
            WrOpcode::RdmaWrite(remote(B_BUF + 0x6_0000, bk)),
            Some(sge(A_SRC, 100, ak)),
            SendFlags::SIGNALED | SendFlags::SOLICITED,
        ),
    );
    p.drive();

    let ops: Vec<O> = from_a(&wire_summary(&p)).iter().map(|x| x.1).collect();
    assert_eq!(
        ops,
        vec![
            O::RC_SEND_FIRST,
            O::RC_SEND_MIDDLE,
            O::RC_SEND_LAST_WITH_IMMEDIATE,
            O::RC_RDMA_WRITE_FIRST,
            O::RC_RDMA_WRITE_MIDDLE,
            O::RC_RDMA_WRITE_MIDDLE,
            O::RC_RDMA_WRITE_MIDDLE,
            O::RC_RDMA_WRITE_LAST_WITH_IMMEDIATE,
            O::RC_SEND_ONLY_WITH_INVALIDATE,
            O::RC_RDMA_WRITE_ONLY,
        ]
    );
    // SE is set on the last packet of the SENDs and of the WRITE with immediate only.
    let se: Vec<(O, bool)> = p
        .wire
        .iter()
        .filter(|(a, _)| *a)
        .map(|(_, b)| {
            let pkt = RoceV2Packet::new_checked(b, &Checks::ALL).expect("valid");
            (pkt.roce().opcode(), pkt.roce().bth().solicited())
        })
        .filter(|x| x.1)
        .collect();
    assert_eq!(
        se,
        vec![
            (O::RC_SEND_LAST_WITH_IMMEDIATE, true),
            (O::RC_RDMA_WRITE_LAST_WITH_IMMEDIATE, true),
            (O::RC_SEND_ONLY_WITH_INVALIDATE, true),
        ]
    );
    let r = &p.b.recv_wcs;
    assert_eq!(r.len(), 3, "{r:?}");
    assert_eq!(
        (r[0].wr_id, r[0].status, r[0].opcode, r[0].byte_len),
        (30, WcStatus::Success, WcOpcode::Recv, 3000)
    );
    assert_eq!(r[0].imm_data, Some(ImmDt::from_be_u32(0x1122_3344)));
    // All three carried the SE bit, so all three completions say SOLICITED.
    assert_eq!(r[0].wc_flags, WcFlags::WITH_IMM | WcFlags::SOLICITED);
    // The WRITE with immediate consumes a receive request; byte_len is the write's length.
    assert_eq!(
        (r[1].wr_id, r[1].status, r[1].opcode, r[1].byte_len),
        (31, WcStatus::Success, WcOpcode::RecvRdmaWithImm, 5000)
    );
    assert_eq!(r[1].imm_data, Some(ImmDt::from_be_u32(0xcafe)));
    assert_eq!(r[1].wc_flags, WcFlags::WITH_IMM | WcFlags::SOLICITED);
    assert_eq!(
        (r[2].wr_id, r[2].status, r[2].opcode, r[2].byte_len),
        (32, WcStatus::Success, WcOpcode::Recv, 10)
    );
    assert_eq!(r[2].wc_flags, WcFlags::WITH_INV | WcFlags::SOLICITED);
    assert_eq!(r[2].invalidated_rkey, Some(Rkey(inv_key)));
    assert_eq!(r[2].imm_data, None);
    for wc in r {
        assert_eq!(wc.qp_num, 0x12);
        assert_eq!(wc.src_qp, 0x11);
    }
    assert!(!p.b.mem.region(inv_key).valid, "the rkey was invalidated");
    assert!(p.b.mem.region(bk).valid);
    assert_same(
        "send with imm",
        p.b.mem.bytes(bk, B_BUF, 3000),
        p.a.mem.bytes(ak, A_SRC, 3000),
    );
    assert_same(
        "write with imm",
        p.b.mem.bytes(bk, B_BUF + 0x4_0000, 5000),
        p.a.mem.bytes(ak, A_SRC + 8192, 5000),
    );
    // The WRITE did not touch its receive buffer.
    assert!(p
        .b
        .mem
        .bytes(bk, B_BUF + 8192, 8192)
        .iter()
        .all(|&x| x == 0));
    assert_same(
        "send with inv",
        p.b.mem.bytes(bk, B_BUF + 16384, 10),
        p.a.mem.bytes(ak, A_SRC + 16384, 10),
    );
    let s = &p.a.send_wcs;
    assert_eq!(
        s.iter()
            .map(|w| (w.wr_id, w.status, w.opcode))
            .collect::<Vec<_>>(),
        vec![
            (1, WcStatus::Success, WcOpcode::Send),
            (2, WcStatus::Success, WcOpcode::RdmaWrite),
            (3, WcStatus::Success, WcOpcode::Send),
            (4, WcStatus::Success, WcOpcode::RdmaWrite),
        ]
    );
    // A WRITE to the invalidated key now fails.
    post(
        &mut p,
        SendWr::new(
            5,
            WrOpcode::RdmaWrite(remote(0xa0_0000, inv_key)),
            Some(sge(A_SRC, 8, ak)),
            SendFlags::SIGNALED,
        ),
    );
    p.drive();
    assert_eq!(
        statuses(&p.a.send_wcs[4..]),
        vec![(5, WcStatus::RemAccessErr)]
    );
}

// ---- 12 ----

#[test]
fn unsignaled_requests_complete_silently_unless_they_fail_and_ackreq_is_set_on_last_packets_and_every_65_packets(
) {
    // Unsignaled successes: no completion; the signaled SEND after them completes.
    let (mut p, ak, bk) = setup(ConnParams::default());
    p.b.qp
        .post_recv(RecvWr::new(40, sge(B_BUF, 4096, bk)))
        .expect("post_recv");
    for id in 1..=3u64 {
        post(
            &mut p,
            SendWr::new(
                id,
                WrOpcode::RdmaWrite(remote(B_BUF + id * 0x1_0000, bk)),
                Some(sge(A_SRC, 2500, ak)),
                SendFlags::empty(),
            ),
        );
    }
    post(
        &mut p,
        SendWr::new(
            4,
            WrOpcode::Send,
            Some(sge(A_SRC, 1500, ak)),
            SendFlags::SIGNALED,
        ),
    );
    p.drive();
    assert_eq!(statuses(&p.a.send_wcs), vec![(4, WcStatus::Success)]);
    assert_eq!(p.a.qp.send_queue_len(), 0);
    let w = from_a(&wire_summary(&p));
    assert_eq!(w.len(), 3 * 3 + 2);
    for x in &w {
        let info = x.1.info().expect("known opcode");
        assert_eq!(x.3, info.is_end(), "AckReq only on last packets: {x:?}");
    }
    for id in 1..=3u64 {
        assert_same(
            "write",
            p.b.mem.bytes(bk, B_BUF + id * 0x1_0000, 2500),
            p.a.mem.bytes(ak, A_SRC, 2500),
        );
    }

    // An unsignaled request that fails does complete, with its error.
    post(
        &mut p,
        SendWr::new(
            5,
            WrOpcode::RdmaWrite(remote(B_BUF, 0xbad_0017)),
            Some(sge(A_SRC, 16, ak)),
            SendFlags::empty(),
        ),
    );
    p.drive();
    assert_eq!(
        statuses(&p.a.send_wcs),
        vec![(4, WcStatus::Success), (5, WcStatus::RemAccessErr)]
    );

    // A 256 KiB WRITE at MTU 1024 (256 packets): Linux sets AckReq when
    // `end || noack_pkts++ > RXE_MAX_PKT_PER_ACK`, i.e. on packets 65, 131, 197 and the last.
    let (mut p, ak, bk) = setup(ConnParams::default());
    post(
        &mut p,
        SendWr::new(
            6,
            WrOpcode::RdmaWrite(remote(B_BUF, bk)),
            Some(sge(A_SRC, 256 * 1024, ak)),
            SendFlags::SIGNALED,
        ),
    );
    p.drive();
    let w = from_a(&wire_summary(&p));
    assert_eq!(w.len(), 256);
    let with_ackreq: Vec<usize> = (0..w.len()).filter(|&i| w[i].3).collect();
    assert_eq!(with_ackreq, vec![65, 131, 197, 255]);
    let p0 = w[0].2;
    for (i, x) in w.iter().enumerate() {
        assert_eq!(x.2, psn(p0, i as u32));
    }
    // b acknowledged AckReq packets only (ACKs that would go out together coalesce into the
    // newest), in order, ending with the last packet.
    let acks: Vec<u32> = from_b(&wire_summary(&p)).iter().map(|x| x.2).collect();
    let asked: Vec<u32> = with_ackreq.iter().map(|&i| psn(p0, i as u32)).collect();
    assert!(acks.iter().all(|a| asked.contains(a)), "{acks:?}");
    assert!(acks.windows(2).all(|w| w[0] != w[1]));
    assert_eq!(
        acks.first(),
        Some(&psn(p0, 65)),
        "the first ACK lets the window move"
    );
    assert_eq!(acks.last(), Some(&psn(p0, 255)));
    assert_eq!(statuses(&p.a.send_wcs), vec![(6, WcStatus::Success)]);
    assert_same(
        "256 KiB",
        p.b.mem.bytes(bk, B_BUF, 256 * 1024),
        p.a.mem.bytes(ak, A_SRC, 256 * 1024),
    );
    assert_eq!(
        p.b.qp.counters().ack_deferred,
        256 - 4,
        "packets without AckReq are not ACKed"
    );
}

// ---- 13 ----

#[test]
fn messages_crossing_the_psn_wrap_keep_their_order_and_data() {
    let params = ConnParams {
        a_psn: 0x00ff_fffe,
        ..ConnParams::default()
    };
    let (mut p, ak, bk) = setup(params);
    p.b.mem.fill_pattern(bk, 5);
    p.b.qp
        .post_recv(RecvWr::new(60, sge(B_BUF + 0x4_0000, 8192, bk)))
        .expect("post_recv");
    post(
        &mut p,
        SendWr::new(
            1,
            WrOpcode::Send,
            Some(sge(A_SRC, 4096, ak)),
            SendFlags::SIGNALED,
        ),
    );
    post(
        &mut p,
        SendWr::new(
            2,
            WrOpcode::RdmaWrite(remote(B_BUF + 0x5_0000, bk)),
            Some(sge(A_SRC + 8192, 4096, ak)),
            SendFlags::SIGNALED,
        ),
    );
    post(
        &mut p,
        SendWr::new(
            3,
            WrOpcode::RdmaRead(remote(B_BUF, bk)),
            Some(sge(A_DST, 4096, ak)),
            SendFlags::SIGNALED,
        ),
    );
    p.drive();

    let w = wire_summary(&p);
    let a_pkts: Vec<(O, u32)> = from_a(&w).iter().map(|x| (x.1, x.2)).collect();
    assert_eq!(
        a_pkts,
        vec![
            (O::RC_SEND_FIRST, 0x00ff_fffe),
            (O::RC_SEND_MIDDLE, 0x00ff_ffff),
            (O::RC_SEND_MIDDLE, 0),
            (O::RC_SEND_LAST, 1),
            (O::RC_RDMA_WRITE_FIRST, 2),
            (O::RC_RDMA_WRITE_MIDDLE, 3),
            (O::RC_RDMA_WRITE_MIDDLE, 4),
            (O::RC_RDMA_WRITE_LAST, 5),
            (O::RC_RDMA_READ_REQUEST, 6),
        ]
    );
    let b_pkts: Vec<(O, u32)> = from_b(&w).iter().map(|x| (x.1, x.2)).collect();
    assert_eq!(
        b_pkts,
        vec![
            (O::RC_ACKNOWLEDGE, 5),
            (O::RC_RDMA_READ_RESPONSE_FIRST, 6),
            (O::RC_RDMA_READ_RESPONSE_MIDDLE, 7),
            (O::RC_RDMA_READ_RESPONSE_MIDDLE, 8),
            (O::RC_RDMA_READ_RESPONSE_LAST, 9),
        ]
    );
    assert_eq!(p.a.qp.sq_psn().value(), 10);
    assert_eq!(p.b.qp.rq_psn().value(), 10);
    assert_eq!(
        statuses(&p.a.send_wcs),
        vec![
            (1, WcStatus::Success),
            (2, WcStatus::Success),
            (3, WcStatus::Success)
        ]
    );
    assert_eq!(statuses(&p.b.recv_wcs), vec![(60, WcStatus::Success)]);
    assert_same(
        "send",
        p.b.mem.bytes(bk, B_BUF + 0x4_0000, 4096),
        p.a.mem.bytes(ak, A_SRC, 4096),
    );
    assert_same(
        "write",
        p.b.mem.bytes(bk, B_BUF + 0x5_0000, 4096),
        p.a.mem.bytes(ak, A_SRC + 8192, 4096),
    );
    assert_same(
        "read",
        p.a.mem.bytes(ak, A_DST, 4096),
        p.b.mem.bytes(bk, B_BUF, 4096),
    );
}

#[test]
fn a_read_whose_responses_cross_the_psn_wrap_recovers_a_lost_response_at_psn_0() {
    let params = ConnParams {
        a_psn: 0x00ff_fffd,
        retry_cnt: 1,
        ..ConnParams::default()
    };
    let (mut p, ak, bk) = setup(params);
    p.b.mem.fill_pattern(bk, 21);
    let mut dropped = false;
    p.drop_if = Some(Box::new(move |w: &WirePacket| {
        let hit = !dropped && !w.from_a && w.psn.value() == 0;
        dropped |= hit;
        hit
    }));
    p.b.qp
        .post_recv(RecvWr::new(1, sge(B_BUF + 0x4_0000, 64, bk)))
        .expect("post_recv");
    post(
        &mut p,
        SendWr::new(
            1,
            WrOpcode::RdmaRead(remote(B_BUF, bk)),
            Some(sge(A_DST, 8192, ak)),
            SendFlags::SIGNALED,
        ),
    );
    post(
        &mut p,
        SendWr::new(
            2,
            WrOpcode::Send,
            Some(sge(A_SRC, 64, ak)),
            SendFlags::SIGNALED,
        ),
    );
    p.drive();

    let w = wire_summary(&p);
    let a_pkts: Vec<(O, u32)> = from_a(&w).iter().map(|x| (x.1, x.2)).collect();
    assert_eq!(
        a_pkts,
        vec![
            (O::RC_RDMA_READ_REQUEST, 0x00ff_fffd),
            (O::RC_SEND_ONLY, 5),
            // Go-back-N from the lost response at PSN 0: the rest of the READ, then the SEND.
            (O::RC_RDMA_READ_REQUEST, 0),
            (O::RC_SEND_ONLY, 5),
        ]
    );
    let retry = (0..w.len())
        .filter(|&i| w[i].1 == O::RC_RDMA_READ_REQUEST)
        .nth(1)
        .expect("retry");
    assert_eq!(reth_of(&p, retry), (B_BUF + 3 * 1024, bk, 5 * 1024));
    assert_same(
        "read across the wrap",
        p.a.mem.bytes(ak, A_DST, 8192),
        p.b.mem.bytes(bk, B_BUF, 8192),
    );
    assert_eq!(
        statuses(&p.a.send_wcs),
        vec![(1, WcStatus::Success), (2, WcStatus::Success)]
    );
    assert_eq!(statuses(&p.b.recv_wcs), vec![(1, WcStatus::Success)]);
    assert_eq!(p.a.qp.sq_psn().value(), 6);
    assert_eq!(p.b.qp.rq_psn().value(), 6);
}

// ---- 14 ----

#[test]
fn with_max_rd_atomic_2_never_more_than_two_reads_are_outstanding() {
    let params = ConnParams {
        max_rd_atomic: 2,
        ..ConnParams::default()
    };
    let (mut p, ak, bk) = setup(params);
    p.b.mem.fill_pattern(bk, 9);
    for id in 0..5u64 {
        post(
            &mut p,
            SendWr::new(
                id,
                WrOpcode::RdmaRead(remote(B_BUF + id * 4096, bk)),
                Some(sge(A_DST + id * 4096, 4096, ak)),
                SendFlags::SIGNALED,
            ),
        );
    }
    // a decides what to send from the completions of the previous steps.
    let mut max_outstanding = 0;
    let mut completed_before = 0;
    let mut steps = 0;
    loop {
        let alive = p.step();
        steps += 1;
        assert!(steps < 100_000);
        let requests = wire_summary(&p)
            .iter()
            .filter(|x| x.1 == O::RC_RDMA_READ_REQUEST)
            .count();
        let outstanding = requests - completed_before;
        assert!(outstanding <= 2, "{outstanding} READs outstanding");
        max_outstanding = max_outstanding.max(outstanding);
        completed_before = p.a.send_wcs.len();
        if !alive {
            break;
        }
    }
    assert_eq!(max_outstanding, 2);
    // On the wire: each new READ request follows the last response of an earlier one.
    let w = wire_summary(&p);
    let mut out = 0i32;
    for x in &w {
        match x.1 {
            O::RC_RDMA_READ_REQUEST => {
                out += 1;
                assert!(out <= 2, "{w:?}");
            }
            O::RC_RDMA_READ_RESPONSE_LAST => out -= 1,
            _ => {}
        }
        assert_ne!(x.4, Some(SYN_INV_REQ));
    }
    assert_eq!(
        statuses(&p.a.send_wcs),
        (0..5).map(|i| (i, WcStatus::Success)).collect::<Vec<_>>()
    );
    assert_same(
        "reads",
        p.a.mem.bytes(ak, A_DST, 5 * 4096),
        p.b.mem.bytes(bk, B_BUF, 5 * 4096),
    );
}

#[test]
fn a_responder_with_max_dest_rd_atomic_3_accepts_the_4_reads_a_linux_requester_sends() {
    // Linux rounds max_rd_atomic and max_dest_rd_atomic up to a power of two
    // (`rxe_qp_from_attr`): a Linux requester told 3 keeps 4 READs outstanding. The responder
    // must not answer the 4th with a fatal Invalid Request NAK.
    let params = ConnParams {
        max_rd_atomic: 3,
        ..ConnParams::default()
    };
    let (mut p, ak, bk) = setup(params);
    p.b.mem.fill_pattern(bk, 4);
    // Make a behave like Linux: 4 outstanding.
    for (state, a) in [
        (QpState::Sqd, rxe_transport::QpAttr::default()),
        (
            QpState::Sqd,
            rxe_transport::QpAttr {
                max_rd_atomic: Some(4),
                ..rxe_transport::QpAttr::default()
            },
        ),
        (QpState::Rts, rxe_transport::QpAttr::default()),
    ] {
        p.a.qp
            .modify(&rxe_transport::QpAttr {
                state: Some(state),
                ..a
            })
            .expect("modify");
    }
    for id in 0..4u64 {
        post(
            &mut p,
            SendWr::new(
                id,
                WrOpcode::RdmaRead(remote(B_BUF + id * 4096, bk)),
                Some(sge(A_DST + id * 4096, 4096, ak)),
                SendFlags::SIGNALED,
            ),
        );
    }
    p.drive();
    let w = wire_summary(&p);
    assert!(
        w[..4].iter().all(|x| x.1 == O::RC_RDMA_READ_REQUEST),
        "4 READs outstanding at once"
    );
    assert!(w.iter().all(|x| x.4 != Some(SYN_INV_REQ)), "{w:?}");
    assert_eq!(
        statuses(&p.a.send_wcs),
        (0..4).map(|i| (i, WcStatus::Success)).collect::<Vec<_>>()
    );
    assert_eq!(p.b.qp.state(), QpState::Rts);
    assert_same(
        "reads",
        p.a.mem.bytes(ak, A_DST, 4 * 4096),
        p.b.mem.bytes(bk, B_BUF, 4 * 4096),
    );
}

#[test]
fn a_sequence_nak_past_an_unanswered_atomic_resends_the_atomic_at_its_own_psn_and_it_runs_once() {
    // Found by the property tests: the NAK used to move the acknowledged PSN past the atomic,
    // which then went out again one PSN late, ran a second time and failed BAD_RESP_ERR.
    let params = ConnParams::default();
    let (mut p, ak, bk) = setup(params);
    let p0 = params.a_psn;
    let mut dropped_ack = false;
    let mut dropped_write = false;
    p.drop_if = Some(Box::new(move |w: &WirePacket| {
        if !w.from_a && w.opcode == O::RC_ATOMIC_ACKNOWLEDGE && !dropped_ack {
            dropped_ack = true;
            return true;
        }
        if w.from_a && w.psn.value() == psn(p0, 1) && !dropped_write {
            dropped_write = true;
            return true;
        }
        false
    }));
    let target = remote(B_BUF, bk);
    let fa = WrOpcode::AtomicFetchAdd {
        remote: target,
        add: 5,
    };
    post(
        &mut p,
        SendWr::new(1, fa, Some(sge(A_SRC + 0x8000, 8, ak)), SendFlags::SIGNALED),
    );
    for i in 0..2u64 {
        let w = WrOpcode::RdmaWrite(remote(B_BUF + 0x100 + 8 * i, bk));
        post(
            &mut p,
            SendWr::new(2 + i, w, Some(sge(A_SRC, 8, ak)), SendFlags::SIGNALED),
        );
    }
    p.drive();
    assert_eq!(
        statuses(&p.a.send_wcs),
        vec![
            (1, WcStatus::Success),
            (2, WcStatus::Success),
            (3, WcStatus::Success)
        ]
    );
    assert_eq!(p.b.mem.atomics_run, 1);
    assert_eq!(p.b.mem.bytes(bk, B_BUF, 8), &5u64.to_ne_bytes());
    assert_eq!(p.a.mem.bytes(ak, A_SRC + 0x8000, 8), &0u64.to_ne_bytes());
    // Every FETCH_ADD on the wire carries the atomic's own PSN.
    let w = wire_summary(&p);
    assert!(w
        .iter()
        .filter(|x| x.1 == O::RC_FETCH_ADD)
        .all(|x| x.2 == p0));
}
