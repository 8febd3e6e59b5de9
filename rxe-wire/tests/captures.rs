//! Golden vectors: every RoCEv2 frame that Linux rxe put on the wire parses, its ICRC verifies,
//! and emitting the parsed `Repr` gives back the identical bytes.

mod common;

use rxe_wire::{Checks, Error, FrameRepr, IpRepr, Opcode};

/// Frames of `host_to_guest_udp4791.pcap` that are deliberately not RoCE: ARP, ICMP, and three
/// 'hello-rxe' UDP datagrams to port 4791 (junk that must give a typed error, whichever).
fn expected_failure(name: &str, frame: &[u8], e: &Error) -> bool {
    name == "host_to_guest_udp4791.pcap"
        && (e.is_not_roce() || frame.windows(9).any(|w| w == b"hello-rxe"))
}

#[test]
fn every_captured_frame_parses_verifies_and_re_emits_identically() {
    let mut roce = 0;
    let mut ipv6 = 0;
    let mut pads = std::collections::BTreeSet::new();
    let mut opcodes = std::collections::BTreeSet::new();
    for path in common::captures() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for (i, frame) in common::frames(&path).iter().enumerate() {
            let repr = match FrameRepr::parse(frame) {
                Ok(r) => r,
                Err(e) if expected_failure(&name, frame, &e) => continue,
                Err(e) => panic!("{name} frame {}: {e}", i + 1),
            };
            roce += 1;
            ipv6 += usize::from(matches!(repr.packet.ip, IpRepr::V6(_)));
            opcodes.insert(repr.packet.roce.bth.opcode);
            if repr.packet.roce.bth.pad_count != 0 {
                pads.insert(repr.packet.roce.bth.pad_count);
            }
            assert_eq!(repr.buffer_len(), frame.len(), "{name} frame {}", i + 1);
            let mut out = vec![0xa5u8; frame.len()];
            assert_eq!(repr.emit(&mut out), Ok(frame.len()));
            assert_eq!(
                &out,
                frame,
                "{name} frame {}: emit(parse(frame)) differs",
                i + 1
            );
        }
    }
    // 612 RoCE frames in the interop harness's captures (README-linux-captures.txt), 458 + 194 in
    // ours (README-rxe-captures.txt, README-pad-captures.txt).
    assert_eq!(roce, 612 + 458 + 194);
    // Linux pads to 4 bytes with zeros; emit(parse()) == frame proves ours does the same.
    assert_eq!(pads, [1, 2, 3].into_iter().collect());
    assert_eq!(ipv6, 18 + 6 + 25 + 15 + 10);
    for op in [
        Opcode::RC_SEND_FIRST,
        Opcode::RC_SEND_MIDDLE,
        Opcode::RC_SEND_LAST,
        Opcode::RC_SEND_ONLY,
        Opcode::RC_RDMA_WRITE_FIRST,
        Opcode::RC_RDMA_WRITE_MIDDLE,
        Opcode::RC_RDMA_WRITE_LAST,
        Opcode::RC_RDMA_WRITE_ONLY,
        Opcode::RC_RDMA_READ_REQUEST,
        Opcode::RC_RDMA_READ_RESPONSE_FIRST,
        Opcode::RC_RDMA_READ_RESPONSE_MIDDLE,
        Opcode::RC_RDMA_READ_RESPONSE_LAST,
        Opcode::RC_RDMA_READ_RESPONSE_ONLY,
        Opcode::RC_ACKNOWLEDGE,
        Opcode::RC_ATOMIC_ACKNOWLEDGE,
        Opcode::RC_FETCH_ADD,
        Opcode::RC_SEND_ONLY_WITH_INVALIDATE,
        Opcode::RC_SEND_LAST_WITH_IMMEDIATE,
        Opcode::RC_SEND_ONLY_WITH_IMMEDIATE,
        Opcode::RC_RDMA_WRITE_LAST_WITH_IMMEDIATE,
        Opcode::RC_RDMA_WRITE_ONLY_WITH_IMMEDIATE,
        Opcode::RC_SEND_LAST_WITH_INVALIDATE,
        Opcode::RC_COMPARE_SWAP,
        Opcode::UC_SEND_FIRST,
        Opcode::UC_SEND_LAST,
        Opcode::UC_SEND_LAST_WITH_IMMEDIATE,
        Opcode::UC_SEND_ONLY_WITH_IMMEDIATE,
        Opcode::UC_RDMA_WRITE_FIRST,
        Opcode::UC_RDMA_WRITE_LAST,
        Opcode::UC_RDMA_WRITE_LAST_WITH_IMMEDIATE,
        Opcode::UC_RDMA_WRITE_ONLY_WITH_IMMEDIATE,
        Opcode::UD_SEND_ONLY,
    ] {
        assert!(opcodes.contains(&op), "no {op} in the captures");
    }
}

/// Bits that no check covers, by design of RoCEv2: the Ethernet header (the FCS covers it, and
/// it is not in the captures), the IPv6 traffic class / flow label / hop limit and the BTH byte
/// holding FECN/BECN/reserved (variant fields the ICRC masks and no checksum covers).
/// IPv4 TOS and TTL are masked by the ICRC too, but the IPv4 header checksum catches them.
fn unprotected(frame: &[u8], byte: usize, bit: u8) -> bool {
    let repr = FrameRepr::parse(frame).expect("valid frame");
    let l2 = repr.eth.header_len();
    if byte < l2 {
        return true;
    }
    let ip = byte - l2;
    let ip_len = repr.packet.ip.header_len();
    if let IpRepr::V6(_) = repr.packet.ip {
        // Byte 0 low nibble .. byte 3: traffic class and flow label; byte 7: hop limit.
        if (ip == 0 && bit < 4) || (1..4).contains(&ip) || ip == 7 {
            return true;
        }
    }
    ip == ip_len + 8 + 4
}

#[test]
fn flipping_any_covered_bit_is_detected() {
    let mut flips = 0u64;
    for path in common::captures() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for (i, frame) in common::frames(&path).iter().enumerate() {
            if FrameRepr::parse(frame).is_err() {
                continue;
            }
            let mut f = frame.clone();
            for byte in 0..f.len() {
                for bit in 0..8u8 {
                    f[byte] ^= 1 << bit;
                    let detected = FrameRepr::parse(&f).is_err();
                    f[byte] ^= 1 << bit;
                    if unprotected(frame, byte, bit) {
                        continue;
                    }
                    flips += 1;
                    assert!(
                        detected,
                        "{name} frame {}: flipping byte {byte} bit {bit} went unnoticed",
                        i + 1
                    );
                }
            }
        }
    }
    assert!(flips > 1_000_000, "{flips}");
}

#[test]
fn a_corrupted_payload_reports_the_icrc_values() {
    let path = common::data_dir().join("rc_pingpong_send_only.pcap");
    let mut frame = common::frames(&path).swap_remove(0);
    let n = frame.len();
    frame[n - 10] ^= 0x01;
    match FrameRepr::parse(&frame) {
        Err(Error::IcrcMismatch { computed, received }) => {
            assert_ne!(computed, received);
            assert_eq!(received.to_le_bytes(), frame[n - 4..]);
        }
        other => panic!("{other:?}"),
    }
    // Structure-only parsing still shows the packet.
    assert!(FrameRepr::parse_with(&frame, &Checks::STRUCTURE_ONLY).is_ok());
}

#[test]
fn icrc_from_header_reprs_matches_the_wire() {
    // What a UDP-socket host does: it knows the headers as Reprs, never as bytes.
    for path in common::captures() {
        for frame in common::frames(&path) {
            let Ok(f) = FrameRepr::parse(&frame) else {
                continue;
            };
            let p = f.packet;
            let udp_payload = &frame[frame.len() - p.roce.buffer_len()..];
            let (transport, icrc) = udp_payload.split_at(udp_payload.len() - 4);
            let computed = p.ip.icrc(&p.udp, transport).expect("icrc");
            assert_eq!(computed.to_le_bytes(), icrc, "{}", path.display());
        }
    }
}
