//! Parsers of untrusted frames: never panic, and whatever parses re-emits into something that
//! parses back, with every check on, to the same `Repr`.
//!
//! The input is tried as an Ethernet frame ([`FrameRepr`]), as an IP packet ([`RoceV2Repr`]) and
//! as a UDP payload ([`RoceRepr`]). For each structure-only parse that succeeds:
//!
//! - `emit` into a buffer of exactly `buffer_len()` bytes succeeds and writes `buffer_len()` bytes;
//! - parsing that buffer with `Checks::ALL` (IP checksum, UDP checksum, ICRC) gives the same repr;
//! - `emit` into a buffer one byte short fails with `BufferTooSmall`.
//!
//! And a parse with every check that succeeds must agree with the structure-only parse.
#![no_main]

use core::fmt::{Debug, Write as _};

use libfuzzer_sys::fuzz_target;
use rxe_wire::{Checks, Error, FrameRepr, RocePacket, RoceRepr, RoceV2Packet, RoceV2Repr};

/// Emits `repr` into exactly `len` bytes with `emit`, re-parses them with `parse_all` (every check
/// the layer has; `Ok(None)` when the result equals `repr`, `Ok(Some(debug))` when it differs),
/// and emits again into `len - 1` bytes, which must fail with `BufferTooSmall` and write nothing.
fn round_trip<R: Debug>(
    name: &str,
    repr: &R,
    len: usize,
    emit: impl Fn(&mut [u8]) -> Result<usize, Error>,
    parse_all: impl Fn(&[u8]) -> Result<Option<String>, Error>,
) {
    let mut buf = vec![0xa5u8; len];
    match emit(&mut buf) {
        Ok(n) => assert_eq!(n, len, "{name}::emit returned {n}, buffer_len {len}"),
        Err(e) => panic!("{name}::emit of a parsed repr failed: {e:?}\n{repr:?}"),
    }
    match parse_all(&buf) {
        Ok(None) => {}
        Ok(Some(again)) => panic!(
            "{name} round trip differs:\n parsed  {repr:?}\n re-emit {again}\n bytes {}",
            hex(&buf)
        ),
        Err(e) => panic!(
            "{name}: re-emitted bytes fail Checks::ALL: {e:?}\n{repr:?}\n bytes {}",
            hex(&buf)
        ),
    }

    let mut short = vec![0xa5u8; len - 1];
    let r = emit(&mut short);
    assert!(
        matches!(r, Err(Error::BufferTooSmall { .. })),
        "{name}::emit into {} bytes (needs {len}) gave {r:?}",
        len - 1
    );
    assert!(
        short.iter().all(|&b| b == 0xa5),
        "{name}::emit wrote into a short buffer"
    );
}

/// `None` when `again` equals `repr`, else its `Debug` text.
fn differs<T: PartialEq + Debug>(repr: &T, again: &T) -> Option<String> {
    (again != repr).then(|| format!("{again:?}"))
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(2 * b.len());
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

fuzz_target!(|data: &[u8]| {
    // Ethernet frame.
    let full = FrameRepr::parse(data);
    match FrameRepr::parse_with(data, &Checks::STRUCTURE_ONLY) {
        Ok(f) => {
            if let Ok(full) = &full {
                assert_eq!(
                    *full, f,
                    "FrameRepr: Checks::ALL and STRUCTURE_ONLY disagree"
                );
            }
            round_trip(
                "FrameRepr",
                &f,
                f.buffer_len(),
                |b| f.emit(b),
                |b| FrameRepr::parse_with(b, &Checks::ALL).map(|g| differs(&f, &g)),
            );
        }
        Err(e) => assert!(
            full.is_err(),
            "FrameRepr: Checks::ALL accepts what STRUCTURE_ONLY rejects ({e:?})"
        ),
    }

    // The zero-copy views accept exactly what the Reprs accept, and every accessor works.
    let view = RoceV2Packet::new_checked(data, &Checks::STRUCTURE_ONLY);
    assert_eq!(
        view.map(|v| v.to_repr()),
        RoceV2Repr::parse_with(data, &Checks::STRUCTURE_ONLY),
        "RoceV2Packet and RoceV2Repr disagree"
    );
    if let Ok(r) = RocePacket::new_checked(data) {
        let (bth, ext, payload) = (r.bth(), r.ext_headers(), r.payload());
        assert_eq!(r.to_repr().payload, payload);
        assert_eq!(r.to_repr().ext, ext);
        assert_eq!(r.to_repr().bth.psn, bth.psn());
        assert_eq!(r.without_icrc().len() + 4, data.len());
        let _ = (r.icrc(), r.opcode(), r.info(), r.header_len());
    }

    // IP packet.
    let full = RoceV2Repr::parse(data);
    match RoceV2Repr::parse_with(data, &Checks::STRUCTURE_ONLY) {
        Ok(p) => {
            if let Ok(full) = &full {
                assert_eq!(
                    *full, p,
                    "RoceV2Repr: Checks::ALL and STRUCTURE_ONLY disagree"
                );
            }
            round_trip(
                "RoceV2Repr",
                &p,
                p.buffer_len(),
                |b| p.emit(b),
                |b| RoceV2Repr::parse_with(b, &Checks::ALL).map(|q| differs(&p, &q)),
            );
        }
        Err(e) => assert!(
            full.is_err(),
            "RoceV2Repr: Checks::ALL accepts what STRUCTURE_ONLY rejects ({e:?})"
        ),
    }

    // UDP payload: BTH to ICRC.
    if let Ok(r) = RoceRepr::parse(data) {
        // The transport part alone has no ICRC check (that needs the IP and UDP headers).
        round_trip(
            "RoceRepr",
            &r,
            r.buffer_len(),
            |b| r.emit(b),
            |b| RoceRepr::parse(b).map(|s| differs(&r, &s)),
        );
    }
});
