//! A Soft-RoCE device on one of the host's netdevs: frames in, time in, frames out through the
//! netdev's callbacks; its attributes, GIDs, counters and asynchronous events.

use alloc::ffi::CString;
use alloc::format;
use alloc::string::String;

use core::ffi::{c_char, c_int};

use rxe_kernel::port::{Port, PortState};
use rxe_transport::cm::CmEvent;
use rxe_transport::device::DeviceEvent;
use rxe_transport::Instant;

use crate::error::*;
use crate::netdev::{rxe_gid, CNetDev};

/// A Soft-RoCE device (one link of a host): from [`rxe_device_get`](crate::rxe_device_get).
pub struct rxe_device {
    _opaque: [u8; 0],
}

/// The device behind a pointer, if not NULL and not inside a callback.
pub(crate) fn port<'a>(d: *mut rxe_device) -> Result<&'a mut Port<CNetDev>, c_int> {
    // SAFETY: a non-NULL device pointer came from rxe_device_get and its link is alive (header
    // contract); it points to the link's boxed Port.
    let p = unsafe { d.cast::<Port<CNetDev>>().as_mut() }.ok_or(RXE_ERR_INVAL)?;
    if p.netdev()
        .state
        .try_borrow()
        .map_or(true, |s| s.in_callback)
    {
        return Err(RXE_ERR_REENTRANT);
    }
    Ok(p)
}

/// Runs `f` on the device; on failure records the detail for [`rxe_device_last_error`].
pub(crate) fn with_dev(
    d: *mut rxe_device,
    f: impl FnOnce(&mut Port<CNetDev>) -> Result<c_int, (c_int, String)>,
) -> c_int {
    let p = match port(d) {
        Ok(p) => p,
        Err(code) => return code,
    };
    match f(p) {
        Ok(v) => v,
        Err((code, detail)) => {
            p.netdev().state.borrow_mut().last_error = CString::new(detail).unwrap_or_default();
            code
        }
    }
}

/// Writes `v` to `out`, or fails with `RXE_ERR_INVAL` if it is NULL.
pub(crate) fn put<T>(out: *mut T, v: T, what: &str) -> Result<(), (c_int, String)> {
    // SAFETY: a non-NULL out pointer is writable for one T (header contract).
    match unsafe { out.as_mut() } {
        Some(o) => {
            *o = v;
            Ok(())
        }
        None => Err((RXE_ERR_INVAL, format!("{what} is NULL"))),
    }
}

/// What the last refused call on this device was refused for, as a NUL-terminated string valid
/// until the next refused call; "" if none.
///
/// # Safety
/// `d` is a live device.
#[no_mangle]
pub unsafe extern "C" fn rxe_device_last_error(d: *mut rxe_device) -> *const c_char {
    // SAFETY: as in `port`; only the state's string is read.
    match unsafe { d.cast::<Port<CNetDev>>().as_ref() } {
        Some(p) => match p.netdev().state.try_borrow() {
            Ok(s) => s.last_error.as_ptr(),
            Err(_) => c"".as_ptr(),
        },
        None => c"".as_ptr(),
    }
}

/// Hands the device a frame the netdev received (Ethernet, no FCS; `len` bytes, only read
/// during the call) at time `now_ns` (nanoseconds on the host's monotonic clock). Frames that
/// are not RoCEv2 for this device are counted by reason and dropped. Call
/// [`rxe_device_poll`] afterwards: a frame may make work (ACKs, READ responses).
///
/// # Safety
/// `d` is a live device; `frame` readable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn rxe_device_rx(
    d: *mut rxe_device,
    now_ns: u64,
    frame: *const u8,
    len: usize,
) -> c_int {
    with_dev(d, |p| {
        if frame.is_null() {
            return Err((RXE_ERR_INVAL, "frame is NULL".into()));
        }
        // SAFETY: the caller's contract above.
        let f = unsafe { core::slice::from_raw_parts(frame, len) };
        p.receive(Instant::from_nanos(now_ns), f);
        Ok(RXE_OK)
    })
}

/// Runs the timers due by `now_ns` and transmits what is ready, as far as the netdev, its
/// neighbours and transmission control let it (callbacks run here). Returns 1 and sets
/// `*next_ns` to when to call again at the latest, or 0 if no timer is pending (call again
/// when a frame arrives, the NIC takes frames, a neighbour resolves, or work is posted).
///
/// # Safety
/// `d` is a live device; `next_ns` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rxe_device_poll(
    d: *mut rxe_device,
    now_ns: u64,
    next_ns: *mut u64,
) -> c_int {
    with_dev(d, |p| match p.poll(Instant::from_nanos(now_ns)) {
        Some(t) => {
            if !next_ns.is_null() {
                put(next_ns, t.as_nanos(), "next_ns")?;
            }
            Ok(1)
        }
        None => Ok(0),
    })
}

/// The device's limits (`ibv_query_device`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct rxe_device_attr {
    /// Node GUID (the MAC's EUI-64).
    pub node_guid: u64,
    /// Most QPs.
    pub max_qp: u32,
    /// Most work requests per send or receive queue.
    pub max_qp_wr: u32,
    /// Most scatter/gather entries per work request.
    pub max_sge: u32,
    /// Most inline bytes per send.
    pub max_inline_data: u32,
    /// Most CQs.
    pub max_cq: u32,
    /// Most completions per CQ (no fixed limit: this is what the device advertises).
    pub max_cqe: u32,
    /// Most memory regions and windows.
    pub max_mr: u32,
    /// Most protection domains.
    pub max_pd: u32,
    /// Most SRQs.
    pub max_srq: u32,
    /// Most receive requests per SRQ.
    pub max_srq_wr: u32,
    /// Most address handles.
    pub max_ah: u32,
    /// Most outstanding READ/atomic requests per QP, each way.
    pub max_qp_rd_atom: u32,
}

/// Fills `attr` with the device's limits.
///
/// # Safety
/// `d` is a live device; `attr` writable.
#[no_mangle]
pub unsafe extern "C" fn rxe_query_device(d: *mut rxe_device, attr: *mut rxe_device_attr) -> c_int {
    with_dev(d, |p| {
        let a = p.core().attr();
        let v = rxe_device_attr {
            node_guid: a.node_guid,
            max_qp: a.max_qp as u32,
            max_qp_wr: a.max_qp_wr as u32,
            max_sge: a.max_sge as u32,
            max_inline_data: a.max_inline_data as u32,
            max_cq: a.max_cq as u32,
            max_cqe: 1 << 16,
            max_mr: a.max_mr as u32,
            max_pd: a.max_pd as u32,
            max_srq: a.max_srq as u32,
            max_srq_wr: a.max_srq_wr as u32,
            max_ah: a.max_ah as u32,
            max_qp_rd_atom: u32::from(a.max_qp_rd_atom),
        };
        put(attr, v, "attr")?;
        Ok(RXE_OK)
    })
}

/// The port is active (the netdev's link is up).
pub const RXE_PORT_ACTIVE: c_int = 4;
/// The port is down.
pub const RXE_PORT_DOWN: c_int = 1;

/// The port's attributes (`ibv_query_port`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct rxe_port_attr {
    /// `RXE_PORT_ACTIVE` or `RXE_PORT_DOWN` (the `ibv_port_state` numbers).
    pub state: c_int,
    /// Active MTU, an `RXE_MTU_*` (the largest IB MTU that fits the netdev's MTU less 80).
    pub active_mtu: c_int,
    /// Largest MTU: `RXE_MTU_4096`.
    pub max_mtu: c_int,
    /// Entries in the GID table.
    pub gid_tbl_len: c_int,
}

/// Fills `attr` with the port's attributes, from the netdev as it is now.
///
/// # Safety
/// `d` is a live device; `attr` writable.
#[no_mangle]
pub unsafe extern "C" fn rxe_query_port(d: *mut rxe_device, attr: *mut rxe_port_attr) -> c_int {
    with_dev(d, |p| {
        let a = p.attr();
        let v = rxe_port_attr {
            state: match a.state {
                PortState::Active => RXE_PORT_ACTIVE,
                PortState::Down => RXE_PORT_DOWN,
            },
            active_mtu: a.active_mtu as c_int,
            max_mtu: a.max_mtu as c_int,
            gid_tbl_len: a.gid_tbl_len as c_int,
        };
        put(attr, v, "attr")?;
        Ok(RXE_OK)
    })
}

/// GID `index` of the port (IPv6 link-local addresses first, then the others in the order
/// added; IPv4 ones mapped); `RXE_ERR_NOENT` past the end.
///
/// # Safety
/// `d` is a live device; `gid` writable.
#[no_mangle]
pub unsafe extern "C" fn rxe_query_gid(
    d: *mut rxe_device,
    index: c_int,
    gid: *mut rxe_gid,
) -> c_int {
    with_dev(d, |p| {
        let gids = p.gids();
        let g = usize::try_from(index)
            .ok()
            .and_then(|i| gids.get(i))
            .ok_or((
                RXE_ERR_NOENT,
                format!("no GID {index} ({} in the table)", gids.len()),
            ))?;
        put(gid, rxe_gid { raw: g.octets() }, "gid")?;
        Ok(RXE_OK)
    })
}

/// The device's counters: the transport's (Linux rxe's `hw_counters` names), the device core's
/// drops, and the port's receive drops and transmit figures.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct rxe_counters {
    /// Packets transmitted.
    pub sent_pkts: u64,
    /// Packets received and accepted.
    pub rcvd_pkts: u64,
    /// Duplicate requests received.
    pub duplicate_request: u64,
    /// Requests received out of sequence (each drew a NAK).
    pub out_of_seq_request: u64,
    /// RNR NAKs received.
    pub rcvd_rnr_err: u64,
    /// RNR NAKs sent.
    pub send_rnr_err: u64,
    /// PSN sequence error NAKs received.
    pub rcvd_seq_err: u64,
    /// Packets executed without an immediate ACK.
    pub ack_deferred: u64,
    /// Work requests failed with RETRY_EXC_ERR.
    pub retry_exceeded_err: u64,
    /// Work requests failed with RNR_RETRY_EXC_ERR.
    pub retry_rnr_exceeded_err: u64,
    /// Retransmissions started by the completer.
    pub completer_retry_err: u64,
    /// Errors while building a packet.
    pub send_err: u64,
    /// Packets dropped for a bad ICRC.
    pub icrc_err: u64,
    /// Packets that were not RoCEv2 or failed the structure checks.
    pub malformed: u64,
    /// Packets for a QP that does not exist.
    pub unknown_qp: u64,
    /// Completions dropped because their CQ was full.
    pub cq_overflow: u64,
    /// Frames handed to the device core.
    pub rx_delivered: u64,
    /// Frames shorter than their headers say.
    pub rx_truncated: u64,
    /// Frames neither IPv4 nor IPv6.
    pub rx_not_ip: u64,
    /// Frames for another MAC address.
    pub rx_other_mac: u64,
    /// Frames for an IP address the netdev does not have.
    pub rx_other_ip: u64,
    /// IPv4 fragments or packets with options.
    pub rx_ip_unsupported: u64,
    /// Not UDP.
    pub rx_not_udp: u64,
    /// UDP, but not to port 4791.
    pub rx_other_port: u64,
    /// Frames the netdev took.
    pub tx_frames: u64,
    /// Refusals because the netdev's queue was full (the frame waited, it was not lost).
    pub tx_queue_full: u64,
    /// Refusals because the link was down.
    pub tx_link_down: u64,
    /// Times a frame waited for neighbour resolution.
    pub tx_neighbour_pending: u64,
    /// Times transmission control held a frame back.
    pub tx_held_by_control: u64,
    /// Frames handed to the netdev and not yet taken by it.
    pub tx_in_flight: u64,
}

/// Fills `c` with the device's counters.
///
/// # Safety
/// `d` is a live device; `c` writable.
#[no_mangle]
pub unsafe extern "C" fn rxe_device_counters(d: *mut rxe_device, c: *mut rxe_counters) -> c_int {
    with_dev(d, |p| {
        let (dev, q) = p.core().counters();
        let (rx, tx) = (p.rx_counters(), p.tx_counters());
        let v = rxe_counters {
            sent_pkts: q.sent_pkts,
            rcvd_pkts: q.rcvd_pkts,
            duplicate_request: q.duplicate_request,
            out_of_seq_request: q.out_of_seq_request,
            rcvd_rnr_err: q.rcvd_rnr_err,
            send_rnr_err: q.send_rnr_err,
            rcvd_seq_err: q.rcvd_seq_err,
            ack_deferred: q.ack_deferred,
            retry_exceeded_err: q.retry_exceeded_err,
            retry_rnr_exceeded_err: q.retry_rnr_exceeded_err,
            completer_retry_err: q.completer_retry_err,
            send_err: q.send_err,
            icrc_err: q.icrc_err,
            malformed: dev.malformed,
            unknown_qp: dev.unknown_qp,
            cq_overflow: dev.cq_overflow,
            rx_delivered: rx.delivered,
            rx_truncated: rx.truncated,
            rx_not_ip: rx.not_ip,
            rx_other_mac: rx.other_mac,
            rx_other_ip: rx.other_ip,
            rx_ip_unsupported: rx.ip_unsupported,
            rx_not_udp: rx.not_udp,
            rx_other_port: rx.other_port,
            tx_frames: tx.frames,
            tx_queue_full: tx.queue_full,
            tx_link_down: tx.link_down,
            tx_neighbour_pending: tx.neighbour_pending,
            tx_held_by_control: tx.held_by_control,
            tx_in_flight: p.in_flight(),
        };
        put(c, v, "counters")?;
        Ok(RXE_OK)
    })
}

/// A QP went to the error state (`IBV_EVENT_QP_FATAL`); `element` is its QP number.
pub const RXE_EVENT_QP_FATAL: c_int = 1;
/// An SRQ fell below its armed limit (`IBV_EVENT_SRQ_LIMIT_REACHED`); `element` is its handle.
pub const RXE_EVENT_SRQ_LIMIT_REACHED: c_int = 2;
/// Passive side: a connection request for a port we listen on (`RDMA_CM_EVENT_CONNECT_REQUEST`);
/// `element` is the connection, `src`/`src_port`/`port`/`remote_qpn`/`responder_resources`/
/// `initiator_depth`/`private_data` describe it. Answer with `rxe_cm_accept` or
/// `rxe_cm_reject`.
pub const RXE_EVENT_CM_CONNECT_REQUEST: c_int = 3;
/// Active side: the peer accepted (its REP arrived; our QP is in RTS and the RTU sent);
/// `remote_qpn` and `private_data` are the peer's.
pub const RXE_EVENT_CM_CONNECT_REPLY: c_int = 4;
/// The connection is established (`RDMA_CM_EVENT_ESTABLISHED`): the QP is in RTS.
pub const RXE_EVENT_CM_ESTABLISHED: c_int = 5;
/// The peer refused (`RDMA_CM_EVENT_REJECTED`); `reason` is the IBTA REJ reason (8: nobody
/// listens, 28: the application rejected).
pub const RXE_EVENT_CM_REJECTED: c_int = 6;
/// The peer never answered (`RDMA_CM_EVENT_UNREACHABLE`).
pub const RXE_EVENT_CM_UNREACHABLE: c_int = 7;
/// The connection is down (`RDMA_CM_EVENT_DISCONNECTED`); its QP is in ERR.
pub const RXE_EVENT_CM_DISCONNECTED: c_int = 8;
/// The connection's timewait ended (`RDMA_CM_EVENT_TIMEWAIT_EXIT`); its number may be reused.
pub const RXE_EVENT_CM_TIMEWAIT_EXIT: c_int = 9;

/// An asynchronous event (`ibv_async_event`, and `rdma_cm_event` for the CM ones).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rxe_async_event {
    /// An `RXE_EVENT_*`.
    pub event_type: c_int,
    /// The QP number, SRQ handle or connection it is about.
    pub element: u32,
    /// CM: the peer's address (connection requests).
    pub src: rxe_gid,
    /// CM: the peer's rdma_cm port (connection requests).
    pub src_port: u16,
    /// CM: our port it connected to (connection requests).
    pub port: u16,
    /// CM: the peer's QP (connection requests and replies).
    pub remote_qpn: u32,
    /// CM: READ/atomic requests the peer accepts at once (connection requests).
    pub responder_resources: u8,
    /// CM: READ/atomic requests the peer issues at once (connection requests).
    pub initiator_depth: u8,
    /// CM: the REJ reason (rejections).
    pub reason: u16,
    /// CM: bytes of `private_data` that are valid.
    pub private_data_len: u32,
    /// CM: the peer's private data (after rdma_cm's header).
    pub private_data: [u8; 224],
}

impl Default for rxe_async_event {
    fn default() -> rxe_async_event {
        rxe_async_event {
            event_type: 0,
            element: 0,
            src: rxe_gid::default(),
            src_port: 0,
            port: 0,
            remote_qpn: 0,
            responder_resources: 0,
            initiator_depth: 0,
            reason: 0,
            private_data_len: 0,
            private_data: [0; 224],
        }
    }
}

fn cm_event(e: &CmEvent) -> rxe_async_event {
    let mut v = rxe_async_event::default();
    let pdata = |v: &mut rxe_async_event, p: &[u8]| {
        v.private_data[..p.len()].copy_from_slice(p);
        v.private_data_len = p.len() as u32;
    };
    match e {
        CmEvent::ConnectRequest {
            id,
            src,
            src_port,
            port,
            remote_qpn,
            responder_resources,
            initiator_depth,
            private_data,
        } => {
            v.event_type = RXE_EVENT_CM_CONNECT_REQUEST;
            v.element = id.0;
            v.src = rxe_gid::from_ip(*src);
            v.src_port = *src_port;
            v.port = *port;
            v.remote_qpn = remote_qpn.value();
            v.responder_resources = *responder_resources;
            v.initiator_depth = *initiator_depth;
            pdata(&mut v, private_data);
        }
        CmEvent::ConnectReply {
            id,
            remote_qpn,
            private_data,
        } => {
            v.event_type = RXE_EVENT_CM_CONNECT_REPLY;
            v.element = id.0;
            v.remote_qpn = remote_qpn.value();
            pdata(&mut v, private_data);
        }
        CmEvent::Established { id } => {
            v.event_type = RXE_EVENT_CM_ESTABLISHED;
            v.element = id.0;
        }
        CmEvent::Rejected {
            id,
            reason,
            private_data,
        } => {
            v.event_type = RXE_EVENT_CM_REJECTED;
            v.element = id.0;
            v.reason = reason.0;
            pdata(&mut v, private_data);
        }
        CmEvent::Unreachable { id } => {
            v.event_type = RXE_EVENT_CM_UNREACHABLE;
            v.element = id.0;
        }
        CmEvent::Disconnected { id } => {
            v.event_type = RXE_EVENT_CM_DISCONNECTED;
            v.element = id.0;
        }
        CmEvent::TimewaitExit { id } => {
            v.event_type = RXE_EVENT_CM_TIMEWAIT_EXIT;
            v.element = id.0;
        }
    }
    v
}

/// Takes the oldest asynchronous event: returns 1 and fills `ev`, or 0 if there is none.
///
/// # Safety
/// `d` is a live device; `ev` writable.
#[no_mangle]
pub unsafe extern "C" fn rxe_device_get_event(
    d: *mut rxe_device,
    ev: *mut rxe_async_event,
) -> c_int {
    with_dev(d, |p| {
        if ev.is_null() {
            return Err((RXE_ERR_INVAL, "ev is NULL".into()));
        }
        let Some(e) = p.core().poll_event() else {
            return Ok(0);
        };
        let v = match e {
            DeviceEvent::QpFatal(q) => rxe_async_event {
                event_type: RXE_EVENT_QP_FATAL,
                element: q.value(),
                ..rxe_async_event::default()
            },
            DeviceEvent::SrqLimitReached(s) => rxe_async_event {
                event_type: RXE_EVENT_SRQ_LIMIT_REACHED,
                element: s.0,
                ..rxe_async_event::default()
            },
            DeviceEvent::Cm(c) => cm_event(&c),
        };
        put(ev, v, "ev")?;
        Ok(1)
    })
}
