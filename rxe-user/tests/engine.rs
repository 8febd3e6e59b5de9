//! Background progress: two devices, each run by an [`Engine`] thread; the test thread only
//! posts work and blocks in `wait_cq`. SENDs ping-pong, a WRITE and a READ move data that is
//! checked, and the devices come back from `stop`.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::{lo, rc_endpoint, Path};
use rxe_transport::device::CqId;
use rxe_transport::{Mtu, RecvWr, Remote, SendFlags, SendWr, Sge, WcOpcode, WcStatus, WrOpcode};
use rxe_user::{Engine, UdpDevice, UdpDeviceConfig};
use rxe_wire::{Qpn, Rkey};

const BUF: u64 = 0x20_0000;
const T: Duration = Duration::from_secs(5);

struct Side {
    e: Engine,
    qpn: Qpn,
    cq: CqId,
    key: u32,
    ip: IpAddr,
}

fn side(last: u8, port: u16) -> Side {
    let ip = lo(last);
    let dev = UdpDevice::open(UdpDeviceConfig::new(SocketAddr::new(ip, port))).unwrap();
    let e = Engine::start(dev).unwrap();
    let (qpn, cq, key) = e.with(|d| rc_endpoint(d.core(), BUF)).unwrap();
    Side {
        e,
        qpn,
        cq,
        key,
        ip,
    }
}

fn connect(s: &Side, peer: &Side) {
    let path = Path {
        me: s.ip,
        peer: peer.ip,
        dest: peer.qpn,
        my_psn: 7,
        peer_psn: 7,
        mtu: Mtu::M4096,
        timeout: 14,
    };
    let q = s.qpn;
    s.e.with(|d| common::connect(d.core(), q, &path)).unwrap();
}

fn ok(s: &Side) -> rxe_transport::WorkCompletion {
    let wc = s.e.wait_cq(s.cq, T).unwrap().expect("a completion in time");
    assert_eq!(wc.status, WcStatus::Success, "{wc:?}");
    wc
}

#[test]
fn two_engines_move_data_while_the_caller_blocks() {
    let port = 30000 + (std::process::id() % 20000) as u16;
    let a = side(1, port);
    let b = side(2, port);
    connect(&a, &b);
    connect(&b, &a);
    let sge = |s: &Side, off: u64, len: u32| Sge {
        addr: BUF + off,
        length: len,
        lkey: s.key,
    };
    // SEND ping-pong, 200 round trips.
    for i in 0..200u64 {
        for s in [&a, &b] {
            let wr = RecvWr::new(i, sge(s, 0x8_0000, 4096));
            let q = s.qpn;
            s.e.with(|d| d.core().post_recv(q, wr)).unwrap().unwrap();
        }
        let wr = SendWr::new(i, WrOpcode::Send, Some(sge(&a, 0, 64)), SendFlags::SIGNALED);
        let qa = a.qpn;
        a.e.with(|d| d.core().post_send(qa, wr)).unwrap().unwrap();
        assert_eq!(ok(&b).opcode, WcOpcode::Recv);
        let wr = SendWr::new(i, WrOpcode::Send, Some(sge(&b, 0, 64)), SendFlags::SIGNALED);
        let qb = b.qpn;
        b.e.with(|d| d.core().post_send(qb, wr)).unwrap().unwrap();
        // a: its SEND's completion and the pong, in either order; b: its SEND's.
        let mut ops = [ok(&a).opcode, ok(&a).opcode];
        ops.sort_by_key(|o| *o as u32);
        assert!(ops.contains(&WcOpcode::Recv) && ops.contains(&WcOpcode::Send));
        assert_eq!(ok(&b).opcode, WcOpcode::Send);
    }
    // A 256 KiB WRITE of a pattern, then a READ of it back elsewhere.
    let (ka, kb, qa) = (a.key, b.key, a.qpn);
    a.e.with(|d| {
        for (i, x) in d.core().mr_bytes_mut(ka).unwrap()[..0x4_0000]
            .iter_mut()
            .enumerate()
        {
            *x = (i % 253) as u8;
        }
    })
    .unwrap();
    let remote = |off: u64| Remote {
        addr: BUF + off,
        rkey: Rkey(kb),
    };
    let w = SendWr::new(
        1,
        WrOpcode::RdmaWrite(remote(0)),
        Some(sge(&a, 0, 0x4_0000)),
        SendFlags::SIGNALED,
    );
    a.e.with(|d| d.core().post_send(qa, w)).unwrap().unwrap();
    ok(&a);
    let r = SendWr::new(
        2,
        WrOpcode::RdmaRead(remote(0)),
        Some(sge(&a, 0x4_0000, 0x4_0000)),
        SendFlags::SIGNALED,
    );
    a.e.with(|d| d.core().post_send(qa, r)).unwrap().unwrap();
    assert_eq!(ok(&a).opcode, WcOpcode::RdmaRead);
    let (am, bm) = (
        a.e.with(|d| d.core().mr_bytes(ka).unwrap()[..0x8_0000].to_vec())
            .unwrap(),
        b.e.with(|d| d.core().mr_bytes(kb).unwrap()[..0x4_0000].to_vec())
            .unwrap(),
    );
    assert_eq!(&bm[..], &am[..0x4_0000]);
    assert_eq!(&am[0x4_0000..], &am[..0x4_0000]);
    // Nothing more is coming: the wait times out, cleanly.
    assert!(a
        .e
        .wait_cq(a.cq, Duration::from_millis(50))
        .unwrap()
        .is_none());
    let mut da = a.e.stop().unwrap();
    assert_eq!(da.core().counters().1.icrc_err, 0);
    b.e.stop().unwrap();
}

/// Whether `fd` is readable within `ms` milliseconds.
#[allow(unsafe_code)]
fn readable(fd: std::os::fd::BorrowedFd<'_>, ms: i32) -> bool {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut p, 1, ms) == 1 }
}

#[test]
fn the_completion_channel_wakes_a_poller_for_armed_cqs_only() {
    let port = 30000 + (std::process::id() % 20000) as u16 + 1;
    let a = side(1, port);
    let b = side(2, port);
    connect(&a, &b);
    connect(&b, &a);
    let sge = |s: &Side, len: u32| Sge {
        addr: BUF,
        length: len,
        lkey: s.key,
    };
    let (qa, qb) = (a.qpn, b.qpn);
    let send = |flags: SendFlags| {
        let wr = RecvWr::new(1, sge(&b, 4096));
        b.e.with(|d| d.core().post_recv(qb, wr)).unwrap().unwrap();
        let wr = SendWr::new(1, WrOpcode::Send, Some(sge(&a, 64)), flags);
        a.e.with(|d| d.core().post_send(qa, wr)).unwrap().unwrap();
    };
    // Not armed: the completion comes, the channel stays quiet.
    send(SendFlags::SIGNALED);
    ok(&b);
    assert!(!readable(b.e.completion_fd(), 50));
    // Armed for solicited events: a plain SEND leaves it quiet, a solicited one wakes it.
    b.e.req_notify_cq(b.cq, true).unwrap();
    send(SendFlags::SIGNALED);
    ok(&b);
    assert!(!readable(b.e.completion_fd(), 50));
    send(SendFlags::SIGNALED | SendFlags::SOLICITED);
    assert!(readable(b.e.completion_fd(), 5000), "no notification");
    assert_eq!(b.e.get_cq_event(T).unwrap(), Some(b.cq));
    assert!(
        !readable(b.e.completion_fd(), 0),
        "one notification per arm"
    );
    assert_eq!(b.e.get_cq_event(Duration::from_millis(20)).unwrap(), None);
    let wc = ok(&b);
    assert!(wc.wc_flags.contains(rxe_transport::WcFlags::SOLICITED));
    // Armed for any completion: the sender's own SEND completion wakes its channel.
    for _ in 0..3 {
        ok(&a);
    }
    a.e.req_notify_cq(a.cq, false).unwrap();
    send(SendFlags::SIGNALED);
    assert!(readable(a.e.completion_fd(), 5000));
    assert_eq!(a.e.get_cq_event(T).unwrap(), Some(a.cq));
    ok(&a);
    ok(&b);
    assert!(a.e.req_notify_cq(CqId(4242), false).is_err());
}
