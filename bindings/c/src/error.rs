//! Integer error codes and their names: every call returns `RXE_OK`, a count, or one of these.

use core::ffi::{c_char, c_int};

use rxe_kernel::link::LinkError;
use rxe_kernel::tx_control::ParamError;
use rxe_transport::device::DeviceError;
use rxe_transport::{ModifyQpError, PostRecvError, PostSendError};

/// Success.
pub const RXE_OK: c_int = 0;
/// An argument is invalid: a NULL pointer, a bad string, a value out of range.
pub const RXE_ERR_INVAL: c_int = -1;
/// No such object: a stale or foreign handle, an unknown link, netdev or key.
pub const RXE_ERR_NOENT: c_int = -2;
/// A device limit is reached (see `rxe_query_device`), or memory ran out.
pub const RXE_ERR_NORES: c_int = -3;
/// The object is still in use (a PD with regions or QPs, a CQ or SRQ with QPs).
pub const RXE_ERR_BUSY: c_int = -4;
/// It exists already (a link or netdev of that name, a second link on one netdev).
pub const RXE_ERR_EXIST: c_int = -5;
/// `rxe_modify_qp` refused: the transition, or the attributes given for it.
pub const RXE_ERR_QP_ATTR: c_int = -6;
/// The QP's state does not allow the call (posting to a QP in RESET or ERR, ...).
pub const RXE_ERR_QP_STATE: c_int = -7;
/// The work queue (or SRQ) is full.
pub const RXE_ERR_QUEUE_FULL: c_int = -8;
/// The work request is not valid for this QP (opcode, inline size, atomic alignment, length).
pub const RXE_ERR_WR: c_int = -9;
/// Called from inside one of the host's callbacks.
pub const RXE_ERR_REENTRANT: c_int = -10;
/// A link command or module parameter string that does not parse.
pub const RXE_ERR_SYNTAX: c_int = -11;

/// The name of an `RXE_OK` / `RXE_ERR_*` code, as a static NUL-terminated string (never NULL;
/// an unknown code gives "unknown error").
#[no_mangle]
pub extern "C" fn rxe_strerror(code: c_int) -> *const c_char {
    let s: &'static [u8] = match code {
        RXE_OK => b"success\0",
        RXE_ERR_INVAL => b"invalid argument\0",
        RXE_ERR_NOENT => b"no such object\0",
        RXE_ERR_NORES => b"device limit reached\0",
        RXE_ERR_BUSY => b"object in use\0",
        RXE_ERR_EXIST => b"already exists\0",
        RXE_ERR_QP_ATTR => b"QP transition or attributes refused\0",
        RXE_ERR_QP_STATE => b"QP state does not allow this\0",
        RXE_ERR_QUEUE_FULL => b"work queue full\0",
        RXE_ERR_WR => b"invalid work request\0",
        RXE_ERR_REENTRANT => b"called from a callback\0",
        RXE_ERR_SYNTAX => b"syntax error\0",
        _ => b"unknown error\0",
    };
    s.as_ptr().cast()
}

/// The code of a device error.
pub(crate) fn device_code(e: &DeviceError) -> c_int {
    match e {
        DeviceError::UnknownQp(_)
        | DeviceError::UnknownCq(_)
        | DeviceError::UnknownKey(_)
        | DeviceError::UnknownPd(_)
        | DeviceError::UnknownSrq(_)
        | DeviceError::UnknownAh(_) => RXE_ERR_NOENT,
        DeviceError::NoResources => RXE_ERR_NORES,
        DeviceError::InvalidLength => RXE_ERR_INVAL,
        DeviceError::Busy => RXE_ERR_BUSY,
        DeviceError::ModifyQp(ModifyQpError::WrongCurrentState { .. }) => RXE_ERR_QP_STATE,
        DeviceError::ModifyQp(_) => RXE_ERR_QP_ATTR,
        DeviceError::PostSend(PostSendError::InvalidState(_))
        | DeviceError::PostRecv(PostRecvError::InvalidState(_))
        | DeviceError::PostRecv(PostRecvError::HasSrq) => RXE_ERR_QP_STATE,
        DeviceError::PostSend(PostSendError::QueueFull)
        | DeviceError::PostRecv(PostRecvError::QueueFull) => RXE_ERR_QUEUE_FULL,
        DeviceError::PostSend(_) => RXE_ERR_WR,
        DeviceError::Cm(_) => RXE_ERR_INVAL,
    }
}

/// A device error as a code and its detail (for the last-error string).
pub(crate) fn device_err(e: DeviceError) -> (c_int, alloc::string::String) {
    use alloc::string::ToString;
    (device_code(&e), e.to_string())
}

/// An invalid-argument refusal with its detail.
pub(crate) fn inval(msg: impl Into<alloc::string::String>) -> (c_int, alloc::string::String) {
    (RXE_ERR_INVAL, msg.into())
}

/// The code of a link error.
pub(crate) fn link_code(e: &LinkError) -> c_int {
    match e {
        LinkError::Syntax | LinkError::Type => RXE_ERR_SYNTAX,
        LinkError::Name => RXE_ERR_INVAL,
        LinkError::Exists | LinkError::NetdevBusy => RXE_ERR_EXIST,
        LinkError::NoSuchLink => RXE_ERR_NOENT,
        LinkError::Device => RXE_ERR_NORES,
    }
}

/// The code of a parameter error.
pub(crate) fn param_code(e: &ParamError) -> c_int {
    match e {
        ParamError::Format | ParamError::UnknownMethod => RXE_ERR_SYNTAX,
        ParamError::InterfaceName | ParamError::BadValue => RXE_ERR_INVAL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::ffi::CStr;

    #[test]
    fn every_code_has_a_name() {
        for code in [0, -1, -2, -3, -4, -5, -6, -7, -8, -9, -10, -11] {
            // SAFETY: rxe_strerror returns a static NUL-terminated string.
            let s = unsafe { CStr::from_ptr(rxe_strerror(code)) };
            assert_ne!(s.to_bytes(), b"unknown error", "code {code}");
        }
        // SAFETY: as above.
        let s = unsafe { CStr::from_ptr(rxe_strerror(-99)) };
        assert_eq!(s.to_bytes(), b"unknown error");
    }
}
