//! The responder: executes requests in PSN order and answers them (IBTA 9.7.4; Linux
//! `rxe_resp.c`).
//!
//! Expected-PSN tracking; one PSN-sequence-error NAK for a gap, then silent drops until the
//! expected PSN arrives; duplicates re-ACKed (SEND, WRITE; rule C9-105) or replayed from the
//! responder resources (READ from the requested PSN, atomic and FLUSH/ATOMIC WRITE results), an
//! atomic never executed twice; RNR NAK when no receive request is posted; Invalid Request and
//! Remote Access NAKs (the QP then moves to ERR); SEND reassembly into the receive scatter list.

use heapless::Deque;
use rxe_wire::aeth::{NakCode, RnrTimer};
use rxe_wire::{
    atmack, AethRepr, ExtHeaders, Msn, Opcode, Operation, Position, Psn, Rkey, RoceV2Packet,
    Syndrome,
};

use super::requester::{npkts, scatter_write};
use super::{Qp, MAX_RD_ATOMIC};
use crate::memory::{self, AtomicOp, Memory};
use crate::verbs::{Access, WcFlags, WcOpcode, WcStatus, WorkCompletion};

const PENDING: usize = 2 * MAX_RD_ATOMIC as usize + 2;

/// A response waiting to be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pending {
    /// ACK, RNR NAK or NAK. `fatal`: the QP moves to ERR once it is sent.
    Ack {
        psn: Psn,
        syndrome: Syndrome,
        msn: Msn,
        fatal: bool,
    },
    /// ATOMIC ACKNOWLEDGE with the original value.
    AtomicAck {
        psn: Psn,
        orig: u64,
        msn: Msn,
        replay: bool,
    },
    /// READ response packets from `next_psn` (zero length: the ACK of FLUSH / ATOMIC WRITE).
    Read {
        rkey: Rkey,
        va: u64,
        len: u32,
        first_psn: Psn,
        next_psn: Psn,
        off: u32,
        msn: Msn,
        replay: bool,
    },
}

/// What the responder remembers of a READ or atomic, to answer its duplicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resource {
    Read {
        rkey: Rkey,
        va: u64,
        len: u32,
        first_psn: Psn,
        last_psn: Psn,
        msn: Msn,
    },
    Atomic {
        psn: Psn,
        orig: u64,
        msn: Msn,
    },
    /// FLUSH or ATOMIC WRITE: acknowledged by an empty READ RESPONSE ONLY.
    Ack0 {
        psn: Psn,
        msn: Msn,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct WriteState {
    pub(super) rkey: Rkey,
    pub(super) va: u64,
    pub(super) resid: u32,
    total: u32,
}

/// Responder state.
#[derive(Debug, Clone, Default)]
pub(crate) struct Resp {
    pub(crate) epsn: Psn,
    /// The PSN after the last SEND, WRITE or atomic packet executed (Linux `resp.ack_psn`):
    /// duplicates of SEND and WRITE are ACKed with the PSN before it, never a READ's PSN.
    ack_psn: Psn,
    msn: Msn,
    sent_psn_nak: bool,
    /// Opcode of the message in progress (after FIRST or MIDDLE), `None` between messages.
    pub(super) last_op: Option<Opcode>,
    /// A SEND in progress owns the RQ front; bytes placed so far.
    recv_active: bool,
    recv_off: u32,
    pub(super) write: Option<WriteState>,
    res: [Option<Resource>; MAX_RD_ATOMIC as usize],
    res_next: usize,
    pending: Deque<Pending, PENDING>,
    /// How many of `pending` count against `max_dest_rd_atomic` (see [`Resp::counts`]).
    reads: usize,
    /// A fatal NAK is queued: input is dropped until it is sent and the QP is in ERR.
    pub(crate) error_pending: bool,
    /// UC: the message in progress was broken off; drop until the next FIRST or ONLY.
    drop_msg: bool,
}

impl Resp {
    pub(crate) fn start(&mut self, rq_psn: Psn) {
        *self = Resp {
            epsn: rq_psn,
            ack_psn: rq_psn,
            ..Resp::default()
        };
    }
    pub(crate) fn clear(&mut self) {
        self.pending.clear();
        self.reads = 0;
        self.recv_active = false;
        self.recv_off = 0;
        self.write = None;
        self.last_op = None;
        self.error_pending = false;
    }
    fn remember(&mut self, r: Resource, slots: u8) {
        let n = usize::from(slots.clamp(1, MAX_RD_ATOMIC));
        self.res[self.res_next % n] = Some(r);
        self.res_next = (self.res_next + 1) % n;
    }
    fn queue(&mut self, p: Pending) -> bool {
        // Plain ACKs coalesce: a newer one replaces one that has not gone out yet.
        if let Pending::Ack {
            syndrome: Syndrome::Ack { .. },
            fatal: false,
            ..
        } = p
        {
            if let Some(Pending::Ack {
                syndrome: Syndrome::Ack { .. },
                fatal: false,
                ..
            }) = self.pending.back()
            {
                self.pending.pop_back();
            }
        }
        let ok = self.pending.push_back(p).is_ok();
        if ok && Resp::counts(&p) {
            self.reads += 1;
        }
        ok
    }
    /// Whether a queued answer is a READ/atomic request being answered. Replays for duplicates
    /// do not count: they are requests already counted once (a retry, or a packet the network
    /// duplicated).
    fn counts(p: &Pending) -> bool {
        matches!(
            p,
            Pending::Read { replay: false, .. } | Pending::AtomicAck { replay: false, .. }
        )
    }
    /// READ/atomic requests being answered (kept as a count: this is asked on every READ).
    fn outstanding_reads(&self) -> usize {
        debug_assert_eq!(
            self.reads,
            self.pending.iter().filter(|p| Resp::counts(p)).count()
        );
        self.reads
    }
    /// Removes the front answer once it has gone out.
    fn pop_front(&mut self) {
        if let Some(p) = self.pending.pop_front() {
            if Resp::counts(&p) {
                self.reads -= 1;
            }
        }
    }
    /// Replaces the front answer (the rest of a READ, or the NAK that ends it).
    fn replace_front(&mut self, p: Pending) {
        if let Some(front) = self.pending.front_mut() {
            let was = Resp::counts(front);
            *front = p;
            match (was, Resp::counts(&p)) {
                (true, false) => self.reads -= 1,
                (false, true) => self.reads += 1,
                _ => {}
            }
        }
    }
}

impl<const SQ: usize, const RQ: usize> Qp<SQ, RQ> {
    /// Processes a request packet (its ICRC good); `placed`: its payload is in memory already
    /// (cut-through).
    pub(super) fn handle_request<M: Memory + ?Sized>(
        &mut self,
        pkt: &RoceV2Packet<'_>,
        mem: &mut M,
        placed: bool,
        srq: Option<&mut dyn crate::srq::RecvSource>,
    ) {
        let roce = pkt.roce();
        let bth = roce.bth();
        let psn = bth.psn();
        let opcode = bth.opcode();
        let info = roce.info();
        if self.cfg.qp_type == super::QpType::Uc {
            // UC (IBTA 9.8.3, Linux `check_psn`): after a gap or an error the rest of the message
            // is dropped silently; the next FIRST or ONLY starts over at its own PSN.
            if self.resp.drop_msg || psn != self.resp.epsn {
                if !info.is_start() {
                    if !self.resp.drop_msg {
                        self.counters.out_of_seq_request += 1;
                    }
                    self.drop_message();
                    return;
                }
                self.resp.drop_msg = false;
                self.resp.recv_active = false;
                self.resp.recv_off = 0;
                self.resp.write = None;
                self.resp.last_op = None;
                self.resp.epsn = psn;
            }
        }
        let d = psn.diff(self.resp.epsn);
        if d > 0 {
            // Class B: NAK once with the expected PSN, then drop until it arrives. Like Linux
            // (`check_psn`), only the packet that gets the NAK is counted.
            if !self.resp.sent_psn_nak {
                self.counters.out_of_seq_request += 1;
                self.resp.sent_psn_nak = true;
                let (epsn, msn) = (self.resp.epsn, self.resp.msn);
                self.resp.queue(Pending::Ack {
                    psn: epsn,
                    syndrome: Syndrome::Nak(NakCode::PsnSequenceError),
                    msn,
                    fatal: false,
                });
            }
            return;
        }
        if d < 0 {
            self.counters.duplicate_request += 1;
            self.handle_duplicate(pkt, mem);
            return;
        }

        // Opcode sequence: a message in progress continues with MIDDLE or LAST of its kind.
        let seq_ok = match self.resp.last_op.and_then(|o| o.info()) {
            Some(prev) => prev.operation == info.operation && !info.is_start(),
            None => info.is_start(),
        };
        if !seq_ok {
            return self.nak_fatal(psn, NakCode::InvalidRequest);
        }
        // Operations the QP's access flags allow.
        let need = match info.operation {
            Operation::Write | Operation::AtomicWrite => Access::REMOTE_WRITE,
            Operation::ReadRequest => Access::REMOTE_READ,
            Operation::CompareSwap | Operation::FetchAdd => Access::REMOTE_ATOMIC,
            _ => Access::empty(),
        };
        if !self.attrs.access.contains(need) {
            return self.nak_fatal(psn, NakCode::InvalidRequest);
        }
        // Payload lengths: FIRST and MIDDLE carry a full MTU, LAST 1..=MTU, ONLY 0..=MTU.
        let payload = roce.payload();
        let mtu = self.attrs.path_mtu.bytes() as usize;
        if matches!(info.operation, Operation::Send | Operation::Write) {
            let ok = match info.position {
                Position::Only => payload.len() <= mtu,
                Position::First | Position::Middle => payload.len() == mtu,
                Position::Last => !payload.is_empty() && payload.len() <= mtu,
            };
            if !ok {
                return self.nak_fatal(psn, NakCode::InvalidRequest);
            }
        }
        // A receive request for SEND FIRST/ONLY and for the end of WRITE with immediate.
        let needs_recv = (info.operation == Operation::Send && info.is_start())
            || (info.operation == Operation::Write && roce.immdt().is_some());
        if needs_recv && !self.resp.recv_active && self.rq.is_empty() {
            // With an SRQ, the message takes its request now (after the PSN checks).
            if let Some(wr) = srq.and_then(|s| s.take_recv()) {
                let _ = self.rq.push_back(wr);
            }
        }
        if needs_recv && !self.resp.recv_active && self.rq.is_empty() {
            if self.cfg.qp_type == super::QpType::Uc {
                // No receive posted: UC drops the message (no RNR NAK).
                self.drop_message();
                return;
            }
            self.counters.send_rnr_err += 1;
            let msn = self.resp.msn;
            let timer = RnrTimer::new(self.attrs.min_rnr_timer);
            self.resp.queue(Pending::Ack {
                psn,
                syndrome: Syndrome::RnrNak(timer),
                msn,
                fatal: false,
            });
            return;
        }
        if matches!(
            info.operation,
            Operation::ReadRequest
                | Operation::CompareSwap
                | Operation::FetchAdd
                | Operation::AtomicWrite
                | Operation::Flush
        ) && self.resp.outstanding_reads() >= usize::from(self.dest_rd_atomic())
        {
            // More READ/atomic requests than max_dest_rd_atomic allows.
            return self.nak_fatal(psn, NakCode::InvalidRequest);
        }

        let mut advance = 1u32;
        match info.operation {
            Operation::Send => {
                if !self.place_send(psn, pkt, mem) {
                    return;
                }
            }
            Operation::Write => {
                if !self.place_write(psn, pkt, mem, placed) {
                    return;
                }
            }
            Operation::ReadRequest => {
                let Some(reth) = roce.reth() else { return };
                let (va, rkey, len) = (reth.va(), reth.rkey(), reth.dma_len());
                if !self.remote_ok(mem, rkey, va, u64::from(len), Access::REMOTE_READ) {
                    return self.nak_fatal(psn, NakCode::RemoteAccessError);
                }
                advance = npkts(len, mtu as u32);
                self.resp.msn = self.resp.msn.add(1);
                let msn = self.resp.msn;
                let last_psn = psn.add(advance - 1);
                self.resp.remember(
                    Resource::Read {
                        rkey,
                        va,
                        len,
                        first_psn: psn,
                        last_psn,
                        msn,
                    },
                    self.dest_rd_atomic(),
                );
                self.resp.queue(Pending::Read {
                    rkey,
                    va,
                    len,
                    first_psn: psn,
                    next_psn: psn,
                    off: 0,
                    msn,
                    replay: false,
                });
            }
            Operation::CompareSwap | Operation::FetchAdd => {
                let Some(a) = roce.atomic_eth() else { return };
                let (va, rkey) = (a.va(), a.rkey());
                if va % 8 != 0 {
                    return self.nak_fatal(psn, NakCode::InvalidRequest);
                }
                let Some(dkey) = self.remote_key(mem, rkey, va, 8, Access::REMOTE_ATOMIC) else {
                    return self.nak_fatal(psn, NakCode::RemoteAccessError);
                };
                let op = if info.operation == Operation::CompareSwap {
                    AtomicOp::CmpSwp {
                        compare: a.compare(),
                        swap: a.swap_add(),
                    }
                } else {
                    AtomicOp::FetchAdd(a.swap_add())
                };
                let orig = mem.atomic(dkey, va, op);
                self.resp.msn = self.resp.msn.add(1);
                let msn = self.resp.msn;
                self.resp
                    .remember(Resource::Atomic { psn, orig, msn }, self.dest_rd_atomic());
                self.resp.queue(Pending::AtomicAck {
                    psn,
                    orig,
                    msn,
                    replay: false,
                });
            }
            Operation::AtomicWrite | Operation::Flush => {
                let Some(reth) = roce.reth() else { return };
                let (va, rkey) = (reth.va(), reth.rkey());
                if info.operation == Operation::AtomicWrite {
                    if va % 8 != 0 {
                        return self.nak_fatal(psn, NakCode::InvalidRequest);
                    }
                    let Some(dkey) = self.remote_key(mem, rkey, va, 8, Access::REMOTE_WRITE) else {
                        return self.nak_fatal(psn, NakCode::RemoteAccessError);
                    };
                    mem.write(dkey, va, payload);
                } else {
                    let feth = roce.feth().unwrap_or(rxe_wire::feth::Repr {
                        placement_type: 1,
                        selectivity: 0,
                    });
                    let mut need = Access::empty();
                    if feth.placement_type & 1 != 0 {
                        need |= Access::FLUSH_GLOBAL;
                    }
                    if feth.placement_type & 2 != 0 {
                        need |= Access::FLUSH_PERSISTENT;
                    }
                    let (addr, len) = if feth.selectivity == 1 {
                        match mem.lookup(rkey.0) {
                            Some(mr) => (mr.addr, mr.length),
                            None => (va, 0),
                        }
                    } else {
                        (va, u64::from(reth.dma_len()))
                    };
                    let Ok(dkey) = memory::check_remote(
                        mem,
                        rkey.0,
                        self.cfg.pd,
                        self.cfg.qpn,
                        addr,
                        len,
                        need,
                    ) else {
                        return self.nak_fatal(psn, NakCode::RemoteAccessError);
                    };
                    mem.flush(dkey, addr, len, feth.placement_type);
                }
                self.resp.msn = self.resp.msn.add(1);
                let msn = self.resp.msn;
                self.resp
                    .remember(Resource::Ack0 { psn, msn }, self.dest_rd_atomic());
                self.resp.queue(Pending::Read {
                    rkey,
                    va,
                    len: 0,
                    first_psn: psn,
                    next_psn: psn,
                    off: 0,
                    msn,
                    replay: false,
                });
            }
            Operation::ReadResponse | Operation::Ack | Operation::AtomicAck => return,
        }

        self.resp.epsn = psn.add(advance);
        if info.operation != Operation::ReadRequest {
            self.resp.ack_psn = self.resp.epsn;
        }
        self.resp.sent_psn_nak = false;
        self.resp.last_op = if info.is_end() { None } else { Some(opcode) };
        if matches!(info.operation, Operation::Send | Operation::Write)
            && self.cfg.qp_type != super::QpType::Uc
        {
            if bth.ack_req() {
                let msn = self.resp.msn;
                self.resp.queue(Pending::Ack {
                    psn,
                    syndrome: ack(),
                    msn,
                    fatal: false,
                });
            } else {
                self.counters.ack_deferred += 1;
            }
        }
    }

    /// Responder resources: `max_dest_rd_atomic` rounded up to a power of two, as Linux
    /// (`rxe_qp_from_attr`) rounds both `max_dest_rd_atomic` and `max_rd_atomic`. A Linux
    /// requester given the same odd value keeps the rounded-up number of READ/atomic requests
    /// outstanding; refusing them would fail the connection.
    fn dest_rd_atomic(&self) -> u8 {
        self.attrs
            .max_dest_rd_atomic
            .clamp(1, MAX_RD_ATOMIC)
            .next_power_of_two()
    }

    /// The key through which the peer may access `len` bytes at `va` via `rkey` with `need`
    /// (the region's own, or the one a window is bound to), or `None`. A zero-length access
    /// needs no valid rkey (IBTA C9-88).
    fn remote_key<M: Memory + ?Sized>(
        &self,
        mem: &M,
        rkey: Rkey,
        va: u64,
        len: u64,
        need: Access,
    ) -> Option<u32> {
        if len == 0 {
            return Some(rkey.0);
        }
        memory::check_remote(mem, rkey.0, self.cfg.pd, self.cfg.qpn, va, len, need).ok()
    }

    /// Whether [`remote_key`](Self::remote_key) allows the access.
    fn remote_ok<M: Memory + ?Sized>(
        &self,
        mem: &M,
        rkey: Rkey,
        va: u64,
        len: u64,
        need: Access,
    ) -> bool {
        self.remote_key(mem, rkey, va, len, need).is_some()
    }

    /// Places a SEND packet into the receive request at the RQ front; false if it failed.
    fn place_send<M: Memory + ?Sized>(
        &mut self,
        psn: Psn,
        pkt: &RoceV2Packet<'_>,
        mem: &mut M,
    ) -> bool {
        let roce = pkt.roce();
        let info = roce.info();
        let payload = roce.payload();
        if info.is_start() {
            self.resp.recv_active = true;
            self.resp.recv_off = 0;
        }
        let Some(wqe) = self.rq.front() else {
            return false;
        };
        let cap: u64 = wqe.sg_list.iter().map(|s| u64::from(s.length)).sum();
        let off = self.resp.recv_off;
        if u64::from(off) + payload.len() as u64 > cap {
            // The message does not fit the receive buffer (IBTA C9-??: Invalid Request NAK).
            self.fail_recv(WcStatus::LocLenErr);
            self.nak_fatal(psn, NakCode::InvalidRequest);
            return false;
        }
        if !scatter_write(
            mem,
            self.cfg.pd,
            &wqe.sg_list,
            off,
            &mut pkt.payload_source(),
        ) {
            self.fail_recv(WcStatus::LocProtErr);
            self.nak_fatal(psn, NakCode::RemoteOperationalError);
            return false;
        }
        self.resp.recv_off = off + payload.len() as u32;
        if info.is_end() {
            let mut wc_flags = WcFlags::empty();
            if roce.bth().solicited() {
                wc_flags |= WcFlags::SOLICITED;
            }
            let imm = roce.immdt();
            if imm.is_some() {
                wc_flags |= WcFlags::WITH_IMM;
            }
            let mut inv = None;
            if let Some(ieth) = roce.ieth() {
                if memory::invalidate(mem, ieth.rkey.0, self.cfg.pd, self.cfg.qpn).is_err() {
                    self.fail_recv(WcStatus::LocProtErr);
                    self.nak_fatal(psn, NakCode::InvalidRequest);
                    return false;
                }
                inv = Some(ieth.rkey);
                wc_flags |= WcFlags::WITH_INV;
            }
            let byte_len = self.resp.recv_off;
            self.complete_recv(WcOpcode::Recv, byte_len, imm, inv, wc_flags);
            self.counters.rdma_recvs += 1;
            self.resp.recv_active = false;
            self.resp.recv_off = 0;
            self.resp.msn = self.resp.msn.add(1);
        }
        true
    }

    /// Places an RDMA WRITE packet (unless `placed` already); false if it failed.
    fn place_write<M: Memory + ?Sized>(
        &mut self,
        psn: Psn,
        pkt: &RoceV2Packet<'_>,
        mem: &mut M,
        placed: bool,
    ) -> bool {
        let roce = pkt.roce();
        let info = roce.info();
        let payload = roce.payload();
        if let Some(reth) = roce.reth() {
            let (va, rkey, len) = (reth.va(), reth.rkey(), reth.dma_len());
            // A zero-length WRITE needs no valid rkey (IBTA C9-88).
            let Some(dkey) = self.remote_key(mem, rkey, va, u64::from(len), Access::REMOTE_WRITE)
            else {
                self.nak_fatal(psn, NakCode::RemoteAccessError);
                return false;
            };
            self.resp.write = Some(WriteState {
                // The key the data goes through (a window's region).
                rkey: Rkey(dkey),
                va,
                resid: len,
                total: len,
            });
        }
        let Some(mut w) = self.resp.write else {
            self.nak_fatal(psn, NakCode::InvalidRequest);
            return false;
        };
        if payload.len() as u64 > u64::from(w.resid) {
            self.nak_fatal(psn, NakCode::InvalidRequest);
            return false;
        }
        if !payload.is_empty() && !placed {
            let mut src = pkt.payload_source();
            memory::place(mem, w.rkey.0, w.va, payload.len(), &mut src);
        }
        w.va = w.va.wrapping_add(payload.len() as u64);
        w.resid -= payload.len() as u32;
        self.resp.write = Some(w);
        if info.is_end() {
            if w.resid != 0 {
                self.nak_fatal(psn, NakCode::InvalidRequest);
                return false;
            }
            if let Some(imm) = roce.immdt() {
                let mut wc_flags = WcFlags::WITH_IMM;
                if roce.bth().solicited() {
                    wc_flags |= WcFlags::SOLICITED;
                }
                self.complete_recv(
                    WcOpcode::RecvRdmaWithImm,
                    w.total,
                    Some(imm),
                    None,
                    wc_flags,
                );
            }
            self.resp.write = None;
            self.resp.msn = self.resp.msn.add(1);
        }
        true
    }

    fn complete_recv(
        &mut self,
        opcode: WcOpcode,
        byte_len: u32,
        imm: Option<rxe_wire::ImmDt>,
        inv: Option<Rkey>,
        wc_flags: WcFlags,
    ) {
        if let Some(wqe) = self.rq.pop_front() {
            let wc = WorkCompletion {
                wr_id: wqe.wr_id,
                status: WcStatus::Success,
                opcode,
                byte_len,
                imm_data: imm,
                invalidated_rkey: inv,
                qp_num: self.cfg.qpn.value(),
                src_qp: self.attrs.dest_qp.value(),
                wc_flags,
            };
            let _ = self.recv_cq.push_back(wc);
        }
    }

    /// Completes the receive request at the RQ front with an error.
    fn fail_recv(&mut self, status: WcStatus) {
        if self.cfg.qp_type == super::QpType::Uc {
            // The receive request is not consumed; the next message reuses it.
            return;
        }
        if let Some(wqe) = self.rq.pop_front() {
            let wc = self.recv_wc(wqe.wr_id, status, WcOpcode::Recv);
            let _ = self.recv_cq.push_back(wc);
        }
        self.resp.recv_active = false;
    }

    /// UC's answer to every error: drop the rest of the message, keep the receive request.
    fn drop_message(&mut self) {
        self.resp.drop_msg = true;
        self.resp.recv_active = false;
        self.resp.recv_off = 0;
        self.resp.write = None;
        self.resp.last_op = None;
    }

    /// RC: queues a NAK after which the QP moves to ERR (IBTA class A/C errors). UC has no
    /// NAKs: the message is dropped and the QP stays in RTS.
    fn nak_fatal(&mut self, psn: Psn, code: NakCode) {
        if self.cfg.qp_type == super::QpType::Uc {
            self.drop_message();
            return;
        }
        let msn = self.resp.msn;
        self.resp.error_pending = true;
        if !self.resp.queue(Pending::Ack {
            psn,
            syndrome: Syndrome::Nak(code),
            msn,
            fatal: true,
        }) {
            // No room for the NAK: go to ERR now; the requester times out.
            self.fatal_responder(super::nak_status(code));
        }
    }

    /// Moves to ERR after a fatal NAK; the event carries the status the NAK gives the peer.
    fn fatal_responder(&mut self, status: WcStatus) {
        let _ = self.events.push_back(super::QpEvent::Fatal(status));
        self.flush(None);
    }

    /// Answers a duplicate request (PSN before the expected one).
    fn handle_duplicate<M: Memory + ?Sized>(&mut self, pkt: &RoceV2Packet<'_>, mem: &M) {
        let roce = pkt.roce();
        let psn = roce.bth().psn();
        match roce.info().operation {
            Operation::Send | Operation::Write => {
                // C9-105: ACK again, with the PSN of the last SEND, WRITE or atomic executed
                // (Linux `duplicate_request`: a READ's PSN would NAK its responses implicitly).
                let (p, msn) = (self.resp.ack_psn.sub(1), self.resp.msn);
                self.resp.queue(Pending::Ack {
                    psn: p,
                    syndrome: ack(),
                    msn,
                    fatal: false,
                });
            }
            Operation::ReadRequest => {
                let Some(reth) = roce.reth() else { return };
                let (va, rkey, len) = (reth.va(), reth.rkey(), reth.dma_len());
                let found = self.resp.res.iter().flatten().find_map(|r| match *r {
                    Resource::Read {
                        rkey: k,
                        va: v,
                        len: l,
                        first_psn,
                        last_psn,
                        msn,
                    } if k == rkey && psn.diff(first_psn) >= 0 && psn.diff(last_psn) <= 0 => {
                        Some((v, l, msn))
                    }
                    _ => None,
                });
                // Replay only a range inside the original request.
                let Some((v, l, msn)) = found else { return };
                let inside = va >= v
                    && va
                        .checked_add(u64::from(len))
                        .is_some_and(|e| e <= v + u64::from(l));
                if !inside {
                    return;
                }
                if !self.remote_ok(mem, rkey, va, u64::from(len), Access::REMOTE_READ) {
                    return;
                }
                self.resp.queue(Pending::Read {
                    rkey,
                    va,
                    len,
                    first_psn: psn,
                    next_psn: psn,
                    off: 0,
                    msn,
                    replay: true,
                });
            }
            Operation::CompareSwap | Operation::FetchAdd => {
                let found = self.resp.res.iter().flatten().find_map(|r| match *r {
                    Resource::Atomic { psn: p, orig, msn } if p == psn => Some((orig, msn)),
                    _ => None,
                });
                if let Some((orig, msn)) = found {
                    self.resp.queue(Pending::AtomicAck {
                        psn,
                        orig,
                        msn,
                        replay: true,
                    });
                }
            }
            Operation::AtomicWrite | Operation::Flush => {
                let found = self.resp.res.iter().flatten().find_map(|r| match *r {
                    Resource::Ack0 { psn: p, msn } if p == psn => Some(msn),
                    _ => None,
                });
                if let Some(msn) = found {
                    let rkey = Rkey(0);
                    self.resp.queue(Pending::Read {
                        rkey,
                        va: 0,
                        len: 0,
                        first_psn: psn,
                        next_psn: psn,
                        off: 0,
                        msn,
                        replay: true,
                    });
                }
            }
            _ => {}
        }
    }

    /// Writes the next response packet, if any.
    pub(super) fn poll_response<M: Memory + ?Sized>(
        &mut self,
        buf: &mut [u8],
        mem: &mut M,
    ) -> Option<usize> {
        let item = *self.resp.pending.front()?;
        match item {
            Pending::Ack {
                psn,
                syndrome,
                msn,
                fatal,
            } => {
                let ext = ExtHeaders {
                    aeth: Some(AethRepr { syndrome, msn }),
                    ..ExtHeaders::default()
                };
                let bth = self.bth(Opcode::RC_ACKNOWLEDGE, psn, false, false);
                let n = self.emit(buf, bth, ext, 0, |_| {});
                self.resp.pop_front();
                if fatal {
                    self.resp.error_pending = false;
                    let status = match syndrome {
                        Syndrome::Nak(code) => super::nak_status(code),
                        _ => WcStatus::RemInvReqErr,
                    };
                    self.fatal_responder(status);
                }
                n
            }
            Pending::AtomicAck { psn, orig, msn, .. } => {
                let ext = ExtHeaders {
                    aeth: Some(AethRepr {
                        syndrome: ack(),
                        msn,
                    }),
                    atomic_ack_eth: Some(atmack::Repr { orig }),
                    ..ExtHeaders::default()
                };
                let bth = self.bth(Opcode::RC_ATOMIC_ACKNOWLEDGE, psn, false, false);
                self.resp.pop_front();
                self.emit(buf, bth, ext, 0, |_| {})
            }
            Pending::Read {
                rkey,
                va,
                len,
                first_psn,
                next_psn,
                off,
                msn,
                replay,
            } => {
                let mtu = self.attrs.path_mtu.bytes();
                let remaining = len - off;
                let paylen = remaining.min(mtu);
                let first = off == 0;
                let last = remaining <= mtu;
                let opcode = match (first, last) {
                    (true, true) => Opcode::RC_RDMA_READ_RESPONSE_ONLY,
                    (true, false) => Opcode::RC_RDMA_READ_RESPONSE_FIRST,
                    (false, false) => Opcode::RC_RDMA_READ_RESPONSE_MIDDLE,
                    (false, true) => Opcode::RC_RDMA_READ_RESPONSE_LAST,
                };
                let addr = va.wrapping_add(u64::from(off));
                let dkey = self.remote_key(mem, rkey, addr, u64::from(paylen), Access::REMOTE_READ);
                let Some(dkey) = dkey else {
                    // The region went away mid-response.
                    self.resp.replace_front(Pending::Ack {
                        psn: next_psn,
                        syndrome: Syndrome::Nak(NakCode::RemoteAccessError),
                        msn,
                        fatal: true,
                    });
                    return self.poll_response(buf, mem);
                };
                let mut ext = ExtHeaders::default();
                if opcode != Opcode::RC_RDMA_READ_RESPONSE_MIDDLE {
                    ext.aeth = Some(AethRepr {
                        syndrome: ack(),
                        msn,
                    });
                }
                let bth = self.bth(opcode, next_psn, false, false);
                let mem_ro: &M = mem;
                let n = self.emit(buf, bth, ext, paylen as usize, |sink| {
                    if !sink.is_empty() {
                        memory::gather(mem_ro, dkey, addr, paylen as usize, sink);
                    }
                });
                let _ = first_psn;
                if last {
                    self.resp.pop_front();
                } else {
                    self.resp.replace_front(Pending::Read {
                        rkey,
                        va,
                        len,
                        first_psn,
                        next_psn: next_psn.add(1),
                        off: off + paylen,
                        msn,
                        replay,
                    });
                }
                n
            }
        }
    }
}

fn ack() -> Syndrome {
    Syndrome::Ack {
        credits: Syndrome::UNLIMITED_CREDITS,
    }
}
