//! The device core: two devices joined by an in-memory link make an rdma_cm connection over
//! their QP1s (the CM moving the QPs), then RC SEND, WRITE and READ with data checked, then
//! disconnect; packets for unknown QPs are counted and dropped.

use core::net::{IpAddr, Ipv4Addr};
use core::time::Duration;

use rxe_transport::cm::CmEvent;
use rxe_transport::device::{CqId, Device, DeviceConfig, DeviceEvent, QpInit};
use rxe_transport::{
    Access, Instant, QpState, QpType, RecvWr, Remote, SendFlags, SendWr, Sge, WcOpcode, WcStatus,
    WrOpcode,
};
use rxe_wire::{Qpn, Rkey};

struct Link {
    devs: [Device; 2],
    now: Instant,
    frames: u64,
}

impl Link {
    fn new() -> Link {
        let mk = |last: u8, seed| {
            Device::new(DeviceConfig::new(
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)),
                seed,
            ))
            .expect("device")
        };
        Link {
            devs: [mk(1, 11), mk(2, 22)],
            now: Instant::from_nanos(1_000),
            frames: 0,
        }
    }

    /// Moves packets until both devices are quiet, then runs timers if any are due soon.
    fn run(&mut self) {
        let mut buf = vec![0u8; 8192];
        for _ in 0..100_000 {
            let mut moved = false;
            for from in 0..2 {
                while let Some(n) = self.devs[from].poll_transmit(self.now, &mut buf) {
                    moved = true;
                    self.frames += 1;
                    self.devs[1 - from].handle_packet(self.now, &buf[..n]);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("link never settled");
    }

    fn events(&mut self, i: usize) -> Vec<DeviceEvent> {
        let mut v = Vec::new();
        while let Some(e) = self.devs[i].poll_event() {
            v.push(e);
        }
        v
    }
}

fn setup_qp(d: &mut Device) -> (Qpn, CqId, u32) {
    let pd = d.alloc_pd().expect("pd");
    let mr = d
        .reg_mr(
            pd,
            0x10_0000,
            64 * 1024,
            Access::LOCAL_WRITE | Access::REMOTE_WRITE | Access::REMOTE_READ,
        )
        .unwrap();
    let cq = d.create_cq(256).expect("cq");
    let qpn = d.create_qp(&QpInit::rc(pd, cq)).unwrap();
    (qpn, cq, mr.lkey)
}

/// Two RC QPs connected through rdma_cm, in RTS, with a 8 KiB receive (wr_id 9) posted on B.
struct Pair {
    qa: Qpn,
    cq_a: CqId,
    ka: u32,
    qb: Qpn,
    cq_b: CqId,
    kb: u32,
    conn_a: rxe_transport::cm::ConnId,
}

fn connect_pair(l: &mut Link) -> Pair {
    let (qa, cq_a, ka) = setup_qp(&mut l.devs[0]);
    let (qb, cq_b, kb) = setup_qp(&mut l.devs[1]);
    for (i, b) in l.devs[0].mr_bytes_mut(ka).unwrap().iter_mut().enumerate() {
        *b = (i * 7) as u8;
    }
    l.devs[1].listen(7174).unwrap();
    let now = l.now;
    let conn_a = l.devs[0]
        .connect(
            now,
            qa,
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            7174,
            40000,
            4,
            4,
            b"hi",
        )
        .unwrap();
    l.run();
    let ev = l.events(1);
    let Some(DeviceEvent::Cm(CmEvent::ConnectRequest {
        id, private_data, ..
    })) = ev.first().cloned()
    else {
        panic!("{ev:?}")
    };
    assert_eq!(&private_data[..2], b"hi");
    l.devs[1].accept(now, id, qb, 4, 4, b"ok").unwrap();
    // The QP is in RTR now: the receive is there before the first SEND.
    l.devs[1]
        .post_recv(
            qb,
            RecvWr::new(
                9,
                Sge {
                    addr: 0x10_0000,
                    length: 8192,
                    lkey: kb,
                },
            ),
        )
        .unwrap();
    l.run();
    assert!(l
        .events(0)
        .iter()
        .any(|e| matches!(e, DeviceEvent::Cm(CmEvent::Established { .. }))));
    assert!(l
        .events(1)
        .iter()
        .any(|e| matches!(e, DeviceEvent::Cm(CmEvent::Established { .. }))));
    assert_eq!(l.devs[0].qp(qa).unwrap().state(), QpState::Rts);
    assert_eq!(l.devs[1].qp(qb).unwrap().state(), QpState::Rts);
    Pair {
        qa,
        cq_a,
        ka,
        qb,
        cq_b,
        kb,
        conn_a,
    }
}

#[test]
fn two_devices_connect_through_rdma_cm_and_move_data() {
    let mut l = Link::new();
    let Pair {
        qa,
        cq_a,
        ka,
        qb,
        cq_b,
        kb,
        conn_a,
    } = connect_pair(&mut l);

    // SEND 5000 bytes, WRITE 16 KiB, READ it back elsewhere.
    let sge = |addr, length| Sge {
        addr,
        length,
        lkey: ka,
    };
    l.devs[0]
        .post_send(
            qa,
            SendWr::new(
                1,
                WrOpcode::Send,
                Some(sge(0x10_0000, 5000)),
                SendFlags::SIGNALED,
            ),
        )
        .unwrap();
    let remote = |addr| Remote {
        addr,
        rkey: Rkey(kb),
    };
    l.devs[0]
        .post_send(
            qa,
            SendWr::new(
                2,
                WrOpcode::RdmaWrite(remote(0x10_4000)),
                Some(sge(0x10_0000, 16384)),
                SendFlags::SIGNALED,
            ),
        )
        .unwrap();
    l.devs[0]
        .post_send(
            qa,
            SendWr::new(
                3,
                WrOpcode::RdmaRead(remote(0x10_4000)),
                Some(sge(0x10_8000, 16384)),
                SendFlags::SIGNALED,
            ),
        )
        .unwrap();
    l.run();
    let wcs: Vec<_> = std::iter::from_fn(|| l.devs[0].poll_cq(cq_a))
        .map(|w| (w.wr_id, w.status, w.opcode))
        .collect();
    assert_eq!(
        wcs,
        [
            (1, WcStatus::Success, WcOpcode::Send),
            (2, WcStatus::Success, WcOpcode::RdmaWrite),
            (3, WcStatus::Success, WcOpcode::RdmaRead)
        ]
    );
    let r = l.devs[1].poll_cq(cq_b).expect("receive completion");
    assert_eq!(
        (r.wr_id, r.status, r.byte_len),
        (9, WcStatus::Success, 5000)
    );
    let a = l.devs[0].mr_bytes(ka).unwrap().to_vec();
    let b = l.devs[1].mr_bytes(kb).unwrap();
    assert_eq!(&b[..5000], &a[..5000]);
    assert_eq!(&b[0x4000..0x8000], &a[..16384]);
    assert_eq!(&a[0x8000..0xc000], &a[..16384]);

    // Disconnect: both QPs end in ERR, both sides see it.
    l.devs[0].disconnect(l.now, conn_a).unwrap();
    l.run();
    assert!(l
        .events(1)
        .iter()
        .any(|e| matches!(e, DeviceEvent::Cm(CmEvent::Disconnected { .. }))));
    assert_eq!(l.devs[0].qp(qa).unwrap().state(), QpState::Err);
    assert_eq!(l.devs[1].qp(qb).unwrap().state(), QpState::Err);
    // Timewait ends after its timer.
    l.now = l.now + Duration::from_secs(10);
    let now = l.now;
    l.devs[0].handle_timeout(now);
    l.devs[1].handle_timeout(now);
    assert!(l
        .events(0)
        .iter()
        .any(|e| matches!(e, DeviceEvent::Cm(CmEvent::TimewaitExit { .. }))));
    let (dc, qc) = l.devs[1].counters();
    assert_eq!(dc.malformed + dc.unknown_qp, 0);
    assert!(qc.rcvd_pkts > 10);
}

#[test]
fn keys_qpns_and_drops_follow_linux_rxe() {
    let mut l = Link::new();
    let d = &mut l.devs[0];
    let pd = d.alloc_pd().expect("pd");
    let m1 = d.reg_mr(pd, 0x1000, 4096, Access::LOCAL_WRITE).unwrap();
    let m2 = d.reg_mr(pd, 0x2000, 4096, Access::LOCAL_WRITE).unwrap();
    // A 24-bit index and an 8-bit key part; lkey == rkey.
    assert_eq!(m1.lkey, m1.rkey);
    assert_ne!(m1.lkey >> 8, m2.lkey >> 8);
    assert!(d.reg_mr(pd, 0, 0, Access::LOCAL_WRITE).is_err());
    let cq = d.create_cq(4).expect("cq");
    let init = QpInit {
        qp_type: QpType::Rc,
        pd,
        send_cq: cq,
        recv_cq: cq,
        srq: None,
    };
    let q1 = d.create_qp(&init).unwrap();
    let q2 = d.create_qp(&init).unwrap();
    assert_eq!((q1.value(), q2.value()), (0x11, 0x12));
    assert!(d
        .create_qp(&QpInit {
            send_cq: CqId(99),
            ..init
        })
        .is_err());
    d.destroy_qp(q1).unwrap();
    assert!(d.qp(q1).is_none());
    // A packet for a QP that does not exist is dropped and counted; garbage too.
    let mut buf = vec![0u8; 8192];
    l.devs[1].listen(1).unwrap();
    let _ = l.devs[0].connect(
        l.now,
        q2,
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        1,
        2,
        1,
        1,
        &[],
    );
    let n = l.devs[0].poll_transmit(l.now, &mut buf).expect("REQ");
    // Re-address the REQ frame to QP 0x99 on b (BTH dest QP at IPv4 20 + UDP 8 + 5).
    buf[33..36].copy_from_slice(&[0, 0, 0x99]);
    l.devs[1].handle_packet(l.now, &buf[..n]);
    l.devs[1].handle_packet(l.now, &[0x45, 0, 0]);
    let (dc, _) = l.devs[1].counters();
    assert_eq!((dc.unknown_qp, dc.malformed), (1, 1));
}

#[test]
fn armed_cqs_notify_once_on_the_completions_verbs_says() {
    let mut l = Link::new();
    let p = connect_pair(&mut l);
    let send = |l: &mut Link, id: u64, flags: SendFlags| {
        let wr = SendWr::new(
            id,
            WrOpcode::Send,
            Some(Sge {
                addr: 0x10_0000,
                length: 64,
                lkey: p.ka,
            }),
            flags,
        );
        l.devs[0].post_send(p.qa, wr).unwrap();
        l.run();
    };
    let recv = |l: &mut Link, id: u64| {
        let wr = RecvWr::new(
            id,
            Sge {
                addr: 0x10_0000,
                length: 8192,
                lkey: p.kb,
            },
        );
        l.devs[1].post_recv(p.qb, wr).unwrap();
    };
    let drain = |l: &mut Link, i: usize, cq| std::iter::from_fn(|| l.devs[i].poll_cq(cq)).count();

    // Nothing armed: completions, no notification.
    send(&mut l, 1, SendFlags::SIGNALED);
    assert_eq!(drain(&mut l, 1, p.cq_b), 1);
    assert_eq!(l.devs[1].poll_cq_event(), None);

    // Solicited only: a plain SEND does not fire it, one with the SE bit does, once.
    recv(&mut l, 10);
    recv(&mut l, 11);
    recv(&mut l, 12);
    l.devs[1].req_notify_cq(p.cq_b, true).unwrap();
    send(&mut l, 2, SendFlags::SIGNALED);
    assert_eq!(l.devs[1].poll_cq_event(), None);
    send(&mut l, 3, SendFlags::SIGNALED | SendFlags::SOLICITED);
    assert_eq!(l.devs[1].poll_cq_event(), Some(p.cq_b));
    assert_eq!(l.devs[1].poll_cq_event(), None);
    let wcs: Vec<_> = std::iter::from_fn(|| l.devs[1].poll_cq(p.cq_b)).collect();
    assert_eq!(wcs.len(), 2);
    assert!(!wcs[0].wc_flags.contains(rxe_transport::WcFlags::SOLICITED));
    assert!(wcs[1].wc_flags.contains(rxe_transport::WcFlags::SOLICITED));
    // Disarmed after firing: the next solicited SEND does not notify.
    send(&mut l, 4, SendFlags::SIGNALED | SendFlags::SOLICITED);
    assert_eq!(l.devs[1].poll_cq_event(), None);
    assert_eq!(drain(&mut l, 1, p.cq_b), 1);

    // Next completion: the requester's own send completion fires its CQ; completions already
    // queued before arming do not.
    assert_eq!(drain(&mut l, 0, p.cq_a), 4);
    recv(&mut l, 13);
    recv(&mut l, 14);
    recv(&mut l, 15);
    send(&mut l, 5, SendFlags::SIGNALED);
    l.devs[0].req_notify_cq(p.cq_a, false).unwrap();
    assert_eq!(l.devs[0].poll_cq_event(), None);
    send(&mut l, 6, SendFlags::SIGNALED);
    assert_eq!(l.devs[0].poll_cq_event(), Some(p.cq_a));
    // Arming for every completion is not weakened by a later solicited-only arm.
    l.devs[1].req_notify_cq(p.cq_b, false).unwrap();
    l.devs[1].req_notify_cq(p.cq_b, true).unwrap();
    send(&mut l, 7, SendFlags::SIGNALED);
    assert_eq!(l.devs[1].poll_cq_event(), Some(p.cq_b));
    assert!(l.devs[1].req_notify_cq(CqId(999), false).is_err());
}
