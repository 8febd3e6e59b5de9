//! Management datagrams (IBTA 13.4): the 24-byte common header and the 256-byte MAD that
//! carries it. On RoCE, MADs travel on QP1 (the GSI) as UD SEND_ONLY with Q_Key
//! [`GSI_QKEY`]; the connection manager ([`cm`](crate::cm)) is the class rxe peers exchange.

use crate::error::{check_len, BadMad, Error, Result};
use crate::{be16, be32, be64};

mod field {
    use crate::Field;
    pub(crate) const BASE_VERSION: usize = 0;
    pub(crate) const MGMT_CLASS: usize = 1;
    pub(crate) const CLASS_VERSION: usize = 2;
    pub(crate) const METHOD: usize = 3;
    pub(crate) const STATUS: Field = 4..6;
    pub(crate) const CLASS_SPECIFIC: Field = 6..8;
    pub(crate) const TID: Field = 8..16;
    pub(crate) const ATTR_ID: Field = 16..18;
    pub(crate) const RESERVED: Field = 18..20;
    pub(crate) const ATTR_MOD: Field = 20..24;
}

/// Length of the MAD common header.
pub const HEADER_LEN: usize = field::ATTR_MOD.end;
/// Length of a MAD (IB_MGMT_MAD_SIZE): the UD payload of every GSI packet.
pub const MAD_LEN: usize = 256;
/// Length of the class data after the common header.
pub const DATA_LEN: usize = MAD_LEN - HEADER_LEN;
/// The Q_Key of QP1 (the GSI), which rxe puts in the DETH of every MAD.
pub const GSI_QKEY: u32 = 0x8001_0000;
/// The QP number of the GSI.
pub const GSI_QPN: u32 = 1;
/// MAD base version.
pub const BASE_VERSION: u8 = 1;
/// Management class of the communication manager.
pub const CLASS_CM: u8 = 0x07;
/// Class version of the communication manager.
pub const CM_CLASS_VERSION: u8 = 2;

/// MAD methods (IBTA 13.4.5); bit 7 marks a response.
pub mod method {
    /// Get.
    pub const GET: u8 = 0x01;
    /// Set.
    pub const SET: u8 = 0x02;
    /// Send: what every CM message uses.
    pub const SEND: u8 = 0x03;
    /// Response to a Get or Set.
    pub const GET_RESP: u8 = 0x81;
}

/// A read/write view of a MAD common header.
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
    /// Base version (1).
    pub fn base_version(&self) -> u8 {
        self.buffer.as_ref()[field::BASE_VERSION]
    }
    /// Management class.
    pub fn mgmt_class(&self) -> u8 {
        self.buffer.as_ref()[field::MGMT_CLASS]
    }
    /// Class version.
    pub fn class_version(&self) -> u8 {
        self.buffer.as_ref()[field::CLASS_VERSION]
    }
    /// Method, with the response bit.
    pub fn method(&self) -> u8 {
        self.buffer.as_ref()[field::METHOD]
    }
    /// Status.
    pub fn status(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::STATUS])
    }
    /// Class-specific field.
    pub fn class_specific(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::CLASS_SPECIFIC])
    }
    /// Transaction ID.
    pub fn tid(&self) -> u64 {
        be64(&self.buffer.as_ref()[field::TID])
    }
    /// Attribute ID.
    pub fn attr_id(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::ATTR_ID])
    }
    /// Attribute modifier.
    pub fn attr_mod(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::ATTR_MOD])
    }
    /// The class data after the header.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

/// A parsed MAD common header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Base version (1).
    pub base_version: u8,
    /// Management class.
    pub mgmt_class: u8,
    /// Class version.
    pub class_version: u8,
    /// Method, with the response bit.
    pub method: u8,
    /// Status.
    pub status: u16,
    /// Class-specific field.
    pub class_specific: u16,
    /// Transaction ID: chosen by the sender of a request, echoed in the response.
    pub tid: u64,
    /// Attribute ID: what the data is.
    pub attr_id: u16,
    /// Attribute modifier.
    pub attr_mod: u32,
}

impl Repr {
    /// A CM Send MAD header for `attr_id`.
    pub const fn cm(tid: u64, attr_id: u16) -> Repr {
        Repr {
            base_version: BASE_VERSION,
            mgmt_class: CLASS_CM,
            class_version: CM_CLASS_VERSION,
            method: method::SEND,
            status: 0,
            class_specific: 0,
            tid,
            attr_id,
            attr_mod: 0,
        }
    }
    /// Parses a header (any class; the base version must be 1).
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr> {
        check_len(p.buffer.as_ref(), HEADER_LEN)?;
        if p.base_version() != BASE_VERSION {
            return Err(Error::BadMad(BadMad::BaseVersion(p.base_version())));
        }
        Ok(Repr {
            base_version: p.base_version(),
            mgmt_class: p.mgmt_class(),
            class_version: p.class_version(),
            method: p.method(),
            status: p.status(),
            class_specific: p.class_specific(),
            tid: p.tid(),
            attr_id: p.attr_id(),
            attr_mod: p.attr_mod(),
        })
    }
    /// Writes the header (the reserved bytes become 0) into the first [`HEADER_LEN`] bytes.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        check_len(buf, HEADER_LEN)?;
        buf[field::BASE_VERSION] = self.base_version;
        buf[field::MGMT_CLASS] = self.mgmt_class;
        buf[field::CLASS_VERSION] = self.class_version;
        buf[field::METHOD] = self.method;
        buf[field::STATUS].copy_from_slice(&self.status.to_be_bytes());
        buf[field::CLASS_SPECIFIC].copy_from_slice(&self.class_specific.to_be_bytes());
        buf[field::TID].copy_from_slice(&self.tid.to_be_bytes());
        buf[field::ATTR_ID].copy_from_slice(&self.attr_id.to_be_bytes());
        buf[field::RESERVED].fill(0);
        buf[field::ATTR_MOD].copy_from_slice(&self.attr_mod.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_rejects_other_base_versions() {
        let r = Repr::cm(0x2_36af_49ae, 0x10);
        let mut b = [0xffu8; HEADER_LEN];
        r.emit(&mut b).unwrap();
        assert_eq!(
            b,
            [
                1, 7, 2, 3, 0, 0, 0, 0, 0, 0, 0, 2, 0x36, 0xaf, 0x49, 0xae, 0, 0x10, 0, 0, 0, 0, 0,
                0
            ]
        );
        assert_eq!(Repr::parse(&Packet::new_unchecked(&b[..])), Ok(r));
        b[0] = 2;
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&b[..])),
            Err(Error::BadMad(BadMad::BaseVersion(2)))
        );
        assert!(Packet::new_checked(&b[..23]).is_err());
        assert!(r.emit(&mut [0u8; 23]).is_err());
    }
}
