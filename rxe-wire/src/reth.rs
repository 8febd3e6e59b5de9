//! RDMA Extended Transport Header (IBTA 9.3.3): the remote buffer of a WRITE, READ, FLUSH or
//! ATOMIC WRITE.

use crate::error::{check_len, Result};
use crate::types::Rkey;
use crate::{be32, be64};

mod field {
    use crate::Field;
    pub(crate) const VA: Field = 0..8;
    pub(crate) const RKEY: Field = 8..12;
    pub(crate) const DMA_LEN: Field = 12..16;
}

/// Length of the RETH.
pub const HEADER_LEN: usize = field::DMA_LEN.end;

/// A read/write view of a RETH.
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
    /// Returns the remote virtual address.
    pub fn va(&self) -> u64 {
        be64(&self.buffer.as_ref()[field::VA])
    }
    /// Returns the remote key.
    pub fn rkey(&self) -> Rkey {
        Rkey(be32(&self.buffer.as_ref()[field::RKEY]))
    }
    /// Returns the DMA length of the whole message.
    pub fn dma_len(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::DMA_LEN])
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
    /// Sets the DMA length.
    pub fn set_dma_len(&mut self, len: u32) {
        self.buffer.as_mut()[field::DMA_LEN].copy_from_slice(&len.to_be_bytes());
    }
}

/// A parsed RETH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Remote virtual address.
    pub va: u64,
    /// Remote key.
    pub rkey: Rkey,
    /// Length of the whole message in bytes.
    pub dma_len: u32,
}

impl Repr {
    /// Parses a RETH.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Repr {
        Repr {
            va: p.va(),
            rkey: p.rkey(),
            dma_len: p.dma_len(),
        }
    }
    /// Writes the RETH.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_va(self.va);
        p.set_rkey(self.rkey);
        p.set_dma_len(self.dma_len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static PACKET_BYTES: [u8; 16] = [
        0x00, 0x00, 0x55, 0x8e, 0x1b, 0x2c, 0x30, 0x00, 0x00, 0x00, 0x12, 0x34, 0x00, 0x00, 0x10,
        0x00,
    ];

    #[test]
    fn round_trips_and_rejects_short_buffers() {
        let p = Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        let r = Repr::parse(&p);
        assert_eq!(
            r,
            Repr {
                va: 0x558e_1b2c_3000,
                rkey: Rkey(0x1234),
                dma_len: 4096
            }
        );
        let mut buf = [0xa5u8; 16];
        r.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, PACKET_BYTES);
        assert!(Packet::new_checked(&PACKET_BYTES[..15]).is_err());
    }
}
