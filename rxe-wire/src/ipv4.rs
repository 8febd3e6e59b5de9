//! IPv4 header, as far as RoCEv2 needs it: no options, no fragments, protocol UDP.

use core::net::Ipv4Addr;

use crate::be16;
use crate::checksum;
use crate::error::{check_len, Error, NotRoce, Result, Unsupported};

pub(crate) mod field {
    use crate::Field;
    pub(crate) const VER_IHL: usize = 0;
    /// DSCP and ECN: masked to 0xff in the ICRC.
    pub(crate) const TOS: usize = 1;
    pub(crate) const TOTAL_LEN: Field = 2..4;
    pub(crate) const IDENT: Field = 4..6;
    pub(crate) const FLAGS_FRAG: Field = 6..8;
    /// Masked to 0xff in the ICRC.
    pub(crate) const TTL: usize = 8;
    pub(crate) const PROTOCOL: usize = 9;
    /// Masked to 0xffff in the ICRC.
    pub(crate) const CHECKSUM: Field = 10..12;
    pub(crate) const SRC: Field = 12..16;
    pub(crate) const DST: Field = 16..20;
}

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = field::DST.end;
/// IP protocol number of UDP.
pub const PROTOCOL_UDP: u8 = 17;

const DF: u16 = 0x4000;
const MF: u16 = 0x2000;
const FRAG_OFFSET: u16 = 0x1fff;

/// A parsed IPv4 header of a RoCEv2 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// DSCP and ECN bits (the verbs traffic class).
    pub tos: u8,
    /// Identification. Covered by the ICRC, so a receiver needs the value the sender used.
    pub ident: u16,
    /// Don't fragment (Linux rxe sets it).
    pub dont_frag: bool,
    /// Time to live (the verbs hop limit).
    pub ttl: u8,
}

impl Repr {
    /// Parses an IPv4 header carrying UDP; returns it and the IP payload (trimmed to the total
    /// length, so Ethernet padding is dropped).
    ///
    /// Checks version, header length, total length against the buffer, the header checksum (when
    /// `verify_checksum`), and rejects options and fragments.
    pub fn parse(buf: &[u8], verify_checksum: bool) -> Result<(Repr, &[u8])> {
        check_len(buf, HEADER_LEN)?;
        let version = buf[field::VER_IHL] >> 4;
        if version != 4 {
            return Err(Error::BadIpVersion(version));
        }
        let ihl = usize::from(buf[field::VER_IHL] & 0x0f) * 4;
        if ihl < HEADER_LEN {
            return Err(Error::BadLength);
        }
        let total = usize::from(be16(&buf[field::TOTAL_LEN]));
        if total < ihl || total > buf.len() {
            return Err(Error::BadLength);
        }
        if ihl > HEADER_LEN {
            return Err(Error::Unsupported(Unsupported::Ipv4Options));
        }
        if verify_checksum && checksum::sum(0, &buf[..HEADER_LEN]) != 0xffff {
            return Err(Error::BadIpChecksum);
        }
        let flags_frag = be16(&buf[field::FLAGS_FRAG]);
        if flags_frag & (MF | FRAG_OFFSET) != 0 {
            return Err(Error::Unsupported(Unsupported::Ipv4Fragment));
        }
        let protocol = buf[field::PROTOCOL];
        if protocol != PROTOCOL_UDP {
            return Err(Error::NotRoce(NotRoce::IpProtocol(protocol)));
        }
        let src = Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]);
        let dst = Ipv4Addr::new(buf[16], buf[17], buf[18], buf[19]);
        let repr = Repr {
            src,
            dst,
            tos: buf[field::TOS],
            ident: be16(&buf[field::IDENT]),
            dont_frag: flags_frag & DF != 0,
            ttl: buf[field::TTL],
        };
        Ok((repr, &buf[HEADER_LEN..total]))
    }

    /// Writes the header for `payload_len` bytes of UDP, with its checksum, to the start of `buf`.
    pub fn emit(&self, buf: &mut [u8], payload_len: usize) -> Result<()> {
        if buf.len() < HEADER_LEN {
            return Err(Error::BufferTooSmall {
                required: HEADER_LEN,
            });
        }
        let total = u16::try_from(HEADER_LEN + payload_len).map_err(|_| Error::FieldOverflow)?;
        let flags: u16 = if self.dont_frag { DF } else { 0 };
        let (src, dst) = (self.src.to_bits(), self.dst.to_bits());
        // The checksum from the field values, without reading back the bytes just written
        // (a load right after narrower stores to the same bytes waits for them to retire).
        let acc = (0x4500 | u32::from(self.tos))
            + u32::from(total)
            + u32::from(self.ident)
            + u32::from(flags)
            + (u32::from(self.ttl) << 8 | u32::from(PROTOCOL_UDP))
            + (src >> 16)
            + (src & 0xffff)
            + (dst >> 16)
            + (dst & 0xffff);
        let c = checksum::finish(acc);
        buf[field::VER_IHL] = 0x45;
        buf[field::TOS] = self.tos;
        buf[field::TOTAL_LEN].copy_from_slice(&total.to_be_bytes());
        buf[field::IDENT].copy_from_slice(&self.ident.to_be_bytes());
        buf[field::FLAGS_FRAG].copy_from_slice(&flags.to_be_bytes());
        buf[field::TTL] = self.ttl;
        buf[field::PROTOCOL] = PROTOCOL_UDP;
        buf[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
        buf[field::SRC].copy_from_slice(&src.to_be_bytes());
        buf[field::DST].copy_from_slice(&dst.to_be_bytes());
        Ok(())
    }

    /// One's-complement sum of the UDP pseudo-header for `udp_len` bytes of UDP.
    pub fn pseudo_header_sum(&self, udp_len: u16) -> u32 {
        let mut acc = checksum::sum(0, &self.src.octets());
        acc = checksum::sum(acc, &self.dst.octets());
        acc + u32::from(PROTOCOL_UDP) + u32::from(udp_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // rc_pingpong_send_only.pcap frame 1's IPv4 header (g2 -> g1), followed by 8 bytes of UDP.
    fn header() -> [u8; 20] {
        let r = Repr {
            src: Ipv4Addr::new(10, 77, 0, 12),
            dst: Ipv4Addr::new(10, 77, 0, 11),
            tos: 0,
            ident: 0x1234,
            dont_frag: true,
            ttl: 64,
        };
        let mut b = [0xa5u8; 20];
        r.emit(&mut b, 8).unwrap();
        b
    }

    #[test]
    fn emit_then_parse_round_trips_with_a_valid_checksum() {
        let mut pkt = [0u8; 28];
        pkt[..20].copy_from_slice(&header());
        assert_eq!(&pkt[..4], &[0x45, 0x00, 0x00, 28]);
        let (r, payload) = Repr::parse(&pkt, true).unwrap();
        assert_eq!(payload.len(), 8);
        assert_eq!(r.ident, 0x1234);
        assert!(r.dont_frag);
    }

    #[test]
    fn rejects_bad_checksum_version_options_fragments_and_lengths() {
        let mut pkt = [0u8; 28];
        pkt[..20].copy_from_slice(&header());
        let mut b = pkt;
        b[10] ^= 1;
        assert_eq!(Repr::parse(&b, true).unwrap_err(), Error::BadIpChecksum);
        assert!(Repr::parse(&b, false).is_ok());
        let mut b = pkt;
        b[0] = 0x65;
        assert_eq!(Repr::parse(&b, true).unwrap_err(), Error::BadIpVersion(6));
        let mut b = pkt;
        b[0] = 0x46;
        assert_eq!(
            Repr::parse(&b, false).unwrap_err(),
            Error::Unsupported(Unsupported::Ipv4Options)
        );
        let mut b = pkt;
        b[6] = 0x20;
        assert_eq!(
            Repr::parse(&b, false).unwrap_err(),
            Error::Unsupported(Unsupported::Ipv4Fragment)
        );
        let mut b = pkt;
        b[3] = 29;
        assert_eq!(Repr::parse(&b, false).unwrap_err(), Error::BadLength);
        let mut b = pkt;
        b[9] = 6;
        assert_eq!(
            Repr::parse(&b, false).unwrap_err(),
            Error::NotRoce(NotRoce::IpProtocol(6))
        );
        assert!(matches!(
            Repr::parse(&pkt[..19], true),
            Err(Error::Truncated { .. })
        ));
    }
}
