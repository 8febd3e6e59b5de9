//! Memory the transport reaches through the host: regions named by keys, and the one place where
//! key lookup, protection-domain match, access rights and bounds are checked.

use core::fmt;

use rxe_wire::{PayloadSink, PayloadSource};

use crate::verbs::Access;

/// A protection domain handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Pd(pub u32);

/// What the host knows about a registered memory region (or a bound memory window).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MrInfo {
    /// Protection domain the region belongs to.
    pub pd: Pd,
    /// First virtual address of the region.
    pub addr: u64,
    /// Length in bytes.
    pub length: u64,
    /// Access rights granted at registration.
    pub access: Access,
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
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AccessError::UnknownKey(k) => write!(f, "unknown key {k:#010x}"),
            AccessError::WrongPd => f.write_str("key belongs to another protection domain"),
            AccessError::NoAccess(a) => write!(f, "region does not grant {a:?}"),
            AccessError::OutOfBounds => f.write_str("range outside the region"),
            AccessError::Misaligned => f.write_str("atomic address not 8-byte aligned"),
        }
    }
}

impl core::error::Error for AccessError {}

/// Checks that `len` bytes at `addr` of region `key` may be accessed from `pd` with `need`.
///
/// This is the only access check in the crate: lkeys of local scatter/gather lists and rkeys of
/// remote requests both go through it.
pub fn check<M: Memory + ?Sized>(
    mem: &M,
    key: u32,
    pd: Pd,
    addr: u64,
    len: u64,
    need: Access,
) -> Result<MrInfo, AccessError> {
    let mr = mem.lookup(key).ok_or(AccessError::UnknownKey(key))?;
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
    Ok(mr)
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
        let m = One(MrInfo {
            pd: Pd(1),
            addr: 0x1000,
            length: 0x100,
            access: Access::LOCAL_WRITE | Access::REMOTE_READ,
        });
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
