//! Ethernet II header, with at most one 802.1Q VLAN tag (RoCE with PFC often runs on a VLAN).

use crate::error::{check_len, Error, NotRoce, Result, Unsupported};
use crate::{be16, Field};

mod field {
    use crate::Field;
    pub(crate) const DST: Field = 0..6;
    pub(crate) const SRC: Field = 6..12;
    pub(crate) const ETHERTYPE: Field = 12..14;
    pub(crate) const VLAN_TCI: Field = 14..16;
    pub(crate) const VLAN_ETHERTYPE: Field = 16..18;
}

/// Length of an untagged Ethernet II header.
pub const HEADER_LEN: usize = field::ETHERTYPE.end;
/// Length with one VLAN tag.
pub const VLAN_HEADER_LEN: usize = field::VLAN_ETHERTYPE.end;

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// EtherType of an 802.1Q tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// EtherType of an 802.1ad (QinQ) service tag.
pub const ETHERTYPE_QINQ: u16 = 0x88a8;

/// A 48-bit MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl core::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// An 802.1Q tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VlanTag {
    /// Priority code point (0-7), the PFC priority.
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
    /// VLAN identifier (0-4095).
    pub vid: u16,
}

/// The IP version an Ethernet frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpVersion {
    /// IPv4 (EtherType 0x0800).
    V4,
    /// IPv6 (EtherType 0x86dd).
    V6,
}

/// A parsed Ethernet header of a frame carrying IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Destination MAC.
    pub dst: MacAddr,
    /// Source MAC.
    pub src: MacAddr,
    /// Optional 802.1Q tag.
    pub vlan: Option<VlanTag>,
    /// The IP version of the payload.
    pub ip_version: IpVersion,
}

fn mac(b: &[u8], f: Field) -> MacAddr {
    let mut m = [0u8; 6];
    m.copy_from_slice(&b[f]);
    MacAddr(m)
}

impl Repr {
    /// Parses the header; returns it and the offset of the IP packet.
    ///
    /// Frames whose EtherType is not IPv4 or IPv6 give [`Error::NotRoce`].
    pub fn parse(frame: &[u8]) -> Result<(Repr, usize)> {
        check_len(frame, HEADER_LEN)?;
        let mut ethertype = be16(&frame[field::ETHERTYPE]);
        let mut len = HEADER_LEN;
        let mut vlan = None;
        if ethertype == ETHERTYPE_QINQ {
            return Err(Error::Unsupported(Unsupported::StackedVlan));
        }
        if ethertype == ETHERTYPE_VLAN {
            check_len(frame, VLAN_HEADER_LEN)?;
            let tci = be16(&frame[field::VLAN_TCI]);
            vlan = Some(VlanTag {
                pcp: (tci >> 13) as u8,
                dei: tci & 0x1000 != 0,
                vid: tci & 0x0fff,
            });
            ethertype = be16(&frame[field::VLAN_ETHERTYPE]);
            if ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ {
                return Err(Error::Unsupported(Unsupported::StackedVlan));
            }
            len = VLAN_HEADER_LEN;
        }
        let ip_version = match ethertype {
            ETHERTYPE_IPV4 => IpVersion::V4,
            ETHERTYPE_IPV6 => IpVersion::V6,
            other => return Err(Error::NotRoce(NotRoce::EtherType(other))),
        };
        Ok((
            Repr {
                dst: mac(frame, field::DST),
                src: mac(frame, field::SRC),
                vlan,
                ip_version,
            },
            len,
        ))
    }

    /// Length of the header: 14, or 18 with a VLAN tag.
    pub const fn header_len(&self) -> usize {
        if self.vlan.is_some() {
            VLAN_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    /// Writes the header to the start of `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.header_len();
        if buf.len() < len {
            return Err(Error::BufferTooSmall { required: len });
        }
        buf[field::DST].copy_from_slice(&self.dst.0);
        buf[field::SRC].copy_from_slice(&self.src.0);
        let ethertype = match self.ip_version {
            IpVersion::V4 => ETHERTYPE_IPV4,
            IpVersion::V6 => ETHERTYPE_IPV6,
        };
        match self.vlan {
            None => buf[field::ETHERTYPE].copy_from_slice(&ethertype.to_be_bytes()),
            Some(v) => {
                if v.pcp > 7 || v.vid > 0x0fff {
                    return Err(Error::FieldOverflow);
                }
                buf[field::ETHERTYPE].copy_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
                let tci = (u16::from(v.pcp) << 13) | if v.dei { 0x1000 } else { 0 } | v.vid;
                buf[field::VLAN_TCI].copy_from_slice(&tci.to_be_bytes());
                buf[field::VLAN_ETHERTYPE].copy_from_slice(&ethertype.to_be_bytes());
            }
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static PACKET_BYTES: [u8; 14] = [
        0x52, 0x54, 0x00, 0x77, 0x00, 0x01, 0x52, 0x54, 0x00, 0x77, 0x00, 0x02, 0x08, 0x00,
    ];

    #[test]
    fn parses_and_emits_an_untagged_header() {
        let (r, off) = Repr::parse(&PACKET_BYTES).unwrap();
        assert_eq!(off, 14);
        assert_eq!(r.dst, MacAddr([0x52, 0x54, 0, 0x77, 0, 1]));
        assert_eq!(r.ip_version, IpVersion::V4);
        let mut buf = [0xa5u8; 14];
        assert_eq!(r.emit(&mut buf).unwrap(), 14);
        assert_eq!(buf, PACKET_BYTES);
    }

    #[test]
    fn parses_a_vlan_tag() {
        let mut b = [0u8; 18];
        b[..12].copy_from_slice(&PACKET_BYTES[..12]);
        b[12..].copy_from_slice(&[0x81, 0x00, 0x60, 0x64, 0x86, 0xdd]);
        let (r, off) = Repr::parse(&b).unwrap();
        assert_eq!(off, 18);
        assert_eq!(
            r.vlan,
            Some(VlanTag {
                pcp: 3,
                dei: false,
                vid: 100
            })
        );
        assert_eq!(r.ip_version, IpVersion::V6);
        let mut out = [0xa5u8; 18];
        r.emit(&mut out).unwrap();
        assert_eq!(out, b);
    }

    #[test]
    fn rejects_other_ethertypes_and_short_frames() {
        let mut b = PACKET_BYTES;
        b[12..].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(
            Repr::parse(&b).unwrap_err(),
            Error::NotRoce(NotRoce::EtherType(0x0806))
        );
        assert!(matches!(
            Repr::parse(&b[..13]),
            Err(Error::Truncated { .. })
        ));
        b[12..].copy_from_slice(&[0x81, 0x00]);
        assert!(matches!(Repr::parse(&b), Err(Error::Truncated { .. })));
    }
}
