//! The verbs: protection domains, memory regions over the caller's memory, completion queues,
//! shared receive queues, address handles, QPs and their state, posting work and polling
//! completions. Numbers (opcodes, statuses, flags, attribute masks, states) are libibverbs'.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use core::ffi::{c_int, c_void};

use rxe_kernel::port::Port;
use rxe_transport::device::{AhId, CqId, QpInit, RcConnect, SrqId};
use rxe_transport::{
    Access, AddressVector, Mtu, MwBind, MwType, Pd, QpAttr, QpState, QpType, RecvWr, Remote,
    SendFlags, SendWr, SgList, Sge, UdDest, WcFlags, WorkCompletion, WrOpcode,
};
use rxe_wire::{ImmDt, Psn, QKey, Qpn, Rkey};

use crate::caller_memory::CallerRegion;
use crate::device::{put, rxe_device, with_dev};
use crate::error::{device_err as err, inval, *};
use crate::netdev::{rxe_gid, CNetDev};

/// A protection domain.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct rxe_pd {
    /// Its number.
    pub handle: u32,
}

/// A completion queue.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct rxe_cq {
    /// Its number.
    pub handle: u32,
}

/// A shared receive queue; handle 0 is "none" where an SRQ is optional.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct rxe_srq {
    /// Its number (from 1).
    pub handle: u32,
}

/// An address handle.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct rxe_ah {
    /// Its number (from 1).
    pub handle: u32,
}

/// A queue pair.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct rxe_qp {
    /// Its QP number (24 bits; the first is 0x11, as Linux rxe).
    pub qp_num: u32,
}

/// A memory region: its keys and the range it covers.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct rxe_mr {
    /// Local key (work requests name the region with it).
    pub lkey: u32,
    /// Remote key (peers name the region with it; the same value, as rxe).
    pub rkey: u32,
    /// Address of the first byte (the caller's pointer: iova = virtual address, as verbs).
    pub addr: u64,
    /// Bytes covered.
    pub length: u64,
}

/// Local write access (receive buffers, READ and atomic results).
pub const RXE_ACCESS_LOCAL_WRITE: u32 = 1;
/// Peers may RDMA WRITE.
pub const RXE_ACCESS_REMOTE_WRITE: u32 = 2;
/// Peers may RDMA READ.
pub const RXE_ACCESS_REMOTE_READ: u32 = 4;
/// Peers may run atomics.
pub const RXE_ACCESS_REMOTE_ATOMIC: u32 = 8;
/// Memory windows may be bound to the region.
pub const RXE_ACCESS_MW_BIND: u32 = 16;
/// Peers may FLUSH the region to global visibility.
pub const RXE_ACCESS_FLUSH_GLOBAL: u32 = 256;
/// Peers may FLUSH the region to persistence.
pub const RXE_ACCESS_FLUSH_PERSISTENT: u32 = 512;

/// Memory window type 1 (bound with a BIND_MW request too, here; rebindable).
pub const RXE_MW_TYPE_1: c_int = 1;
/// Memory window type 2 (2B): bound through one QP, invalidated before it is bound again.
pub const RXE_MW_TYPE_2: c_int = 2;

/// Reliable connection.
pub const RXE_QPT_RC: c_int = 2;
/// Unreliable connection.
pub const RXE_QPT_UC: c_int = 3;
/// Unreliable datagram.
pub const RXE_QPT_UD: c_int = 4;

/// QP state RESET.
pub const RXE_QPS_RESET: c_int = 0;
/// QP state INIT.
pub const RXE_QPS_INIT: c_int = 1;
/// QP state RTR (ready to receive).
pub const RXE_QPS_RTR: c_int = 2;
/// QP state RTS (ready to send).
pub const RXE_QPS_RTS: c_int = 3;
/// QP state SQD (send queue drained).
pub const RXE_QPS_SQD: c_int = 4;
/// QP state SQE (send queue error).
pub const RXE_QPS_SQE: c_int = 5;
/// QP state ERR.
pub const RXE_QPS_ERR: c_int = 6;

/// MTU 256 (`IBV_MTU_256`).
pub const RXE_MTU_256: c_int = 1;
/// MTU 512.
pub const RXE_MTU_512: c_int = 2;
/// MTU 1024.
pub const RXE_MTU_1024: c_int = 3;
/// MTU 2048.
pub const RXE_MTU_2048: c_int = 4;
/// MTU 4096.
pub const RXE_MTU_4096: c_int = 5;

/// `rxe_qp_attr.qp_state` is set.
pub const RXE_QP_STATE: c_int = 1;
/// `cur_qp_state` is set.
pub const RXE_QP_CUR_STATE: c_int = 1 << 1;
/// `en_sqd_async_notify` is set.
pub const RXE_QP_EN_SQD_ASYNC_NOTIFY: c_int = 1 << 2;
/// `qp_access_flags` is set.
pub const RXE_QP_ACCESS_FLAGS: c_int = 1 << 3;
/// `pkey_index` is set.
pub const RXE_QP_PKEY_INDEX: c_int = 1 << 4;
/// `port_num` is set.
pub const RXE_QP_PORT: c_int = 1 << 5;
/// `qkey` is set.
pub const RXE_QP_QKEY: c_int = 1 << 6;
/// `ah_attr` is set.
pub const RXE_QP_AV: c_int = 1 << 7;
/// `path_mtu` is set.
pub const RXE_QP_PATH_MTU: c_int = 1 << 8;
/// `timeout` is set.
pub const RXE_QP_TIMEOUT: c_int = 1 << 9;
/// `retry_cnt` is set.
pub const RXE_QP_RETRY_CNT: c_int = 1 << 10;
/// `rnr_retry` is set.
pub const RXE_QP_RNR_RETRY: c_int = 1 << 11;
/// `rq_psn` is set.
pub const RXE_QP_RQ_PSN: c_int = 1 << 12;
/// `max_rd_atomic` is set.
pub const RXE_QP_MAX_QP_RD_ATOMIC: c_int = 1 << 13;
/// `min_rnr_timer` is set.
pub const RXE_QP_MIN_RNR_TIMER: c_int = 1 << 15;
/// `sq_psn` is set.
pub const RXE_QP_SQ_PSN: c_int = 1 << 16;
/// `max_dest_rd_atomic` is set.
pub const RXE_QP_MAX_DEST_RD_ATOMIC: c_int = 1 << 17;
/// `dest_qp_num` is set.
pub const RXE_QP_DEST_QPN: c_int = 1 << 20;

/// RDMA WRITE.
pub const RXE_WR_RDMA_WRITE: u32 = 0;
/// RDMA WRITE with immediate data.
pub const RXE_WR_RDMA_WRITE_WITH_IMM: u32 = 1;
/// SEND.
pub const RXE_WR_SEND: u32 = 2;
/// SEND with immediate data.
pub const RXE_WR_SEND_WITH_IMM: u32 = 3;
/// RDMA READ.
pub const RXE_WR_RDMA_READ: u32 = 4;
/// Atomic compare and swap (8 bytes, 8-byte aligned).
pub const RXE_WR_ATOMIC_CMP_AND_SWP: u32 = 5;
/// Atomic fetch and add (8 bytes, 8-byte aligned).
pub const RXE_WR_ATOMIC_FETCH_AND_ADD: u32 = 6;
/// Local invalidate of `invalidate_rkey`.
pub const RXE_WR_LOCAL_INV: u32 = 7;
/// Bind memory window `bind.mw_rkey` (its new rkey `bind.new_rkey`) to a range of a region.
pub const RXE_WR_BIND_MW: u32 = 8;
/// SEND with invalidate of the peer's `invalidate_rkey`.
pub const RXE_WR_SEND_WITH_INV: u32 = 9;
/// FLUSH `flush_len` bytes at `remote_addr` (`flush_type`: 1 global visibility, 2 persistence;
/// `flush_level` 1: the whole region).
pub const RXE_WR_FLUSH: u32 = 14;
/// ATOMIC WRITE of the 8 bytes of the gather list to `remote_addr`.
pub const RXE_WR_ATOMIC_WRITE: u32 = 15;

/// Fence: wait for earlier READs and atomics.
pub const RXE_SEND_FENCE: u32 = 1;
/// Generate a completion on success.
pub const RXE_SEND_SIGNALED: u32 = 2;
/// Set the solicited-event bit.
pub const RXE_SEND_SOLICITED: u32 = 4;
/// Copy the data at post time (at most `max_inline_data` bytes, from a registered region).
pub const RXE_SEND_INLINE: u32 = 8;

/// Completion flag: `imm_data` is valid.
pub const RXE_WC_WITH_IMM: u32 = 2;
/// Completion flag: `invalidated_rkey` is valid.
pub const RXE_WC_WITH_INV: u32 = 8;
/// Completion flag: a GRH area precedes the data (UD receives).
pub const RXE_WC_GRH: u32 = 1;

/// A scatter/gather entry (`ibv_sge`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct rxe_sge {
    /// Address (inside a region registered with `lkey`).
    pub addr: u64,
    /// Bytes.
    pub length: u32,
    /// The region's lkey.
    pub lkey: u32,
}

/// What a BIND_MW request binds (`ibv_mw_bind_info` and the window).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct rxe_bind_info {
    /// The window's current rkey.
    pub mw_rkey: u32,
    /// Its rkey once bound: the same index, a new low byte ([`rxe_inc_rkey`]).
    pub new_rkey: u32,
    /// The region's lkey.
    pub mr_lkey: u32,
    /// `RXE_ACCESS_REMOTE_*` granted through the window.
    pub access: u32,
    /// Range start.
    pub addr: u64,
    /// Range length (0 unbinds a type 1 window).
    pub length: u64,
}

/// A send work request (`ibv_send_wr`, flattened: set the fields the opcode uses).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rxe_send_wr {
    /// Returned in the completion.
    pub wr_id: u64,
    /// An `RXE_WR_*`.
    pub opcode: u32,
    /// `RXE_SEND_*` flags.
    pub send_flags: u32,
    /// The gather list (SEND/WRITE data) or scatter list (READ data, atomic result).
    pub sg_list: *const rxe_sge,
    /// Entries in `sg_list` (at most `max_sge`).
    pub num_sge: u32,
    /// Immediate data (the value; it goes on the wire big-endian).
    pub imm_data: u32,
    /// RDMA and atomic operations: the peer's address.
    pub remote_addr: u64,
    /// RDMA and atomic operations: the peer's rkey.
    pub rkey: u32,
    /// LOCAL_INV and SEND_WITH_INV: the key to invalidate.
    pub invalidate_rkey: u32,
    /// Fetch and add: the addend; compare and swap: the compare value.
    pub compare_add: u64,
    /// Compare and swap: the swap value.
    pub swap: u64,
    /// UD: the address handle.
    pub ah: rxe_ah,
    /// UD: the destination QP.
    pub remote_qpn: u32,
    /// UD: the Q_Key (bit 31 set: the QP's own).
    pub remote_qkey: u32,
    /// BIND_MW: the binding.
    pub bind: rxe_bind_info,
    /// FLUSH: bytes.
    pub flush_len: u32,
    /// FLUSH: placement type (1 global visibility, 2 persistence).
    pub flush_type: u8,
    /// FLUSH: 0 a range, 1 the whole region.
    pub flush_level: u8,
}

/// A receive work request (`ibv_recv_wr`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rxe_recv_wr {
    /// Returned in the completion.
    pub wr_id: u64,
    /// The scatter list.
    pub sg_list: *const rxe_sge,
    /// Entries in `sg_list` (at most `max_sge`).
    pub num_sge: u32,
}

/// A work completion (`ibv_wc`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct rxe_wc {
    /// The work request's `wr_id`.
    pub wr_id: u64,
    /// An `ibv_wc_status` number (0 success, 5 flushed, 10 remote access error, 12 retries
    /// exceeded, ...).
    pub status: u32,
    /// An `ibv_wc_opcode` number (0 SEND, 1 RDMA WRITE, 2 RDMA READ, 3 CMP_AND_SWP, 4
    /// FETCH_AND_ADD, 128 RECV, 129 RECV_RDMA_WITH_IMM).
    pub opcode: u32,
    /// Bytes received (receives) or read.
    pub byte_len: u32,
    /// Immediate data (the value), if `wc_flags` has `RXE_WC_WITH_IMM`.
    pub imm_data: u32,
    /// The invalidated rkey, if `wc_flags` has `RXE_WC_WITH_INV`.
    pub invalidated_rkey: u32,
    /// The local QP.
    pub qp_num: u32,
    /// The sending QP (receives).
    pub src_qp: u32,
    /// `RXE_WC_*` flags.
    pub wc_flags: u32,
}

/// An address vector (`ibv_ah_attr` for RoCEv2): where packets go.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct rxe_ah_attr {
    /// The peer's GID.
    pub dgid: rxe_gid,
    /// Which of our GIDs to send from (`rxe_query_gid`).
    pub sgid_index: u8,
    /// IPv4 TTL / IPv6 hop limit.
    pub hop_limit: u8,
    /// Traffic class (DSCP and ECN).
    pub traffic_class: u8,
    /// IPv6 flow label (20 bits; also picks the UDP source port, as Linux).
    pub flow_label: u32,
}

/// What a new QP is (`ibv_qp_init_attr`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct rxe_qp_init_attr {
    /// `RXE_QPT_RC`, `RXE_QPT_UC` or `RXE_QPT_UD`.
    pub qp_type: c_int,
    /// Its protection domain.
    pub pd: rxe_pd,
    /// Where send completions go.
    pub send_cq: rxe_cq,
    /// Where receive completions go.
    pub recv_cq: rxe_cq,
    /// A shared receive queue to take receive requests from, or handle 0 for its own.
    pub srq: rxe_srq,
}

/// QP attributes for [`rxe_modify_qp`] (`ibv_qp_attr`); the mask says which are set.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct rxe_qp_attr {
    /// The state to move to (`RXE_QPS_*`).
    pub qp_state: c_int,
    /// The state the caller believes the QP is in.
    pub cur_qp_state: c_int,
    /// Path MTU (`RXE_MTU_*`).
    pub path_mtu: c_int,
    /// Q_Key (UD).
    pub qkey: u32,
    /// First PSN expected from the peer.
    pub rq_psn: u32,
    /// First PSN sent.
    pub sq_psn: u32,
    /// The peer's QP number.
    pub dest_qp_num: u32,
    /// `RXE_ACCESS_REMOTE_*` the responder allows.
    pub qp_access_flags: u32,
    /// The peer's address.
    pub ah_attr: rxe_ah_attr,
    /// Partition key index (0).
    pub pkey_index: u16,
    /// Raise an event when the send queue has drained (SQD).
    pub en_sqd_async_notify: u8,
    /// READs/atomics this QP may have outstanding.
    pub max_rd_atomic: u8,
    /// READs/atomics this QP takes from the peer at once.
    pub max_dest_rd_atomic: u8,
    /// RNR NAK timer code the responder sends.
    pub min_rnr_timer: u8,
    /// Port (1).
    pub port_num: u8,
    /// Local ACK timeout exponent (4.096 µs × 2^timeout; 0: none).
    pub timeout: u8,
    /// Transport retries (7: forever, as Linux, unless the link config says otherwise).
    pub retry_cnt: u8,
    /// RNR retries (7: forever).
    pub rnr_retry: u8,
}

/// Connecting an RC QP with parameters exchanged by the host itself ([`rxe_connect_rc`]):
/// RESET → INIT → RTR → RTS in one call. Start from [`rxe_rc_connect_init`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct rxe_rc_connect {
    /// The peer's GID.
    pub dgid: rxe_gid,
    /// The peer's QP.
    pub dest_qp_num: u32,
    /// Our first PSN.
    pub sq_psn: u32,
    /// The peer's first PSN.
    pub rq_psn: u32,
    /// `RXE_ACCESS_REMOTE_*` the peer gets to our memory.
    pub access: u32,
    /// Path MTU (`RXE_MTU_*`).
    pub path_mtu: c_int,
    /// IPv4 TTL / IPv6 hop limit.
    pub hop_limit: u8,
    /// Local ACK timeout exponent.
    pub timeout: u8,
    /// Transport retries.
    pub retry_cnt: u8,
    /// RNR retries.
    pub rnr_retry: u8,
    /// RNR NAK timer code.
    pub min_rnr_timer: u8,
    /// READs/atomics outstanding.
    pub max_rd_atomic: u8,
    /// READs/atomics taken from the peer.
    pub max_dest_rd_atomic: u8,
}

fn access(bits: u32) -> Result<Access, (c_int, String)> {
    Access::from_bits(bits).ok_or_else(|| inval(format!("unknown access bits {bits:#x}")))
}

fn mtu(v: c_int) -> Result<Mtu, (c_int, String)> {
    Ok(match v {
        RXE_MTU_256 => Mtu::M256,
        RXE_MTU_512 => Mtu::M512,
        RXE_MTU_1024 => Mtu::M1024,
        RXE_MTU_2048 => Mtu::M2048,
        RXE_MTU_4096 => Mtu::M4096,
        _ => return Err(inval(format!("path MTU {v} is not an RXE_MTU_*"))),
    })
}

fn qp_state(v: c_int) -> Result<QpState, (c_int, String)> {
    Ok(match v {
        RXE_QPS_RESET => QpState::Reset,
        RXE_QPS_INIT => QpState::Init,
        RXE_QPS_RTR => QpState::Rtr,
        RXE_QPS_RTS => QpState::Rts,
        RXE_QPS_SQD => QpState::Sqd,
        RXE_QPS_SQE => QpState::Sqe,
        RXE_QPS_ERR => QpState::Err,
        _ => return Err(inval(format!("QP state {v} is not an RXE_QPS_*"))),
    })
}

fn state_code(s: QpState) -> c_int {
    match s {
        QpState::Reset => RXE_QPS_RESET,
        QpState::Init => RXE_QPS_INIT,
        QpState::Rtr => RXE_QPS_RTR,
        QpState::Rts => RXE_QPS_RTS,
        QpState::Sqd => RXE_QPS_SQD,
        QpState::Sqe => RXE_QPS_SQE,
        QpState::Err => RXE_QPS_ERR,
    }
}

fn psn(v: u32, what: &str) -> Result<Psn, (c_int, String)> {
    Psn::try_new(v).map_err(|_| inval(format!("{what} {v:#x} is wider than 24 bits")))
}

pub(crate) fn qpn(v: u32, what: &str) -> Result<Qpn, (c_int, String)> {
    Qpn::try_new(v).map_err(|_| inval(format!("{what} {v:#x} is wider than 24 bits")))
}

/// Reads a C array of SGEs into a list.
fn sg_list(list: *const rxe_sge, n: u32) -> Result<SgList, (c_int, String)> {
    let mut out = SgList::new();
    if n == 0 {
        return Ok(out);
    }
    if list.is_null() {
        return Err(inval("sg_list is NULL with num_sge > 0"));
    }
    if n as usize > out.capacity() {
        return Err((RXE_ERR_WR, format!("{n} SGEs; at most {}", out.capacity())));
    }
    // SAFETY: the caller passes `n` readable entries (header contract).
    let s = unsafe { core::slice::from_raw_parts(list, n as usize) };
    for e in s {
        let _ = out.push(Sge {
            addr: e.addr,
            length: e.length,
            lkey: e.lkey,
        });
    }
    Ok(out)
}

/// A receive request from C's.
fn recv_wr(wr: Option<&rxe_recv_wr>) -> Result<RecvWr, (c_int, String)> {
    let w = wr.ok_or_else(|| inval("wr is NULL"))?;
    Ok(RecvWr {
        wr_id: w.wr_id,
        sg_list: sg_list(w.sg_list, w.num_sge)?,
    })
}

/// The source GID at `index` of the port's table.
fn sgid(p: &Port<CNetDev>, index: u8) -> Result<core::net::IpAddr, (c_int, String)> {
    let gids = p.gids();
    let g = gids
        .get(usize::from(index))
        .ok_or((RXE_ERR_NOENT, format!("no GID {index}")))?;
    Ok(rxe_gid { raw: g.octets() }.to_ip())
}

fn av(p: &Port<CNetDev>, a: &rxe_ah_attr) -> Result<AddressVector, (c_int, String)> {
    Ok(AddressVector {
        sgid: sgid(p, a.sgid_index)?,
        dgid: a.dgid.to_ip(),
        hop_limit: a.hop_limit,
        traffic_class: a.traffic_class,
        flow_label: a.flow_label & 0xf_ffff,
        udp_sport: None,
    })
}

/// Allocates a protection domain (`ibv_alloc_pd`).
///
/// # Safety
/// `d` is a live device; `pd` writable.
#[no_mangle]
pub unsafe extern "C" fn rxe_alloc_pd(d: *mut rxe_device, pd: *mut rxe_pd) -> c_int {
    with_dev(d, |p| {
        let v = p.core().alloc_pd().map_err(err)?;
        put(pd, rxe_pd { handle: v.0 }, "pd")?;
        Ok(RXE_OK)
    })
}

/// Frees a protection domain; `RXE_ERR_BUSY` while regions, QPs, SRQs or AHs are in it.
///
/// # Safety
/// `d` is a live device.
#[no_mangle]
pub unsafe extern "C" fn rxe_dealloc_pd(d: *mut rxe_device, pd: rxe_pd) -> c_int {
    with_dev(d, |p| {
        p.core().dealloc_pd(Pd(pd.handle)).map_err(err)?;
        Ok(RXE_OK)
    })
}

/// Registers the caller's `len` bytes at `addr` (`ibv_reg_mr`): peers and work requests name
/// them by their virtual addresses. `access` is `RXE_ACCESS_*` bits.
///
/// # Safety
/// `d` is a live device; `mr` writable. `addr..addr+len` stays allocated until the region is
/// deregistered or the device deleted, and is left alone while the device may use it (between
/// posting a work request on it, or handing its rkey to a peer, and the completion).
#[no_mangle]
pub unsafe extern "C" fn rxe_reg_mr(
    d: *mut rxe_device,
    pd: rxe_pd,
    addr: *mut c_void,
    len: usize,
    access_flags: u32,
    mr: *mut rxe_mr,
) -> c_int {
    with_dev(d, |p| {
        let a = access(access_flags)?;
        if mr.is_null() {
            return Err(inval("mr is NULL"));
        }
        // SAFETY: the caller's contract above.
        let region = unsafe { CallerRegion::new(addr.cast(), len) }
            .ok_or_else(|| inval("addr is NULL or len is 0"))?;
        let keys = p
            .core()
            .reg_mr_with(Pd(pd.handle), addr as u64, Box::new(region), a)
            .map_err(err)?;
        let v = rxe_mr {
            lkey: keys.lkey,
            rkey: keys.rkey,
            addr: keys.addr,
            length: keys.length,
        };
        put(mr, v, "mr")?;
        Ok(RXE_OK)
    })
}

/// Deregisters a region (`ibv_dereg_mr`); its memory is the caller's again.
///
/// # Safety
/// `d` is a live device.
#[no_mangle]
pub unsafe extern "C" fn rxe_dereg_mr(d: *mut rxe_device, mr: rxe_mr) -> c_int {
    with_dev(d, |p| {
        p.core().dereg_mr(mr.lkey).map_err(err)?;
        Ok(RXE_OK)
    })
}

/// Allocates an unbound memory window in `pd` (`ibv_alloc_mw`) of `mw_type` (`RXE_MW_TYPE_1`
/// or `_2`); `*rkey` gets its rkey. Bind it with a `RXE_WR_BIND_MW` request.
///
/// # Safety
/// `d` is a live device; `rkey` writable.
#[no_mangle]
pub unsafe extern "C" fn rxe_alloc_mw(
    d: *mut rxe_device,
    pd: rxe_pd,
    mw_type: c_int,
    rkey: *mut u32,
) -> c_int {
    with_dev(d, |p| {
        let t = match mw_type {
            RXE_MW_TYPE_1 => MwType::Type1,
            RXE_MW_TYPE_2 => MwType::Type2,
            t => return Err(inval(format!("window type {t} is not RXE_MW_TYPE_1 or _2"))),
        };
        let key = p.core().alloc_mw(Pd(pd.handle), t).map_err(err)?;
        put(rkey, key, "rkey")?;
        Ok(RXE_OK)
    })
}

/// Frees a memory window (`ibv_dealloc_mw`), named by its current rkey (after a bind, the new
/// one).
///
/// # Safety
/// `d` is a live device.
#[no_mangle]
pub unsafe extern "C" fn rxe_dealloc_mw(d: *mut rxe_device, rkey: u32) -> c_int {
    with_dev(d, |p| {
        p.core().dereg_mr(rkey).map_err(err)?;
        Ok(RXE_OK)
    })
}

/// The rkey with its low (key) byte advanced, as `ibv_inc_rkey`: the new rkey of a window being
/// bound again.
#[no_mangle]
pub extern "C" fn rxe_inc_rkey(rkey: u32) -> u32 {
    (rkey & !0xff) | ((rkey.wrapping_add(1)) & 0xff)
}

/// Creates a completion queue of `cqe` entries (`ibv_create_cq`); completions past that are
/// dropped and counted (`cq_overflow`).
///
/// # Safety
/// `d` is a live device; `cq` writable.
#[no_mangle]
pub unsafe extern "C" fn rxe_create_cq(d: *mut rxe_device, cqe: u32, cq: *mut rxe_cq) -> c_int {
    with_dev(d, |p| {
        let v = p.core().create_cq(cqe as usize).map_err(err)?;
        put(cq, rxe_cq { handle: v.0 }, "cq")?;
        Ok(RXE_OK)
    })
}

/// Destroys a completion queue; `RXE_ERR_BUSY` while a QP uses it.
///
/// # Safety
/// `d` is a live device.
#[no_mangle]
pub unsafe extern "C" fn rxe_destroy_cq(d: *mut rxe_device, cq: rxe_cq) -> c_int {
    with_dev(d, |p| {
        p.core().destroy_cq(CqId(cq.handle)).map_err(err)?;
        Ok(RXE_OK)
    })
}

fn wc(w: &WorkCompletion) -> rxe_wc {
    rxe_wc {
        wr_id: w.wr_id,
        status: w.status as u32,
        opcode: w.opcode as u32,
        byte_len: w.byte_len,
        imm_data: w.imm_data.map_or(0, |i| i.as_be_u32()),
        invalidated_rkey: w.invalidated_rkey.map_or(0, |k| k.0),
        qp_num: w.qp_num,
        src_qp: w.src_qp,
        wc_flags: (w.wc_flags & (WcFlags::GRH | WcFlags::WITH_IMM | WcFlags::WITH_INV)).bits(),
    }
}

/// Takes up to `num_entries` completions into `wc` (`ibv_poll_cq`); returns how many.
///
/// # Safety
/// `d` is a live device; `wc` writable for `num_entries` entries.
#[no_mangle]
pub unsafe extern "C" fn rxe_poll_cq(
    d: *mut rxe_device,
    cq: rxe_cq,
    num_entries: c_int,
    wcs: *mut rxe_wc,
) -> c_int {
    with_dev(d, |p| {
        let n = usize::try_from(num_entries).map_err(|_| inval("num_entries < 0"))?;
        if wcs.is_null() && n > 0 {
            return Err(inval("wc is NULL"));
        }
        let id = CqId(cq.handle);
        if !p.core().cq_exists(id) {
            return Err((RXE_ERR_NOENT, format!("no CQ {}", cq.handle)));
        }
        let mut got = 0;
        while got < n {
            let Some(w) = p.core().poll_cq(id) else { break };
            // SAFETY: `got < n` entries the caller made writable.
            unsafe { wcs.add(got).write(wc(&w)) };
            got += 1;
        }
        Ok(got as c_int)
    })
}

/// Arms a CQ's notification (`ibv_req_notify_cq`): the next completion (with `solicited_only`,
/// the next solicited or error completion) makes [`rxe_get_cq_event`] return it once.
///
/// # Safety
/// `d` is a live device.
#[no_mangle]
pub unsafe extern "C" fn rxe_req_notify_cq(
    d: *mut rxe_device,
    cq: rxe_cq,
    solicited_only: c_int,
) -> c_int {
    with_dev(d, |p| {
        p.core()
            .req_notify_cq(CqId(cq.handle), solicited_only != 0)
            .map_err(err)?;
        Ok(RXE_OK)
    })
}

/// Takes the next CQ whose armed notification fired (`ibv_get_cq_event`): returns 1 and sets
/// `*cq`, or 0 if none fired.
///
/// # Safety
/// `d` is a live device; `cq` writable.
#[no_mangle]
pub unsafe extern "C" fn rxe_get_cq_event(d: *mut rxe_device, cq: *mut rxe_cq) -> c_int {
    with_dev(d, |p| match p.core().poll_cq_event() {
        Some(c) => {
            put(cq, rxe_cq { handle: c.0 }, "cq")?;
            Ok(1)
        }
        None => Ok(0),
    })
}

/// Creates a shared receive queue in `pd` (`ibv_create_srq`), of `max_srq_wr` requests.
///
/// # Safety
/// `d` is a live device; `srq` writable.
#[no_mangle]
pub unsafe extern "C" fn rxe_create_srq(
    d: *mut rxe_device,
    pd: rxe_pd,
    srq: *mut rxe_srq,
) -> c_int {
    with_dev(d, |p| {
        let v = p.core().create_srq(Pd(pd.handle)).map_err(err)?;
        put(srq, rxe_srq { handle: v.0 }, "srq")?;
        Ok(RXE_OK)
    })
}

/// Destroys a shared receive queue; `RXE_ERR_BUSY` while a QP uses it.
///
/// # Safety
/// `d` is a live device.
#[no_mangle]
pub unsafe extern "C" fn rxe_destroy_srq(d: *mut rxe_device, srq: rxe_srq) -> c_int {
    with_dev(d, |p| {
        p.core().destroy_srq(SrqId(srq.handle)).map_err(err)?;
        Ok(RXE_OK)
    })
}

/// Posts a receive request to a shared receive queue (`ibv_post_srq_recv`).
///
/// # Safety
/// `d` is a live device; `wr` points to a request whose `sg_list` has `num_sge` entries.
#[no_mangle]
pub unsafe extern "C" fn rxe_post_srq_recv(
    d: *mut rxe_device,
    srq: rxe_srq,
    wr: *const rxe_recv_wr,
) -> c_int {
    with_dev(d, |p| {
        // SAFETY: the caller's contract above.
        let r = recv_wr(unsafe { wr.as_ref() })?;
        p.core().post_srq_recv(SrqId(srq.handle), r).map_err(err)?;
        Ok(RXE_OK)
    })
}

/// Arms an SRQ's limit (`ibv_modify_srq` with `IBV_SRQ_LIMIT`; 0 disarms): when fewer than
/// `limit` requests remain, `RXE_EVENT_SRQ_LIMIT_REACHED` is raised once.
///
/// # Safety
/// `d` is a live device.
#[no_mangle]
pub unsafe extern "C" fn rxe_modify_srq_limit(
    d: *mut rxe_device,
    srq: rxe_srq,
    limit: u32,
) -> c_int {
    with_dev(d, |p| {
        p.core()
            .arm_srq_limit(SrqId(srq.handle), limit)
            .map_err(err)?;
        Ok(RXE_OK)
    })
}

/// Reads how many requests an SRQ holds and its armed limit (`ibv_query_srq`).
///
/// # Safety
/// `d` is a live device; `queued` and `limit` writable.
#[no_mangle]
pub unsafe extern "C" fn rxe_query_srq(
    d: *mut rxe_device,
    srq: rxe_srq,
    queued: *mut u32,
    limit: *mut u32,
) -> c_int {
    with_dev(d, |p| {
        let (n, l) = p.core().srq_len(SrqId(srq.handle)).map_err(err)?;
        put(queued, n as u32, "queued")?;
        put(limit, l, "limit")?;
        Ok(RXE_OK)
    })
}

/// Creates an address handle in `pd` (`ibv_create_ah`) for UD sends.
///
/// # Safety
/// `d` is a live device; `attr` readable; `ah` writable.
#[no_mangle]
pub unsafe extern "C" fn rxe_create_ah(
    d: *mut rxe_device,
    pd: rxe_pd,
    attr: *const rxe_ah_attr,
    ah: *mut rxe_ah,
) -> c_int {
    with_dev(d, |p| {
        // SAFETY: the caller's contract above.
        let a = unsafe { attr.as_ref() }.ok_or_else(|| inval("attr is NULL"))?;
        let v = av(p, a)?;
        let id = p.core().create_ah(Pd(pd.handle), v).map_err(err)?;
        put(ah, rxe_ah { handle: id.0 }, "ah")?;
        Ok(RXE_OK)
    })
}

/// Destroys an address handle.
///
/// # Safety
/// `d` is a live device.
#[no_mangle]
pub unsafe extern "C" fn rxe_destroy_ah(d: *mut rxe_device, ah: rxe_ah) -> c_int {
    with_dev(d, |p| {
        p.core().destroy_ah(AhId(ah.handle)).map_err(err)?;
        Ok(RXE_OK)
    })
}

/// Creates a QP in RESET (`ibv_create_qp`); it holds `max_qp_wr` work requests each way.
///
/// # Safety
/// `d` is a live device; `attr` readable; `qp` writable.
#[no_mangle]
pub unsafe extern "C" fn rxe_create_qp(
    d: *mut rxe_device,
    attr: *const rxe_qp_init_attr,
    qp: *mut rxe_qp,
) -> c_int {
    with_dev(d, |p| {
        // SAFETY: the caller's contract above.
        let a = unsafe { attr.as_ref() }.ok_or_else(|| inval("attr is NULL"))?;
        let qp_type = match a.qp_type {
            RXE_QPT_RC => QpType::Rc,
            RXE_QPT_UC => QpType::Uc,
            RXE_QPT_UD => QpType::Ud,
            t => return Err(inval(format!("QP type {t} is not RXE_QPT_RC, _UC or _UD"))),
        };
        let init = QpInit {
            qp_type,
            pd: Pd(a.pd.handle),
            send_cq: CqId(a.send_cq.handle),
            recv_cq: CqId(a.recv_cq.handle),
            srq: (a.srq.handle != 0).then_some(SrqId(a.srq.handle)),
        };
        let n = p.core().create_qp(&init).map_err(err)?;
        put(qp, rxe_qp { qp_num: n.value() }, "qp")?;
        Ok(RXE_OK)
    })
}

/// Destroys a QP; its completions not yet polled are dropped.
///
/// # Safety
/// `d` is a live device.
#[no_mangle]
pub unsafe extern "C" fn rxe_destroy_qp(d: *mut rxe_device, qp: rxe_qp) -> c_int {
    with_dev(d, |p| {
        p.core()
            .destroy_qp(qpn(qp.qp_num, "qp_num")?)
            .map_err(err)?;
        Ok(RXE_OK)
    })
}

/// Modifies a QP (`ibv_modify_qp`): the attributes `attr_mask` (`RXE_QP_*` bits) names, with
/// the IBTA's rules on which a transition requires and allows.
///
/// # Safety
/// `d` is a live device; `attr` readable.
#[no_mangle]
pub unsafe extern "C" fn rxe_modify_qp(
    d: *mut rxe_device,
    qp: rxe_qp,
    attr: *const rxe_qp_attr,
    attr_mask: c_int,
) -> c_int {
    with_dev(d, |p| {
        // SAFETY: the caller's contract above.
        let a = unsafe { attr.as_ref() }.ok_or_else(|| inval("attr is NULL"))?;
        let known = RXE_QP_STATE
            | RXE_QP_CUR_STATE
            | RXE_QP_EN_SQD_ASYNC_NOTIFY
            | RXE_QP_ACCESS_FLAGS
            | RXE_QP_PKEY_INDEX
            | RXE_QP_PORT
            | RXE_QP_QKEY
            | RXE_QP_AV
            | RXE_QP_PATH_MTU
            | RXE_QP_TIMEOUT
            | RXE_QP_RETRY_CNT
            | RXE_QP_RNR_RETRY
            | RXE_QP_RQ_PSN
            | RXE_QP_MAX_QP_RD_ATOMIC
            | RXE_QP_MIN_RNR_TIMER
            | RXE_QP_SQ_PSN
            | RXE_QP_MAX_DEST_RD_ATOMIC
            | RXE_QP_DEST_QPN;
        if attr_mask & !known != 0 {
            return Err(inval(format!(
                "unsupported mask bits {:#x}",
                attr_mask & !known
            )));
        }
        let has = |bit: c_int| attr_mask & bit != 0;
        let q = QpAttr {
            state: has(RXE_QP_STATE)
                .then(|| qp_state(a.qp_state))
                .transpose()?,
            cur_state: has(RXE_QP_CUR_STATE)
                .then(|| qp_state(a.cur_qp_state))
                .transpose()?,
            en_sqd_async_notify: has(RXE_QP_EN_SQD_ASYNC_NOTIFY)
                .then_some(a.en_sqd_async_notify != 0),
            access: has(RXE_QP_ACCESS_FLAGS)
                .then(|| access(a.qp_access_flags))
                .transpose()?,
            pkey_index: has(RXE_QP_PKEY_INDEX).then_some(a.pkey_index),
            port: has(RXE_QP_PORT).then_some(a.port_num),
            qkey: has(RXE_QP_QKEY).then_some(QKey(a.qkey)),
            av: has(RXE_QP_AV).then(|| av(p, &a.ah_attr)).transpose()?,
            path_mtu: has(RXE_QP_PATH_MTU).then(|| mtu(a.path_mtu)).transpose()?,
            timeout: has(RXE_QP_TIMEOUT).then_some(a.timeout),
            retry_cnt: has(RXE_QP_RETRY_CNT).then_some(a.retry_cnt),
            rnr_retry: has(RXE_QP_RNR_RETRY).then_some(a.rnr_retry),
            rq_psn: has(RXE_QP_RQ_PSN)
                .then(|| psn(a.rq_psn, "rq_psn"))
                .transpose()?,
            max_rd_atomic: has(RXE_QP_MAX_QP_RD_ATOMIC).then_some(a.max_rd_atomic),
            min_rnr_timer: has(RXE_QP_MIN_RNR_TIMER).then_some(a.min_rnr_timer),
            sq_psn: has(RXE_QP_SQ_PSN)
                .then(|| psn(a.sq_psn, "sq_psn"))
                .transpose()?,
            max_dest_rd_atomic: has(RXE_QP_MAX_DEST_RD_ATOMIC).then_some(a.max_dest_rd_atomic),
            dest_qp: has(RXE_QP_DEST_QPN)
                .then(|| qpn(a.dest_qp_num, "dest_qp_num"))
                .transpose()?,
        };
        p.core()
            .modify_qp(qpn(qp.qp_num, "qp_num")?, &q)
            .map_err(err)?;
        Ok(RXE_OK)
    })
}

/// Reads a QP's state (`RXE_QPS_*`) into `*state`.
///
/// # Safety
/// `d` is a live device; `state` writable.
#[no_mangle]
pub unsafe extern "C" fn rxe_query_qp_state(
    d: *mut rxe_device,
    qp: rxe_qp,
    state: *mut c_int,
) -> c_int {
    with_dev(d, |p| {
        let n = qpn(qp.qp_num, "qp_num")?;
        let s = p
            .core()
            .qp(n)
            .map(|q| q.state())
            .ok_or((RXE_ERR_NOENT, format!("no QP {:#x}", qp.qp_num)))?;
        put(state, state_code(s), "state")?;
        Ok(RXE_OK)
    })
}

/// Fills `c` with the usual values (those of rdma_cm and perftest): MTU 1024, hop limit 64,
/// timeout 14, 7 retries and RNR retries, RNR timer 12, 4 READs each way, remote READ, WRITE
/// and atomics allowed; the caller sets `dgid`, `dest_qp_num`, `sq_psn` and `rq_psn`.
///
/// # Safety
/// `c` writable.
#[no_mangle]
pub unsafe extern "C" fn rxe_rc_connect_init(c: *mut rxe_rc_connect) -> c_int {
    let any = core::net::IpAddr::V4(core::net::Ipv4Addr::UNSPECIFIED);
    let d = RcConnect::new(any, any, Qpn::new(0), Psn::new(0), Psn::new(0));
    let v = rxe_rc_connect {
        dgid: rxe_gid::default(),
        dest_qp_num: 0,
        sq_psn: 0,
        rq_psn: 0,
        access: d.access.bits(),
        path_mtu: d.mtu as c_int,
        hop_limit: d.hop_limit,
        timeout: d.timeout,
        retry_cnt: d.retry_cnt,
        rnr_retry: d.rnr_retry,
        min_rnr_timer: d.min_rnr_timer,
        max_rd_atomic: d.max_rd_atomic,
        max_dest_rd_atomic: d.max_dest_rd_atomic,
    };
    match put(c, v, "c") {
        Ok(()) => RXE_OK,
        Err((code, _)) => code,
    }
}

/// Connects RC QP `qp` (in RESET or INIT) to a peer whose QP number and PSN the host exchanged
/// itself: the INIT, RTR and RTS `modify_qp` calls in one. Sends from the device's GID.
///
/// # Safety
/// `d` is a live device; `c` readable.
#[no_mangle]
pub unsafe extern "C" fn rxe_connect_rc(
    d: *mut rxe_device,
    qp: rxe_qp,
    c: *const rxe_rc_connect,
) -> c_int {
    with_dev(d, |p| {
        // SAFETY: the caller's contract above.
        let c = unsafe { c.as_ref() }.ok_or_else(|| inval("c is NULL"))?;
        let sgid = p.core().config().gid;
        let rc = RcConnect {
            sgid,
            dgid: c.dgid.to_ip(),
            dest_qp: qpn(c.dest_qp_num, "dest_qp_num")?,
            sq_psn: psn(c.sq_psn, "sq_psn")?,
            rq_psn: psn(c.rq_psn, "rq_psn")?,
            mtu: mtu(c.path_mtu)?,
            hop_limit: c.hop_limit,
            timeout: c.timeout,
            retry_cnt: c.retry_cnt,
            rnr_retry: c.rnr_retry,
            min_rnr_timer: c.min_rnr_timer,
            max_rd_atomic: c.max_rd_atomic,
            max_dest_rd_atomic: c.max_dest_rd_atomic,
            access: access(c.access)?,
        };
        p.core()
            .connect_rc(qpn(qp.qp_num, "qp_num")?, &rc)
            .map_err(err)?;
        Ok(RXE_OK)
    })
}

/// Posts one send work request (`ibv_post_send`). Nothing is transmitted until
/// [`rxe_device_poll`](crate::rxe_device_poll).
///
/// # Safety
/// `d` is a live device; `wr` points to a request whose `sg_list` has `num_sge` entries.
#[no_mangle]
pub unsafe extern "C" fn rxe_post_send(
    d: *mut rxe_device,
    qp: rxe_qp,
    wr: *const rxe_send_wr,
) -> c_int {
    with_dev(d, |p| {
        // SAFETY: the caller's contract above.
        let w = unsafe { wr.as_ref() }.ok_or_else(|| inval("wr is NULL"))?;
        let remote = Remote {
            addr: w.remote_addr,
            rkey: Rkey(w.rkey),
        };
        let opcode = match w.opcode {
            RXE_WR_RDMA_WRITE => WrOpcode::RdmaWrite(remote),
            RXE_WR_RDMA_WRITE_WITH_IMM => {
                WrOpcode::RdmaWriteWithImm(remote, ImmDt::from_be_u32(w.imm_data))
            }
            RXE_WR_SEND => WrOpcode::Send,
            RXE_WR_SEND_WITH_IMM => WrOpcode::SendWithImm(ImmDt::from_be_u32(w.imm_data)),
            RXE_WR_RDMA_READ => WrOpcode::RdmaRead(remote),
            RXE_WR_ATOMIC_CMP_AND_SWP => WrOpcode::AtomicCmpSwp {
                remote,
                compare: w.compare_add,
                swap: w.swap,
            },
            RXE_WR_ATOMIC_FETCH_AND_ADD => WrOpcode::AtomicFetchAdd {
                remote,
                add: w.compare_add,
            },
            RXE_WR_LOCAL_INV => WrOpcode::LocalInv(Rkey(w.invalidate_rkey)),
            RXE_WR_SEND_WITH_INV => WrOpcode::SendWithInv(Rkey(w.invalidate_rkey)),
            RXE_WR_BIND_MW => WrOpcode::BindMw(MwBind {
                mw: w.bind.mw_rkey,
                new_rkey: w.bind.new_rkey,
                mr_lkey: w.bind.mr_lkey,
                addr: w.bind.addr,
                length: w.bind.length,
                access: access(w.bind.access)?,
            }),
            RXE_WR_FLUSH => WrOpcode::Flush {
                remote,
                len: w.flush_len,
                placement_type: w.flush_type,
                selectivity: w.flush_level,
            },
            RXE_WR_ATOMIC_WRITE => WrOpcode::AtomicWrite(remote),
            op => return Err((RXE_ERR_WR, format!("opcode {op} is not supported"))),
        };
        let flags = SendFlags::from_bits(w.send_flags)
            .ok_or_else(|| inval(format!("unknown send flags {:#x}", w.send_flags)))?;
        let n = qpn(qp.qp_num, "qp_num")?;
        let ud = match p.core().qp(n).map(|q| q.qp_type()) {
            Some(QpType::Ud) => Some(UdDest {
                ah: p.core().ah(AhId(w.ah.handle)).map_err(err)?,
                remote_qpn: qpn(w.remote_qpn, "remote_qpn")?,
                remote_qkey: QKey(w.remote_qkey),
            }),
            _ => None,
        };
        let s = SendWr {
            wr_id: w.wr_id,
            opcode,
            sg_list: sg_list(w.sg_list, w.num_sge)?,
            flags,
            ud,
        };
        p.core().post_send(n, s).map_err(err)?;
        Ok(RXE_OK)
    })
}

/// Posts one receive work request (`ibv_post_recv`).
///
/// # Safety
/// `d` is a live device; `wr` points to a request whose `sg_list` has `num_sge` entries.
#[no_mangle]
pub unsafe extern "C" fn rxe_post_recv(
    d: *mut rxe_device,
    qp: rxe_qp,
    wr: *const rxe_recv_wr,
) -> c_int {
    with_dev(d, |p| {
        // SAFETY: the caller's contract above.
        let r = recv_wr(unsafe { wr.as_ref() })?;
        p.core()
            .post_recv(qpn(qp.qp_num, "qp_num")?, r)
            .map_err(err)?;
        Ok(RXE_OK)
    })
}
