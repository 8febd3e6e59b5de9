//! Two UDP devices on loopback (127.0.0.1 and 127.0.0.2, same port) connect through the
//! rdma_cm-compatible CM over their QP1s and move data with SEND, WRITE and READ.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use rxe_transport::cm::CmEvent;
use rxe_transport::device::{DeviceEvent, QpInit};
use rxe_transport::{Access, QpState, RecvWr, Remote, SendFlags, SendWr, Sge, WcStatus, WrOpcode};
use rxe_user::{UdpDevice, UdpDeviceConfig, UdpDeviceCounters};
use rxe_wire::Rkey;

/// Where the two devices live.
#[derive(Clone, Copy)]
enum Net {
    /// 127.0.0.1 and 127.0.0.2, both on `port`.
    V4,
    /// Both on ::1 (IPv6 loopback has one address), on `port` and `port + 1`, each sending
    /// with a zero UDP checksum as Linux rxe does over IPv6.
    V6ZeroChecksum,
}

impl Net {
    fn addr(self, last: u8, port: u16) -> SocketAddr {
        match self {
            Net::V4 => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)), port),
            Net::V6ZeroChecksum => {
                SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port + u16::from(last) - 1)
            }
        }
    }
}

fn open(net: Net, last: u8, port: u16, gso: bool, faults: Option<rxe_user::Faults>) -> UdpDevice {
    let addr = net.addr(last, port);
    let mut cfg = UdpDeviceConfig::new(addr);
    cfg.peer_port = net.addr(3 - last, port).port();
    cfg.seed = u64::from(last) * 77;
    // Loopback's default would be 4096; 1024 makes the 64 KiB transfers many packets.
    assert_eq!(cfg.mtu, rxe_user::netdev::active_mtu(addr.ip()));
    cfg.mtu = rxe_transport::Mtu::M1024;
    assert!(cfg.gso, "loopback peers get GSO by default");
    cfg.gso = gso;
    cfg.faults = faults.map(|f| rxe_user::Faults {
        seed: f.seed ^ u64::from(last),
        ..f
    });
    let dev = UdpDevice::open(cfg).expect("open");
    if let Net::V6ZeroChecksum = net {
        set_udp_no_check6_tx(&dev);
    }
    dev
}

/// `UDP_NO_CHECK6_TX` (linux/udp.h): this socket's IPv6 datagrams go out with checksum 0.
#[allow(unsafe_code)]
fn set_udp_no_check6_tx(dev: &UdpDevice) {
    use std::os::fd::AsRawFd;
    const UDP_NO_CHECK6_TX: libc::c_int = 101;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket and a c_int option value that outlives the call.
    let r = unsafe {
        libc::setsockopt(
            dev.socket().as_raw_fd(),
            libc::IPPROTO_UDP,
            UDP_NO_CHECK6_TX,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(
        r,
        0,
        "UDP_NO_CHECK6_TX: {}",
        std::io::Error::last_os_error()
    );
}

/// Runs both devices until `done` or 10 s.
fn run(
    a: &mut UdpDevice,
    b: &mut UdpDevice,
    mut done: impl FnMut(&mut UdpDevice, &mut UdpDevice) -> bool,
) {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        a.progress().expect("progress a");
        b.progress().expect("progress b");
        if done(a, b) {
            return;
        }
    }
    panic!(
        "timed out: a {:?} {:?}, b {:?} {:?}",
        a.counters(),
        a.core().counters(),
        b.counters(),
        b.core().counters()
    );
}

#[test]
fn two_udp_devices_connect_and_move_data_over_loopback() {
    // A port of our own so parallel test runs do not collide.
    let port = 20000 + (std::process::id() % 20000) as u16;
    transfer(port, false);
}

#[test]
fn the_same_with_gso_sends_and_gro_receives() {
    let port = 20000 + (std::process::id() % 20000) as u16 + 1;
    let (a, b) = transfer(port, true);
    // 64 KiB messages at MTU 1024 went out as runs of datagrams: far fewer syscalls than
    // datagrams on the sending side.
    assert!(a.tx_syscalls * 4 < a.tx, "{a:?}");
    assert!(b.rx > 0 && b.rx_syscalls <= b.rx, "{b:?}");
}

/// Connects two devices, moves data every way, checks it; returns both devices' counters.
fn transfer(port: u16, gso: bool) -> (UdpDeviceCounters, UdpDeviceCounters) {
    transfer_over(Net::V4, port, gso, None)
}

#[test]
fn the_same_over_ipv6_with_zero_udp_checksums_as_linux_rxe_sends_them() {
    // Linux rxe leaves the UDP checksum of its IPv6 datagrams at zero; the kernel hands such
    // datagrams only to sockets that asked for them (UDP_NO_CHECK6_RX), so without that every
    // packet here would vanish and the transfer time out.
    let port = 20000 + (std::process::id() % 20000) as u16 + 3;
    let (a, b) = transfer_over(Net::V6ZeroChecksum, port, false, None);
    assert!(a.rx > 0 && b.rx > 0, "{a:?} {b:?}");
}

#[test]
fn the_same_over_a_lossy_duplicating_reordering_link() {
    let port = 20000 + (std::process::id() % 20000) as u16 + 2;
    let f = rxe_user::Faults::parse("loss=2,dup=2,reorder=5").unwrap();
    let (a, b) = transfer_over(Net::V4, port, true, Some(f));
    // The injector did its work on both sides, and the data still arrived intact (checked in
    // transfer_over).
    for c in [a, b] {
        assert!(
            c.faults_dropped + c.faults_duplicated + c.faults_reordered > 0,
            "{c:?}"
        );
    }
}

fn transfer_over(
    net: Net,
    port: u16,
    gso: bool,
    faults: Option<rxe_user::Faults>,
) -> (UdpDeviceCounters, UdpDeviceCounters) {
    let mut a = open(net, 1, port, gso, faults);
    let mut b = open(net, 2, port, gso, faults);
    let setup = |d: &mut UdpDevice| {
        let c = d.core();
        let pd = c.alloc_pd().expect("pd");
        let mr = c
            .reg_mr(
                pd,
                0x10_0000,
                256 * 1024,
                Access::LOCAL_WRITE | Access::REMOTE_WRITE | Access::REMOTE_READ,
            )
            .unwrap();
        let cq = c.create_cq(1024).expect("cq");
        let qpn = c.create_qp(&QpInit::rc(pd, cq)).unwrap();
        (qpn, cq, mr.lkey)
    };
    let (qa, cqa, ka) = setup(&mut a);
    let (qb, cqb, kb) = setup(&mut b);
    for (i, x) in a.core().mr_bytes_mut(ka).unwrap().iter_mut().enumerate() {
        *x = (i % 251) as u8;
    }
    b.core().listen(7174).unwrap();
    let now = a.now();
    a.core()
        .connect(now, qa, net.addr(2, port).ip(), 7174, 40000, 4, 4, b"hello")
        .unwrap();
    let mut req = None;
    run(&mut a, &mut b, |_, b| {
        while let Some(e) = b.core().poll_event() {
            if let DeviceEvent::Cm(CmEvent::ConnectRequest { id, .. }) = e {
                req = Some(id);
            }
        }
        req.is_some()
    });
    let now = b.now();
    b.core().accept(now, req.unwrap(), qb, 4, 4, &[]).unwrap();
    b.core()
        .post_recv(
            qb,
            RecvWr::new(
                5,
                Sge {
                    addr: 0x10_0000,
                    length: 65536,
                    lkey: kb,
                },
            ),
        )
        .unwrap();
    run(&mut a, &mut b, |a, b| {
        a.core().qp(qa).unwrap().state() == QpState::Rts
            && b.core().qp(qb).unwrap().state() == QpState::Rts
    });

    let sge = |addr, length| Sge {
        addr,
        length,
        lkey: ka,
    };
    let remote = |addr| Remote {
        addr,
        rkey: Rkey(kb),
    };
    let c = a.core();
    c.post_send(
        qa,
        SendWr::new(
            1,
            WrOpcode::Send,
            Some(sge(0x10_0000, 40000)),
            SendFlags::SIGNALED,
        ),
    )
    .unwrap();
    c.post_send(
        qa,
        SendWr::new(
            2,
            WrOpcode::RdmaWrite(remote(0x11_0000)),
            Some(sge(0x10_0000, 65536)),
            SendFlags::SIGNALED,
        ),
    )
    .unwrap();
    c.post_send(
        qa,
        SendWr::new(
            3,
            WrOpcode::RdmaRead(remote(0x11_0000)),
            Some(sge(0x12_0000, 65536)),
            SendFlags::SIGNALED,
        ),
    )
    .unwrap();
    let mut wcs = Vec::new();
    run(&mut a, &mut b, |a, _| {
        while let Some(w) = a.core().poll_cq(cqa) {
            wcs.push((w.wr_id, w.status));
        }
        wcs.len() == 3
    });
    assert_eq!(
        wcs,
        [
            (1, WcStatus::Success),
            (2, WcStatus::Success),
            (3, WcStatus::Success)
        ]
    );
    let r = b.core().poll_cq(cqb).expect("receive");
    assert_eq!((r.wr_id, r.byte_len), (5, 40000));
    let am = a.core().mr_bytes(ka).unwrap().to_vec();
    let bm = b.core().mr_bytes(kb).unwrap().to_vec();
    assert_eq!(&bm[..40000], &am[..40000]);
    assert_eq!(&bm[0x10000..0x20000], &am[..65536]);
    assert_eq!(&am[0x20000..0x30000], &am[..65536]);
    // Every received IPv4 datagram's Identification was solved (none corrupt on loopback).
    assert_eq!(
        a.counters().rx_icrc_unsolved + b.counters().rx_icrc_unsolved,
        0
    );
    assert!(a.counters().tx > 60);
    let (_, qc) = b.core().counters();
    assert_eq!(qc.icrc_err, 0);
    (a.counters(), b.counters())
}
