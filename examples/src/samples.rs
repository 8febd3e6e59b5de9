//! `rxe samples`: frames emitted by rxe-wire for every opcode, over IPv4 and IPv6, with and
//! without pad, for checking against independent decoders (scapy, tshark).
//!
//! Payloads are printable ASCII and UD packets never go to QP1, so that Wireshark's heuristic
//! sub-dissectors (which guess at SEND payloads, e.g. reading a UD SEND to QP1 as a MAD) have
//! nothing to mistake for their protocols.

use std::net::{Ipv4Addr, Ipv6Addr};

use rxe_wire::aeth::{NakCode, RnrTimer};
use rxe_wire::{
    atmack, atmeth, bth, deth, ethernet, feth, ieth, ipv4, ipv6, opcode, reth, udp, AethRepr,
    Error, ExtHeaders, FrameRepr, HeaderSet, ImmDt, IpRepr, MacAddr, Msn, Opcode, PKey,
    PayloadRule, Psn, QKey, Qpn, Rkey, RoceRepr, RoceV2Repr, Syndrome,
};

const TEXT: &[u8] = b"rxe-wire sample payload: the quick brown fox jumps over the lazy dog. ";

fn payload(len: usize) -> Vec<u8> {
    TEXT.iter().copied().cycle().take(len).collect()
}

/// Payload lengths to try for an opcode: one aligned, one needing pad, one near the 1024 MTU.
fn lengths(op: Opcode) -> Vec<usize> {
    match op.info().map(|i| i.payload) {
        Some(PayloadRule::None) => vec![0],
        Some(PayloadRule::Exactly(n)) => vec![usize::from(n)],
        _ => vec![64, 13, 1022],
    }
}

fn ext_for(set: HeaderSet, i: u32) -> ExtHeaders {
    let syndromes = [
        Syndrome::Ack {
            credits: Syndrome::UNLIMITED_CREDITS,
        },
        Syndrome::Ack { credits: 3 },
        Syndrome::RnrNak(RnrTimer::new(12)),
        Syndrome::Nak(NakCode::PsnSequenceError),
        Syndrome::Nak(NakCode::InvalidRequest),
        Syndrome::Nak(NakCode::RemoteAccessError),
        Syndrome::Nak(NakCode::RemoteOperationalError),
    ];
    let mut e = ExtHeaders::default();
    if set.contains(HeaderSet::DETH) {
        e.deth = Some(deth::Repr {
            qkey: QKey(0x1111_1111 + i),
            src_qp: Qpn::new(0x12 + i),
        });
    }
    if set.contains(HeaderSet::FETH) {
        e.feth = Some(feth::Repr {
            placement_type: 1 + (i % 2) as u8,
            selectivity: (i % 2) as u8,
        });
    }
    if set.contains(HeaderSet::RETH) {
        e.reth = Some(reth::Repr {
            va: 0x0000_55d1_c4a2_b000 + u64::from(i) * 8,
            rkey: Rkey(0x4b7 + i),
            dma_len: 4096,
        });
    }
    if set.contains(HeaderSet::AETH) {
        let syndrome = syndromes[i as usize % syndromes.len()];
        e.aeth = Some(AethRepr {
            syndrome,
            msn: Msn::new(i + 1),
        });
    }
    if set.contains(HeaderSet::ATOMIC_ETH) {
        e.atomic_eth = Some(atmeth::Repr {
            va: 0x0000_7f00_0000_1000 + u64::from(i) * 8,
            rkey: Rkey(0x1234 + i),
            swap_add: 0x0102_0304_0506_0708,
            compare: u64::from(i),
        });
    }
    if set.contains(HeaderSet::ATOMIC_ACK_ETH) {
        e.atomic_ack_eth = Some(atmack::Repr {
            orig: 0xdead_beef_0000_0000 | u64::from(i),
        });
    }
    if set.contains(HeaderSet::IMMDT) {
        e.immdt = Some(ImmDt::from_be_u32(0x1122_3344 + i));
    }
    if set.contains(HeaderSet::IETH) {
        e.ieth = Some(ieth::Repr {
            rkey: Rkey(0x0000_1a2b + i),
        });
    }
    e
}

/// Builds the sample frames (Ethernet II, no FCS).
pub fn frames() -> Result<Vec<Vec<u8>>, Error> {
    let mac_a = MacAddr([0x52, 0x54, 0x00, 0x77, 0x00, 0x01]);
    let mac_b = MacAddr([0x52, 0x54, 0x00, 0x77, 0x00, 0x02]);
    let v4 = |ident: u16, tos: u8| {
        IpRepr::V4(ipv4::Repr {
            src: Ipv4Addr::new(10, 77, 0, 12),
            dst: Ipv4Addr::new(10, 77, 0, 11),
            tos,
            ident,
            dont_frag: true,
            ttl: 64,
        })
    };
    let v6 = |flow_label: u32, traffic_class: u8| {
        IpRepr::V6(ipv6::Repr {
            src: Ipv6Addr::new(0xfe80, 0, 0, 0, 0x5054, 0xff, 0xfe77, 2),
            dst: Ipv6Addr::new(0xfe80, 0, 0, 0, 0x5054, 0xff, 0xfe77, 1),
            traffic_class,
            flow_label,
            hop_limit: 64,
        })
    };
    let mut out = Vec::new();
    let mut i: u32 = 0;
    for &op in opcode::ALL {
        let Some(info) = op.info() else { continue };
        for len in lengths(op) {
            for ipv6 in [false, true] {
                i += 1;
                let data = payload(len);
                let bth = bth::Repr {
                    opcode: op,
                    solicited: info.is_end() && info.is_request && i.is_multiple_of(3),
                    mig_req: false,
                    pad_count: 0,
                    pkey: PKey::DEFAULT,
                    fecn: i.is_multiple_of(7),
                    becn: i.is_multiple_of(11),
                    dest_qp: Qpn::new(0x11 + (i % 5)),
                    ack_req: info.is_request
                        && info.is_end()
                        && info.transport == rxe_wire::Transport::Rc,
                    psn: Psn::new(0x00ff_fff0u32.wrapping_add(i * 37)),
                };
                let ip = if ipv6 {
                    v6((i * 4099) & 0xf_ffff, (i % 4) as u8 * 0x20)
                } else {
                    v4(i as u16, 0)
                };
                let packet = RoceV2Repr {
                    ip,
                    udp: udp::Repr {
                        src_port: 0xc000 | (i as u16 & 0x3fff),
                        dst_port: udp::ROCE_PORT,
                        checksum: i.is_multiple_of(4),
                    },
                    roce: RoceRepr::new(bth, ext_for(info.headers, i), &data),
                };
                let frame = FrameRepr {
                    eth: ethernet::Repr {
                        dst: mac_a,
                        src: mac_b,
                        vlan: None,
                        ip_version: packet.ip.version(),
                    },
                    packet,
                };
                let mut buf = vec![0u8; frame.buffer_len()];
                frame.emit(&mut buf)?;
                out.push(buf);
            }
        }
    }
    Ok(out)
}

/// CM MADs as rdma_cm sends them on QP1 (UD SEND_ONLY, Q_Key 0x80010000), over IPv4 and IPv6:
/// a REQ with the rdma_cm header, REP, RTU, DREQ, DREP, a REJ (nobody listening) and an MRA.
pub fn cm_frames() -> Result<Vec<Vec<u8>>, Error> {
    use rxe_wire::cm::{self, Message, RejReason};
    use rxe_wire::cma::{self, CmaHeader};
    use std::net::IpAddr;

    let a4 = Ipv4Addr::new(10, 77, 0, 12);
    let b4 = Ipv4Addr::new(10, 77, 0, 11);
    let a6 = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x5054, 0xff, 0xfe77, 2);
    let b6 = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x5054, 0xff, 0xfe77, 1);
    let mut out = Vec::new();
    let mut psn = 0u32;
    for (n, (src, dst)) in [
        (IpAddr::V4(a4), IpAddr::V4(b4)),
        (IpAddr::V6(a6), IpAddr::V6(b6)),
    ]
    .into_iter()
    .enumerate()
    {
        let n = n as u32;
        let mut pd = [0u8; cma::HEADER_LEN + 8];
        CmaHeader {
            port: 40000 + n as u16,
            src,
            dst,
        }
        .emit(&mut pd)?;
        pd[cma::HEADER_LEN..].copy_from_slice(b"user pd!");
        let (active, passive) = (0x1000_0001 + n, 0x2000_0001 + n);
        let req = cm::Req {
            local_comm_id: active,
            service_id: cma::service_id(cma::PS_TCP, 7174),
            local_ca_guid: 0x5054_00ff_fe77_0002,
            local_qkey: 0,
            local_qpn: Qpn::new(0x11 + n),
            responder_resources: 1,
            local_eecn: 0,
            initiator_depth: 1,
            remote_eecn: 0,
            remote_cm_response_timeout: 20,
            transport_type: 0,
            end_to_end_flow_control: false,
            starting_psn: Psn::new(0x12_3456 + n),
            local_cm_response_timeout: 20,
            retry_count: 7,
            pkey: PKey::DEFAULT,
            path_mtu: 3 + n as u8 * 2,
            rdc_exists: false,
            rnr_retry_count: 7,
            max_cm_retries: 15,
            srq: false,
            extended_transport_type: 0,
            primary: cm::Path {
                local_lid: 0xffff,
                remote_lid: 0xffff,
                local_gid: cma::gid_of(src),
                remote_gid: cma::gid_of(dst),
                flow_label: cma::flow_label(40000 + n as u16, 7174),
                packet_rate: 0,
                traffic_class: 0,
                hop_limit: 64,
                sl: 0,
                subnet_local: false,
                local_ack_timeout: 19,
            },
            alternate: cm::Path::NONE,
            sap_supported: false,
            private_data: &pd,
        };
        let rep = cm::Rep {
            local_comm_id: passive,
            remote_comm_id: active,
            local_qkey: 0,
            local_qpn: Qpn::new(0x21 + n),
            local_eecn: 0,
            starting_psn: Psn::new(0xab_cdef - n),
            responder_resources: 1,
            initiator_depth: 1,
            target_ack_delay: 15,
            failover_accepted: 0,
            end_to_end_flow_control: false,
            rnr_retry_count: 7,
            srq: false,
            local_ca_guid: 0x5054_00ff_fe77_0001,
            private_data: b"accepted",
        };
        let msgs = [
            (true, Message::Req(req)),
            (false, Message::Rep(rep)),
            (
                true,
                Message::Rtu(cm::Rtu {
                    local_comm_id: active,
                    remote_comm_id: passive,
                    private_data: &[],
                }),
            ),
            (
                true,
                Message::Dreq(cm::Dreq {
                    local_comm_id: active,
                    remote_comm_id: passive,
                    remote_qpn: Qpn::new(0x21 + n),
                    private_data: &[],
                }),
            ),
            (
                false,
                Message::Drep(cm::Drep {
                    local_comm_id: passive,
                    remote_comm_id: active,
                    private_data: &[],
                }),
            ),
            (
                false,
                Message::Rej(cm::Rej {
                    local_comm_id: 0,
                    remote_comm_id: active,
                    message_rejected: 0,
                    rejected_info_length: 0,
                    reason: RejReason::INVALID_SERVICE_ID,
                    ari: &[],
                    private_data: &[],
                }),
            ),
            (
                false,
                Message::Mra(cm::Mra {
                    local_comm_id: passive,
                    remote_comm_id: active,
                    message_mraed: 0,
                    service_timeout: 22,
                    private_data: &[],
                }),
            ),
        ];
        for (from_active, msg) in msgs {
            let mut mad = [0u8; rxe_wire::mad::MAD_LEN];
            msg.emit(0x0000_0002_36af_0000 + u64::from(n), &mut mad)?;
            let (s, d) = if from_active { (src, dst) } else { (dst, src) };
            let ip = match (s, d) {
                (IpAddr::V4(s), IpAddr::V4(d)) => IpRepr::V4(ipv4::Repr {
                    src: s,
                    dst: d,
                    tos: 0,
                    ident: psn as u16,
                    dont_frag: true,
                    ttl: 64,
                }),
                (IpAddr::V6(s), IpAddr::V6(d)) => IpRepr::V6(ipv6::Repr {
                    src: s,
                    dst: d,
                    traffic_class: 0,
                    flow_label: 0,
                    hop_limit: 64,
                }),
                _ => return Err(Error::FieldOverflow),
            };
            let bth = bth::Repr {
                opcode: Opcode::UD_SEND_ONLY,
                solicited: false,
                mig_req: false,
                pad_count: 0,
                pkey: PKey::DEFAULT,
                fecn: false,
                becn: false,
                dest_qp: Qpn::new(rxe_wire::mad::GSI_QPN),
                ack_req: true,
                psn: Psn::new(psn),
            };
            psn += 1;
            let ext = ExtHeaders {
                deth: Some(deth::Repr {
                    qkey: QKey(rxe_wire::mad::GSI_QKEY),
                    src_qp: Qpn::new(rxe_wire::mad::GSI_QPN),
                }),
                ..ExtHeaders::default()
            };
            let packet = RoceV2Repr {
                ip,
                udp: udp::Repr {
                    src_port: 55410,
                    dst_port: udp::ROCE_PORT,
                    // IPv6 requires a UDP checksum (Linux rxe computes one over IPv6).
                    checksum: matches!(ip, IpRepr::V6(_)),
                },
                roce: RoceRepr::new(bth, ext, &mad),
            };
            let frame = FrameRepr {
                eth: ethernet::Repr {
                    dst: MacAddr([0x52, 0x54, 0x00, 0x77, 0x00, 0x01]),
                    src: MacAddr([0x52, 0x54, 0x00, 0x77, 0x00, 0x02]),
                    vlan: None,
                    ip_version: packet.ip.version(),
                },
                packet,
            };
            let mut buf = vec![0u8; frame.buffer_len()];
            frame.emit(&mut buf)?;
            out.push(buf);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_opcode_both_ip_versions_and_all_pads_are_present() {
        let frames = frames().unwrap();
        let mut seen = std::collections::BTreeSet::new();
        let mut pads = std::collections::BTreeSet::new();
        for f in &frames {
            let r = FrameRepr::parse(f).expect("samples verify");
            seen.insert((
                r.packet.roce.bth.opcode,
                r.packet.ip.version() == rxe_wire::IpVersion::V6,
            ));
            pads.insert(r.packet.roce.bth.pad_count);
        }
        assert_eq!(seen.len(), opcode::ALL.len() * 2);
        assert_eq!(pads.into_iter().collect::<Vec<_>>(), vec![0, 2, 3]);
    }
}
