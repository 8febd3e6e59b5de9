//! A peer that vanishes mid-transfer (its device and socket gone, as when its process dies):
//! the survivor's outstanding work completes with `RETRY_EXC_ERR` after `retry_cnt` local ACK
//! timeouts, the rest is flushed, and nothing hangs.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rxe_transport::device::QpInit;
use rxe_transport::{
    Access, AddressVector, Mtu, QpAttr, QpState, QpType, Remote, SendFlags, SendWr, Sge, WcStatus,
    WrOpcode,
};
use rxe_user::{UdpDevice, UdpDeviceConfig};
use rxe_wire::{Psn, Qpn, Rkey};

const BUF: u64 = 0x10_0000;

struct Side {
    dev: UdpDevice,
    qpn: Qpn,
    cq: rxe_transport::device::CqId,
    key: u32,
}

fn side(last: u8, port: u16) -> Side {
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)), port);
    let mut cfg = UdpDeviceConfig::new(addr);
    cfg.retry_cnt_7_is_infinite = false;
    let mut dev = UdpDevice::open(cfg).expect("open");
    let c = dev.core();
    let pd = c.alloc_pd();
    let mr = c
        .reg_mr(
            pd,
            BUF,
            1 << 20,
            Access::LOCAL_WRITE | Access::REMOTE_WRITE | Access::REMOTE_READ,
        )
        .unwrap();
    let cq = c.create_cq(256);
    let qpn = c
        .create_qp(&QpInit {
            qp_type: QpType::Rc,
            pd,
            send_cq: cq,
            recv_cq: cq,
        })
        .unwrap();
    c.modify_qp(
        qpn,
        &QpAttr {
            state: Some(QpState::Init),
            pkey_index: Some(0),
            port: Some(1),
            access: Some(Access::REMOTE_WRITE | Access::REMOTE_READ),
            ..QpAttr::default()
        },
    )
    .unwrap();
    Side {
        dev,
        qpn,
        cq,
        key: mr.lkey,
    }
}

fn connect(s: &mut Side, me: u8, peer: &Side, peer_last: u8) {
    let c = s.dev.core();
    c.modify_qp(
        s.qpn,
        &QpAttr {
            state: Some(QpState::Rtr),
            av: Some(AddressVector {
                sgid: IpAddr::V4(Ipv4Addr::new(127, 0, 0, me)),
                dgid: IpAddr::V4(Ipv4Addr::new(127, 0, 0, peer_last)),
                hop_limit: 64,
                traffic_class: 0,
                flow_label: 0,
                udp_sport: None,
            }),
            path_mtu: Some(Mtu::M1024),
            dest_qp: Some(peer.qpn),
            rq_psn: Some(Psn::new(100)),
            max_dest_rd_atomic: Some(4),
            min_rnr_timer: Some(12),
            ..QpAttr::default()
        },
    )
    .unwrap();
    c.modify_qp(
        s.qpn,
        &QpAttr {
            state: Some(QpState::Rts),
            // 4.096 µs × 2^10 ≈ 4 ms per try, 7 retries.
            timeout: Some(10),
            retry_cnt: Some(7),
            rnr_retry: Some(7),
            sq_psn: Some(Psn::new(100)),
            max_rd_atomic: Some(4),
            ..QpAttr::default()
        },
    )
    .unwrap();
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
