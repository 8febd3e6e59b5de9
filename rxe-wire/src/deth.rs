//! Datagram Extended Transport Header (IBTA 9.3.2): Q_Key and source QP of a UD packet.

use crate::error::{check_len, Result};
use crate::types::{QKey, Qpn};
use crate::{be24, be32, put24};

mod field {
    use crate::Field;
    pub(crate) const QKEY: Field = 0..4;
    pub(crate) const RESERVED: usize = 4;
    pub(crate) const SRC_QP: Field = 5..8;
}

/// Length of the DETH.
pub const HEADER_LEN: usize = field::SRC_QP.end;

/// A read/write view of a DETH.
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
    /// Returns the queue key.
    pub fn qkey(&self) -> QKey {
        QKey(be32(&self.buffer.as_ref()[field::QKEY]))
    }
    /// Returns the source QP number.
    pub fn src_qp(&self) -> Qpn {
        Qpn::new(be24(&self.buffer.as_ref()[field::SRC_QP]))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the queue key.
    pub fn set_qkey(&mut self, qkey: QKey) {
        self.buffer.as_mut()[field::QKEY].copy_from_slice(&qkey.0.to_be_bytes());
    }
    /// Sets the source QP; the reserved byte becomes 0.
    pub fn set_src_qp(&mut self, qpn: Qpn) {
        let b = self.buffer.as_mut();
        b[field::RESERVED] = 0;
        put24(&mut b[field::SRC_QP], qpn.value());
    }
}

/// A parsed DETH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Queue key the receiver checks.
    pub qkey: QKey,
    /// Sender's QP number.
    pub src_qp: Qpn,
}

impl Repr {
    /// Parses a DETH.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Repr {
        Repr {
            qkey: p.qkey(),
            src_qp: p.src_qp(),
        }
    }
    /// Writes the DETH.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_qkey(self.qkey);
        p.set_src_qp(self.src_qp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A CM MAD's DETH (rping.pcap): GSI Q_Key, source QP 1.
    static PACKET_BYTES: [u8; 8] = [0x80, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01];

    #[test]
    fn round_trips_and_rejects_short_buffers() {
        let r = Repr::parse(&Packet::new_checked(&PACKET_BYTES[..]).unwrap());
        assert_eq!(
            r,
            Repr {
                qkey: QKey::GSI,
                src_qp: Qpn::GSI
            }
        );
        let mut buf = [0xa5u8; 8];
        r.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, PACKET_BYTES);
        assert!(Packet::new_checked(&PACKET_BYTES[..7]).is_err());
    }
}
