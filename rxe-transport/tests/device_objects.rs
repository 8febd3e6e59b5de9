//! The device core's object pools: protection domains, CQs, SRQs and address handles with their
//! limits (reported by `Device::attr`), refusals while in use, two RC QPs drawing from one SRQ
//! with the limit event, and a UD send through an address handle.

use core::net::{IpAddr, Ipv4Addr};

use rxe_transport::device::{
    AhId, Device, DeviceConfig, DeviceError, DeviceEvent, QpInit, RcConnect, SrqId,
};
use rxe_transport::{
    Access, AddressVector, Instant, Pd, QpAttr, QpState, QpType, RecvWr, SendFlags, SendWr, Sge,
    UdDest, WcStatus, WrOpcode,
};
use rxe_wire::{Psn, QKey};

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

/// From 10.0.0.1 to 10.0.0.2, hop limit 64.
fn av_1_to_2() -> AddressVector {
    AddressVector {
        sgid: ip(1),
        dgid: ip(2),
        hop_limit: 64,
        traffic_class: 0,
        flow_label: 0,
        udp_sport: None,
    }
}

fn device(last: u8, seed: u64) -> Device {
    Device::new(DeviceConfig::new(ip(last), seed)).expect("device")
}

/// Moves every packet between the two devices until both are quiet.
fn run(devs: &mut [Device; 2]) {
    let now = Instant::from_nanos(1_000);
    let mut buf = vec![0u8; 8192];
    loop {
        let mut moved = false;
        for from in 0..2 {
            while let Some(n) = devs[from].poll_transmit(now, &mut buf) {
                moved = true;
                devs[1 - from].handle_packet(now, &buf[..n]);
            }
        }
        if !moved {
            return;
        }
    }
}

#[test]
fn limits_are_reported_and_enforced() {
    let mut cfg = DeviceConfig::new(ip(1), 1);
    cfg.max_pd = 2;
    cfg.max_cq = 1;
    cfg.max_srq = 1;
    cfg.max_ah = 1;
    let mut d = Device::new(cfg).expect("device");
    let a = d.attr();
    assert_eq!((a.max_pd, a.max_cq, a.max_srq, a.max_ah), (2, 1, 1, 1));
    assert_eq!(a.max_qp_wr, rxe_transport::device::QP_DEPTH);
    assert_eq!(a.max_sge, rxe_transport::verbs::MAX_SGE);
    let p1 = d.alloc_pd().expect("pd");
    let p2 = d.alloc_pd().expect("pd");
    assert_ne!(p1, p2);
    assert_eq!(d.alloc_pd(), Err(DeviceError::NoResources));
    let cq = d.create_cq(8).expect("cq");
    assert_eq!(d.create_cq(8), Err(DeviceError::NoResources));
    assert_eq!(d.create_cq(0).err(), Some(DeviceError::InvalidLength));
    let srq = d.create_srq(p1).expect("srq");
    assert_eq!(d.create_srq(p1), Err(DeviceError::NoResources));
    let av = av_1_to_2();
    let ah = d.create_ah(p2, av).expect("ah");
    assert_eq!(d.create_ah(p2, av), Err(DeviceError::NoResources));
    assert_eq!(d.ah(ah), Ok(av));
    // Objects of an unknown PD are refused.
    let gone = Pd(77);
    assert_eq!(
        d.reg_mr(gone, 0, 64, Access::LOCAL_WRITE).err(),
        Some(DeviceError::UnknownPd(gone))
    );
    assert_eq!(
        d.create_qp(&QpInit::rc(gone, cq)),
        Err(DeviceError::UnknownPd(gone))
    );
    // In use: refused, and nothing changes; then freed in order.
    let qpn = d
        .create_qp(&QpInit {
            srq: Some(srq),
            ..QpInit::rc(p1, cq)
        })
        .expect("qp");
    assert_eq!(d.dealloc_pd(p1), Err(DeviceError::Busy));
    assert_eq!(d.destroy_cq(cq), Err(DeviceError::Busy));
    assert_eq!(d.destroy_srq(srq), Err(DeviceError::Busy));
    assert_eq!(d.dealloc_pd(p2), Err(DeviceError::Busy));
    d.destroy_ah(ah).expect("destroy ah");
    assert_eq!(d.ah(ah), Err(DeviceError::UnknownAh(ah)));
    d.dealloc_pd(p2).expect("p2 free now");
    d.destroy_qp(qpn).expect("destroy qp");
    d.destroy_srq(srq).expect("destroy srq");
    d.destroy_cq(cq).expect("destroy cq");
    d.dealloc_pd(p1).expect("dealloc pd");
    assert_eq!(d.dealloc_pd(p1), Err(DeviceError::UnknownPd(p1)));
    assert_eq!(
        d.destroy_srq(SrqId(9)),
        Err(DeviceError::UnknownSrq(SrqId(9)))
    );
    assert_eq!(d.destroy_ah(AhId(9)), Err(DeviceError::UnknownAh(AhId(9))));
    // Freed slots are taken again.
    assert!(d.alloc_pd().is_ok() && d.create_cq(1).is_ok() && d.create_srq(Pd(1)).is_err());
}

#[test]
fn two_qps_share_one_srq_with_the_limit_event() {
    let mut devs = [device(1, 5), device(2, 6)];
    const BUF: u64 = 0x10_0000;
    // Device 1: two RC QPs sending. Device 0: two RC QPs receiving from one SRQ.
    let (pd0, pd1) = (
        devs[0].alloc_pd().expect("pd"),
        devs[1].alloc_pd().expect("pd"),
    );
    let access = Access::LOCAL_WRITE | Access::REMOTE_WRITE;
    let mr0 = devs[0].reg_mr(pd0, BUF, 8 * 256, access).expect("mr");
    let mr1 = devs[1].reg_mr(pd1, BUF, 256, access).expect("mr");
    devs[1].mr_bytes_mut(mr1.lkey).expect("bytes")[..64].fill(0x5a);
    let (cq0, cq1) = (
        devs[0].create_cq(64).expect("cq"),
        devs[1].create_cq(64).expect("cq"),
    );
    let srq = devs[0].create_srq(pd0).expect("srq");
    for i in 0..6u64 {
        let sge = Sge {
            addr: BUF + i * 256,
            length: 256,
            lkey: mr0.lkey,
        };
        devs[0]
            .post_srq_recv(srq, RecvWr::new(100 + i, sge))
            .expect("post srq");
    }
    // A request with an unknown key is refused at post time.
    let bad = Sge {
        addr: BUF,
        length: 1,
        lkey: mr0.lkey ^ 0xff,
    };
    assert!(matches!(
        devs[0].post_srq_recv(srq, RecvWr::new(1, bad)),
        Err(DeviceError::UnknownKey(_))
    ));
    devs[0].arm_srq_limit(srq, 3).expect("arm");
    assert_eq!(devs[0].srq_len(srq), Ok((6, 3)));
    let mut pairs = Vec::new();
    for _ in 0..2 {
        let r = devs[0]
            .create_qp(&QpInit {
                srq: Some(srq),
                ..QpInit::rc(pd0, cq0)
            })
            .expect("qp");
        let s = devs[1].create_qp(&QpInit::rc(pd1, cq1)).expect("qp");
        devs[0]
            .connect_rc(
                r,
                &RcConnect::new(ip(1), ip(2), s, Psn::new(10), Psn::new(20)),
            )
            .expect("connect");
        devs[1]
            .connect_rc(
                s,
                &RcConnect::new(ip(2), ip(1), r, Psn::new(20), Psn::new(10)),
            )
            .expect("connect");
        // Its own receive queue is refused.
        let sge = Sge {
            addr: BUF,
            length: 8,
            lkey: mr0.lkey,
        };
        assert!(matches!(
            devs[0].post_recv(r, RecvWr::new(0, sge)),
            Err(DeviceError::PostRecv(_))
        ));
        pairs.push((r, s));
    }
    // Two SENDs on each QP: four requests taken, two left; the limit (3) fires once.
    for round in 0..2u64 {
        for (k, &(_, s)) in pairs.iter().enumerate() {
            let sge = Sge {
                addr: BUF,
                length: 64,
                lkey: mr1.lkey,
            };
            let wr = SendWr::new(
                round * 2 + k as u64,
                WrOpcode::Send,
                Some(sge),
                SendFlags::SIGNALED,
            );
            devs[1].post_send(s, wr).expect("send");
        }
    }
    run(&mut devs);
    let mut got = Vec::new();
    while let Some(wc) = devs[0].poll_cq(cq0) {
        assert_eq!(wc.status, WcStatus::Success);
        assert_eq!(wc.byte_len, 64);
        got.push((wc.wr_id, wc.qp_num));
    }
    assert_eq!(got.len(), 4);
    let mut ids: Vec<u64> = got.iter().map(|g| g.0).collect();
    ids.sort();
    assert_eq!(ids, [100, 101, 102, 103]);
    // Both QPs took from the SRQ.
    for &(r, _) in &pairs {
        assert!(got.iter().any(|g| g.1 == r.value()));
    }
    for i in 0..4usize {
        assert!(
            devs[0].mr_bytes(mr0.lkey).expect("bytes")[i * 256..i * 256 + 64]
                .iter()
                .all(|&b| b == 0x5a)
        );
    }
    assert_eq!(devs[0].srq_len(srq), Ok((2, 0)));
    let limit_events: Vec<_> = core::iter::from_fn(|| devs[0].poll_event())
        .filter(|e| matches!(e, DeviceEvent::SrqLimitReached(s) if *s == srq))
        .collect();
    assert_eq!(limit_events.len(), 1);
    let mut sent = 0;
    while let Some(wc) = devs[1].poll_cq(cq1) {
        assert_eq!(wc.status, WcStatus::Success);
        sent += 1;
    }
    assert_eq!(sent, 4);
}

#[test]
fn ud_send_through_an_address_handle() {
    let mut devs = [device(1, 7), device(2, 8)];
    const BUF: u64 = 0x20_0000;
    let mut qps = Vec::new();
    let mut keys = Vec::new();
    let mut cqs = Vec::new();
    for d in devs.iter_mut() {
        let pd = d.alloc_pd().expect("pd");
        let mr = d.reg_mr(pd, BUF, 4096, Access::LOCAL_WRITE).expect("mr");
        let cq = d.create_cq(16).expect("cq");
        let qpn = d
            .create_qp(&QpInit {
                qp_type: QpType::Ud,
                ..QpInit::rc(pd, cq)
            })
            .expect("qp");
        for (state, qkey) in [
            (QpState::Init, Some(QKey(0x1111))),
            (QpState::Rtr, None),
            (QpState::Rts, None),
        ] {
            let attr = QpAttr {
                state: Some(state),
                pkey_index: (state == QpState::Init).then_some(0),
                port: (state == QpState::Init).then_some(1),
                qkey,
                sq_psn: (state == QpState::Rts).then(|| Psn::new(0)),
                ..QpAttr::default()
            };
            d.modify_qp(qpn, &attr).expect("modify");
        }
        qps.push((qpn, pd));
        keys.push(mr.lkey);
        cqs.push(cq);
    }
    let sge = Sge {
        addr: BUF,
        length: 40 + 512,
        lkey: keys[1],
    };
    devs[1]
        .post_recv(qps[1].0, RecvWr::new(9, sge))
        .expect("recv");
    devs[0].mr_bytes_mut(keys[0]).expect("bytes")[..512].fill(0xc3);
    let av = av_1_to_2();
    let ah = devs[0].create_ah(qps[0].1, av).expect("ah");
    let sge = Sge {
        addr: BUF,
        length: 512,
        lkey: keys[0],
    };
    let mut wr = SendWr::new(1, WrOpcode::Send, Some(sge), SendFlags::SIGNALED);
    wr.ud = Some(UdDest {
        ah: devs[0].ah(ah).expect("ah"),
        remote_qpn: qps[1].0,
        remote_qkey: QKey(0x1111),
    });
    devs[0].post_send(qps[0].0, wr).expect("send");
    run(&mut devs);
    let wc = devs[1].poll_cq(cqs[1]).expect("receive completion");
    assert_eq!(
        (wc.wr_id, wc.status, wc.byte_len),
        (9, WcStatus::Success, 40 + 512)
    );
    assert_eq!(wc.src_qp, qps[0].0.value());
    assert!(devs[1].mr_bytes(keys[1]).expect("bytes")[40..552]
        .iter()
        .all(|&b| b == 0xc3));
}
