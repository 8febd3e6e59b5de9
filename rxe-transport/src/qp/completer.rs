//! The completer: acknowledgements, NAKs, READ responses and atomic ACKs (IBTA 9.7.5; Linux
//! `rxe_comp.c`), the local ACK timeout and RNR timer, and completions in SQ order.

use rxe_wire::{Psn, RoceV2Packet, Syndrome};

use super::requester::WqeState;
use super::timer::Timer;
use super::{is_signaled, Qp};
use crate::memory::{self, Memory};
use crate::time::{local_ack_timeout, Instant};
use crate::verbs::{Access, WcFlags, WcStatus, WorkCompletion, WrOpcode};
use rxe_wire::aeth::NakCode;
use rxe_wire::{Opcode, Position};

impl<const SQ: usize, const RQ: usize> Qp<SQ, RQ> {
    /// Processes a response packet (ACK, NAK, READ response, atomic ACK).
    pub(super) fn handle_response<M: Memory + ?Sized>(
        &mut self,
        now: Instant,
        pkt: &RoceV2Packet<'_>,
        mem: &mut M,
        placed: bool,
    ) {
        let roce = pkt.roce();
        let bth = roce.bth();
        let psn = bth.psn();
        let opcode = bth.opcode();
        // Only PSNs in [comp_psn, psn) are outstanding; anything else is a stale duplicate.
        if psn.diff(self.req.comp_psn) < 0 || psn.diff(self.req.psn) >= 0 {
            return;
        }
        let before = self.req.comp_psn;
        if opcode == Opcode::RC_ACKNOWLEDGE {
            let Some(aeth) = roce.aeth() else { return };
            match aeth.syndrome() {
                Syndrome::Ack { .. } => {
                    if !self.ack_through(psn) {
                        // An ACK past a READ or atomic whose response never came: resend it.
                        self.retry_on_packet(now, before);
                        return;
                    }
                }
                Syndrome::RnrNak(timer) => {
                    self.counters.rcvd_rnr_err += 1;
                    // A NAK acknowledges the requests before it, but not the responses of a
                    // READ or atomic among them: if one is missing, resend from there (Linux
                    // `check_psn`). The same holds for the sequence NAK below.
                    if !self.ack_through(psn.sub(1)) {
                        self.retry_on_packet(now, before);
                        return;
                    }
                    self.req.comp_psn = psn;
                    if self.req.rnr_left == 0 {
                        self.counters.retry_rnr_exceeded_err += 1;
                        self.complete_front();
                        self.fatal(WcStatus::RnrRetryExcErr);
                        return;
                    }
                    if self.req.rnr_left != 7 {
                        self.req.rnr_left -= 1;
                    }
                    self.timers.stop(Timer::Retransmit);
                    self.req.rnr_wait = true;
                    let wait = core::time::Duration::from_micros(u64::from(timer.micros()));
                    self.timers.set(Timer::RnrNak, now + wait);
                    self.complete_front();
                    return;
                }
                Syndrome::Nak(NakCode::PsnSequenceError) => {
                    self.counters.rcvd_seq_err += 1;
                    if self.ack_through(psn.sub(1)) {
                        self.req.comp_psn = psn;
                    }
                    self.retry_on_packet(now, before);
                    return;
                }
                Syndrome::Nak(code) => {
                    self.ack_through(psn.sub(1));
                    self.complete_front();
                    self.fatal(super::nak_status(code));
                    return;
                }
                Syndrome::Reserved(_) => {
                    self.fatal(WcStatus::BadRespErr);
                    return;
                }
            }
        } else {
            // READ responses and atomic ACKs must come in order; a gap means responses were lost.
            if psn != self.req.comp_psn {
                // The response implicitly acknowledges the requests before it.
                let implicit_ok = self.ack_through(psn.sub(1));
                let caught_up = psn == self.req.comp_psn;
                if !implicit_ok || !caught_up {
                    self.retry_on_packet(now, before);
                    return;
                }
            }
            let Some(idx) = self.front_pending() else {
                return;
            };
            let Some(wqe) = self.sq.get(idx) else { return };
            let info = roce.info();
            let wqe_op = wqe.wr.opcode;
            let (first_psn, last_psn) = (wqe.first_psn, wqe.last_psn);
            if psn.diff(first_psn) < 0 || psn.diff(last_psn) > 0 {
                self.fatal(WcStatus::BadRespErr);
                return;
            }
            match (opcode, wqe_op) {
                (
                    Opcode::RC_ATOMIC_ACKNOWLEDGE,
                    WrOpcode::AtomicCmpSwp { .. } | WrOpcode::AtomicFetchAdd { .. },
                ) => {
                    let orig = roce.atomic_ack_eth().map(|a| a.orig()).unwrap_or(0);
                    let Some(sge) = wqe.wr.sg_list.first().copied() else {
                        self.fatal(WcStatus::LocQpOpErr);
                        return;
                    };
                    if memory::check(mem, sge.lkey, self.cfg.pd, sge.addr, 8, Access::LOCAL_WRITE)
                        .is_err()
                    {
                        self.fatal(WcStatus::LocProtErr);
                        return;
                    }
                    mem.write(sge.lkey, sge.addr, &orig.to_ne_bytes());
                    self.finish(idx, WcStatus::Success, 8);
                }
                (
                    Opcode::RC_RDMA_READ_RESPONSE_ONLY,
                    WrOpcode::AtomicWrite(_) | WrOpcode::Flush { .. },
                ) if roce.payload().is_empty() => {
                    self.finish(idx, WcStatus::Success, 0);
                }
                (_, WrOpcode::RdmaRead(_))
                    if info.operation == rxe_wire::Operation::ReadResponse =>
                {
                    let mtu = self.attrs.path_mtu.bytes();
                    let off = psn.diff(first_psn) as u32 * mtu;
                    let payload = roce.payload();
                    let expect = (wqe.len - off.min(wqe.len)).min(mtu) as usize;
                    let end = matches!(info.position, Position::Last | Position::Only);
                    // FIRST/MIDDLE carry a full MTU, LAST/ONLY the rest; the last PSN is LAST/ONLY.
                    if payload.len() != expect || end != (psn == last_psn) {
                        self.fatal(WcStatus::BadRespErr);
                        return;
                    }
                    // The scatter list stays in the SQ: borrow it next to the memory.
                    let Some(sg) = self.sq.get(idx).map(|w| &w.wr.sg_list) else {
                        return;
                    };
                    if !placed
                        && !super::requester::scatter_write(
                            mem,
                            self.cfg.pd,
                            sg,
                            off,
                            &mut pkt.payload_source(),
                        )
                    {
                        self.fatal(WcStatus::LocProtErr);
                        return;
                    }
                    if let Some(w) = self.sq.get_mut(idx) {
                        w.byte_len = off + payload.len() as u32;
                    }
                    self.req.comp_psn = psn.add(1);
                    if end {
                        let len = off + payload.len() as u32;
                        self.finish(idx, WcStatus::Success, len);
                    }
                }
                _ => {
                    self.fatal(WcStatus::BadRespErr);
                    return;
                }
            }
        }
        self.complete_front();
        self.after_progress(now, before);
    }

    /// Index of the first request not finished.
    fn front_pending(&self) -> Option<usize> {
        self.sq
            .iter()
            .position(|w| !matches!(w.state, WqeState::Done(_)))
    }

    /// Marks request `idx` finished (it completes once it reaches the front).
    fn finish(&mut self, idx: usize, status: WcStatus, byte_len: u32) {
        if let Some(w) = self.sq.get_mut(idx) {
            if w.wr.opcode.is_read_or_atomic() && w.state == WqeState::Sending {
                self.req.rd_atomic = self.req.rd_atomic.saturating_sub(1);
            }
            w.state = WqeState::Done(status);
            w.byte_len = byte_len;
            let next = w.last_psn.add(1);
            if next.diff(self.req.comp_psn) > 0 {
                self.req.comp_psn = next;
            }
        }
    }

    /// Acknowledges every PSN up to `psn`: SEND and WRITE requests ending there finish. Returns
    /// false if a READ or atomic request ends at or before `psn` without its response (lost).
    fn ack_through(&mut self, psn: Psn) -> bool {
        let mut idx = 0;
        while let Some(w) = self.sq.get(idx) {
            match w.state {
                WqeState::Done(_) => {
                    idx += 1;
                    continue;
                }
                WqeState::Posted => return true,
                WqeState::Sending => {}
            }
            if psn.diff(w.first_psn) < 0 {
                return true;
            }
            let covers_all = psn.diff(w.last_psn) >= 0;
            if w.wr.opcode.is_read_or_atomic() {
                return !covers_all;
            }
            if covers_all {
                let len = w.len;
                self.finish(idx, WcStatus::Success, len);
                idx += 1;
            } else {
                // Part of a multi-packet message.
                let next = psn.add(1);
                if next.diff(self.req.comp_psn) > 0 {
                    self.req.comp_psn = next;
                }
                return true;
            }
        }
        true
    }

    /// Pops finished requests from the front of the SQ and reports their completions.
    pub(super) fn complete_front(&mut self) {
        while let Some(w) = self.sq.front() {
            let WqeState::Done(status) = w.state else {
                break;
            };
            let Some(w) = self.sq.pop_front() else { break };
            self.req.next = self.req.next.saturating_sub(1);
            if status != WcStatus::Success || is_signaled(&w.wr) {
                let wc = WorkCompletion {
                    wr_id: w.wr.wr_id,
                    status,
                    opcode: w.wr.opcode.wc_opcode(),
                    byte_len: w.byte_len,
                    imm_data: None,
                    invalidated_rkey: None,
                    qp_num: self.cfg.qpn.value(),
                    src_qp: 0,
                    // As Linux's make_send_cqe: the sender's completion of an operation with
                    // immediate data says so too.
                    wc_flags: match w.wr.opcode {
                        WrOpcode::SendWithImm(_) | WrOpcode::RdmaWriteWithImm(..) => {
                            WcFlags::WITH_IMM
                        }
                        _ => WcFlags::empty(),
                    },
                };
                let _ = self.send_cq.push_back(wc);
            }
            if status != WcStatus::Success {
                // The failed request has its completion; everything behind it is flushed.
                let _ = self.events.push_back(super::QpEvent::Fatal(status));
                self.flush(None);
                return;
            }
        }
        self.check_sq_drained();
    }

    /// After an acknowledgement: reset retry counters on progress and re-arm the ACK timer.
    fn after_progress(&mut self, now: Instant, before: Psn) {
        if self.req.comp_psn != before {
            self.req.retry_left = self.attrs.retry_cnt;
            self.req.rnr_left = self.attrs.rnr_retry;
            self.req.retrying = false;
        }
        let outstanding = self.sq.iter().any(|w| w.state == WqeState::Sending);
        if !outstanding {
            self.timers.stop(Timer::Retransmit);
        } else if self.req.comp_psn != before {
            if let Some(t) = local_ack_timeout(self.attrs.timeout) {
                self.timers.set(Timer::Retransmit, now + t);
            }
        }
    }

    /// A PSN sequence NAK, a gap in the READ responses or atomic ACKs, or an ACK past an
    /// unanswered READ/atomic asks for a go-back-N retry. Once a retry is under way, such packets
    /// start no other until something new is acknowledged (or the timer fires): the rest of the
    /// stream that showed the gap must not spend the retry budget (Linux `comp.started_retry`).
    fn retry_on_packet(&mut self, now: Instant, before: Psn) {
        // Requests the packet acknowledged implicitly complete first.
        self.complete_front();
        if self.state == super::QpState::Err {
            return;
        }
        if self.req.retrying && self.req.comp_psn == before {
            return;
        }
        self.retry(now);
    }

    /// Starts a go-back-N retry, spending one transport retry.
    fn retry(&mut self, now: Instant) {
        if self.req.retry_left == 0 {
            self.counters.retry_exceeded_err += 1;
            self.fatal(WcStatus::RetryExcErr);
            return;
        }
        // Counted only when a retry starts, as Linux's RXE_CNT_COMP_RETRY.
        self.counters.completer_retry_err += 1;
        let infinite = self.req.retry_left == 7 && self.cfg.retry_cnt_7_is_infinite;
        if !infinite {
            self.req.retry_left -= 1;
        }
        self.req.retrying = true;
        self.start_retry();
        if let Some(t) = local_ack_timeout(self.attrs.timeout) {
            self.timers.set(Timer::Retransmit, now + t);
        }
    }

    pub(super) fn on_retransmit_timeout(&mut self, now: Instant) {
        if !matches!(self.state, super::QpState::Rts | super::QpState::Sqd) {
            return;
        }
        if self.sq.iter().any(|w| w.state == WqeState::Sending) {
            self.retry(now);
        }
    }

    pub(super) fn on_rnr_timer(&mut self) {
        if self.req.rnr_wait {
            self.req.rnr_wait = false;
            self.start_retry();
        }
    }
}
