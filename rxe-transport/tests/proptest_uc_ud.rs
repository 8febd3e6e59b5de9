//! Property tests for the unreliable services over a lossy, duplicating, reordering and
//! corrupting link: UC and UD senders complete every request once, in order, with SUCCESS (on
//! transmission); whatever the receiver completes is exactly one of the messages sent, byte
//! for byte with its immediate data, never a torn or corrupted one; nothing panics.

mod common;

use core::net::IpAddr;

use common::*;
use proptest::prelude::*;
use rxe_transport::{
    Access, AddressVector, Mtu, Pd, QpAttr, QpConfig, QpState, RecvWr, Remote, SendFlags, SendWr,
    Sge, UdDest, WcOpcode, WcStatus, WrOpcode, GRH_LEN,
};
use rxe_wire::{ImmDt, Psn, QKey, Qpn, Rkey};

const SRC: u64 = 0x10_0000;
const DST: u64 = 0x80_0000;
/// Each receive request gets its own 8 KiB slot; WRITE targets a separate area.
const SLOT: u64 = 8192;
const WRITE_AREA: u64 = DST + 0x40_0000;
const QKEY: u32 = 0x1111_1111;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Send,
    SendImm,
    Write,
    WriteImm,
}

#[derive(Debug, Clone)]
struct Case {
    ud: bool,
    faults: Faults,
    seed: u64,
    mtu: Mtu,
    msgs: Vec<(Kind, u32)>,
}

fn arb_case() -> impl Strategy<Value = Case> {
    let p = |max: f64| prop_oneof![1 => Just(0.0), 3 => 0.0..=max];
    (
        any::<bool>(),
        (p(0.10), p(0.10), p(0.10), p(0.05)),
        any::<u64>(),
        prop_oneof![Just(Mtu::M256), Just(Mtu::M1024), Just(Mtu::M4096)],
        prop::collection::vec(
            (
                prop_oneof![
                    Just(Kind::Send),
                    Just(Kind::SendImm),
                    Just(Kind::Write),
                    Just(Kind::WriteImm)
                ],
                0u32..6000,
            ),
            1..24,
        ),
    )
        .prop_map(
            |(ud, (loss, duplicate, reorder, corrupt), seed, mtu, msgs)| Case {
                ud,
                faults: Faults {
                    loss,
                    duplicate,
                    reorder,
                    corrupt,
                },
                seed,
                mtu,
                msgs,
            },
        )
}

fn setup(c: &Case) -> Pair {
    let mut p = Pair::new();
    let (a_ip, b_ip) = (p.a.ip, p.b.ip);
    for (node, local, remote, qpn, dest) in [
        (&mut p.a, a_ip, b_ip, 0x11, 0x12),
        (&mut p.b, b_ip, a_ip, 0x12, 0x11),
    ] {
        let cfg = if c.ud {
            QpConfig {
                port_mtu: c.mtu,
                ..QpConfig::ud(Qpn::new(qpn), Pd(1))
            }
        } else {
            QpConfig::uc(Qpn::new(qpn), Pd(1))
        };
        node.qp = TestQp::new(cfg).expect("qp");
        let mut init = QpAttr {
            state: Some(QpState::Init),
            pkey_index: Some(0),
            port: Some(1),
            ..Default::default()
        };
        if c.ud {
            init.qkey = Some(QKey(QKEY));
        } else {
            init.access = Some(Access::REMOTE_WRITE);
        }
        node.qp.modify(&init).expect("INIT");
        let mut rtr = QpAttr {
            state: Some(QpState::Rtr),
            ..Default::default()
        };
        if !c.ud {
            rtr.av = Some(AddressVector {
                sgid: IpAddr::V4(local),
                dgid: IpAddr::V4(remote),
                hop_limit: 64,
                traffic_class: 0,
                flow_label: 0,
                udp_sport: None,
            });
            rtr.path_mtu = Some(c.mtu);
            rtr.dest_qp = Some(Qpn::new(dest));
            rtr.rq_psn = Some(Psn::new(0x00ff_fff0));
        }
        node.qp.modify(&rtr).expect("RTR");
        node.qp
            .modify(&QpAttr {
                state: Some(QpState::Rts),
                sq_psn: Some(Psn::new(0x00ff_fff0)),
                ..Default::default()
            })
            .expect("RTS");
        let access = Access::LOCAL_WRITE | Access::REMOTE_WRITE;
        let k = node.mem.register(Pd(1), SRC, 256 * 1024, access, 0);
        assert_eq!(k, 0x117);
        let k2 = node.mem.register(Pd(1), DST, 8 * 1024 * 1024, access, 0);
        assert_eq!(k2, 0x217);
    }
    p.a.mem.fill_pattern(0x117, 0x5a);
    p.rng = common::Rng::new(c.seed);
    p.faults = c.faults;
    p
}

/// The messages the case sends (UD: SENDs only, at most one MTU).
fn messages(c: &Case) -> Vec<(Kind, u32)> {
    c.msgs
        .iter()
        .map(|&(k, len)| {
            if c.ud {
                let k = if matches!(k, Kind::SendImm | Kind::WriteImm) {
                    Kind::SendImm
                } else {
                    Kind::Send
                };
                (k, len % (c.mtu.bytes() + 1))
            } else {
                (k, len)
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn unreliable_services_deliver_whole_messages_or_nothing(c in arb_case()) {
        let mut p = setup(&c);
        let msgs = messages(&c);
        // Plenty of receive requests: one slot each.
        let consuming = msgs.len() as u64;
        for i in 0..consuming * 2 {
            p.b.qp
                .post_recv(RecvWr::new(
                    1000 + i,
                    Sge { addr: DST + i * SLOT, length: SLOT as u32, lkey: 0x217 },
                ))
                .unwrap();
        }
        for (i, &(kind, len)) in msgs.iter().enumerate() {
            let imm = ImmDt::from_be_u32(0xabc0_0000 + i as u32);
            let remote = Remote {
                addr: WRITE_AREA + i as u64 * SLOT,
                rkey: Rkey(0x217),
            };
            let op = match kind {
                Kind::Send => WrOpcode::Send,
                Kind::SendImm => WrOpcode::SendWithImm(imm),
                Kind::Write => WrOpcode::RdmaWrite(remote),
                Kind::WriteImm => WrOpcode::RdmaWriteWithImm(remote, imm),
            };
            let sge = Sge { addr: SRC + i as u64 * 1024, length: len, lkey: 0x117 };
            let mut wr = SendWr::new(i as u64, op, Some(sge), SendFlags::SIGNALED);
            if c.ud {
                wr.ud = Some(UdDest {
                    ah: AddressVector {
                        sgid: IpAddr::V4(p.a.ip),
                        dgid: IpAddr::V4(p.b.ip),
                        hop_limit: 64,
                        traffic_class: 0,
                        flow_label: 0,
                        udp_sport: None,
                    },
                    remote_qpn: Qpn::new(0x12),
                    remote_qkey: QKey(QKEY),
                });
            }
            p.a.qp.post_send(wr, &p.a.mem).unwrap();
        }
        p.drive();

        // The sender: every request once, in order, SUCCESS.
        let sent: Vec<_> = p.a.send_wcs.iter().map(|w| (w.wr_id, w.status)).collect();
        let want: Vec<_> = (0..msgs.len() as u64).map(|i| (i, WcStatus::Success)).collect();
        prop_assert_eq!(sent, want);

        // The receiver: each completion is one whole message.
        for wc in &p.b.recv_wcs {
            prop_assert_eq!(wc.status, WcStatus::Success);
            let slot = wc.wr_id - 1000;
            let imm = wc.imm_data.map(|i| i.as_be_u32());
            let matches_one = msgs.iter().enumerate().any(|(i, &(kind, len))| {
                let src = p.a.mem.bytes(0x117, SRC + i as u64 * 1024, len as usize);
                let my_imm = Some(0xabc0_0000 + i as u32);
                match kind {
                    Kind::Send | Kind::SendImm => {
                        let want_imm = if matches!(kind, Kind::SendImm) { my_imm } else { None };
                        let off = if c.ud { GRH_LEN as u64 } else { 0 };
                        let expect_len = len + off as u32;
                        wc.opcode == WcOpcode::Recv
                            && wc.byte_len == expect_len
                            && imm == want_imm
                            && p.b.mem.bytes(0x217, DST + slot * SLOT + off, len as usize) == src
                    }
                    Kind::WriteImm => {
                        wc.opcode == WcOpcode::RecvRdmaWithImm
                            && wc.byte_len == len
                            && imm == my_imm
                            && p.b.mem.bytes(0x217, WRITE_AREA + i as u64 * SLOT, len as usize)
                                == src
                    }
                    Kind::Write => false,
                }
            });
            prop_assert!(matches_one, "completion {:?} matches no message", wc);
            if c.ud {
                prop_assert_eq!(wc.src_qp, 0x11);
            }
        }
        if c.faults.loss == 0.0 && c.faults.corrupt == 0.0 && c.faults.reorder == 0.0 {
            // A clean link (perhaps duplicating) loses nothing.
            let consumers = msgs
                .iter()
                .filter(|(k, _)| !matches!(k, Kind::Write))
                .count();
            prop_assert!(p.b.recv_wcs.len() >= consumers);
        }
        prop_assert!(p.a.qp.send_queue_len() == 0);
    }
}
