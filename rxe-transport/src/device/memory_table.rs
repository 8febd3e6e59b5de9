//! The device's memory regions and windows: key allocation as Linux rxe does it (a 24-bit index
//! and an 8-bit variable key part) and the [`Memory`] the QPs reach them through.

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::memory::{
    AccessError, AtomicOp, KeyKind, Memory, MrInfo, MwBinding, MwInfo, MwType, Pd,
};
use crate::verbs::Access;

/// Bytes a host lends the device as a memory region ([`Device::reg_mr_with`]): the device
/// reads and writes them only through these methods, from the thread that drives the device,
/// until the region is deregistered or the device dropped.
///
/// A frontend that registers memory it does not own (caller memory behind a raw pointer, for
/// FFI) implements this in its own crate, with the `unsafe` that takes; this crate has none.
///
/// [`Device::reg_mr_with`]: crate::device::Device::reg_mr_with
pub trait RegionMemory: Send {
    /// The whole region.
    fn bytes(&self) -> &[u8];
    /// The whole region, writable.
    fn bytes_mut(&mut self) -> &mut [u8];
}

/// A region's bytes: owned by the device, or lent by the host.
pub(crate) enum Backing {
    Owned(Vec<u8>),
    Lent(Box<dyn RegionMemory>),
}

impl Backing {
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Backing::Owned(v) => v,
            Backing::Lent(m) => m.bytes(),
        }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        match self {
            Backing::Owned(v) => v,
            Backing::Lent(m) => m.bytes_mut(),
        }
    }
}

impl core::fmt::Debug for Backing {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Backing::Owned(v) => write!(f, "Owned({} bytes)", v.len()),
            Backing::Lent(m) => write!(f, "Lent({} bytes)", m.bytes().len()),
        }
    }
}

/// One region or window.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) key: u32,
    pub(crate) pd: Pd,
    /// The address the peer and work requests use for the first byte.
    pub(crate) iova: u64,
    pub(crate) data: Backing,
    pub(crate) access: Access,
    pub(crate) valid: bool,
    pub(crate) window: Option<MwInfo>,
    pub(crate) window_len: u64,
}

/// Regions and windows by key index.
#[derive(Debug, Default)]
pub(crate) struct MemTable {
    entries: Vec<Option<Entry>>,
}

impl MemTable {
    fn index(key: u32) -> usize {
        (key >> 8) as usize
    }

    /// Adds an entry with a fresh index and key byte `variant`; returns its key.
    pub(crate) fn insert(&mut self, mut e: Entry, variant: u8) -> u32 {
        // Index 0 is never used: key 0 would look like "no key".
        let idx = match self.entries.iter().skip(1).position(Option::is_none) {
            Some(i) => i + 1,
            None => {
                if self.entries.is_empty() {
                    self.entries.push(None);
                }
                self.entries.push(None);
                self.entries.len() - 1
            }
        };
        e.key = ((idx as u32) << 8) | u32::from(variant);
        let key = e.key;
        self.entries[idx] = Some(e);
        key
    }

    pub(crate) fn remove(&mut self, key: u32) -> Option<Entry> {
        let slot = self.entries.get_mut(Self::index(key))?;
        if slot.as_ref().is_some_and(|e| e.key == key) {
            slot.take()
        } else {
            None
        }
    }

    pub(crate) fn get(&self, key: u32) -> Option<&Entry> {
        self.entries
            .get(Self::index(key))?
            .as_ref()
            .filter(|e| e.key == key)
    }

    pub(crate) fn get_mut(&mut self, key: u32) -> Option<&mut Entry> {
        self.entries
            .get_mut(Self::index(key))?
            .as_mut()
            .filter(|e| e.key == key)
    }

    /// The entry at `key`'s index whatever its key byte (for re-keying).
    fn at_index_mut(&mut self, key: u32) -> Option<&mut Entry> {
        self.entries.get_mut(Self::index(key))?.as_mut()
    }

    /// Whether a region or window of `pd` is registered.
    pub(crate) fn uses_pd(&self, pd: Pd) -> bool {
        self.entries.iter().flatten().any(|e| e.pd == pd)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.iter().filter(|e| e.is_some()).count()
    }

    fn bytes(&self, key: u32, addr: u64, len: usize) -> Option<&[u8]> {
        let e = self.get(key)?;
        let off = usize::try_from(addr.checked_sub(e.iova)?).ok()?;
        e.data.as_slice().get(off..off.checked_add(len)?)
    }

    fn bytes_mut(&mut self, key: u32, addr: u64, len: usize) -> Option<&mut [u8]> {
        let e = self.get_mut(key)?;
        let off = usize::try_from(addr.checked_sub(e.iova)?).ok()?;
        e.data.as_mut_slice().get_mut(off..off.checked_add(len)?)
    }
}

impl Memory for MemTable {
    fn lookup(&self, key: u32) -> Option<MrInfo> {
        let e = self.get(key).filter(|e| e.valid)?;
        Some(MrInfo {
            pd: e.pd,
            addr: e.iova,
            length: match e.window {
                Some(_) => e.window_len,
                None => e.data.as_slice().len() as u64,
            },
            access: e.access,
            kind: match e.window {
                Some(w) => KeyKind::Mw(w),
                None => KeyKind::Mr,
            },
        })
    }
    fn read(&self, key: u32, addr: u64, out: &mut [u8]) {
        // The transport checked the range; a miss leaves zeros rather than panicking.
        match self.bytes(key, addr, out.len()) {
            Some(b) => out.copy_from_slice(b),
            None => out.fill(0),
        }
    }
    fn write(&mut self, key: u32, addr: u64, data: &[u8]) {
        if let Some(b) = self.bytes_mut(key, addr, data.len()) {
            b.copy_from_slice(data);
        }
    }
    fn slice(&self, key: u32, addr: u64, len: usize) -> Option<&[u8]> {
        self.bytes(key, addr, len)
    }
    fn slice_mut(&mut self, key: u32, addr: u64, len: usize) -> Option<&mut [u8]> {
        self.bytes_mut(key, addr, len)
    }
    fn atomic(&mut self, key: u32, addr: u64, op: AtomicOp) -> u64 {
        let Some(cell) = self.bytes_mut(key, addr, 8) else {
            return 0;
        };
        let mut b = [0u8; 8];
        b.copy_from_slice(cell);
        let old = u64::from_ne_bytes(b);
        let new = match op {
            AtomicOp::CmpSwp { compare, swap } => {
                if old == compare {
                    swap
                } else {
                    old
                }
            }
            AtomicOp::FetchAdd(v) => old.wrapping_add(v),
        };
        cell.copy_from_slice(&new.to_ne_bytes());
        old
    }
    fn invalidate(&mut self, key: u32, pd: Pd) -> Result<(), AccessError> {
        let e = self.get_mut(key).ok_or(AccessError::UnknownKey(key))?;
        if e.pd != pd {
            return Err(AccessError::WrongPd);
        }
        match e.window.as_mut() {
            Some(w) => {
                w.mr = None;
                w.qp = None;
                e.window_len = 0;
                e.access = Access::empty();
            }
            None => e.valid = false,
        }
        Ok(())
    }
    fn bind_mw(&mut self, mw_key: u32, b: &MwBinding) -> Result<(), AccessError> {
        let e = self
            .get_mut(mw_key)
            .filter(|e| e.window.is_some())
            .ok_or(AccessError::UnknownKey(mw_key))?;
        e.key = b.key;
        e.iova = b.addr;
        e.window_len = b.length;
        e.access = b.access;
        if let Some(w) = e.window.as_mut() {
            w.mr = b.mr;
            w.qp = b.qp;
        }
        Ok(())
    }
    fn reg_mr(
        &mut self,
        key: u32,
        new_key: u32,
        access: Access,
        pd: Pd,
    ) -> Result<(), AccessError> {
        let e = self
            .at_index_mut(key)
            .filter(|e| e.key == key && e.window.is_none())
            .ok_or(AccessError::UnknownKey(key))?;
        if e.pd != pd {
            return Err(AccessError::WrongPd);
        }
        if e.valid {
            return Err(AccessError::WindowState);
        }
        e.key = new_key;
        e.access = access;
        e.valid = true;
        Ok(())
    }
}

/// A window entry, unbound.
pub(crate) fn window(pd: Pd, mw_type: MwType) -> Entry {
    Entry {
        key: 0,
        pd,
        iova: 0,
        data: Backing::Owned(Vec::new()),
        access: Access::empty(),
        valid: true,
        window: Some(MwInfo {
            mw_type,
            mr: None,
            qp: None,
        }),
        window_len: 0,
    }
}
