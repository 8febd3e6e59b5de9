//! Addresses as the tools take them on the command line: `10.77.0.1`, `::1`, or an IPv6
//! link-local address with its interface, `fe80::5054:ff:fe77:1%rxe-br0` (as `ping` and rdma-core's
//! tools write it; a numeric scope such as `%3` works too).

use std::fmt;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::str::FromStr;

/// An IP address and, for IPv6 link-local addresses, the interface (scope) it lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostAddr {
    /// The address.
    pub ip: IpAddr,
    /// The interface index of a scoped IPv6 address; 0 when none was given.
    pub scope_id: u32,
}

impl HostAddr {
    /// The socket address for `port`, carrying the scope.
    pub fn with_port(self, port: u16) -> SocketAddr {
        match self.ip {
            IpAddr::V6(a) => SocketAddr::V6(SocketAddrV6::new(a, port, 0, self.scope_id)),
            IpAddr::V4(_) => SocketAddr::new(self.ip, port),
        }
    }

    /// The address and scope of a socket address.
    pub fn of(s: SocketAddr) -> HostAddr {
        match s {
            SocketAddr::V6(a) => HostAddr {
                ip: IpAddr::V6(*a.ip()),
                scope_id: a.scope_id(),
            },
            SocketAddr::V4(_) => s.ip().into(),
        }
    }

    /// Whether this is an IPv6 link-local address (fe80::/10), which needs an interface.
    pub fn is_link_local(self) -> bool {
        matches!(self.ip, IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80)
    }
}

impl From<IpAddr> for HostAddr {
    fn from(ip: IpAddr) -> HostAddr {
        HostAddr { ip, scope_id: 0 }
    }
}

/// Why an address did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAddrError(String);

impl fmt::Display for HostAddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HostAddrError {}

impl FromStr for HostAddr {
    type Err = HostAddrError;

    fn from_str(s: &str) -> Result<HostAddr, HostAddrError> {
        let (addr, scope) = match s.split_once('%') {
            Some((a, z)) => (a, Some(z)),
            None => (s, None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| HostAddrError(format!("{s:?} is not an IP address")))?;
        let scope_id = match scope {
            None => 0,
            Some(_) if ip.is_ipv4() => {
                return Err(HostAddrError(format!(
                    "{s:?}: only IPv6 addresses take a %scope"
                )))
            }
            Some(z) => match z.parse::<u32>() {
                Ok(n) => n,
                Err(_) => rxe_user::netdev::interface_index(z)
                    .ok_or_else(|| HostAddrError(format!("{s:?}: no interface named {z:?}")))?,
            },
        };
        Ok(HostAddr { ip, scope_id })
    }
}

impl fmt::Display for HostAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.ip)?;
        if self.scope_id != 0 {
            write!(f, "%{}", self.scope_id)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_scoped_addresses_parse() {
        let a: HostAddr = "10.77.0.1".parse().unwrap();
        assert_eq!(a.ip, IpAddr::from([10, 77, 0, 1]));
        assert_eq!(a.scope_id, 0);
        assert!(!a.is_link_local());
        let b: HostAddr = "fe80::1%7".parse().unwrap();
        assert_eq!(b.scope_id, 7);
        assert!(b.is_link_local());
        assert_eq!(b.to_string(), "fe80::1%7");
        match b.with_port(4791) {
            SocketAddr::V6(s) => assert_eq!((s.port(), s.scope_id()), (4791, 7)),
            SocketAddr::V4(_) => panic!("v4"),
        }
        assert_eq!(HostAddr::of(b.with_port(1)), b);
        let lo: HostAddr = "fe80::1%lo".parse().unwrap();
        assert_eq!(Some(lo.scope_id), rxe_user::netdev::interface_index("lo"));
        assert!(!"::1".parse::<HostAddr>().unwrap().is_link_local());
    }

    #[test]
    fn bad_addresses_are_refused_with_a_reason() {
        for bad in ["10.77.0.1%3", "fe80::1%no-such-if0", "host", "fe80::1%", ""] {
            let e = bad.parse::<HostAddr>().unwrap_err();
            assert!(!e.to_string().is_empty(), "{bad}");
        }
    }
}
