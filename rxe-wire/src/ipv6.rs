//! IPv6 header, as far as RoCEv2 needs it: next header UDP, no extension headers.

use core::net::Ipv6Addr;

use crate::checksum;
use crate::error::{check_len, Error, NotRoce, Result};
use crate::{be16, be32};

pub(crate) mod field {
    use crate::Field;
    /// Version, traffic class and flow label: the ICRC masks all but the version.
    pub(crate) const VER_TC_FLOW: Field = 0..4;
    pub(crate) const PAYLOAD_LEN: Field = 4..6;
    pub(crate) const NEXT_HEADER: usize = 6;
    /// Masked to 0xff in the ICRC.
    pub(crate) const HOP_LIMIT: usize = 7;
    pub(crate) const SRC: Field = 8..24;
    pub(crate) const DST: Field = 24..40;
}

/// Length of the IPv6 header.
pub const HEADER_LEN: usize = field::DST.end;
/// Offset of the hop limit, which the ICRC masks.
pub(crate) const HOP_LIMIT_OFFSET: usize = field::HOP_LIMIT;

/// A parsed IPv6 header of a RoCEv2 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address (a RoCEv2 GID).
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// Traffic class (DSCP and ECN).
    pub traffic_class: u8,
    /// 20-bit flow label.
    pub flow_label: u32,
    /// Hop limit.
    pub hop_limit: u8,
}

fn addr(b: &[u8]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(b);
    Ipv6Addr::from(a)
}

impl Repr {
    /// Parses an IPv6 header whose next header is UDP; returns it and the IP payload (trimmed to
    /// the payload length).
    pub fn parse(buf: &[u8]) -> Result<(Repr, &[u8])> {
        check_len(buf, HEADER_LEN)?;
        let word = be32(&buf[field::VER_TC_FLOW]);
        let version = (word >> 28) as u8;
        if version != 6 {
            return Err(Error::BadIpVersion(version));
        }
        let payload_len = usize::from(be16(&buf[field::PAYLOAD_LEN]));
        if HEADER_LEN + payload_len > buf.len() {
            return Err(Error::BadLength);
        }
        let next = buf[field::NEXT_HEADER];
        if next != crate::ipv4::PROTOCOL_UDP {
            return Err(Error::NotRoce(NotRoce::IpProtocol(next)));
        }
        let repr = Repr {
            src: addr(&buf[field::SRC]),
            dst: addr(&buf[field::DST]),
            traffic_class: (word >> 20) as u8,
            flow_label: word & 0x000f_ffff,
            hop_limit: buf[field::HOP_LIMIT],
        };
        Ok((repr, &buf[HEADER_LEN..HEADER_LEN + payload_len]))
    }

    /// Writes the header for `payload_len` bytes of UDP to the start of `buf`.
    pub fn emit(&self, buf: &mut [u8], payload_len: usize) -> Result<()> {
        if buf.len() < HEADER_LEN {
            return Err(Error::BufferTooSmall {
                required: HEADER_LEN,
            });
        }
        if self.flow_label > 0x000f_ffff {
            return Err(Error::FieldOverflow);
        }
        let len = u16::try_from(payload_len).map_err(|_| Error::FieldOverflow)?;
        let word = (6u32 << 28) | (u32::from(self.traffic_class) << 20) | self.flow_label;
        buf[field::VER_TC_FLOW].copy_from_slice(&word.to_be_bytes());
        buf[field::PAYLOAD_LEN].copy_from_slice(&len.to_be_bytes());
        buf[field::NEXT_HEADER] = crate::ipv4::PROTOCOL_UDP;
        buf[field::HOP_LIMIT] = self.hop_limit;
        buf[field::SRC].copy_from_slice(&self.src.octets());
        buf[field::DST].copy_from_slice(&self.dst.octets());
        Ok(())
    }

    /// One's-complement sum of the UDP pseudo-header for `udp_len` bytes of UDP.
    pub fn pseudo_header_sum(&self, udp_len: u16) -> u32 {
        let mut acc = checksum::sum(0, &self.src.octets());
        acc = checksum::sum(acc, &self.dst.octets());
        acc + u32::from(crate::ipv4::PROTOCOL_UDP) + u32::from(udp_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repr() -> Repr {
        Repr {
            src: "fe80::5054:ff:fe77:2".parse().unwrap(),
            dst: "fe80::5054:ff:fe77:1".parse().unwrap(),
            traffic_class: 0x68,
            flow_label: 0xabcde,
            hop_limit: 1,
        }
    }

    #[test]
    fn round_trips() {
        let mut b = [0xa5u8; 48];
        repr().emit(&mut b, 8).unwrap();
        assert_eq!(&b[..4], &[0x66, 0x8a, 0xbc, 0xde]);
        let (r, payload) = Repr::parse(&b).unwrap();
        assert_eq!(r, repr());
        assert_eq!(payload.len(), 8);
    }

    #[test]
    fn rejects_bad_version_lengths_and_other_protocols() {
        let mut b = [0u8; 48];
        repr().emit(&mut b, 8).unwrap();
        let mut x = b;
        x[0] = 0x46;
        assert_eq!(Repr::parse(&x).unwrap_err(), Error::BadIpVersion(4));
        let mut x = b;
        x[5] = 9;
        assert_eq!(Repr::parse(&x).unwrap_err(), Error::BadLength);
        let mut x = b;
        x[6] = 58;
        assert_eq!(
            Repr::parse(&x).unwrap_err(),
            Error::NotRoce(NotRoce::IpProtocol(58))
        );
        assert!(matches!(
            Repr::parse(&b[..39]),
            Err(Error::Truncated { .. })
        ));
        assert_eq!(
            Repr {
                flow_label: 1 << 20,
                ..repr()
            }
            .emit(&mut b, 8)
            .unwrap_err(),
            Error::FieldOverflow
        );
    }
}
