//! Property tests: `parse(emit(repr)) == repr` for every opcode and random field values, and no
//! input of any shape makes a parser panic.

use core::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use rxe_wire::{
    aeth, atmack, atmeth, bth, deth, ethernet, feth, icrc, ieth, ipv4, ipv6, opcode, reth, udp,
    Checks, ExtHeaders, FrameRepr, HeaderSet, ImmDt, IpRepr, MacAddr, Msn, Opcode, PKey,
    PacketTemplate, PayloadRule, Psn, QKey, Qpn, Rkey, RoceRepr, RoceV2Repr, Syndrome,
};

fn arb_opcode() -> impl Strategy<Value = Opcode> {
    proptest::sample::select(opcode::ALL)
}

fn arb_ext(set: HeaderSet) -> impl Strategy<Value = ExtHeaders> {
    (
        (any::<u32>(), 0u32..1 << 24),
        (0u8..16, 0u8..4),
        (any::<u64>(), any::<u32>(), any::<u32>()),
        (any::<u8>(), 0u32..1 << 24),
        (any::<u64>(), any::<u32>(), any::<u64>(), any::<u64>()),
        any::<u64>(),
        any::<[u8; 4]>(),
        any::<u32>(),
    )
        .prop_map(move |(d, f, r, a, at, ack, imm, ie)| ExtHeaders {
            deth: set.contains(HeaderSet::DETH).then_some(deth::Repr {
                qkey: QKey(d.0),
                src_qp: Qpn::new(d.1),
            }),
            feth: set.contains(HeaderSet::FETH).then_some(feth::Repr {
                placement_type: f.0,
                selectivity: f.1,
            }),
            reth: set.contains(HeaderSet::RETH).then_some(reth::Repr {
                va: r.0,
                rkey: Rkey(r.1),
                dma_len: r.2,
            }),
            aeth: set.contains(HeaderSet::AETH).then_some(aeth::Repr {
                syndrome: Syndrome::from_byte(a.0),
                msn: Msn::new(a.1),
            }),
            atomic_eth: set.contains(HeaderSet::ATOMIC_ETH).then_some(atmeth::Repr {
                va: at.0,
                rkey: Rkey(at.1),
                swap_add: at.2,
                compare: at.3,
            }),
            atomic_ack_eth: set
                .contains(HeaderSet::ATOMIC_ACK_ETH)
                .then_some(atmack::Repr { orig: ack }),
            immdt: set.contains(HeaderSet::IMMDT).then_some(ImmDt(imm)),
            ieth: set
                .contains(HeaderSet::IETH)
                .then_some(ieth::Repr { rkey: Rkey(ie) }),
        })
}

fn arb_payload(op: Opcode) -> BoxedStrategy<Vec<u8>> {
    match op.info().map(|i| i.payload) {
        Some(PayloadRule::None) => Just(Vec::new()).boxed(),
        Some(PayloadRule::Exactly(n)) => {
            proptest::collection::vec(any::<u8>(), usize::from(n)).boxed()
        }
        _ => proptest::collection::vec(any::<u8>(), 0..4200).boxed(),
    }
}

fn arb_bth(op: Opcode) -> impl Strategy<Value = bth::Repr> {
    (
        any::<[bool; 5]>(),
        any::<u16>(),
        0u32..1 << 24,
        0u32..1 << 24,
    )
        .prop_map(move |(b, pkey, qp, psn)| bth::Repr {
            opcode: op,
            solicited: b[0],
            mig_req: b[1],
            pad_count: 0,
            pkey: PKey(pkey),
            fecn: b[2],
            becn: b[3],
            dest_qp: Qpn::new(qp),
            ack_req: b[4],
            psn: Psn::new(psn),
        })
}

fn arb_ip() -> impl Strategy<Value = IpRepr> {
    prop_oneof![
        (
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            any::<u8>(),
            any::<u16>(),
            any::<bool>(),
            any::<u8>()
        )
            .prop_map(|(s, d, tos, ident, df, ttl)| IpRepr::V4(ipv4::Repr {
                src: Ipv4Addr::from(s),
                dst: Ipv4Addr::from(d),
                tos,
                ident,
                dont_frag: df,
                ttl,
            })),
        (
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            any::<u8>(),
            0u32..1 << 20,
            any::<u8>()
        )
            .prop_map(|(s, d, tc, fl, hl)| IpRepr::V6(ipv6::Repr {
                src: Ipv6Addr::from(s),
                dst: Ipv6Addr::from(d),
                traffic_class: tc,
                flow_label: fl,
                hop_limit: hl,
            })),
    ]
}

/// A frame's parts; the payload is owned so the strategy can hand it out.
#[derive(Debug, Clone)]
struct Parts {
    ip: IpRepr,
    udp: udp::Repr,
    bth: bth::Repr,
    ext: ExtHeaders,
    payload: Vec<u8>,
    vlan: Option<ethernet::VlanTag>,
}

fn arb_parts() -> impl Strategy<Value = Parts> {
    arb_opcode().prop_flat_map(|op| {
        let set = op.info().map(|i| i.headers).unwrap_or(HeaderSet::empty());
        (
            arb_ip(),
            (any::<u16>(), any::<bool>()),
            arb_bth(op),
            arb_ext(set),
            arb_payload(op),
            proptest::option::of((0u8..8, any::<bool>(), 0u16..4096)),
        )
            .prop_map(|(ip, (sport, csum), bth, ext, payload, vlan)| Parts {
                ip,
                udp: udp::Repr {
                    src_port: sport,
                    dst_port: udp::ROCE_PORT,
                    checksum: csum,
                },
                bth,
                ext,
                payload,
                vlan: vlan.map(|(pcp, dei, vid)| ethernet::VlanTag { pcp, dei, vid }),
            })
    })
}

fn frame_of(p: &Parts) -> FrameRepr<'_> {
    FrameRepr {
        eth: ethernet::Repr {
            dst: MacAddr([2, 0, 0, 0, 0, 1]),
            src: MacAddr([2, 0, 0, 0, 0, 2]),
            vlan: p.vlan,
            ip_version: p.ip.version(),
        },
        packet: RoceV2Repr {
            ip: p.ip,
            udp: p.udp,
            roce: RoceRepr::new(p.bth, p.ext, &p.payload),
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn parse_of_emit_is_identity_for_every_opcode(parts in arb_parts()) {
        let frame = frame_of(&parts);
        let mut buf = vec![0xa5u8; frame.buffer_len()];
        prop_assert_eq!(frame.emit(&mut buf), Ok(buf.len()));
        let parsed = FrameRepr::parse(&buf);
        prop_assert_eq!(parsed, Ok(frame));
        // And emitting the parsed frame again gives the same bytes.
        let mut again = vec![0u8; buf.len()];
        prop_assert_eq!(parsed.unwrap().emit(&mut again), Ok(buf.len()));
        prop_assert_eq!(again, buf);
    }

    #[test]
    fn emit_with_an_in_place_fill_equals_emit(parts in arb_parts()) {
        let frame = frame_of(&parts);
        let mut a = vec![0u8; frame.packet.buffer_len()];
        let mut b = vec![0xa5u8; a.len()];
        prop_assert_eq!(frame.packet.emit(&mut a), Ok(a.len()));
        let empty = RoceV2Repr { roce: RoceRepr { payload: &[], ..frame.packet.roce }, ..frame.packet };
        let n = empty.emit_with(&mut b, parts.payload.len(), |d| d.copy_from_slice(&parts.payload));
        prop_assert_eq!(n, Ok(a.len()));
        prop_assert_eq!(a, b);
    }

    #[test]
    fn template_emit_equals_emit_for_every_opcode(parts in arb_parts()) {
        let frame = frame_of(&parts);
        let packet = frame.packet;
        let mut a = vec![0u8; packet.buffer_len()];
        prop_assert_eq!(packet.emit(&mut a), Ok(a.len()));
        let udp = udp::Repr { checksum: false, ..packet.udp };
        // The template renders the IP header without the Identification: given per packet.
        let ident = match packet.ip { IpRepr::V4(r) => r.ident, IpRepr::V6(_) => 0 };
        let template = PacketTemplate::new(&packet.ip, &udp).unwrap();
        let mut b = vec![0xa5u8; a.len() + 8];
        let n = template.emit_with_sink(
            &mut b, ident, &packet.roce.bth, &packet.roce.ext, parts.payload.len(),
            |s| { s.copy_from(&parts.payload); },
        );
        if packet.udp.checksum {
            // The generic emit wrote a UDP checksum; the template path never does.
            let mut a2 = vec![0u8; a.len()];
            let plain = RoceV2Repr { udp, ..packet };
            prop_assert_eq!(plain.emit(&mut a2), Ok(a.len()));
            a = a2;
        }
        prop_assert_eq!(n, Ok(a.len()));
        prop_assert_eq!(&b[..a.len()], &a[..]);
        prop_assert!(b[a.len()..].iter().all(|&x| x == 0xa5));
    }

    #[test]
    fn emit_into_a_short_buffer_fails_and_writes_nothing(parts in arb_parts(), short in 1usize..64) {
        let frame = frame_of(&parts);
        let len = frame.buffer_len().saturating_sub(short);
        let mut buf = vec![0xa5u8; len];
        prop_assert_eq!(frame.emit(&mut buf), Err(rxe_wire::Error::BufferTooSmall { required: frame.buffer_len() }));
        prop_assert!(buf.iter().all(|&b| b == 0xa5));
    }

    #[test]
    fn soft_and_fast_crc_engines_agree(init in any::<u32>(), data in proptest::collection::vec(any::<u8>(), 0..9000)) {
        prop_assert_eq!(icrc::soft::crc32(init, &data), icrc::crc32(init, &data));
        prop_assert_eq!(icrc::soft::crc32(init, &data), crc32fast_reference(init, &data));
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = FrameRepr::parse(&data);
        let _ = FrameRepr::parse_with(&data, &Checks::STRUCTURE_ONLY);
        let _ = RoceV2Repr::parse(&data);
        let _ = RoceV2Repr::parse_with(&data, &Checks::STRUCTURE_ONLY);
        let _ = RoceRepr::parse(&data);
        let _ = ethernet::Repr::parse(&data);
        if data.len() >= 68 {
            let _ = icrc::compute(&data[..40], &data[40..48], &data[48..]);
        }
    }

    #[test]
    fn mutated_valid_frames_never_panic(
        parts in arb_parts(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let frame = frame_of(&parts);
        let mut buf = vec![0u8; frame.buffer_len()];
        frame.emit(&mut buf).unwrap();
        for (i, b) in edits {
            let at = i.index(buf.len());
            buf[at] = b;
        }
        let end = cut.index(buf.len() + 1);
        for slice in [&buf[..], &buf[..end]] {
            let _ = FrameRepr::parse(slice);
            if let Ok(f) = FrameRepr::parse_with(slice, &Checks::STRUCTURE_ONLY) {
                // Whatever parses structurally can be emitted again without error.
                let mut out = vec![0u8; f.buffer_len()];
                prop_assert_eq!(f.emit(&mut out), Ok(out.len()));
            }
        }
    }
}

/// zlib's CRC through crc32fast's own API, independent of rxe-wire's wrapper.
fn crc32fast_reference(init: u32, data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new_with_initial(init);
    h.update(data);
    h.finalize()
}
