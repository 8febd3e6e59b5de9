//! A peer that vanishes mid-transfer (its device and socket gone, as when its process dies):
//! the survivor's outstanding work completes with `RETRY_EXC_ERR` after `retry_cnt` local ACK
//! timeouts, the rest is flushed, and nothing hangs.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{lo, rc_endpoint, Path};
use rxe_transport::{Mtu, QpState, Remote, SendFlags, SendWr, Sge, WcStatus, WrOpcode};
use rxe_user::{UdpDevice, UdpDeviceConfig};
use rxe_wire::{Qpn, Rkey};

const BUF: u64 = 0x10_0000;

struct Side {
    dev: UdpDevice,
    qpn: Qpn,
    cq: rxe_transport::device::CqId,
    key: u32,
}

fn side(last: u8, port: u16) -> Side {
    let addr = SocketAddr::new(lo(last), port);
    let mut cfg = UdpDeviceConfig::new(addr);
    cfg.retry_cnt_7_is_infinite = false;
    let mut dev = UdpDevice::open(cfg).expect("open");
    let (qpn, cq, key) = rc_endpoint(dev.core(), BUF);
    Side { dev, qpn, cq, key }
}

fn connect(s: &mut Side, me: u8, peer: &Side, peer_last: u8) {
    let path = Path {
        me: lo(me),
        peer: lo(peer_last),
        dest: peer.qpn,
        my_psn: 100,
        peer_psn: 100,
        mtu: Mtu::M1024,
        // 4.096 µs × 2^10 ≈ 4 ms per try, 7 retries.
        timeout: 10,
    };
    common::connect(s.dev.core(), s.qpn, &path);
}

#[test]
fn a_vanished_peer_ends_in_retry_exc_err_then_flush() {
    let port = 30000 + (std::process::id() % 20000) as u16;
    let mut a = side(1, port);
    let mut b = side(2, port);
    connect(&mut a, 1, &b, 2);
    connect(&mut b, 2, &a, 1);
    let write = |i: u64, key_a: u32, key_b: u32| {
        SendWr::new(
            i,
            WrOpcode::RdmaWrite(Remote {
                addr: BUF,
                rkey: Rkey(key_b),
            }),
            Some(Sge {
                addr: BUF,
                length: 65536,
                lkey: key_a,
            }),
            SendFlags::SIGNALED,
        )
    };
    // One WRITE goes through while both live.
    let (ka, kb, qa, cqa) = (a.key, b.key, a.qpn, a.cq);
    a.dev.core().post_send(qa, write(1, ka, kb)).unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    let wc = loop {
        a.dev.progress().unwrap();
        b.dev.progress().unwrap();
        if let Some(wc) = a.dev.core().poll_cq(cqa) {
            break wc;
        }
        assert!(Instant::now() < end, "first WRITE never completed");
    };
    assert_eq!((wc.wr_id, wc.status), (1, WcStatus::Success));

    // The peer dies; three more WRITEs are outstanding.
    drop(b);
    for i in 2..=4 {
        a.dev.core().post_send(qa, write(i, ka, kb)).unwrap();
    }
    let start = Instant::now();
    let mut got = Vec::new();
    while got.len() < 3 {
        a.dev.progress().unwrap();
        while let Some(wc) = a.dev.core().poll_cq(cqa) {
            got.push((wc.wr_id, wc.status, start.elapsed()));
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no completion after the peer vanished: {got:?}"
        );
    }
    assert_eq!(got[0].0, 2);
    assert_eq!(got[0].1, WcStatus::RetryExcErr, "{got:?}");
    // Eight tries of ~4 ms each: well past 7 × 4 ms, far below a second.
    assert!(got[0].2 >= Duration::from_millis(28), "{got:?}");
    assert!(got[0].2 < Duration::from_secs(2), "{got:?}");
    assert!(
        got[1..].iter().all(|w| w.1 == WcStatus::WrFlushErr),
        "{got:?}"
    );
    assert_eq!(a.dev.core().qp(qa).unwrap().state(), QpState::Err);
}
