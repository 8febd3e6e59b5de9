//! The network device behind an address: its name and MTU, from which the device's active MTU
//! follows as Linux rxe derives it (`rxe_set_mtu`: loopback's 65536 gives 4096, Ethernet's 1500
//! gives 1024).

use std::ffi::CStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use rxe_transport::Mtu;

/// The name of the interface that holds `ip` (`lo` for any loopback address).
pub fn interface_of(ip: IpAddr) -> Option<String> {
    if ip.is_loopback() {
        return Some("lo".into());
    }
    interface_addresses()
        .into_iter()
        .find(|(_, a)| *a == ip)
        .map(|(n, _)| n)
}

/// The MTU of the interface that holds `ip`, from sysfs.
pub fn netdev_mtu(ip: IpAddr) -> Option<u32> {
    let name = interface_of(ip)?;
    std::fs::read_to_string(format!("/sys/class/net/{name}/mtu"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The local address (and, for IPv6 link-local, its scope) this host would send from to reach
/// `peer` (the routing table's answer, through a connected UDP socket; nothing is sent). A
/// link-local `peer` needs its scope (interface index); the port is ignored and the answer's is 0.
pub fn source_address_for(peer: SocketAddr) -> std::io::Result<SocketAddr> {
    let any = if peer.is_ipv4() {
        SocketAddr::from(([0u8; 4], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let s = std::net::UdpSocket::bind(any)?;
    let mut to = peer;
    to.set_port(4791);
    s.connect(to)?;
    let mut local = s.local_addr()?;
    local.set_port(0);
    if let SocketAddr::V6(a) = &mut local {
        // The kernel leaves the scope out of a connected socket's name; the peer's is ours.
        if is_link_local(*a.ip()) && a.scope_id() == 0 {
            if let SocketAddr::V6(p) = peer {
                a.set_scope_id(p.scope_id());
            }
        }
    }
    Ok(local)
}

/// Whether `ip` is an IPv6 link-local address (fe80::/10), which is only meaningful together
/// with an interface.
pub fn is_link_local(ip: Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

/// The index of the interface named `name` (`if_nametoindex`).
#[allow(unsafe_code)]
pub fn interface_index(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

/// The index of the interface that holds the IPv6 address `ip` (its scope, for link-local).
pub fn scope_of(ip: Ipv6Addr) -> Option<u32> {
    interface_of(IpAddr::V6(ip)).and_then(|n| interface_index(&n))
}

/// The active MTU a device bound to `ip` gets: from the interface's MTU, 1024 when unknown.
pub fn active_mtu(ip: IpAddr) -> Mtu {
    netdev_mtu(ip).map_or(Mtu::M1024, Mtu::for_netdev_mtu)
}

/// Every (interface name, address) pair of this host, from `getifaddrs`.
#[allow(unsafe_code)]
pub fn interface_addresses() -> Vec<(String, IpAddr)> {
    let mut out = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list we free below with freeifaddrs; every pointer is checked
    // for null before use and read only while the list lives.
    unsafe {
        if libc::getifaddrs(&mut ifap) != 0 {
            return out;
        }
        let mut cur = ifap;
        while !cur.is_null() {
            let ifa = &*cur;
            if !ifa.ifa_addr.is_null() && !ifa.ifa_name.is_null() {
                let addr = match i32::from((*ifa.ifa_addr).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                        Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                            sin.sin_addr.s_addr,
                        ))))
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                        Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
                    }
                    _ => None,
                };
                if let Some(a) = addr {
                    let name = CStr::from_ptr(ifa.ifa_name).to_string_lossy().into_owned();
                    out.push((name, a));
                }
            }
            cur = ifa.ifa_next;
        }
        libc::freeifaddrs(ifap);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_gets_4096_as_linux_rxe_would() {
        assert_eq!(
            interface_of("127.0.0.2".parse().unwrap()).as_deref(),
            Some("lo")
        );
        // lo's MTU is 65536 unless someone changed it.
        if netdev_mtu("127.0.0.1".parse().unwrap()) == Some(65536) {
            assert_eq!(active_mtu("127.0.0.1".parse().unwrap()), Mtu::M4096);
        }
        // An address no interface holds: unknown, 1024.
        assert_eq!(interface_of("192.0.2.77".parse().unwrap()), None);
        assert_eq!(active_mtu("192.0.2.77".parse().unwrap()), Mtu::M1024);
    }

    #[test]
    fn the_route_to_loopback_starts_at_loopback() {
        let a = source_address_for("127.0.0.9:0".parse().unwrap()).unwrap();
        assert!(a.ip().is_loopback());
        assert_eq!(a.port(), 0);
    }

    #[test]
    fn loopback_has_an_index_and_link_local_is_recognised() {
        let lo = interface_index("lo").unwrap();
        assert!(lo > 0);
        assert_eq!(interface_index("no-such-if0"), None);
        assert!(is_link_local("fe80::1".parse().unwrap()));
        assert!(is_link_local("febf::1".parse().unwrap()));
        assert!(!is_link_local("fec0::1".parse().unwrap()));
        assert!(!is_link_local("::1".parse().unwrap()));
        if interface_addresses()
            .iter()
            .any(|(_, a)| *a == IpAddr::V6(Ipv6Addr::LOCALHOST))
        {
            assert_eq!(scope_of(Ipv6Addr::LOCALHOST), Some(lo));
        }
    }

    #[test]
    fn interfaces_list_loopback() {
        assert!(interface_addresses()
            .iter()
            .any(|(n, a)| n == "lo" && *a == IpAddr::V4(Ipv4Addr::LOCALHOST)));
    }
}
