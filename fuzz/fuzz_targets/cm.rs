//! CM MAD parsing: any 256 bytes either fail with a typed error or parse, and then emitting the
//! message and parsing it again gives the same message (reserved bits aside, which emit zeroes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rxe_wire::cm::Message;
use rxe_wire::mad::MAD_LEN;

fuzz_target!(|data: &[u8]| {
    let mut mad = [0u8; MAD_LEN];
    let n = data.len().min(MAD_LEN);
    mad[..n].copy_from_slice(&data[..n]);
    // Short inputs must be rejected, not read past.
    let _ = Message::parse(&data[..n]);
    if let Ok((hdr, msg)) = Message::parse(&mad) {
        let mut out = [0u8; MAD_LEN];
        assert_eq!(msg.emit(hdr.tid, &mut out), Ok(MAD_LEN));
        let (hdr2, msg2) = Message::parse(&out).expect("our own MAD parses");
        assert_eq!(hdr2.tid, hdr.tid);
        assert_eq!(msg2, msg);
        // And it is stable: a second round trip changes nothing.
        let mut again = [0u8; MAD_LEN];
        msg2.emit(hdr2.tid, &mut again).unwrap();
        assert_eq!(again, out);
    }
});
