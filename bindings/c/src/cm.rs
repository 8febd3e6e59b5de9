//! Connections the rdma_cm way, through the device's QP1 and its connection manager: listen,
//! connect, accept, reject, disconnect. The CM moves the QP through INIT, RTR and RTS with the
//! negotiated attributes, and to ERR on disconnection; what happens comes as `RXE_EVENT_CM_*`
//! events from `rxe_device_get_event`. On the wire it is rdma_cm's (service IDs, its private-data
//! header), so Linux's rping and iSER talk to it.

use alloc::string::String;
use core::ffi::{c_int, c_void};

use rxe_transport::cm::ConnId;
use rxe_transport::Instant;

use crate::device::{put, rxe_device, with_dev};
use crate::error::{device_err as err, *};
use crate::netdev::rxe_gid;
use crate::verbs::{qpn, rxe_qp};

/// The caller's private data.
fn pdata<'a>(p: *const c_void, len: usize) -> Result<&'a [u8], (c_int, String)> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err((RXE_ERR_INVAL, "private_data is NULL with a length".into()));
    }
    // SAFETY: the caller passes `len` readable bytes (header contract).
    Ok(unsafe { core::slice::from_raw_parts(p.cast::<u8>(), len) })
}

/// Listens for connections on rdma_cm port `port` (rping's is 7174, iSER's 3260).
///
/// # Safety
/// `d` is a live device.
#[no_mangle]
pub unsafe extern "C" fn rxe_cm_listen(d: *mut rxe_device, port: u16) -> c_int {
    with_dev(d, |p| {
        p.core().listen(port).map_err(err)?;
        Ok(RXE_OK)
    })
}

/// Connects RC QP `qp` (in RESET) to `dst` port `dst_port` (`rdma_connect`), from our rdma_cm
/// port `src_port`; `*conn` gets the connection. The QP moves to INIT now and to RTR and RTS
/// when the peer accepts (`RXE_EVENT_CM_CONNECT_REPLY`, then `RXE_EVENT_CM_ESTABLISHED`).
/// Private data: at most 56 bytes (rdma_cm's REQ room).
///
/// # Safety
/// `d` is a live device; `dst` readable; `private_data` readable for `len` bytes; `conn`
/// writable.
#[no_mangle]
#[allow(clippy::too_many_arguments)] // rdma_connect's parameters, flat for C
pub unsafe extern "C" fn rxe_cm_connect(
    d: *mut rxe_device,
    now_ns: u64,
    qp: rxe_qp,
    dst: *const rxe_gid,
    dst_port: u16,
    src_port: u16,
    responder_resources: u8,
    initiator_depth: u8,
    private_data: *const c_void,
    len: usize,
    conn: *mut u32,
) -> c_int {
    with_dev(d, |p| {
        // SAFETY: the caller's contract above.
        let dst = unsafe { dst.as_ref() }.ok_or((RXE_ERR_INVAL, "dst is NULL".into()))?;
        if conn.is_null() {
            return Err((RXE_ERR_INVAL, "conn is NULL".into()));
        }
        let id = p
            .core()
            .connect(
                Instant::from_nanos(now_ns),
                qpn(qp.qp_num, "qp")?,
                dst.to_ip(),
                dst_port,
                src_port,
                responder_resources,
                initiator_depth,
                pdata(private_data, len)?,
            )
            .map_err(err)?;
        put(conn, id.0, "conn")?;
        Ok(RXE_OK)
    })
}

/// Accepts connection request `conn` with RC QP `qp` (in RESET) (`rdma_accept`): the QP moves
/// to INIT and RTR now, to RTS when the peer's RTU arrives (`RXE_EVENT_CM_ESTABLISHED`).
///
/// # Safety
/// `d` is a live device; `private_data` readable for `len` bytes.
#[no_mangle]
#[allow(clippy::too_many_arguments)] // rdma_accept's parameters, flat for C
pub unsafe extern "C" fn rxe_cm_accept(
    d: *mut rxe_device,
    now_ns: u64,
    conn: u32,
    qp: rxe_qp,
    responder_resources: u8,
    initiator_depth: u8,
    private_data: *const c_void,
    len: usize,
) -> c_int {
    with_dev(d, |p| {
        p.core()
            .accept(
                Instant::from_nanos(now_ns),
                ConnId(conn),
                qpn(qp.qp_num, "qp")?,
                responder_resources,
                initiator_depth,
                pdata(private_data, len)?,
            )
            .map_err(err)?;
        Ok(RXE_OK)
    })
}

/// Rejects connection request `conn` (`rdma_reject`: the peer sees REJ reason 28).
///
/// # Safety
/// `d` is a live device; `private_data` readable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn rxe_cm_reject(
    d: *mut rxe_device,
    now_ns: u64,
    conn: u32,
    private_data: *const c_void,
    len: usize,
) -> c_int {
    with_dev(d, |p| {
        p.core()
            .reject(
                Instant::from_nanos(now_ns),
                ConnId(conn),
                pdata(private_data, len)?,
            )
            .map_err(err)?;
        Ok(RXE_OK)
    })
}

/// Disconnects `conn` (`rdma_disconnect`); its QP moves to ERR when `RXE_EVENT_CM_DISCONNECTED`
/// comes.
///
/// # Safety
/// `d` is a live device.
#[no_mangle]
pub unsafe extern "C" fn rxe_cm_disconnect(d: *mut rxe_device, now_ns: u64, conn: u32) -> c_int {
    with_dev(d, |p| {
        p.core()
            .disconnect(Instant::from_nanos(now_ns), ConnId(conn))
            .map_err(err)?;
        Ok(RXE_OK)
    })
}
