//! The table-driven CRC-32 and the build's fast engine must agree on any data and any initial
//! value (the initial value is how the ICRC chains the LRH, header and payload parts).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rxe_wire::icrc;

fuzz_target!(|data: &[u8]| {
    let (init, rest) = match data.split_first_chunk::<4>() {
        Some((head, rest)) => (u32::from_le_bytes(*head), rest),
        None => (0, data),
    };
    let soft = icrc::soft::crc32(init, rest);
    let fast = icrc::crc32(init, rest);
    assert_eq!(
        soft,
        fast,
        "soft {soft:#010x} != {} {fast:#010x} (init {init:#010x}, {} bytes)",
        icrc::ENGINE,
        rest.len()
    );
    // Chaining at any split point equals the one-shot CRC.
    if !rest.is_empty() {
        let split = usize::from(rest[0]) % (rest.len() + 1);
        let (a, b) = rest.split_at(split);
        assert_eq!(
            icrc::crc32(icrc::crc32(init, a), b),
            fast,
            "chained at {split}"
        );
        assert_eq!(
            icrc::soft::crc32(icrc::soft::crc32(init, a), b),
            soft,
            "soft chained at {split}"
        );
    }
});
