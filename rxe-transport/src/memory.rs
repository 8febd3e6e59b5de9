//! Memory the transport reaches through the host: regions named by keys, and the one place where
//! key lookup, protection-domain match, access rights and bounds are checked.

use core::fmt;

use rxe_wire::{PayloadSink, PayloadSource, Qpn};

use crate::verbs::Access;

/// A protection domain handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Pd(pub u32);

/// What the host knows about a registered memory region or a memory window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MrInfo {
    /// Protection domain the region (window) belongs to.
    pub pd: Pd,
    /// First virtual address of the region (of the window's range).
    pub addr: u64,
    /// Length in bytes (0 for an unbound window).
    pub length: u64,
    /// Access rights granted at registration (at bind time for a window).
    pub access: Access,
    /// A region, or a window and what it is bound to.
    pub kind: KeyKind,
}

impl MrInfo {
    /// A memory region.
    pub const fn region(pd: Pd, addr: u64, length: u64, access: Access) -> MrInfo {
        MrInfo {
            pd,
            addr,
            length,
            access,
            kind: KeyKind::Mr,
        }
    }
}

/// What a key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// A memory region: usable as lkey and rkey.
    Mr,
    /// A memory window: an rkey only, reaching memory through the region it is bound to.
    Mw(MwInfo),
}

/// Memory window type (IBTA 10.6.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MwType {
    /// Type 1: bound with `ibv_bind_mw`, rebindable, never invalidated.
    Type1,
    /// Type 2 (2B): bound through a QP with a BIND_MW work request, usable only through that QP,
    /// invalidated by LOCAL_INV or SEND with Invalidate before it can be bound again.
    Type2,
}

/// The state of a memory window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MwInfo {
    /// Window type.
    pub mw_type: MwType,
    /// Key of the region the window is bound to; `None` when unbound (or invalidated).
    pub mr: Option<u32>,
    /// Type 2: the QP it was bound through (the only QP it may be used from).
    pub qp: Option<Qpn>,
}

/// A window binding for [`Memory::bind_mw`], already checked by the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MwBinding {
    /// The window's key from now on (same index, new 8-bit key part).
    pub key: u32,
    /// The region it reaches (`None`: unbind).
    pub mr: Option<u32>,
    /// Range start (inside the region).
    pub addr: u64,
    /// Range length.
    pub length: u64,
    /// Remote access it grants.
    pub access: Access,
    /// Type 2: the QP it is bound through.
    pub qp: Option<Qpn>,
}

/// A 64-bit atomic operation, executed by the host on 8-byte-aligned memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AtomicOp {
    /// Store `swap` if the location equals `compare`.
    CmpSwp {
        /// Expected value.
        compare: u64,
        /// New value.
        swap: u64,
    },
    /// Add to the location.
    FetchAdd(u64),
}

/// Memory as the host provides it. Keys are verbs' lkeys and rkeys (one namespace, as in rxe).
///
/// The transport calls `read`, `write` and `atomic` only after [`check`] has passed for the exact
/// range, so implementations may treat an out-of-range call as a bug in the host.
pub trait Memory {
    /// Looks up the region (or window) a key names.
    fn lookup(&self, key: u32) -> Option<MrInfo>;
    /// Copies `out.len()` bytes at `addr` of region `key` into `out`.
    fn read(&self, key: u32, addr: u64, out: &mut [u8]);
    /// Copies `data` to `addr` of region `key`.
    fn write(&mut self, key: u32, addr: u64, data: &[u8]);
    /// The `len` bytes at `addr` of region `key` as one slice, if the host's memory allows it.
    /// With it the transport copies into packets with the ICRC computed in the same pass
    /// (see [`rxe_wire::icrc::fused_copy_available`]); without it (the default), it calls
    /// [`read`](Self::read) and runs the CRC afterwards.
    fn slice(&self, key: u32, addr: u64, len: usize) -> Option<&[u8]> {
        let _ = (key, addr, len);
        None
    }
    /// Like [`slice`](Self::slice), writable: received payload is copied straight in, with the
    /// ICRC checked in the same pass. The default (`None`) makes the transport call
    /// [`write`](Self::write).
    fn slice_mut(&mut self, key: u32, addr: u64, len: usize) -> Option<&mut [u8]> {
        let _ = (key, addr, len);
        None
    }
    /// Runs a 64-bit atomic at `addr` (host byte order, as verbs does) and returns the value the
    /// location held before. The transport serialises atomics per QP; a host shared by several
    /// QPs or CPUs makes this atomic with respect to them.
    fn atomic(&mut self, key: u32, addr: u64, op: AtomicOp) -> u64;
    /// Invalidates `key` (SEND with Invalidate, LOCAL_INV). The key must belong to `pd`.
    fn invalidate(&mut self, key: u32, pd: Pd) -> Result<(), AccessError>;
    /// Makes `len` bytes at `addr` globally visible or persistent (FLUSH); memory that is always
    /// both can keep the default, which does nothing.
    fn flush(&mut self, key: u32, addr: u64, len: u64, placement_type: u8) {
        let _ = (key, addr, len, placement_type);
    }
    /// Records a window binding (BIND_MW, or `ibv_bind_mw` for type 1): window `mw_key` takes
    /// `binding.key` and reaches `binding`'s range. The transport has checked it ([`bind_mw`]);
    /// [`lookup`](Self::lookup) must then show windows bound or not. The default (no windows)
    /// refuses.
    fn bind_mw(&mut self, mw_key: u32, binding: &MwBinding) -> Result<(), AccessError> {
        let _ = binding;
        Err(AccessError::UnknownKey(mw_key))
    }
    /// Fast-registers region `key` (IB_WR_REG_MR): valid again under `new_key` (same index)
    /// with `access`. The region must belong to `pd` and be invalidated (free). The default
    /// (no fast registration) refuses.
    fn reg_mr(
        &mut self,
        key: u32,
        new_key: u32,
        access: Access,
        pd: Pd,
    ) -> Result<(), AccessError> {
        let _ = (new_key, access, pd);
        Err(AccessError::UnknownKey(key))
    }
}

/// Copies `len` bytes at `addr` of region `key` into a packet's payload (range already checked).
pub(crate) fn gather<M: Memory + ?Sized>(
    mem: &M,
    key: u32,
    addr: u64,
    len: usize,
    sink: &mut PayloadSink<'_>,
) {
    match mem.slice(key, addr, len) {
        Some(s) if s.len() == len => {
            sink.copy_from(s);
        }
        _ => {
            sink.fill_with(len, |d| mem.read(key, addr, d));
        }
    }
}

/// Copies the next `len` bytes of a received payload to `addr` of region `key` (range already
/// checked).
pub(crate) fn place<M: Memory + ?Sized>(
    mem: &mut M,
    key: u32,
    addr: u64,
    len: usize,
    src: &mut PayloadSource<'_>,
) {
    match mem.slice_mut(key, addr, len) {
        Some(d) if d.len() == len => {
            src.copy_to(d);
        }
        _ => {
            let d = src.take(len);
            mem.write(key, addr, d);
        }
    }
}

/// Why a memory access was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessError {
    /// No region has this key (or it was invalidated).
    UnknownKey(u32),
    /// The region belongs to another protection domain.
    WrongPd,
    /// The region does not grant the access.
    NoAccess(Access),
    /// The range is not inside the region (or wraps around).
    OutOfBounds,
    /// An atomic on an address that is not 8-byte aligned.
    Misaligned,
    /// A window key where a region's is needed (lkeys, REG_MR), or the reverse.
    WrongKeyKind,
    /// A window that is not bound.
    WindowNotBound,
    /// A type 2 window used from a QP other than the one it was bound through.
    WrongQp,
    /// A type 2 window bound already (it must be invalidated first), or a type 1 window
    /// invalidated (type 1 cannot be).
    WindowState,
    /// A new key whose index (upper 24 bits) differs from the object's.
    KeyIndex,
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AccessError::UnknownKey(k) => write!(f, "unknown key {k:#010x}"),
            AccessError::WrongPd => f.write_str("key belongs to another protection domain"),
            AccessError::NoAccess(a) => write!(f, "region does not grant {a:?}"),
            AccessError::OutOfBounds => f.write_str("range outside the region"),
            AccessError::Misaligned => f.write_str("atomic address not 8-byte aligned"),
            AccessError::WrongKeyKind => f.write_str("key of a window where a region's is needed"),
            AccessError::WindowNotBound => f.write_str("window not bound"),
            AccessError::WrongQp => f.write_str("type 2 window bound through another QP"),
            AccessError::WindowState => f.write_str("window in the wrong state for this"),
            AccessError::KeyIndex => f.write_str("new key with another index"),
        }
    }
}

impl core::error::Error for AccessError {}

/// Checks that `len` bytes at `addr` of region `key` may be accessed from `pd` with `need`:
/// local access (lkeys) and anything a region key must name. Window keys are refused.
///
/// This and [`check_remote`] are the only access checks in the crate: lkeys of local
/// scatter/gather lists and rkeys of remote requests go through them.
pub fn check<M: Memory + ?Sized>(
    mem: &M,
    key: u32,
    pd: Pd,
    addr: u64,
    len: u64,
    need: Access,
) -> Result<MrInfo, AccessError> {
    let mr = mem.lookup(key).ok_or(AccessError::UnknownKey(key))?;
    if mr.kind != KeyKind::Mr {
        return Err(AccessError::WrongKeyKind);
    }
    check_range(&mr, pd, addr, len, need)?;
    Ok(mr)
}

fn check_range(mr: &MrInfo, pd: Pd, addr: u64, len: u64, need: Access) -> Result<(), AccessError> {
    if mr.pd != pd {
        return Err(AccessError::WrongPd);
    }
    if !mr.access.contains(need) {
        return Err(AccessError::NoAccess(need.difference(mr.access)));
    }
    let end = addr.checked_add(len).ok_or(AccessError::OutOfBounds)?;
    let mr_end = mr
        .addr
        .checked_add(mr.length)
        .ok_or(AccessError::OutOfBounds)?;
    if addr < mr.addr || end > mr_end {
        return Err(AccessError::OutOfBounds);
    }
    Ok(())
}

/// Checks a remote access through `rkey` (a region or a window) from QP `qpn` in `pd`, and
/// returns the key the data is reached through: the region's own, or the region a window is
/// bound to (whose range contains the window's).
pub fn check_remote<M: Memory + ?Sized>(
    mem: &M,
    rkey: u32,
    pd: Pd,
    qpn: Qpn,
    addr: u64,
    len: u64,
    need: Access,
) -> Result<u32, AccessError> {
    let info = mem.lookup(rkey).ok_or(AccessError::UnknownKey(rkey))?;
    match info.kind {
        KeyKind::Mr => {
            check_range(&info, pd, addr, len, need)?;
            Ok(rkey)
        }
        KeyKind::Mw(mw) => {
            let mr = mw.mr.ok_or(AccessError::WindowNotBound)?;
            if mw.mw_type == MwType::Type2 && mw.qp != Some(qpn) {
                return Err(AccessError::WrongQp);
            }
            check_range(&info, pd, addr, len, need)?;
            Ok(mr)
        }
    }
}

/// Invalidates `key` for QP `qpn` in `pd` (LOCAL_INV, or SEND with Invalidate at the
/// responder): a region, or a type 2 window bound through `qpn`. Type 1 windows cannot be.
pub fn invalidate<M: Memory + ?Sized>(
    mem: &mut M,
    key: u32,
    pd: Pd,
    qpn: Qpn,
) -> Result<(), AccessError> {
    let info = mem.lookup(key).ok_or(AccessError::UnknownKey(key))?;
    if info.pd != pd {
        return Err(AccessError::WrongPd);
    }
    if let KeyKind::Mw(mw) = info.kind {
        if mw.mw_type == MwType::Type1 {
            return Err(AccessError::WindowState);
        }
        if mw.mr.is_none() {
            return Err(AccessError::WindowNotBound);
        }
        if mw.qp != Some(qpn) {
            return Err(AccessError::WrongQp);
        }
    }
    mem.invalidate(key, pd)
}

/// A BIND_MW request: bind window `mw` (by its current rkey) to a range of region `mr_lkey`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MwBind {
    /// The window's current rkey.
    pub mw: u32,
    /// Its rkey once bound (same index, a new 8-bit key part).
    pub new_rkey: u32,
    /// The region (lkey); ignored when `length` is 0 (unbinds a type 1 window).
    pub mr_lkey: u32,
    /// Range start.
    pub addr: u64,
    /// Range length (0 unbinds a type 1 window).
    pub length: u64,
    /// Remote access granted through the window.
    pub access: Access,
}

/// Checks and performs a window binding from QP `qpn` in `pd` (IBTA 10.6.7, Linux
/// `rxe_check_bind_mw`): the window and the QP share the PD; the new key keeps the window's
/// index; a type 2 window must be unbound; the region must grant MW_BIND and contain the
/// range; remote write or atomic through the window needs local write on the region.
pub fn bind_mw<M: Memory + ?Sized>(
    mem: &mut M,
    pd: Pd,
    qpn: Qpn,
    req: &MwBind,
) -> Result<(), AccessError> {
    let info = mem.lookup(req.mw).ok_or(AccessError::UnknownKey(req.mw))?;
    let KeyKind::Mw(mw) = info.kind else {
        return Err(AccessError::WrongKeyKind);
    };
    if info.pd != pd {
        return Err(AccessError::WrongPd);
    }
    if req.new_rkey >> 8 != req.mw >> 8 {
        return Err(AccessError::KeyIndex);
    }
    let remote = Access::REMOTE_WRITE | Access::REMOTE_READ | Access::REMOTE_ATOMIC;
    if !remote.contains(req.access) {
        return Err(AccessError::NoAccess(req.access.difference(remote)));
    }
    let type2 = mw.mw_type == MwType::Type2;
    if type2 && mw.mr.is_some() {
        return Err(AccessError::WindowState);
    }
    let binding = if req.length == 0 && !type2 {
        MwBinding {
            key: req.new_rkey,
            mr: None,
            addr: 0,
            length: 0,
            access: Access::empty(),
            qp: None,
        }
    } else {
        let mr = check(mem, req.mr_lkey, pd, req.addr, req.length, Access::MW_BIND)?;
        if req
            .access
            .intersects(Access::REMOTE_WRITE | Access::REMOTE_ATOMIC)
            && !mr.access.contains(Access::LOCAL_WRITE)
        {
            return Err(AccessError::NoAccess(Access::LOCAL_WRITE));
        }
        MwBinding {
            key: req.new_rkey,
            mr: Some(req.mr_lkey),
            addr: req.addr,
            length: req.length,
            access: req.access,
            qp: type2.then_some(qpn),
        }
    };
    mem.bind_mw(req.mw, &binding)
}

/// Checks and performs a fast registration (IB_WR_REG_MR) of region `key` from `pd`: the new
/// key keeps the index, the rest is the host's (the region must be free).
pub fn reg_mr<M: Memory + ?Sized>(
    mem: &mut M,
    pd: Pd,
    key: u32,
    new_key: u32,
    access: Access,
) -> Result<(), AccessError> {
    if new_key >> 8 != key >> 8 {
        return Err(AccessError::KeyIndex);
    }
    if let Some(info) = mem.lookup(key) {
        if info.kind != KeyKind::Mr {
            return Err(AccessError::WrongKeyKind);
        }
    }
    mem.reg_mr(key, new_key, access, pd)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct One(MrInfo);

    impl Memory for One {
        fn lookup(&self, key: u32) -> Option<MrInfo> {
            (key == 7).then_some(self.0)
        }
        fn read(&self, _: u32, _: u64, _: &mut [u8]) {}
        fn write(&mut self, _: u32, _: u64, _: &[u8]) {}
        fn atomic(&mut self, _: u32, _: u64, _: AtomicOp) -> u64 {
            0
        }
        fn invalidate(&mut self, _: u32, _: Pd) -> Result<(), AccessError> {
            Ok(())
        }
    }

    #[test]
    fn checks_key_pd_access_and_bounds() {
        let m = One(MrInfo::region(
            Pd(1),
            0x1000,
            0x100,
            Access::LOCAL_WRITE | Access::REMOTE_READ,
        ));
        assert!(check(&m, 7, Pd(1), 0x1000, 0x100, Access::REMOTE_READ).is_ok());
        assert_eq!(
            check(&m, 8, Pd(1), 0x1000, 1, Access::empty()),
            Err(AccessError::UnknownKey(8))
        );
        assert_eq!(
            check(&m, 7, Pd(2), 0x1000, 1, Access::empty()),
            Err(AccessError::WrongPd)
        );
        assert_eq!(
            check(&m, 7, Pd(1), 0x1000, 1, Access::REMOTE_WRITE),
            Err(AccessError::NoAccess(Access::REMOTE_WRITE))
        );
        assert_eq!(
            check(&m, 7, Pd(1), 0x10ff, 2, Access::empty()),
            Err(AccessError::OutOfBounds)
        );
        assert_eq!(
            check(&m, 7, Pd(1), 0xfff, 1, Access::empty()),
            Err(AccessError::OutOfBounds)
        );
        assert_eq!(
            check(&m, 7, Pd(1), u64::MAX, 2, Access::empty()),
            Err(AccessError::OutOfBounds)
        );
    }
}
