//! Shared helpers for rxe-wire's integration tests: the golden captures from Linux rxe.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};

use pcap_file::pcap::PcapReader;
use pcap_file::DataLink;

/// The test-data folder (copies of `../shared/interop/captures` plus our own captures).
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// Every `.pcap` in the test-data folder, sorted.
pub fn captures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(data_dir())
        .expect("tests/data")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no captures in tests/data");
    v
}

/// The Ethernet frames of a classic pcap file.
pub fn frames(path: &Path) -> Vec<Vec<u8>> {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut r = PcapReader::new(f).expect("pcap header");
    assert_eq!(
        r.header().datalink,
        DataLink::ETHERNET,
        "{}",
        path.display()
    );
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.expect("pcap record");
        assert_eq!(
            p.data.len() as u32,
            p.orig_len,
            "{}: truncated capture",
            path.display()
        );
        out.push(p.data.into_owned());
    }
    out
}
