//! Two Soft-RoCE ports on simulated network devices (bounded transmit queues that send at line
//! rate, in simulated time) joined by a wire: an rdma_cm connection, then a 64 KiB RDMA WRITE and
//! a READ of it back, data checked, under each transmission control; and every receive-drop
//! reason counted.

mod common;

use common::SimNic;
use rxe_kernel::port::Port;
use rxe_kernel::tx_control::{Control, ControlMethod};
use rxe_transport::cm::CmEvent;
use rxe_transport::device::{DeviceEvent, QpInit};
use rxe_transport::{Access, Instant, QpState, Remote, SendFlags, SendWr, Sge, WcStatus, WrOpcode};
use rxe_wire::Rkey;

struct Net {
    a: Port<SimNic>,
    b: Port<SimNic>,
    now: u64,
    /// The most frames in flight on A's NIC at any time.
    max_in_flight: u64,
}

impl Net {
    fn new(cap: usize, control: Control) -> Net {
        let (mut na, mut nb) = (SimNic::new(1, cap), SimNic::new(2, cap));
        na.neighbours.push((nb.ip, nb.mac));
        nb.neighbours.push((na.ip, na.mac));
        let mut a = Port::new("rxe0", na, 1).unwrap();
        let b = Port::new("rxe1", nb, 2).unwrap();
        a.set_control(control);
        Net {
            a,
            b,
            now: 1_000,
            max_in_flight: 0,
        }
    }

    /// Runs the wire in 1 µs steps until `done` or a simulated second.
    fn run_until(&mut self, mut done: impl FnMut(&mut Net) -> bool) {
        let end = self.now + 1_000_000_000;
        while self.now < end {
            let now = Instant::from_nanos(self.now);
            for f in self.a.netdev_mut().run(self.now) {
                self.b.receive(now, &f);
            }
            for f in self.b.netdev_mut().run(self.now) {
                self.a.receive(now, &f);
            }
            self.a.poll(now);
            self.b.poll(now);
            self.max_in_flight = self.max_in_flight.max(self.a.in_flight());
            if done(self) {
                return;
            }
            self.now += 1_000;
        }
        panic!(
            "timed out: {:?} {:?} / {:?}",
            self.a.tx_counters(),
            self.a.core().counters(),
            self.b.rx_counters()
        );
    }
}

/// Connects, WRITEs 64 KiB from A to B, READs it back elsewhere; returns the net for counters.
fn write_and_read(cap: usize, control: Control) -> Net {
    let mut n = Net::new(cap, control);
    let access = Access::LOCAL_WRITE | Access::REMOTE_WRITE | Access::REMOTE_READ;
    let setup = |p: &mut Port<SimNic>| {
        let c = p.core();
        let pd = c.alloc_pd().expect("pd");
        let mr = c.reg_mr(pd, 0x10_0000, 256 * 1024, access).unwrap();
        let cq = c.create_cq(64).expect("cq");
        let qp = c.create_qp(&QpInit::rc(pd, cq)).unwrap();
        (qp, cq, mr.lkey)
    };
    let (qa, cqa, ka) = setup(&mut n.a);
    let (qb, _, kb) = setup(&mut n.b);
    for (i, x) in n.a.core().mr_bytes_mut(ka).unwrap()[..65536]
        .iter_mut()
        .enumerate()
    {
        *x = (i % 251) as u8;
    }
    n.b.core().listen(7174).unwrap();
    let now = Instant::from_nanos(n.now);
    let ip_b = n.b.netdev().ip;
    n.a.core()
        .connect(now, qa, ip_b, 7174, 40000, 4, 4, b"")
        .unwrap();
    let mut req = None;
    n.run_until(|n| {
        while let Some(e) = n.b.core().poll_event() {
            if let DeviceEvent::Cm(CmEvent::ConnectRequest { id, .. }) = e {
                req = Some(id);
            }
        }
        req.is_some()
    });
    let now = Instant::from_nanos(n.now);
    n.b.core().accept(now, req.unwrap(), qb, 4, 4, b"").unwrap();
    n.run_until(|n| {
        n.a.core().qp(qa).unwrap().state() == QpState::Rts
            && n.b.core().qp(qb).unwrap().state() == QpState::Rts
    });
    let remote = |addr| Remote {
        addr,
        rkey: Rkey(kb),
    };
    for (id, op, local) in [
        (1, WrOpcode::RdmaWrite(remote(0x10_0000)), 0x10_0000),
        (2, WrOpcode::RdmaRead(remote(0x10_0000)), 0x11_0000),
    ] {
        let sge = Sge {
            addr: local,
            length: 65536,
            lkey: ka,
        };
        n.a.core()
            .post_send(qa, SendWr::new(id, op, Some(sge), SendFlags::SIGNALED))
            .unwrap();
        let mut wc = None;
        n.run_until(|n| {
            wc = n.a.core().poll_cq(cqa);
            wc.is_some()
        });
        assert_eq!(wc.unwrap().status, WcStatus::Success, "{:?}", wc);
    }
    let a = n.a.core().mr_bytes(ka).unwrap().to_vec();
    let b = n.b.core().mr_bytes(kb).unwrap();
    assert!(b[..65536] == a[..65536], "the WRITE landed");
    assert!(a[0x1_0000..0x2_0000] == a[..65536], "the READ came back");
    n
}

#[test]
fn without_control_a_16_frame_queue_refuses_frames_and_nothing_is_lost() {
    let n = write_and_read(16, Control::default());
    let t = n.a.tx_counters();
    assert!(t.queue_full > 0, "{t:?}");
    assert!(
        t.neighbour_pending > 0,
        "the first frame waited for ARP: {t:?}"
    );
}

#[test]
fn watermark_keeps_the_queue_from_ever_refusing() {
    for mark in [4u64, 8, 16] {
        let n = write_and_read(
            16,
            Control {
                method: ControlMethod::Watermark,
                value: mark,
            },
        );
        let t = n.a.tx_counters();
        assert_eq!(t.queue_full, 0, "watermark {mark}: {t:?}");
        assert!(
            n.max_in_flight <= mark,
            "watermark {mark}: {}",
            n.max_in_flight
        );
        assert!(t.held_by_control > 0, "{t:?}");
    }
}

#[test]
fn bandwidth_keeps_the_queue_from_ever_refusing() {
    let n = write_and_read(
        16,
        Control {
            method: ControlMethod::Bandwidth,
            value: 200_000_000,
        },
    );
    let t = n.a.tx_counters();
    assert_eq!(t.queue_full, 0, "{t:?}");
    assert!(t.held_by_control > 0, "{t:?}");
}

#[test]
fn every_receive_drop_reason_is_counted() {
    let mut n = Net::new(16, Control::default());
    let now = Instant::from_nanos(1);
    let mac_b = n.b.netdev().mac.0;
    // A well-formed RoCEv2 frame to B: Ethernet, IPv4 10.0.0.1 -> 10.0.0.2, UDP 4791, a BTH.
    let mut good = Vec::new();
    good.extend_from_slice(&mac_b);
    good.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x00]);
    let ip_len = 20 + 8 + 12 + 4;
    good.extend_from_slice(&[0x45, 0, 0, ip_len as u8, 0, 0, 0x40, 0, 64, 17, 0, 0]);
    good.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    good.extend_from_slice(&[0xc0, 0x00, 0x12, 0xb7, 0, (ip_len - 20) as u8, 0, 0]);
    good.extend_from_slice(&[0x04, 0, 0xff, 0xff, 0, 0, 0, 0x33, 0, 0, 0, 1]);
    good.extend_from_slice(&[0; 4]);
    let variant = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut v = good.clone();
        f(&mut v);
        v
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (good[..10].to_vec(), "truncated"),
        (variant(&|v| v.truncate(30)), "truncated"),
        (
            variant(&|v| v[12..14].copy_from_slice(&[0x08, 0x06])),
            "not_ip",
        ),
        (variant(&|v| v[5] = 0x09), "other_mac"),
        (variant(&|v| v[33] = 9), "other_ip"),
        (variant(&|v| v[20] = 0x20), "ip_unsupported"),
        (variant(&|v| v[14] = 0x46), "ip_unsupported"),
        (variant(&|v| v[23] = 6), "not_udp"),
        (variant(&|v| v[37] = 0xb8), "other_port"),
        (good.clone(), "delivered"),
    ];
    for (frame, _) in &cases {
        n.b.receive(now, frame);
    }
    let c = n.b.rx_counters();
    let count = |name: &str| cases.iter().filter(|(_, k)| *k == name).count() as u64;
    assert_eq!(c.truncated, count("truncated"), "{c:?}");
    assert_eq!(c.not_ip, count("not_ip"), "{c:?}");
    assert_eq!(c.other_mac, count("other_mac"), "{c:?}");
    assert_eq!(c.other_ip, count("other_ip"), "{c:?}");
    assert_eq!(c.ip_unsupported, count("ip_unsupported"), "{c:?}");
    assert_eq!(c.not_udp, count("not_udp"), "{c:?}");
    assert_eq!(c.other_port, count("other_port"), "{c:?}");
    assert_eq!(c.delivered, 1, "{c:?}");
    // The delivered one is for QP 0x33, which does not exist: the core counts it.
    let (dc, _) = n.b.core().counters();
    assert_eq!(dc.unknown_qp + dc.malformed, 1, "{dc:?}");
    // Broadcast (and multicast) frames are taken.
    n.b.receive(now, &variant(&|v| v[..6].copy_from_slice(&[0xff; 6])));
    assert_eq!(n.b.rx_counters().delivered, 2);
}
