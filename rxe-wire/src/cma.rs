//! The rdma_cm header at the start of a REQ's private data (Linux `cma.c`, `struct cma_hdr`),
//! and the service IDs rdma_cm derives from a port.
//!
//! ```text
//! byte 0      cma_version (0)
//! byte 1      IP version in bits 7..4 (4 or 6)
//! bytes 2-3   the active side's source port, big endian
//! bytes 4-19  source address, bytes 20-35 destination address: IPv6 as is, IPv4 as twelve
//!             zero bytes and the four address bytes
//! ```
//!
//! ```
//! use core::net::{IpAddr, Ipv4Addr};
//! use rxe_wire::cma::{self, CmaHeader};
//!
//! let h = CmaHeader {
//!     port: 39498,
//!     src: IpAddr::V4(Ipv4Addr::new(10, 77, 0, 12)),
//!     dst: IpAddr::V4(Ipv4Addr::new(10, 77, 0, 11)),
//! };
//! let mut pd = [0u8; cma::HEADER_LEN];
//! h.emit(&mut pd).unwrap();
//! assert_eq!(CmaHeader::parse(&pd), Ok(h));
//! // rping's default port 7174 in the TCP port space.
//! assert_eq!(cma::service_id(cma::PS_TCP, 7174), 0x0000_0000_0106_1c06);
//! assert_eq!(cma::port_of(0x0000_0000_0106_1c06), Some((cma::PS_TCP, 7174)));
//! ```

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::{check_len, Error, Result};

/// Length of the rdma_cm header.
pub const HEADER_LEN: usize = 36;
/// The only `cma_version`.
pub const CMA_VERSION: u8 = 0;
/// rdma_cm's TCP port space (`RDMA_PS_TCP`): what rping, perftest and iSER use.
pub const PS_TCP: u16 = 0x0106;
/// rdma_cm's UDP port space (`RDMA_PS_UDP`).
pub const PS_UDP: u16 = 0x0111;
/// rdma_cm's IPoIB port space (`RDMA_PS_IPOIB`).
pub const PS_IPOIB: u16 = 0x0002;
/// rdma_cm's IB port space (`RDMA_PS_IB`).
pub const PS_IB: u16 = 0x013f;

/// The CM service ID of `port` in port space `ps` (`cma_get_service_id`).
pub const fn service_id(ps: u16, port: u16) -> u64 {
    ((ps as u64) << 16) | port as u64
}

/// The port space and port of an rdma_cm service ID, or `None` if it is not one
/// (the top 32 bits must be 0 and the space one of the four above).
pub const fn port_of(service_id: u64) -> Option<(u16, u16)> {
    let ps = (service_id >> 16) as u16;
    if service_id >> 32 != 0 || !matches!(ps, PS_TCP | PS_UDP | PS_IPOIB | PS_IB) {
        return None;
    }
    Some((ps, service_id as u16))
}

/// The flow label rdma_cm puts in the path (and so in the REQ) over RoCEv2 when the source
/// address carries none (`cma_get_roce_udp_flow_label`): `sport * 31 + dport`, 20 bits. The QP's
/// UDP source port is derived from it.
pub const fn flow_label(sport: u16, dport: u16) -> u32 {
    (sport as u32).wrapping_mul(31).wrapping_add(dport as u32) & 0xf_ffff
}

/// The RoCEv2 GID of an IP address: IPv4 as `::ffff:a.b.c.d`, IPv6 as is.
pub const fn gid_of(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// The IP address of a RoCEv2 GID (IPv4-mapped GIDs give IPv4).
pub const fn ip_of(gid: Ipv6Addr) -> IpAddr {
    match gid.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(gid),
    }
}

/// The rdma_cm header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CmaHeader {
    /// The active side's source port.
    pub port: u16,
    /// The active side's address.
    pub src: IpAddr,
    /// The passive side's address (what the active side connected to).
    pub dst: IpAddr,
}

fn addr(b: &[u8], v4: bool) -> IpAddr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    if v4 {
        IpAddr::V4(Ipv4Addr::new(a[12], a[13], a[14], a[15]))
    } else {
        IpAddr::V6(Ipv6Addr::from(a))
    }
}

fn put_addr(b: &mut [u8], ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            b[..12].fill(0);
            b[12..16].copy_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => b[..16].copy_from_slice(&v6.octets()),
    }
}

impl CmaHeader {
    /// Parses the first [`HEADER_LEN`] bytes of REQ private data.
    pub fn parse(private_data: &[u8]) -> Result<CmaHeader> {
        check_len(private_data, HEADER_LEN)?;
        let version = private_data[0];
        let ip_version = private_data[1] >> 4;
        if version != CMA_VERSION || !matches!(ip_version, 4 | 6) {
            return Err(Error::BadCmaHeader {
                version,
                ip_version,
            });
        }
        let v4 = ip_version == 4;
        Ok(CmaHeader {
            port: u16::from_be_bytes([private_data[2], private_data[3]]),
            src: addr(&private_data[4..20], v4),
            dst: addr(&private_data[20..36], v4),
        })
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `buf`. Both addresses must be of
    /// one family (`FieldOverflow` otherwise); nothing is written on error.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        check_len(buf, HEADER_LEN)?;
        let ip_version = match (self.src, self.dst) {
            (IpAddr::V4(_), IpAddr::V4(_)) => 4u8,
            (IpAddr::V6(_), IpAddr::V6(_)) => 6,
            _ => return Err(Error::FieldOverflow),
        };
        buf[0] = CMA_VERSION;
        buf[1] = ip_version << 4;
        buf[2..4].copy_from_slice(&self.port.to_be_bytes());
        put_addr(&mut buf[4..20], self.src);
        put_addr(&mut buf[20..36], self.dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_round_trips_and_bad_headers_are_typed() {
        let h = CmaHeader {
            port: 1,
            src: IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 1, 2, 3, 4)),
            dst: IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        let mut b = [0u8; 40];
        h.emit(&mut b).unwrap();
        assert_eq!(b[1], 0x60);
        assert_eq!(CmaHeader::parse(&b), Ok(h));
        b[0] = 1;
        assert_eq!(
            CmaHeader::parse(&b),
            Err(Error::BadCmaHeader {
                version: 1,
                ip_version: 6
            })
        );
        assert!(CmaHeader::parse(&b[..35]).is_err());
        let mixed = CmaHeader {
            dst: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ..h
        };
        assert_eq!(mixed.emit(&mut b), Err(Error::FieldOverflow));
    }

    #[test]
    fn service_ids() {
        assert_eq!(service_id(PS_TCP, 3260), 0x0106_0cbc);
        assert_eq!(port_of(0x0106_0cbc), Some((PS_TCP, 3260)));
        assert_eq!(port_of(0x1_0106_0cbc), None);
        assert_eq!(port_of(0x0999_0cbc), None);
        assert_eq!(
            gid_of(IpAddr::V4(Ipv4Addr::new(10, 77, 0, 11))),
            "::ffff:10.77.0.11".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            ip_of("::ffff:10.77.0.11".parse().unwrap()),
            IpAddr::V4(Ipv4Addr::new(10, 77, 0, 11))
        );
    }
}
