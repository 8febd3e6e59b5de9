//! Atomic Extended Transport Header (IBTA 9.3.4): COMPARE & SWAP and FETCH & ADD operands.

use crate::error::{check_len, Result};
use crate::types::Rkey;
use crate::{be32, be64};

mod field {
    use crate::Field;
    pub(crate) const VA: Field = 0..8;
    pub(crate) const RKEY: Field = 8..12;
    pub(crate) const SWAP_ADD: Field = 12..20;
    pub(crate) const COMPARE: Field = 20..28;
}

/// Length of the AtomicETH.
pub const HEADER_LEN: usize = field::COMPARE.end;

/// A read/write view of an AtomicETH.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking its length.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }
    /// Wraps a buffer that holds at least [`HEADER_LEN`] bytes.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        check_len(buffer.as_ref(), HEADER_LEN)?;
        Ok(Packet { buffer })
    }
    /// Returns the remote virtual address (8-byte aligned for rxe).
    pub fn va(&self) -> u64 {
        be64(&self.buffer.as_ref()[field::VA])
    }
    /// Returns the remote key.
    pub fn rkey(&self) -> Rkey {
        Rkey(be32(&self.buffer.as_ref()[field::RKEY]))
    }
    /// Returns the swap (CMP_SWAP) or add (FETCH_ADD) operand.
    pub fn swap_add(&self) -> u64 {
        be64(&self.buffer.as_ref()[field::SWAP_ADD])
    }
    /// Returns the compare operand (CMP_SWAP only).
    pub fn compare(&self) -> u64 {
        be64(&self.buffer.as_ref()[field::COMPARE])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the remote virtual address.
    pub fn set_va(&mut self, va: u64) {
        self.buffer.as_mut()[field::VA].copy_from_slice(&va.to_be_bytes());
    }
    /// Sets the remote key.
    pub fn set_rkey(&mut self, rkey: Rkey) {
        self.buffer.as_mut()[field::RKEY].copy_from_slice(&rkey.0.to_be_bytes());
    }
    /// Sets the swap/add operand.
    pub fn set_swap_add(&mut self, v: u64) {
        self.buffer.as_mut()[field::SWAP_ADD].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets the compare operand.
    pub fn set_compare(&mut self, v: u64) {
        self.buffer.as_mut()[field::COMPARE].copy_from_slice(&v.to_be_bytes());
    }
}

/// A parsed AtomicETH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Remote virtual address.
    pub va: u64,
    /// Remote key.
    pub rkey: Rkey,
    /// Swap (CMP_SWAP) or add (FETCH_ADD) operand.
    pub swap_add: u64,
    /// Compare operand.
    pub compare: u64,
}

impl Repr {
    /// Parses an AtomicETH.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Repr {
        Repr {
            va: p.va(),
            rkey: p.rkey(),
            swap_add: p.swap_add(),
            compare: p.compare(),
        }
    }
    /// Writes the AtomicETH.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_va(self.va);
        p.set_rkey(self.rkey);
        p.set_swap_add(self.swap_add);
        p.set_compare(self.compare);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_short_buffers() {
        let r = Repr {
            va: 0x1000,
            rkey: Rkey(0xabcd),
            swap_add: 7,
            compare: u64::MAX,
        };
        let mut buf = [0xa5u8; HEADER_LEN];
        r.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[12..20], &7u64.to_be_bytes());
        assert_eq!(Repr::parse(&Packet::new_checked(&buf[..]).unwrap()), r);
        assert!(Packet::new_checked(&buf[..27]).is_err());
    }
}
