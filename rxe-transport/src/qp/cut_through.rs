//! Cut-through placement: in-order RC continuation packets land in memory while their ICRC is
//! computed, in one pass over the data, as RNICs place data before the ICRC at the end of a
//! packet has arrived.
//!
//! It applies only where the destination is fixed by state that verified packets set up, and
//! where a bad packet's bytes are certain to be overwritten before the message can complete:
//!
//! - RDMA WRITE MIDDLE/LAST at the responder, at the expected PSN: the range comes from the RETH
//!   of the verified FIRST packet, and the payload must fit what is left of it. Every byte of
//!   that range is written by good packets before the WRITE can complete (go-back-N resends
//!   from the dropped PSN); no application may rely on a WRITE's target before it completes.
//! - RDMA READ responses at the requester, at the PSN the completer waits for: the range comes
//!   from the READ work request and the PSN, and the length must be exactly the expected one.
//!   The READ's local buffer is likewise the requester's own, unusable until completion.
//!
//! SEND is not placed early: a corrupted packet could look longer than the real last packet and
//! leave bytes past the message's end in the receive buffer. UC is not either: nothing resends
//! there, so a bad packet's bytes would stay. Everything else has its ICRC checked before any
//! byte of it is used.

use rxe_wire::{Opcode, PayloadSource, Position, RoceV2Packet};

use super::requester::scatter_write;
use super::requester::WqeState;
use super::{Qp, QpType};
use crate::memory::{self, Memory};
use crate::verbs::WrOpcode;

/// What [`Qp::cut_through`] did with a packet whose ICRC is unverified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CutThrough {
    /// Not a continuation that may be placed early: check the ICRC before handling it.
    NotApplicable,
    /// The payload is in memory and the ICRC is good: handle the packet, skipping placement.
    Placed,
    /// The ICRC is bad: drop the packet. Its bytes went where the good packet of the same PSN
    /// will be placed again.
    BadIcrc,
}

impl<const SQ: usize, const RQ: usize> Qp<SQ, RQ> {
    /// Places the payload of an unverified packet early if it is an in-order RC continuation.
    pub(super) fn cut_through<M: Memory + ?Sized>(
        &mut self,
        pkt: &RoceV2Packet<'_>,
        mem: &mut M,
    ) -> CutThrough {
        if self.cfg.qp_type != QpType::Rc {
            return CutThrough::NotApplicable;
        }
        let roce = pkt.roce();
        let bth = roce.bth();
        let opcode = bth.opcode();
        let psn = bth.psn();
        let len = roce.payload().len();
        let mtu = self.attrs.path_mtu.bytes() as usize;
        match opcode {
            Opcode::RC_RDMA_WRITE_MIDDLE
            | Opcode::RC_RDMA_WRITE_LAST
            | Opcode::RC_RDMA_WRITE_LAST_WITH_IMMEDIATE => {
                let in_order = psn == self.resp.epsn
                    && self
                        .resp
                        .last_op
                        .and_then(|o| o.info())
                        .is_some_and(|i| i.operation == rxe_wire::Operation::Write);
                let Some(w) = self.resp.write else {
                    return CutThrough::NotApplicable;
                };
                let len_ok = if opcode == Opcode::RC_RDMA_WRITE_MIDDLE {
                    len == mtu
                } else {
                    len != 0 && len <= mtu
                };
                if !in_order || !len_ok || len as u64 > u64::from(w.resid) {
                    return CutThrough::NotApplicable;
                }
                let mut src = pkt.payload_source();
                // The rkey and the whole range were checked on the FIRST packet.
                memory::place(mem, w.rkey.0, w.va, len, &mut src);
                verdict(src)
            }
            Opcode::RC_RDMA_READ_RESPONSE_FIRST
            | Opcode::RC_RDMA_READ_RESPONSE_MIDDLE
            | Opcode::RC_RDMA_READ_RESPONSE_LAST
            | Opcode::RC_RDMA_READ_RESPONSE_ONLY => {
                if psn != self.req.comp_psn || psn.diff(self.req.psn) >= 0 {
                    return CutThrough::NotApplicable;
                }
                let Some(idx) = self
                    .sq
                    .iter()
                    .position(|w| !matches!(w.state, WqeState::Done(_)))
                else {
                    return CutThrough::NotApplicable;
                };
                let Some(wqe) = self.sq.get(idx) else {
                    return CutThrough::NotApplicable;
                };
                if !matches!(wqe.wr.opcode, WrOpcode::RdmaRead(_))
                    || psn.diff(wqe.first_psn) < 0
                    || psn.diff(wqe.last_psn) > 0
                {
                    return CutThrough::NotApplicable;
                }
                let mtu = mtu as u32;
                let off = psn.diff(wqe.first_psn) as u32 * mtu;
                let expect = (wqe.len - off.min(wqe.len)).min(mtu) as usize;
                let info = roce.info();
                let end = matches!(info.position, Position::Last | Position::Only);
                if len != expect || end != (psn == wqe.last_psn) {
                    return CutThrough::NotApplicable;
                }
                let mut src = pkt.payload_source();
                // Checks every piece for LOCAL_WRITE first; if one fails, nothing is placed and
                // the normal path (after the ICRC) reports the error.
                if !scatter_write(mem, self.cfg.pd, &wqe.wr.sg_list, off, &mut src) {
                    return CutThrough::NotApplicable;
                }
                verdict(src)
            }
            _ => CutThrough::NotApplicable,
        }
    }
}

fn verdict(src: PayloadSource<'_>) -> CutThrough {
    if src.icrc_ok() {
        CutThrough::Placed
    } else {
        CutThrough::BadIcrc
    }
}
