//! The verbs vocabulary: work requests, scatter/gather lists, work completions and their statuses,
//! access flags. Names and numeric values follow libibverbs (`IBV_WC_*`, `IBV_ACCESS_*`, ...).

use core::fmt;

use bitflags::bitflags;
use rxe_wire::{ImmDt, Rkey};

/// Most scatter/gather entries a work request can carry.
pub const MAX_SGE: usize = 8;
/// Most bytes of inline data a send work request can carry.
pub const MAX_INLINE: usize = 256;

bitflags! {
    /// Memory access rights (`IBV_ACCESS_*`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct Access: u32 {
        /// The local side may write (needed for receive buffers and READ/atomic targets).
        const LOCAL_WRITE = 1;
        /// The remote side may RDMA WRITE (and ATOMIC WRITE).
        const REMOTE_WRITE = 1 << 1;
        /// The remote side may RDMA READ.
        const REMOTE_READ = 1 << 2;
        /// The remote side may run atomics.
        const REMOTE_ATOMIC = 1 << 3;
        /// Memory windows may be bound to the region.
        const MW_BIND = 1 << 4;
        /// Addresses are offsets from the start of the region.
        const ZERO_BASED = 1 << 5;
        /// The remote side may FLUSH to global visibility.
        const FLUSH_GLOBAL = 1 << 8;
        /// The remote side may FLUSH to persistence.
        const FLUSH_PERSISTENT = 1 << 9;
    }
}

bitflags! {
    /// Send work request flags (`IBV_SEND_*`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct SendFlags: u32 {
        /// Wait for earlier READ and atomic operations to complete before starting.
        const FENCE = 1;
        /// Generate a completion when the request succeeds.
        const SIGNALED = 1 << 1;
        /// Set the solicited event bit on the last packet.
        const SOLICITED = 1 << 2;
        /// Copy the data at post time (up to [`MAX_INLINE`] bytes); the lkeys are not checked.
        const INLINE = 1 << 3;
    }
}

/// A scatter/gather entry: `length` bytes at `addr` in the region named by `lkey`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Sge {
    /// Virtual address.
    pub addr: u64,
    /// Length in bytes.
    pub length: u32,
    /// Local key of the memory region.
    pub lkey: u32,
}

/// A scatter/gather list of at most [`MAX_SGE`] entries.
pub type SgList = heapless::Vec<Sge, MAX_SGE>;

/// The remote buffer of an RDMA or atomic operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Remote {
    /// Remote virtual address.
    pub addr: u64,
    /// Remote key.
    pub rkey: Rkey,
}

/// What a send work request does (`IBV_WR_*`), with the operands each needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WrOpcode {
    /// RDMA WRITE to `remote`.
    RdmaWrite(Remote),
    /// RDMA WRITE with immediate data.
    RdmaWriteWithImm(Remote, ImmDt),
    /// SEND.
    Send,
    /// SEND with immediate data.
    SendWithImm(ImmDt),
    /// SEND that invalidates `rkey` at the responder.
    SendWithInv(Rkey),
    /// RDMA READ from `remote` into the scatter list.
    RdmaRead(Remote),
    /// 64-bit compare and swap at `remote`; the original value lands in the scatter list.
    AtomicCmpSwp {
        /// Remote 8-byte location.
        remote: Remote,
        /// Value to compare with.
        compare: u64,
        /// Value to store when equal.
        swap: u64,
    },
    /// 64-bit fetch and add at `remote`; the original value lands in the scatter list.
    AtomicFetchAdd {
        /// Remote 8-byte location.
        remote: Remote,
        /// Value to add.
        add: u64,
    },
    /// ATOMIC WRITE of the 8 bytes of the gather list to `remote`.
    AtomicWrite(Remote),
    /// FLUSH of `len` bytes at `remote` (or the whole region with selectivity 1).
    Flush {
        /// Remote range start.
        remote: Remote,
        /// Range length.
        len: u32,
        /// Placement type bits: 1 global visibility, 2 persistence.
        placement_type: u8,
        /// 0 = range, 1 = whole memory region.
        selectivity: u8,
    },
    /// Invalidate a local key: a region, or a type 2 window bound through this QP.
    LocalInv(Rkey),
    /// Bind a memory window (BIND_MW; also how `ibv_bind_mw` binds type 1 windows).
    BindMw(crate::memory::MwBind),
    /// Fast-register region `mr` under `new_key` with `access` (kernel verbs' IB_WR_REG_MR).
    RegMr {
        /// The region's current key.
        mr: u32,
        /// Its key from now on (same index).
        new_key: u32,
        /// Access rights.
        access: Access,
    },
}

impl WrOpcode {
    /// The completion opcode a successful request reports.
    pub const fn wc_opcode(&self) -> WcOpcode {
        match self {
            WrOpcode::RdmaWrite(_) | WrOpcode::RdmaWriteWithImm(..) => WcOpcode::RdmaWrite,
            WrOpcode::Send | WrOpcode::SendWithImm(_) | WrOpcode::SendWithInv(_) => WcOpcode::Send,
            WrOpcode::RdmaRead(_) => WcOpcode::RdmaRead,
            WrOpcode::AtomicCmpSwp { .. } => WcOpcode::CompSwap,
            WrOpcode::AtomicFetchAdd { .. } => WcOpcode::FetchAdd,
            WrOpcode::AtomicWrite(_) => WcOpcode::AtomicWrite,
            WrOpcode::Flush { .. } => WcOpcode::Flush,
            WrOpcode::LocalInv(_) => WcOpcode::LocalInv,
            WrOpcode::BindMw(_) => WcOpcode::BindMw,
            WrOpcode::RegMr { .. } => WcOpcode::RegMr,
        }
    }
    /// Whether the request needs a response with data or a result (READ, atomics, FLUSH,
    /// ATOMIC WRITE): these count against `max_rd_atomic` and are what a fence waits for.
    pub const fn is_read_or_atomic(&self) -> bool {
        matches!(
            self,
            WrOpcode::RdmaRead(_)
                | WrOpcode::AtomicCmpSwp { .. }
                | WrOpcode::AtomicFetchAdd { .. }
                | WrOpcode::AtomicWrite(_)
                | WrOpcode::Flush { .. }
        )
    }
}

/// Where a UD send goes (`ibv_send_wr.wr.ud`): address handle, remote QP and Q_Key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdDest {
    /// Address handle: our GID, the peer's GID, hop limit, traffic class, flow label.
    pub ah: crate::qp::AddressVector,
    /// Destination QP number.
    pub remote_qpn: rxe_wire::Qpn,
    /// Q_Key to send; one with bit 31 set means "use the QP's own Q_Key" (IBTA 10.2.4).
    pub remote_qkey: rxe_wire::QKey,
}

/// A send work request (`ibv_send_wr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendWr {
    /// Caller's identifier, returned in the completion.
    pub wr_id: u64,
    /// Operation.
    pub opcode: WrOpcode,
    /// Gather list (SEND/WRITE data), or scatter list (READ data, atomic result).
    pub sg_list: SgList,
    /// Flags.
    pub flags: SendFlags,
    /// UD only: where the datagram goes.
    pub ud: Option<UdDest>,
}

impl SendWr {
    /// Makes a request with one SGE (or none when `sge` is `None`).
    pub fn new(wr_id: u64, opcode: WrOpcode, sge: Option<Sge>, flags: SendFlags) -> SendWr {
        let mut sg_list = SgList::new();
        if let Some(s) = sge {
            // One entry always fits.
            let _ = sg_list.push(s);
        }
        SendWr {
            wr_id,
            opcode,
            sg_list,
            flags,
            ud: None,
        }
    }
    /// Total length of the scatter/gather list.
    pub fn total_len(&self) -> u64 {
        self.sg_list.iter().map(|s| u64::from(s.length)).sum()
    }
}

/// A receive work request (`ibv_recv_wr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecvWr {
    /// Caller's identifier, returned in the completion.
    pub wr_id: u64,
    /// Scatter list for the incoming SEND.
    pub sg_list: SgList,
}

impl RecvWr {
    /// Makes a request with one SGE.
    pub fn new(wr_id: u64, sge: Sge) -> RecvWr {
        let mut sg_list = SgList::new();
        let _ = sg_list.push(sge);
        RecvWr { wr_id, sg_list }
    }
}

/// Completion status (`enum ibv_wc_status`, same numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum WcStatus {
    /// The operation completed.
    Success = 0,
    /// Local length error: a message did not fit the buffer, or exceeded the port's limit.
    LocLenErr = 1,
    /// Local QP operation error (an invalid request for the QP, e.g. too many SGEs).
    LocQpOpErr = 2,
    /// Local protection error: a local key, PD or access right check failed.
    LocProtErr = 4,
    /// Flushed: the QP was in the error state.
    WrFlushErr = 5,
    /// Memory window bind error.
    MwBindErr = 6,
    /// Unexpected response opcode from the responder.
    BadRespErr = 7,
    /// Local access error on data the responder sent (READ response, atomic result).
    LocAccessErr = 8,
    /// The responder NAKed with Invalid Request.
    RemInvReqErr = 9,
    /// The responder NAKed with Remote Access Error.
    RemAccessErr = 10,
    /// The responder NAKed with Remote Operational Error.
    RemOpErr = 11,
    /// Transport retries exhausted (`retry_cnt`).
    RetryExcErr = 12,
    /// RNR retries exhausted (`rnr_retry`).
    RnrRetryExcErr = 13,
    /// The responder NAKed with Invalid RD Request.
    RemInvRdReqErr = 15,
    /// Fatal error.
    FatalErr = 19,
    /// General error.
    GeneralErr = 21,
}

impl WcStatus {
    /// libibverbs' `ibv_wc_status_str` text.
    pub const fn as_str(self) -> &'static str {
        match self {
            WcStatus::Success => "success",
            WcStatus::LocLenErr => "local length error",
            WcStatus::LocQpOpErr => "local QP operation error",
            WcStatus::LocProtErr => "local protection error",
            WcStatus::WrFlushErr => "Work Request Flushed Error",
            WcStatus::MwBindErr => "memory management operation error",
            WcStatus::BadRespErr => "bad response error",
            WcStatus::LocAccessErr => "local access error",
            WcStatus::RemInvReqErr => "remote invalid request error",
            WcStatus::RemAccessErr => "remote access error",
            WcStatus::RemOpErr => "remote operation error",
            WcStatus::RetryExcErr => "transport retry counter exceeded",
            WcStatus::RnrRetryExcErr => "RNR retry counter exceeded",
            WcStatus::RemInvRdReqErr => "remote invalid RD request",
            WcStatus::FatalErr => "fatal error",
            WcStatus::GeneralErr => "general error",
        }
    }
}

impl fmt::Display for WcStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Completion opcode (`enum ibv_wc_opcode`, same numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum WcOpcode {
    /// SEND (any flavour).
    Send = 0,
    /// RDMA WRITE (any flavour).
    RdmaWrite = 1,
    /// RDMA READ.
    RdmaRead = 2,
    /// COMPARE & SWAP.
    CompSwap = 3,
    /// FETCH & ADD.
    FetchAdd = 4,
    /// Memory window bind.
    BindMw = 5,
    /// Local invalidate.
    LocalInv = 6,
    /// FLUSH.
    Flush = 8,
    /// ATOMIC WRITE.
    AtomicWrite = 9,
    /// Fast registration (kernel verbs' `IB_WC_REG_MR`, 10 in current kernels).
    RegMr = 10,
    /// A received SEND.
    Recv = 128,
    /// A received RDMA WRITE with immediate data.
    RecvRdmaWithImm = 129,
}

bitflags! {
    /// Completion flags (`IBV_WC_*` flags).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct WcFlags: u32 {
        /// A GRH is present (UD).
        const GRH = 1;
        /// `imm_data` is valid.
        const WITH_IMM = 1 << 1;
        /// `invalidated_rkey` is valid.
        const WITH_INV = 1 << 3;
        /// The message that completed this receive asked for a solicited event (its last
        /// packet had the BTH SE bit). Not a verbs flag (verbs keeps this inside the provider);
        /// it is what [`Device::req_notify_cq`](crate::device::Device::req_notify_cq) with
        /// `solicited_only` waits for.
        const SOLICITED = 1 << 31;
    }
}

/// A work completion (`ibv_wc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WorkCompletion {
    /// The work request's identifier.
    pub wr_id: u64,
    /// Status.
    pub status: WcStatus,
    /// Opcode (meaningful on success, as in verbs).
    pub opcode: WcOpcode,
    /// Bytes received (receive completions) or transferred (READ).
    pub byte_len: u32,
    /// Immediate data, when `wc_flags` has `WITH_IMM`.
    pub imm_data: Option<ImmDt>,
    /// The rkey a SEND with Invalidate invalidated, when `wc_flags` has `WITH_INV`.
    pub invalidated_rkey: Option<Rkey>,
    /// Local QP number.
    pub qp_num: u32,
    /// Source QP (receive completions).
    pub src_qp: u32,
    /// Flags.
    pub wc_flags: WcFlags,
}
