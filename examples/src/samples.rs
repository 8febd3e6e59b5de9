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
