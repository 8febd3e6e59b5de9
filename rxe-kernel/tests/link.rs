//! Links added and removed with `rdma link` commands and the original module parameters; the
//! GID table and port attributes following the network device.

mod common;

use std::net::{IpAddr, Ipv6Addr};

use common::SimNic;
use rxe_kernel::link::{LinkCommand, LinkError, Links};
use rxe_kernel::port::PortState;
use rxe_transport::Mtu;

#[test]
fn rdma_link_commands_parse_as_iproute2_writes_them() {
    assert_eq!(
        LinkCommand::parse("rdma link add rxe0 type rxe netdev eth0"),
        Ok(LinkCommand::Add {
            name: "rxe0".into(),
            netdev: "eth0".into()
        })
    );
    assert_eq!(
        LinkCommand::parse("  link add  rxe_ni1 type rxe netdev ni1\n"),
        Ok(LinkCommand::Add {
            name: "rxe_ni1".into(),
            netdev: "ni1".into()
        })
    );
    for del in ["rdma link delete rxe0", "link del rxe0"] {
        assert_eq!(
            LinkCommand::parse(del),
            Ok(LinkCommand::Delete {
                name: "rxe0".into()
            })
        );
    }
    for (bad, err) in [
        ("rdma link add rxe0 type siw netdev eth0", LinkError::Type),
        ("rdma link add rxe0 netdev eth0", LinkError::Syntax),
        ("rdma link show", LinkError::Syntax),
        ("", LinkError::Syntax),
        ("rdma link add a/b type rxe netdev eth0", LinkError::Name),
        ("rdma link delete", LinkError::Syntax),
    ] {
        assert_eq!(LinkCommand::parse(bad), Err(err.clone()), "{bad:?}");
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn links_come_and_go_by_either_command() {
    let mut l: Links<SimNic> = Links::new(7);
    let name = l
        .command("rdma link add rxe0 type rxe netdev eth0", |n| {
            (n == "eth0").then(|| SimNic::new(1, 16))
        })
        .unwrap();
    assert_eq!(name, "rxe0");
    // A second link on the same netdev, a taken name, an unknown netdev: refused, nothing changes.
    assert_eq!(
        l.command("rdma link add rxe1 type rxe netdev eth0", |_| Some(
            SimNic::new(1, 16)
        )),
        Err(LinkError::NetdevBusy)
    );
    assert_eq!(
        l.command("rdma link add rxe0 type rxe netdev eth1", |_| Some(
            SimNic::new(2, 16)
        )),
        Err(LinkError::Exists)
    );
    assert_eq!(
        l.command("rdma link add rxe9 type rxe netdev nope0", |_| None),
        Err(LinkError::Device)
    );
    assert_eq!(l.list(), [("rxe0".to_string(), "eth0".to_string())]);
    // The module parameter takes the next free rxe<N>.
    assert_eq!(l.param_add("ni1\n", SimNic::new(2, 16)).unwrap(), "rxe1");
    assert!(l.on_netdev("ni1").is_some());
    assert_eq!(l.get("rxe1").unwrap().name(), "rxe1");
    // Removing gives the netdev back; the name is free again.
    let dev = l.param_remove("rxe0\n").unwrap();
    assert_eq!(dev.ip, SimNic::new(1, 16).ip);
    assert_eq!(l.delete("rxe0").unwrap_err(), LinkError::NoSuchLink);
    assert_eq!(l.param_add("eth0", dev).unwrap(), "rxe0");
    assert_eq!(
        l.command("rdma link delete rxe1", |_| None),
        Ok("rxe1".to_string())
    );
    assert_eq!(l.list(), [("rxe0".to_string(), "eth0".to_string())]);
    // A netdev without an address has no GID to make a port from.
    let mut bare = SimNic::new(3, 16);
    bare.ips.clear();
    assert_eq!(l.add("rxe5", "eth5", bare).unwrap_err(), LinkError::Device);
}

#[test]
fn gids_and_port_attributes_follow_the_netdev() {
    let mut l: Links<SimNic> = Links::new(7);
    let mut nic = SimNic::new(1, 16);
    let ll: Ipv6Addr = "fe80::2:ff:fe00:1".parse().unwrap();
    let global: Ipv6Addr = "fd00::1".parse().unwrap();
    nic.ips.push(IpAddr::V6(global));
    nic.ips.push(IpAddr::V6(ll));
    let p = l.add("rxe0", "eth0", nic).unwrap();
    // Link-local first (GID index 0, as Linux), then the others, IPv4 mapped.
    assert_eq!(
        p.gids(),
        [ll, "::ffff:10.0.0.1".parse::<Ipv6Addr>().unwrap(), global]
    );
    let a = p.attr();
    assert_eq!(a.state, PortState::Active);
    assert_eq!(a.active_mtu, Mtu::M1024, "1500-byte Ethernet");
    assert_eq!(a.max_mtu, Mtu::M4096);
    assert_eq!(a.gid_tbl_len, 3);
    // Address, MTU and link changes show at once.
    p.netdev_mut().ips.retain(|a| a.is_ipv4());
    p.netdev_mut().mtu = 9000;
    p.netdev_mut().up = false;
    let a = p.attr();
    assert_eq!(p.gids().len(), 1);
    assert_eq!(a.state, PortState::Down);
    assert_eq!(a.active_mtu, Mtu::M4096);
    p.netdev_mut().mtu = 1100;
    assert_eq!(
        p.attr().active_mtu,
        Mtu::M512,
        "1100 - 80 headers fits 512, not 1024"
    );
}
