//! A pcap tap: every packet a device sends and receives, as the IP packet its ICRC covers (the
//! IPv4 Identification as sent, or as solved on receive), in an Ethernet frame with made-up MACs
//! (02:00 and the IPv4 address, or the last four bytes of the IPv6 one), for Wireshark and
//! `rxe dump`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Writes a classic pcap (microsecond timestamps, Ethernet link type).
#[derive(Debug)]
pub struct PcapTap {
    out: BufWriter<File>,
}

impl PcapTap {
    /// Creates `path` and writes the pcap header.
    pub fn create(path: &Path) -> io::Result<PcapTap> {
        let mut out = BufWriter::new(File::create(path)?);
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&65_535u32.to_le_bytes());
        h.extend_from_slice(&1u32.to_le_bytes());
        out.write_all(&h)?;
        Ok(PcapTap { out })
    }

    /// Records one IP packet.
    pub fn write(&mut self, ip_packet: &[u8]) -> io::Result<()> {
        let Some(&first) = ip_packet.first() else {
            return Ok(());
        };
        let v6 = first >> 4 == 6;
        let mac = |a: &[u8]| [0x02, 0x00, a[0], a[1], a[2], a[3]];
        let (src, dst) = if v6 && ip_packet.len() >= 40 {
            (mac(&ip_packet[20..24]), mac(&ip_packet[36..40]))
        } else if ip_packet.len() >= 20 {
            (mac(&ip_packet[12..16]), mac(&ip_packet[16..20]))
        } else {
            return Ok(());
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let len = (ip_packet.len() + 14) as u32;
        let mut rec = Vec::with_capacity(16 + 14);
        rec.extend_from_slice(&(now.as_secs() as u32).to_le_bytes());
        rec.extend_from_slice(&now.subsec_micros().to_le_bytes());
        rec.extend_from_slice(&len.to_le_bytes());
        rec.extend_from_slice(&len.to_le_bytes());
        rec.extend_from_slice(&dst);
        rec.extend_from_slice(&src);
        rec.extend_from_slice(&(if v6 { 0x86ddu16 } else { 0x0800 }).to_be_bytes());
        self.out.write_all(&rec)?;
        self.out.write_all(ip_packet)
    }

    /// Writes out what is buffered.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
