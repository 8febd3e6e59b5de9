//! The UDP-socket receive path for IPv4: every captured Linux rxe frame (changing, non-zero
//! Identification values) passes with its Identification recovered from the ICRC, without
//! seeing the IP header; corrupted frames are caught at the 16-bit strength the module
//! documents.

mod common;

use std::collections::HashMap;

use rxe_wire::icrc::ipv4_ident::IdentSolver;
use rxe_wire::{FrameRepr, IpRepr};

/// (IPv4 header with ident, UDP header, transport, icrc) of every IPv4 RoCE frame.
fn ipv4_frames() -> Vec<(rxe_wire::ipv4::Repr, rxe_wire::udp::Repr, Vec<u8>, u32)> {
    let mut out = Vec::new();
    for path in common::captures() {
        for frame in common::frames(&path) {
            let Ok(f) = FrameRepr::parse(&frame) else {
                continue;
            };
            let IpRepr::V4(ip) = f.packet.ip else {
                continue;
            };
            let udp_payload = &frame[frame.len() - f.packet.roce.buffer_len()..];
            let (t, icrc) = udp_payload.split_at(udp_payload.len() - 4);
            let icrc = u32::from_le_bytes(icrc.try_into().unwrap());
            out.push((ip, f.packet.udp, t.to_vec(), icrc));
        }
    }
    out
}

#[test]
fn every_captured_ipv4_frame_passes_with_its_identification_recovered() {
    let frames = ipv4_frames();
    assert!(frames.len() > 1000);
    let mut solvers: HashMap<usize, IdentSolver> = HashMap::new();
    let mut nonzero = 0;
    for (ip, udp, t, icrc) in &frames {
        let solver = solvers
            .entry(t.len())
            .or_insert_with(|| IdentSolver::new(t.len()));
        let blind = rxe_wire::ipv4::Repr { ident: 0, ..*ip };
        assert_eq!(solver.solve(&blind, udp, t, *icrc), Some(ip.ident));
        nonzero += usize::from(ip.ident != 0);
    }
    // Linux rxe's Identification values change and are not zero.
    assert!(nonzero > frames.len() / 2, "{nonzero} of {}", frames.len());
    assert!(solvers.len() > 5);
}

#[test]
fn corrupted_frames_are_caught_but_for_about_one_in_65536() {
    let frames = ipv4_frames();
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut solvers: HashMap<usize, IdentSolver> = HashMap::new();
    let (mut tried, mut passed) = (0u32, 0u32);
    for round in 0..120 {
        for (ip, udp, t, icrc) in frames.iter().step_by(3) {
            let solver = solvers
                .entry(t.len())
                .or_insert_with(|| IdentSolver::new(t.len()));
            let blind = rxe_wire::ipv4::Repr { ident: 0, ..*ip };
            let mut bad = t.clone();
            // One to three flipped bits anywhere in the transport part, or in the ICRC, except
            // the BTH byte the ICRC leaves out by design (FECN, BECN, reserved).
            let mut bad_icrc = *icrc;
            for _ in 0..1 + next() % 3 {
                let bit = (next() % ((bad.len() as u64 + 4) * 8)) as usize;
                if bit / 8 == rxe_wire::bth::FB_RESV_OFFSET {
                    continue;
                }
                if bit / 8 < bad.len() {
                    bad[bit / 8] ^= 1 << (bit % 8);
                } else {
                    bad_icrc ^= 1 << (bit - bad.len() * 8);
                }
            }
            if bad == *t && bad_icrc == *icrc {
                continue;
            }
            tried += 1;
            passed += u32::from(solver.solve(&blind, udp, &bad, bad_icrc).is_some());
        }
        let _ = round;
    }
    assert!(tried > 40_000, "{tried}");
    // Expected about tried / 65536, under 1.
    assert!(passed <= 3, "{passed} of {tried} corrupted frames passed");
    eprintln!("{passed} of {tried} corrupted frames passed");
}
