//! The UD receive path (IBTA 9.8.4 and 10.2.4; Linux `rxe_resp.c` for UD QPs): Q_Key check,
//! the 40-byte GRH area at the start of the receive buffer, completion with the source QP.
//!
//! No PSN checks, no acknowledgements, no RNR: a datagram without a posted receive, or with the
//! wrong Q_Key, is dropped.

use rxe_wire::{icrc::ICRC_LEN, udp, IpRepr, PayloadSource, RoceV2Packet};

use super::requester::{for_each_piece, scatter_write};
use super::Qp;
use crate::memory::{self, Memory};
use crate::verbs::{Access, WcFlags, WcOpcode, WcStatus, WorkCompletion};

/// Bytes at the start of every UD receive buffer that hold the network header (`ib_grh`).
pub const GRH_LEN: usize = 40;

impl<const SQ: usize, const RQ: usize> Qp<SQ, RQ> {
    /// Delivers a datagram into the receive request at the RQ front.
    pub(super) fn handle_datagram<M: Memory + ?Sized>(
        &mut self,
        pkt: &RoceV2Packet<'_>,
        mem: &mut M,
        srq: Option<&mut dyn crate::srq::RecvSource>,
    ) {
        let roce = pkt.roce();
        let Some(deth) = roce.deth() else { return };
        // QP1 (the GSI) takes the GSI Q_Key whatever its attribute says.
        let want = if self.cfg.qpn.value() == rxe_wire::mad::GSI_QPN {
            rxe_wire::QKey(rxe_wire::mad::GSI_QKEY)
        } else {
            self.attrs.qkey
        };
        if deth.qkey() != want {
            return;
        }
        if self.rq.is_empty() {
            if let Some(wr) = srq.and_then(|s| s.take_recv()) {
                let _ = self.rq.push_back(wr);
            }
        }
        let Some(wqe) = self.rq.front() else { return };
        let payload = roce.payload();
        let total = GRH_LEN + payload.len();
        let cap: u64 = wqe.sg_list.iter().map(|s| u64::from(s.length)).sum();
        // The network header as verbs shows it for RoCEv2: IPv4 in the last 20 bytes (the first
        // 20 zero), or the whole IPv6 header.
        let mut grh = [0u8; GRH_LEN];
        let udp_len = udp::HEADER_LEN + roce.without_icrc().len() + ICRC_LEN;
        let ok = match pkt.ip() {
            IpRepr::V4(h) => h.emit(&mut grh[20..], udp_len).is_ok(),
            IpRepr::V6(h) => h.emit(&mut grh, udp_len).is_ok(),
        };
        let pd = self.cfg.pd;
        let mut status = if !ok || total as u64 > cap {
            WcStatus::LocLenErr
        } else {
            WcStatus::Success
        };
        if status == WcStatus::Success {
            let sg = &wqe.sg_list;
            for_each_piece(sg, 0, total as u32, |lkey, addr, len, _| {
                if memory::check(mem, lkey, pd, addr, len as u64, Access::LOCAL_WRITE).is_err() {
                    status = WcStatus::LocProtErr;
                }
            });
            if status == WcStatus::Success {
                // Checked above for the whole range, so both writes go through.
                scatter_write(mem, pd, sg, 0, &mut PayloadSource::from_slice(&grh));
                scatter_write(mem, pd, sg, GRH_LEN as u32, &mut pkt.payload_source());
            }
        }
        let Some(wqe) = self.rq.pop_front() else {
            return;
        };
        let imm = roce.immdt();
        let mut wc_flags = WcFlags::GRH;
        if imm.is_some() {
            wc_flags |= WcFlags::WITH_IMM;
        }
        if roce.bth().solicited() {
            wc_flags |= WcFlags::SOLICITED;
        }
        let ok = status == WcStatus::Success;
        let wc = WorkCompletion {
            wr_id: wqe.wr_id,
            status,
            opcode: WcOpcode::Recv,
            byte_len: if ok { total as u32 } else { 0 },
            imm_data: imm,
            invalidated_rkey: None,
            qp_num: self.cfg.qpn.value(),
            src_qp: deth.src_qp().value(),
            wc_flags,
        };
        let _ = self.recv_cq.push_back(wc);
        if ok {
            self.counters.rdma_recvs += 1;
        }
    }
}
