//! The fused copy-and-ICRC paths against every captured Linux rxe frame: emitting through a
//! `PayloadSink` gives the kernel's bytes, and draining a `PayloadSource` of an unverified packet
//! copies the payload and tells a good ICRC from any single flipped bit.

mod common;

use rxe_wire::{Checks, FrameRepr, RoceV2Packet};

/// Every captured RoCE frame as (frame, offset of the IP header).
fn roce_frames() -> Vec<(Vec<u8>, usize)> {
    let mut out = Vec::new();
    for path in common::captures() {
        for frame in common::frames(&path) {
            if let Ok(f) = FrameRepr::parse(&frame) {
                let ip_at = frame.len() - f.packet.buffer_len();
                out.push((frame, ip_at));
            }
        }
    }
    assert!(out.len() > 1000);
    out
}

#[test]
fn emit_with_sink_in_pieces_gives_the_captured_bytes() {
    for (frame, ip_at) in roce_frames() {
        let ip = &frame[ip_at..];
        let repr = rxe_wire::RoceV2Repr::parse(ip).expect("parse");
        let payload = repr.roce.payload;
        let mut out = vec![0xa5u8; ip.len()];
        // Three pieces of uneven sizes: copy, fill_with, copy.
        let (a, rest) = payload.split_at(payload.len() / 3);
        let (b, c) = rest.split_at(rest.len() / 2);
        let n = repr
            .emit_with_sink(&mut out, payload.len(), |s| {
                assert_eq!(s.len(), payload.len());
                assert_eq!(s.copy_from(a), a.len());
                assert_eq!(s.fill_with(b.len(), |d| d.copy_from_slice(b)), b.len());
                assert_eq!(s.copy_from(c), c.len());
                assert_eq!(s.remaining(), 0);
                // Nothing more fits.
                assert_eq!(s.copy_from(&[1, 2, 3]), 0);
            })
            .expect("emit");
        assert_eq!(n, ip.len());
        assert_eq!(out, ip);
    }
}

#[test]
fn emit_with_sink_zeroes_what_fill_leaves() {
    let (frame, ip_at) = roce_frames()
        .into_iter()
        .find(|(f, at)| {
            rxe_wire::RoceV2Repr::parse(&f[*at..])
                .map(|r| r.roce.payload.len() > 100)
                .unwrap_or(false)
        })
        .expect("a frame with payload");
    let repr = rxe_wire::RoceV2Repr::parse(&frame[ip_at..]).expect("parse");
    let len = repr.roce.payload.len();
    let mut out = vec![0xa5u8; frame.len() - ip_at];
    repr.emit_with_sink(&mut out, len, |s| {
        s.copy_from(&[7; 10]);
    })
    .expect("emit");
    let p = RoceV2Packet::new_checked(&out, &Checks::ALL).expect("a valid packet");
    let got = p.roce().payload();
    assert_eq!(&got[..10], &[7; 10]);
    assert!(got[10..].iter().all(|&b| b == 0));
}

#[test]
fn payload_source_copies_and_checks_the_icrc() {
    for (frame, ip_at) in roce_frames() {
        let ip = &frame[ip_at..];
        let checked = RoceV2Packet::new_checked(ip, &Checks::ALL).expect("valid");
        assert!(checked.icrc_checked() && checked.icrc_ok());
        let src = checked.payload_source();
        assert!(!src.is_unverified());
        assert!(src.icrc_ok());

        let p = RoceV2Packet::new_checked(ip, &Checks::STRUCTURE_ONLY).expect("valid");
        assert!(!p.icrc_checked() && p.icrc_ok());
        let payload = p.roce().payload();
        // Read part of the payload through copy_to, part through take, leave the rest.
        let mut src = p.payload_source();
        assert!(src.is_unverified());
        let mut dst = vec![0u8; payload.len()];
        let half = payload.len() / 2;
        assert_eq!(src.copy_to(&mut dst[..half]), half);
        let quarter = (payload.len() - half) / 2;
        let t = src.take(quarter);
        assert_eq!(t, &payload[half..half + quarter]);
        assert_eq!(&dst[..half], &payload[..half]);
        assert!(src.icrc_ok(), "frame {ip_at}");
    }
}

#[test]
fn payload_source_catches_every_flipped_bit_of_a_write_packet() {
    // A multi-kilobyte WRITE packet: flip each covered bit in turn, drain through copy_to.
    let (frame, ip_at) = roce_frames()
        .into_iter()
        .filter(|(f, at)| {
            rxe_wire::RoceV2Repr::parse(&f[*at..])
                .map(|r| r.roce.payload.len() >= 1024)
                .unwrap_or(false)
        })
        .max_by_key(|(f, _)| f.len())
        .expect("a large packet");
    let ip = &frame[ip_at..];
    let good = RoceV2Packet::new_checked(ip, &Checks::ALL).expect("valid");
    let hdr =
        ip.len() - good.roce().payload().len() - 4 - usize::from(good.roce().bth().pad_count());
    let mut caught = 0;
    // Payload, pad and ICRC bits (headers are covered by the captures' bit-flip test).
    for byte in hdr..ip.len() {
        for bit in 0..8 {
            let mut bad = ip.to_vec();
            bad[byte] ^= 1 << bit;
            let p = RoceV2Packet::new_checked(&bad, &Checks::STRUCTURE_ONLY).expect("structure");
            let mut src = p.payload_source();
            let mut dst = vec![0u8; src.len()];
            src.copy_to(&mut dst);
            assert!(!src.icrc_ok(), "byte {byte} bit {bit}");
            assert!(!p.icrc_ok());
            caught += 1;
        }
    }
    assert!(caught > 8 * 1024);
}

#[test]
fn a_vouched_icrc_is_not_computed_again() {
    let (frame, ip_at) = roce_frames().into_iter().next().expect("a frame");
    let mut bad = frame[ip_at..].to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let p = RoceV2Packet::new_checked(&bad, &Checks::STRUCTURE_ONLY).expect("structure");
    assert!(!p.icrc_checked() && !p.icrc_ok());
    // The host vouches (it verified by other means): the view believes it, so a vouch is a
    // promise, and the payload is copied without a check.
    let v = p.vouch_icrc();
    assert!(v.icrc_checked() && v.icrc_ok());
    assert!(v.payload_source().icrc_ok());
}
