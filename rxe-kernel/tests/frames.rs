//! What a port puts on the wire: the Ethernet addresses from the netdev and neighbour
//! resolution, and from the QP's address vector the IPv4 TTL / IPv6 hop limit, the traffic class,
//! the flow label, DF, and Linux's UDP source port (`rdma_get_udp_sport`), over IPv4 and IPv6.

mod common;

use std::net::{IpAddr, Ipv6Addr};

use common::SimNic;
use rxe_kernel::port::Port;
use rxe_transport::device::QpInit;
use rxe_transport::qp::udp_sport;
use rxe_transport::{
    Access, AddressVector, Instant, Mtu, QpAttr, QpState, Remote, SendFlags, SendWr, Sge, WrOpcode,
};
use rxe_wire::{Psn, Qpn, Rkey};

/// Sends one 64-byte RDMA WRITE from a port on `nic` over an RC QP whose address vector is `av`
/// (dest QP 0x33); returns the frame the NIC got and the local QPN.
fn first_frame(nic: SimNic, av: AddressVector) -> (Vec<u8>, Qpn) {
    let mut p = Port::new("rxe0", nic, 9).expect("port");
    let c = p.core();
    let pd = c.alloc_pd().expect("pd");
    let mr = c.reg_mr(pd, 0x1000, 4096, Access::LOCAL_WRITE).expect("mr");
    let cq = c.create_cq(8).expect("cq");
    let q = c.create_qp(&QpInit::rc(pd, cq)).expect("qp");
    let steps = [
        QpAttr {
            state: Some(QpState::Init),
            pkey_index: Some(0),
            port: Some(1),
            access: Some(Access::empty()),
            ..QpAttr::default()
        },
        QpAttr {
            state: Some(QpState::Rtr),
            av: Some(av),
            path_mtu: Some(Mtu::M1024),
            dest_qp: Some(Qpn::new(0x33)),
            rq_psn: Some(Psn::new(0)),
            max_dest_rd_atomic: Some(1),
            min_rnr_timer: Some(12),
            ..QpAttr::default()
        },
        QpAttr {
            state: Some(QpState::Rts),
            timeout: Some(14),
            retry_cnt: Some(7),
            rnr_retry: Some(7),
            sq_psn: Some(Psn::new(100)),
            max_rd_atomic: Some(1),
            ..QpAttr::default()
        },
    ];
    for s in &steps {
        c.modify_qp(q, s).expect("modify");
    }
    let wr = SendWr::new(
        1,
        WrOpcode::RdmaWrite(Remote {
            addr: 0x9000,
            rkey: Rkey(0x1234),
        }),
        Some(Sge {
            addr: 0x1000,
            length: 64,
            lkey: mr.lkey,
        }),
        SendFlags::SIGNALED,
    );
    c.post_send(q, wr).expect("post");
    // The first poll waits for the neighbour, the second sends.
    for t in [1_000, 2_000] {
        p.poll(Instant::from_nanos(t));
    }
    let frame = p.netdev_mut().queue.pop_front().expect("a frame");
    (frame, q)
}

#[test]
fn ipv4_frames_carry_ttl_tos_df_and_linux_udp_source_port() {
    let mut nic = SimNic::new(1, 16);
    let peer = IpAddr::from([10, 0, 0, 2]);
    let peer_mac = rxe_kernel::netdev::MacAddr([2, 0, 0, 0, 0, 2]);
    nic.neighbours.push((peer, peer_mac));
    let av = AddressVector {
        sgid: nic.ip,
        dgid: peer,
        hop_limit: 17,
        traffic_class: 0x68,
        flow_label: 0,
        udp_sport: None,
    };
    let (f, q) = first_frame(nic, av);
    assert_eq!(
        &f[0..6],
        &peer_mac.0,
        "destination MAC from neighbour resolution"
    );
    assert_eq!(&f[6..12], &[2, 0, 0, 0, 0, 1], "source MAC of the netdev");
    assert_eq!(&f[12..14], &[0x08, 0x00]);
    let ip = &f[14..];
    assert_eq!(ip[0], 0x45);
    assert_eq!(ip[1], 0x68, "traffic class in the TOS byte");
    assert_eq!(ip[6] & 0x40, 0x40, "DF");
    assert_eq!(ip[8], 17, "TTL = hop limit");
    assert_eq!(ip[9], 17, "UDP");
    assert_eq!(&ip[12..16], &[10, 0, 0, 1]);
    assert_eq!(&ip[16..20], &[10, 0, 0, 2]);
    let udp = &ip[20..];
    let sport = u16::from_be_bytes([udp[0], udp[1]]);
    assert_eq!(sport, udp_sport(0, q, Qpn::new(0x33)));
    assert!(sport >= 0xc000, "an entropy port in 49152..65535");
    assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 4791);
    assert_eq!(udp[8], 0x0a, "RC RDMA WRITE ONLY");
}

#[test]
fn ipv6_frames_carry_hop_limit_traffic_class_and_flow_label() {
    let mut nic = SimNic::new(1, 16);
    let me: IpAddr = "fd00::1".parse::<Ipv6Addr>().expect("addr").into();
    let peer: IpAddr = "fd00::2".parse::<Ipv6Addr>().expect("addr").into();
    nic.ips = vec![me];
    nic.ip = me;
    let peer_mac = rxe_kernel::netdev::MacAddr([2, 0, 0, 0, 0, 2]);
    nic.neighbours.push((peer, peer_mac));
    let av = AddressVector {
        sgid: me,
        dgid: peer,
        hop_limit: 9,
        traffic_class: 0x28,
        flow_label: 0x5_4321,
        udp_sport: None,
    };
    let (f, q) = first_frame(nic, av);
    assert_eq!(&f[12..14], &[0x86, 0xdd]);
    let ip = &f[14..];
    let word = u32::from_be_bytes([ip[0], ip[1], ip[2], ip[3]]);
    assert_eq!(word >> 28, 6);
    assert_eq!((word >> 20) & 0xff, 0x28, "traffic class");
    assert_eq!(word & 0xf_ffff, 0x5_4321, "flow label");
    assert_eq!(ip[6], 17, "next header UDP");
    assert_eq!(ip[7], 9, "hop limit");
    let udp = &ip[40..];
    assert_eq!(
        u16::from_be_bytes([udp[0], udp[1]]),
        udp_sport(0x5_4321, q, Qpn::new(0x33)),
        "the source port follows the flow label, as Linux"
    );
    assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 4791);
}
