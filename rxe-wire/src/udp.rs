//! UDP header of a RoCEv2 packet. The checksum is optional over IPv4 (Linux rxe sends 0).

use crate::be16;
use crate::error::{check_len, Error, NotRoce, Result};

pub(crate) mod field {
    use crate::Field;
    pub(crate) const SRC_PORT: Field = 0..2;
    pub(crate) const DST_PORT: Field = 2..4;
    pub(crate) const LENGTH: Field = 4..6;
    /// Masked to 0xffff in the ICRC.
    pub(crate) const CHECKSUM: Field = 6..8;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = field::CHECKSUM.end;
/// The IANA port of RoCEv2.
pub const ROCE_PORT: u16 = 4791;

/// A parsed UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source port (rxe derives it from the QPNs or the flow label, 0xc000-0xffff).
    pub src_port: u16,
    /// Destination port, 4791 for RoCEv2.
    pub dst_port: u16,
    /// Whether the datagram carries a checksum. When false the field is 0, as Linux rxe sends it.
    pub checksum: bool,
}

impl Repr {
    /// Parses a UDP header to `dst_port`; returns it, the checksum field and the UDP payload.
    ///
    /// The UDP length must match the IP payload exactly.
    pub fn parse(buf: &[u8], roce_port: u16) -> Result<(Repr, u16, &[u8])> {
        check_len(buf, HEADER_LEN)?;
        let dst_port = be16(&buf[field::DST_PORT]);
        if dst_port != roce_port {
            return Err(Error::NotRoce(NotRoce::UdpPort(dst_port)));
        }
        let len = usize::from(be16(&buf[field::LENGTH]));
        if len != buf.len() {
            return Err(Error::BadLength);
        }
        let csum = be16(&buf[field::CHECKSUM]);
        let repr = Repr {
            src_port: be16(&buf[field::SRC_PORT]),
            dst_port,
            checksum: csum != 0,
        };
        Ok((repr, csum, &buf[HEADER_LEN..]))
    }

    /// Writes the header for `payload_len` bytes with a zero checksum field.
    pub fn emit(&self, buf: &mut [u8], payload_len: usize) -> Result<()> {
        if buf.len() < HEADER_LEN {
            return Err(Error::BufferTooSmall {
                required: HEADER_LEN,
            });
        }
        let len = u16::try_from(HEADER_LEN + payload_len).map_err(|_| Error::FieldOverflow)?;
        buf[field::SRC_PORT].copy_from_slice(&self.src_port.to_be_bytes());
        buf[field::DST_PORT].copy_from_slice(&self.dst_port.to_be_bytes());
        buf[field::LENGTH].copy_from_slice(&len.to_be_bytes());
        buf[field::CHECKSUM].copy_from_slice(&[0, 0]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_checks_port_and_length() {
        let r = Repr {
            src_port: 0xd872,
            dst_port: ROCE_PORT,
            checksum: false,
        };
        let mut b = [0xa5u8; 12];
        r.emit(&mut b, 4).unwrap();
        assert_eq!(b[..8], [0xd8, 0x72, 0x12, 0xb7, 0, 12, 0, 0]);
        let (p, csum, payload) = Repr::parse(&b, ROCE_PORT).unwrap();
        assert_eq!((p, csum, payload.len()), (r, 0, 4));
        assert_eq!(
            Repr::parse(&b[..11], ROCE_PORT).unwrap_err(),
            Error::BadLength
        );
        assert_eq!(
            Repr::parse(&b, 4792).unwrap_err(),
            Error::NotRoce(NotRoce::UdpPort(4791))
        );
        assert!(matches!(
            Repr::parse(&b[..7], ROCE_PORT),
            Err(Error::Truncated { .. })
        ));
    }
}
