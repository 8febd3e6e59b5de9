//! The requester: turns send work requests into packets (IBTA 9.7.2; Linux `rxe_req.c`).
//!
//! Segmentation to the path MTU with FIRST/MIDDLE/LAST/ONLY opcodes, AckReq on the last packet
//! (and after [`MAX_PKT_PER_ACK`] packets without one), at most [`MAX_UNACKED_PSNS`] PSNs in
//! flight, at most `max_rd_atomic` READ/atomic requests outstanding, fences, and go-back-N
//! retransmission from the PSN the completer asks for.

use rxe_wire::{
    atmeth, feth, ieth, reth, ExtHeaders, ImmDt, Opcode, PayloadSink, PayloadSource, Psn,
};

use super::timer::Timer;
use super::{is_local_op, wr_is_read_or_atomic, Qp, MAX_PKT_PER_ACK, MAX_UNACKED_PSNS};
use crate::memory::{self, Memory, Pd};
use crate::time::{local_ack_timeout, Instant};
use crate::verbs::{Access, SendFlags, SendWr, WcStatus, WrOpcode, MAX_INLINE};

/// Where a send work request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WqeState {
    /// Posted, no PSN assigned yet.
    Posted,
    /// PSNs assigned; some or all packets sent, awaiting acknowledgement or responses.
    Sending,
    /// Finished with this status; completes when it reaches the front of the SQ.
    Done(WcStatus),
}

/// A send work request in the SQ.
#[derive(Debug, Clone)]
pub(crate) struct SendWqe {
    pub(crate) wr: SendWr,
    pub(crate) inline: Option<heapless::Vec<u8, MAX_INLINE>>,
    pub(crate) state: WqeState,
    pub(crate) first_psn: Psn,
    pub(crate) last_psn: Psn,
    /// Message length: bytes to send (SEND/WRITE) or to read (READ).
    pub(crate) len: u32,
    /// Bytes received so far (READ responses).
    pub(crate) byte_len: u32,
}

impl SendWqe {
    /// Validates a request as `ibv_post_send` does and copies inline data.
    pub(crate) fn new<M: Memory + ?Sized>(
        wr: SendWr,
        mem: &M,
        pd: Pd,
    ) -> Result<SendWqe, super::PostSendError> {
        use super::PostSendError as E;
        let total = wr.total_len();
        let len = match wr.opcode {
            WrOpcode::Flush { len, .. } => u64::from(len),
            _ => total,
        };
        let len = u32::try_from(len)
            .ok()
            .filter(|&l| l <= 1 << 31)
            .ok_or(E::MessageTooLong)?;
        if let WrOpcode::AtomicCmpSwp { remote, .. }
        | WrOpcode::AtomicFetchAdd { remote, .. }
        | WrOpcode::AtomicWrite(remote) = wr.opcode
        {
            if total != 8 || remote.addr % 8 != 0 {
                return Err(E::InvalidAtomic);
            }
        }
        let mut inline = None;
        if wr.flags.contains(SendFlags::INLINE) {
            let sends_data = matches!(
                wr.opcode,
                WrOpcode::Send
                    | WrOpcode::SendWithImm(_)
                    | WrOpcode::SendWithInv(_)
                    | WrOpcode::RdmaWrite(_)
                    | WrOpcode::RdmaWriteWithImm(..)
            );
            if !sends_data || total > MAX_INLINE as u64 {
                return Err(E::InvalidInline);
            }
            let mut data = heapless::Vec::<u8, MAX_INLINE>::new();
            for sge in &wr.sg_list {
                // Inline data is copied now; verbs does not check its lkey, only that it is readable.
                memory::check(
                    mem,
                    sge.lkey,
                    pd,
                    sge.addr,
                    u64::from(sge.length),
                    Access::empty(),
                )
                .map_err(|_| E::InvalidInline)?;
                let start = data.len();
                let end = start + sge.length as usize;
                data.resize(end, 0).map_err(|_| E::InvalidInline)?;
                mem.read(sge.lkey, sge.addr, &mut data[start..end]);
            }
            inline = Some(data);
        }
        Ok(SendWqe {
            wr,
            inline,
            state: WqeState::Posted,
            first_psn: Psn::new(0),
            last_psn: Psn::new(0),
            len,
            byte_len: 0,
        })
    }

    fn is_read(&self) -> bool {
        matches!(self.wr.opcode, WrOpcode::RdmaRead(_))
    }

    /// SEND, WRITE and READ span one PSN per MTU of data; the others take one PSN.
    pub(crate) fn is_segmented(&self) -> bool {
        matches!(
            self.wr.opcode,
            WrOpcode::Send
                | WrOpcode::SendWithImm(_)
                | WrOpcode::SendWithInv(_)
                | WrOpcode::RdmaWrite(_)
                | WrOpcode::RdmaWriteWithImm(..)
                | WrOpcode::RdmaRead(_)
        )
    }
}

/// Requester state.
#[derive(Debug, Clone, Default)]
pub(crate) struct Req {
    /// Index (from the SQ front) of the request being sent.
    pub(crate) next: usize,
    /// Bytes of that request already sent in this pass.
    pub(crate) off: u32,
    /// Next PSN to send.
    pub(crate) psn: Psn,
    /// Oldest PSN not acknowledged (the completer's position).
    pub(crate) comp_psn: Psn,
    /// Packets sent since the last AckReq.
    pub(crate) noack_pkts: u32,
    /// READ/atomic requests started and not completed.
    pub(crate) rd_atomic: u32,
    /// Transport retries left.
    pub(crate) retry_left: u8,
    /// RNR retries left.
    pub(crate) rnr_left: u8,
    /// Waiting for the RNR timer.
    pub(crate) rnr_wait: bool,
    /// A go-back-N retry is under way and nothing was acknowledged since it started.
    pub(crate) retrying: bool,
}

impl Req {
    pub(crate) fn start(&mut self, sq_psn: Psn, retry: u8, rnr: u8) {
        *self = Req {
            psn: sq_psn,
            comp_psn: sq_psn,
            retry_left: retry,
            rnr_left: rnr,
            ..Req::default()
        };
    }
    pub(crate) fn clear(&mut self) {
        self.next = 0;
        self.off = 0;
        self.rd_atomic = 0;
        self.rnr_wait = false;
        self.retrying = false;
    }
    /// Requests started and not completed.
    pub(crate) fn in_flight<const N: usize>(&self, sq: &heapless::Deque<SendWqe, N>) -> usize {
        sq.iter().filter(|w| w.state != WqeState::Posted).count()
    }
}

/// Number of packets a message of `len` bytes takes (at least one).
pub(crate) fn npkts(len: u32, mtu: u32) -> u32 {
    len.div_ceil(mtu).max(1)
}

impl<const SQ: usize, const RQ: usize> Qp<SQ, RQ> {
    /// Builds the next request packet, if the send queue has one ready.
    pub(super) fn poll_request<M: Memory + ?Sized>(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        mem: &mut M,
    ) -> Option<usize> {
        if self.req.rnr_wait {
            return None;
        }
        loop {
            let idx = self.req.next;
            let wqe = self.sq.get(idx)?;
            if let WqeState::Done(_) = wqe.state {
                self.req.next += 1;
                continue;
            }
            if wqe.state == WqeState::Posted {
                // In SQD no new request starts.
                if self.state == super::QpState::Sqd {
                    return None;
                }
                if wqe.wr.flags.contains(SendFlags::FENCE) && self.req.rd_atomic > 0 {
                    return None;
                }
                let is_rd = wr_is_read_or_atomic(&wqe.wr);
                if is_rd && self.req.rd_atomic >= u32::from(self.attrs.max_rd_atomic.max(1)) {
                    return None;
                }
                if is_local_op(&wqe.wr) {
                    // Local operations run in order, before anything after them is sent.
                    let status = self.run_local_op(idx, mem);
                    if let Some(w) = self.sq.get_mut(idx) {
                        w.state = WqeState::Done(status);
                    }
                    self.req.next += 1;
                    self.complete_front();
                    if self.state == super::QpState::Err {
                        return None;
                    }
                    continue;
                }
                let mtu = self.mtu();
                let n = if wqe.is_segmented() {
                    npkts(wqe.len, mtu)
                } else {
                    1
                };
                let first = self.req.psn;
                let w = self.sq.get_mut(idx)?;
                w.first_psn = first;
                w.last_psn = first.add(n - 1);
                w.state = WqeState::Sending;
                self.req.off = 0;
                if is_rd {
                    self.req.rd_atomic += 1;
                }
            }
            break;
        }
        let uc = self.cfg.qp_type != super::QpType::Rc;
        // At most MAX_UNACKED_PSNS PSNs in flight (RC: UC and UD have nothing to acknowledge).
        if !uc && self.req.psn.diff(self.req.comp_psn) >= MAX_UNACKED_PSNS {
            return None;
        }
        let n = self.build_request(buf, mem)?;
        if uc {
            // UC and UD requests complete once their last packet is sent (Linux `rxe_req.c`).
            self.complete_front();
            return Some(n);
        }
        if self.timers.get(Timer::Retransmit).is_none() {
            if let Some(t) = local_ack_timeout(self.attrs.timeout) {
                self.timers.set(Timer::Retransmit, now + t);
            }
        }
        Some(n)
    }

    /// Executes a local operation (LOCAL_INV) and returns its completion status.
    fn run_local_op<M: Memory + ?Sized>(&mut self, idx: usize, mem: &mut M) -> WcStatus {
        let Some(wqe) = self.sq.get(idx) else {
            return WcStatus::LocQpOpErr;
        };
        match wqe.wr.opcode {
            WrOpcode::LocalInv(rkey) => {
                match memory::invalidate(mem, rkey.0, self.cfg.pd, self.cfg.qpn) {
                    Ok(()) => WcStatus::Success,
                    Err(_) => WcStatus::MwBindErr,
                }
            }
            WrOpcode::BindMw(req) => match memory::bind_mw(mem, self.cfg.pd, self.cfg.qpn, &req) {
                Ok(()) => WcStatus::Success,
                Err(_) => WcStatus::MwBindErr,
            },
            WrOpcode::RegMr {
                mr,
                new_key,
                access,
            } => match memory::reg_mr(mem, self.cfg.pd, mr, new_key, access) {
                Ok(()) => WcStatus::Success,
                Err(_) => WcStatus::MwBindErr,
            },
            _ => WcStatus::LocQpOpErr,
        }
    }

    /// Writes the next packet of the request at `req.next`, advancing the cursor.
    fn build_request<M: Memory + ?Sized>(&mut self, buf: &mut [u8], mem: &mut M) -> Option<usize> {
        let idx = self.req.next;
        let mtu = self.mtu();
        let off = self.req.off;
        let psn = self.req.psn;
        // Copy out the small fields; the scatter/gather list and inline data stay in the SQ.
        let wqe = self.sq.get(idx)?;
        let (wr_opcode, wr_flags, wqe_len) = (wqe.wr.opcode, wqe.wr.flags, wqe.len);
        let (segmented, is_read, has_inline) =
            (wqe.is_segmented(), wqe.is_read(), wqe.inline.is_some());
        let remaining = wqe_len - off;
        let paylen = remaining.min(mtu);
        let first = off == 0;
        let last = remaining <= mtu;
        let solicited_flag = wr_flags.contains(SendFlags::SOLICITED);
        let mut ext = ExtHeaders::default();
        let (opcode, payload, psn_used) = match wr_opcode {
            WrOpcode::Send | WrOpcode::SendWithImm(_) | WrOpcode::SendWithInv(_) => {
                let op = match (first, last, wr_opcode) {
                    (true, true, WrOpcode::SendWithImm(i)) => {
                        ext.immdt = Some(i);
                        Opcode::RC_SEND_ONLY_WITH_IMMEDIATE
                    }
                    (true, true, WrOpcode::SendWithInv(k)) => {
                        ext.ieth = Some(ieth::Repr { rkey: k });
                        Opcode::RC_SEND_ONLY_WITH_INVALIDATE
                    }
                    (true, true, _) => Opcode::RC_SEND_ONLY,
                    (true, false, _) => Opcode::RC_SEND_FIRST,
                    (false, false, _) => Opcode::RC_SEND_MIDDLE,
                    (false, true, WrOpcode::SendWithImm(i)) => {
                        ext.immdt = Some(i);
                        Opcode::RC_SEND_LAST_WITH_IMMEDIATE
                    }
                    (false, true, WrOpcode::SendWithInv(k)) => {
                        ext.ieth = Some(ieth::Repr { rkey: k });
                        Opcode::RC_SEND_LAST_WITH_INVALIDATE
                    }
                    (false, true, _) => Opcode::RC_SEND_LAST,
                };
                (op, paylen, 1)
            }
            WrOpcode::RdmaWrite(r) | WrOpcode::RdmaWriteWithImm(r, _) => {
                let imm: Option<ImmDt> = match wr_opcode {
                    WrOpcode::RdmaWriteWithImm(_, i) => Some(i),
                    _ => None,
                };
                if first {
                    ext.reth = Some(reth::Repr {
                        va: r.addr,
                        rkey: r.rkey,
                        dma_len: wqe_len,
                    });
                }
                let op = match (first, last, imm) {
                    (true, true, Some(i)) => {
                        ext.immdt = Some(i);
                        Opcode::RC_RDMA_WRITE_ONLY_WITH_IMMEDIATE
                    }
                    (true, true, None) => Opcode::RC_RDMA_WRITE_ONLY,
                    (true, false, _) => Opcode::RC_RDMA_WRITE_FIRST,
                    (false, false, _) => Opcode::RC_RDMA_WRITE_MIDDLE,
                    (false, true, Some(i)) => {
                        ext.immdt = Some(i);
                        Opcode::RC_RDMA_WRITE_LAST_WITH_IMMEDIATE
                    }
                    (false, true, None) => Opcode::RC_RDMA_WRITE_LAST,
                };
                (op, paylen, 1)
            }
            WrOpcode::RdmaRead(r) => {
                // One request for the rest of the read; it takes a PSN per response packet.
                ext.reth = Some(reth::Repr {
                    va: r.addr.wrapping_add(u64::from(off)),
                    rkey: r.rkey,
                    dma_len: remaining,
                });
                (Opcode::RC_RDMA_READ_REQUEST, 0, npkts(remaining, mtu))
            }
            WrOpcode::AtomicCmpSwp {
                remote,
                compare,
                swap,
            } => {
                ext.atomic_eth = Some(atmeth::Repr {
                    va: remote.addr,
                    rkey: remote.rkey,
                    swap_add: swap,
                    compare,
                });
                (Opcode::RC_COMPARE_SWAP, 0, 1)
            }
            WrOpcode::AtomicFetchAdd { remote, add } => {
                ext.atomic_eth = Some(atmeth::Repr {
                    va: remote.addr,
                    rkey: remote.rkey,
                    swap_add: add,
                    compare: 0,
                });
                (Opcode::RC_FETCH_ADD, 0, 1)
            }
            WrOpcode::AtomicWrite(r) => {
                ext.reth = Some(reth::Repr {
                    va: r.addr,
                    rkey: r.rkey,
                    dma_len: 8,
                });
                (Opcode::RC_ATOMIC_WRITE, 8, 1)
            }
            WrOpcode::Flush {
                remote,
                len,
                placement_type,
                selectivity,
            } => {
                ext.feth = Some(feth::Repr {
                    placement_type,
                    selectivity,
                });
                ext.reth = Some(reth::Repr {
                    va: remote.addr,
                    rkey: remote.rkey,
                    dma_len: len,
                });
                (Opcode::RC_FLUSH, 0, 1)
            }
            WrOpcode::LocalInv(_) | WrOpcode::BindMw(_) | WrOpcode::RegMr { .. } => return None,
        };
        let end_of_msg = last || !segmented || is_read;
        let uc = self.cfg.qp_type != super::QpType::Rc;
        // UC and UD packets are never acknowledged: Linux never sets AckReq on them, except on
        // QP1, whose type there is GSI rather than UD (the rping capture's MADs carry it).
        let gsi = self.cfg.qpn.value() == rxe_wire::mad::GSI_QPN;
        let ack_req = (!uc || gsi)
            && (end_of_msg || {
                let v = self.req.noack_pkts;
                self.req.noack_pkts += 1;
                v > MAX_PKT_PER_ACK
            });
        if ack_req {
            self.req.noack_pkts = 0;
        }
        // The solicited event bit is defined for SEND and RDMA WRITE with immediate only
        // (Linux `init_req_packet`).
        let carries_event = matches!(
            wr_opcode,
            WrOpcode::Send
                | WrOpcode::SendWithImm(_)
                | WrOpcode::SendWithInv(_)
                | WrOpcode::RdmaWriteWithImm(..)
        );
        let solicited = end_of_msg && solicited_flag && carries_event;
        // UC opcodes are the RC ones with the transport bits 001 (IBTA table 38); UD has SEND
        // ONLY (with immediate) and a DETH.
        let mut attrs = self.attrs;
        let opcode = match self.cfg.qp_type {
            super::QpType::Rc => opcode,
            super::QpType::Uc => Opcode(opcode.0 | 0x20),
            super::QpType::Ud => {
                let ud = self.sq.get(idx)?.wr.ud?;
                // Linux `rxe_req.c`: QP1 (the GSI) always sends the GSI Q_Key; otherwise a
                // privileged Q_Key in the request means "the QP's own".
                let qkey = if self.cfg.qpn.value() == rxe_wire::mad::GSI_QPN {
                    rxe_wire::QKey(rxe_wire::mad::GSI_QKEY)
                } else if ud.remote_qkey.is_privileged() {
                    self.attrs.qkey
                } else {
                    ud.remote_qkey
                };
                ext.deth = Some(rxe_wire::deth::Repr {
                    qkey,
                    src_qp: self.cfg.qpn,
                });
                let mut ah = ud.ah;
                // Linux: a UD QP's source port is 0xc000 + hash_32(qpn, 14).
                let hash = self.cfg.qpn.value().wrapping_mul(0x61c8_8647) >> 18;
                ah.udp_sport.get_or_insert(0xc000 | hash as u16);
                attrs.av = Some(ah);
                attrs.dest_qp = ud.remote_qpn;
                if ext.immdt.is_some() {
                    Opcode::UD_SEND_ONLY_WITH_IMMEDIATE
                } else {
                    Opcode::UD_SEND_ONLY
                }
            }
        };
        let mut bth = self.bth(opcode, psn, ack_req, solicited);
        bth.dest_qp = attrs.dest_qp;

        // Gather the payload: check every piece first, so a bad lkey fails before anything is
        // written (and the request completes with LOC_PROT_ERR).
        let data_off = if matches!(wr_opcode, WrOpcode::AtomicWrite(_)) {
            0
        } else {
            off
        };
        if payload > 0 && !has_inline {
            let mut ok = true;
            let sg = &self.sq.get(idx)?.wr.sg_list;
            for_each_piece(sg, data_off, payload, |lkey, addr, len, _| {
                ok &= memory::check(mem, lkey, self.cfg.pd, addr, len as u64, Access::empty())
                    .is_ok();
            });
            if !ok {
                self.counters.send_err += 1;
                self.fatal(WcStatus::LocProtErr);
                return None;
            }
        }
        let wqe = self.sq.get(idx)?;
        let mem_ro: &M = mem;
        let fill = |sink: &mut PayloadSink<'_>| match &wqe.inline {
            Some(d) => {
                let s = data_off as usize;
                sink.copy_from(&d[s..s + payload as usize]);
            }
            None => for_each_piece(&wqe.wr.sg_list, data_off, payload, |lkey, addr, len, _| {
                memory::gather(mem_ro, lkey, addr, len, sink);
            }),
        };
        let n = super::emit_to(
            &attrs,
            &self.cfg,
            &mut self.ident,
            &mut self.template,
            buf,
            bth,
            ext,
            payload as usize,
            fill,
        )?;

        // Advance the cursor.
        self.req.psn = psn.add(psn_used);
        let done = if is_read || !segmented {
            true
        } else {
            self.req.off = off + payload;
            last
        };
        if done {
            if uc {
                if let Some(w) = self.sq.get_mut(idx) {
                    w.state = WqeState::Done(WcStatus::Success);
                    w.byte_len = w.len;
                }
            }
            self.req.next += 1;
            self.req.off = 0;
            if let WrOpcode::Send | WrOpcode::SendWithImm(_) | WrOpcode::SendWithInv(_) = wr_opcode
            {
                if last {
                    self.counters.rdma_sends += 1;
                }
            }
        }
        Some(n)
    }

    /// The MTU packets are cut to: the path MTU, or for UD the port's.
    pub(super) fn mtu(&self) -> u32 {
        match self.cfg.qp_type {
            super::QpType::Ud => self.cfg.port_mtu.bytes(),
            _ => self.attrs.path_mtu.bytes(),
        }
    }

    /// Rewinds the requester to resend from `comp_psn` (go-back-N).
    pub(super) fn start_retry(&mut self) {
        let mtu = self.attrs.path_mtu.bytes();
        let comp = self.req.comp_psn;
        let mut idx = 0;
        while let Some(w) = self.sq.get(idx) {
            if let WqeState::Done(_) = w.state {
                idx += 1;
                continue;
            }
            break;
        }
        self.req.next = idx;
        self.req.noack_pkts = 0;
        match self.sq.get(idx) {
            Some(w) if w.state == WqeState::Sending => {
                let acked = comp.diff(w.first_psn).max(0) as u32;
                // Packets of the first request that were acknowledged are skipped; a READ resumes
                // at the first response that did not arrive.
                self.req.off = (acked.saturating_mul(mtu)).min(w.len);
                self.req.psn = comp;
            }
            _ => {
                self.req.off = 0;
                self.req.psn = comp;
            }
        }
    }
}

/// Writes `data` into a scatter list at message offset `off`, after checking every piece for
/// LOCAL_WRITE in `pd`; returns false (and writes nothing) if a check fails. READ data at the
/// requester and SEND data at the responder both land through this.
pub(crate) fn scatter_write<M: Memory + ?Sized>(
    mem: &mut M,
    pd: crate::memory::Pd,
    sg: &crate::verbs::SgList,
    off: u32,
    data: &mut PayloadSource<'_>,
) -> bool {
    let n = data.remaining() as u32;
    let mut ok = true;
    for_each_piece(sg, off, n, |lkey, addr, len, _| {
        ok &= memory::check(mem, lkey, pd, addr, len as u64, Access::LOCAL_WRITE).is_ok();
    });
    if ok {
        for_each_piece(sg, off, n, |lkey, addr, len, _| {
            memory::place(mem, lkey, addr, len, data)
        });
    }
    ok
}

/// Calls `f(lkey, addr, len, at)` for the pieces of a scatter/gather list covering `len` bytes
/// from byte `off` of the message; `at` is where each piece starts within those `len` bytes.
/// Requester gathers, completer scatters READ data, responder scatters SENDs: all through this.
pub(crate) fn for_each_piece(
    sg: &crate::verbs::SgList,
    off: u32,
    len: u32,
    mut f: impl FnMut(u32, u64, usize, usize),
) {
    let mut skip = u64::from(off);
    let mut left = u64::from(len);
    let mut at = 0usize;
    for sge in sg {
        if left == 0 {
            break;
        }
        let l = u64::from(sge.length);
        if skip >= l {
            skip -= l;
            continue;
        }
        let take = (l - skip).min(left);
        f(sge.lkey, sge.addr + skip, take as usize, at);
        at += take as usize;
        left -= take;
        skip = 0;
    }
}
