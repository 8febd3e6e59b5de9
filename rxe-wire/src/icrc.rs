//! The invariant CRC (IBTA Annex A17.3.3), bit-exact with Linux rxe (`rxe_icrc.c`).
//!
//! The ICRC is CRC-32 (the Ethernet/zlib polynomial, reflected) over
//!
//! ```text
//! 8 x 0xFF (stands for the LRH) | IP header, masked | UDP header, masked | BTH, masked | rest
//! ```
//!
//! where "masked" sets to all ones: IPv4 TOS, TTL and header checksum; IPv6 traffic class, flow
//! label and hop limit; the UDP checksum; and the BTH byte holding FECN, BECN and the reserved
//! bits. "rest" is the extension headers, the payload and the pad. The result is stored
//! little-endian in the last four bytes of the UDP payload (zlib's CRC value, byte for byte).
//!
//! Two CRC engines give the same answer: [`soft`], table-driven and pure `core`, and, with the
//! `fast-crc` feature (default), `crc32fast`, which uses PCLMULQDQ / ARMv8 CRC instructions when the
//! CPU has them (detected at run time with `std`, at compile time without).

use crate::error::{Error, Result};
use crate::{bth, ipv4, ipv6, udp};

/// Length of the ICRC trailer.
pub const ICRC_LEN: usize = 4;

const POLY: u32 = 0xedb8_8320;

const fn make_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut s = 1;
        while s < 8 {
            let prev = t[s - 1][i];
            t[s][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            s += 1;
        }
        i += 1;
    }
    t
}

static TABLES: [[u32; 256]; 8] = make_tables();

/// The table-driven CRC-32 (slice-by-8), pure `core`: the reference the fast engine is tested
/// against, and the engine of builds without `fast-crc`.
pub mod soft {
    use super::TABLES;

    /// Continues zlib's `crc32(crc, data)`: pass 0 to start, or a previous result to chain.
    pub fn crc32(crc: u32, data: &[u8]) -> u32 {
        let mut r = !crc;
        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            let lo = r ^ u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            r = TABLES[7][(lo & 0xff) as usize]
                ^ TABLES[6][((lo >> 8) & 0xff) as usize]
                ^ TABLES[5][((lo >> 16) & 0xff) as usize]
                ^ TABLES[4][(lo >> 24) as usize]
                ^ TABLES[3][c[4] as usize]
                ^ TABLES[2][c[5] as usize]
                ^ TABLES[1][c[6] as usize]
                ^ TABLES[0][c[7] as usize];
        }
        for &b in chunks.remainder() {
            r = (r >> 8) ^ TABLES[0][((r ^ u32::from(b)) & 0xff) as usize];
        }
        !r
    }
}

pub mod ipv4_ident;
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86_64;

/// Whether [`Crc32::copy_update`] fuses the copy and the CRC on this machine (x86-64 with
/// AVX-512 and VPCLMULQDQ); otherwise it copies, then runs the CRC over the copy.
pub fn fused_copy_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return x86_64::available();
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

/// Continues zlib's `crc32(crc, data)` with the fastest engine this build has.
#[inline]
pub fn crc32(crc: u32, data: &[u8]) -> u32 {
    let mut c = Crc32::new(crc);
    c.update(data);
    c.finalize()
}

/// A running CRC-32 on the fastest engine of this build.
#[derive(Clone, Copy)]
pub struct Crc32 {
    /// The zlib CRC value of everything added so far.
    crc: u32,
}

impl Crc32 {
    /// Starts from `crc`, a previous zlib CRC value (0 for none).
    #[inline]
    pub fn new(crc: u32) -> Crc32 {
        Crc32 { crc }
    }
    /// Adds `data`.
    #[inline]
    pub fn update(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        #[cfg(feature = "fast-crc")]
        {
            // The engine is picked here, per call with data, not when the CRC starts.
            let mut h = crc32fast::Hasher::new_with_initial(self.crc);
            h.update(data);
            self.crc = h.finalize();
        }
        #[cfg(not(feature = "fast-crc"))]
        {
            self.crc = soft::crc32(self.crc, data);
        }
    }
    /// Copies `src` into `dst` and adds the copied bytes, in one pass over the data where the CPU
    /// allows it (see [`fused_copy_available`]). Copies `min(src.len(), dst.len())` bytes and
    /// returns that count.
    #[inline]
    pub fn copy_update(&mut self, dst: &mut [u8], src: &[u8]) -> usize {
        let n = src.len().min(dst.len());
        let (dst, src) = (&mut dst[..n], &src[..n]);
        #[cfg(target_arch = "x86_64")]
        let done = {
            // zlib values are the raw register inverted.
            let (reg, done) = x86_64::copy_crc(!self.crc, dst, src);
            self.crc = !reg;
            done
        };
        #[cfg(not(target_arch = "x86_64"))]
        let done = 0;
        if done < n {
            dst[done..].copy_from_slice(&src[done..]);
            self.update(&dst[done..]);
        }
        n
    }
    /// Returns the zlib CRC value of everything added.
    #[inline]
    pub fn finalize(self) -> u32 {
        self.crc
    }
}

/// Which CRC engine [`crc32`] uses in this build: `"crc32fast"` or `"soft"`.
pub const ENGINE: &str = if cfg!(feature = "fast-crc") {
    "crc32fast"
} else {
    "soft"
};

const fn const_crc32(data: &[u8]) -> u32 {
    let mut r = !0u32;
    let mut i = 0;
    while i < data.len() {
        r = (r >> 8) ^ TABLES_CONST[((r ^ data[i] as u32) & 0xff) as usize];
        i += 1;
    }
    !r
}
const TABLES_CONST: [u32; 256] = make_tables()[0];

/// CRC of the eight 0xFF bytes that stand for the LRH; every ICRC continues from it.
/// (Linux keeps the raw register instead: `!LRH_CRC == 0xdebb20e3`.)
pub const LRH_CRC: u32 = const_crc32(&[0xff; 8]);

/// The most header bytes one header block takes: IPv6 40 + UDP 8 + BTH 12 + AtomicETH 28 = 88,
/// rounded up to a 16-byte lane with the LRH's four bytes in front.
const MAX_HEADERS: usize = 92;

/// Length of a header mask: 16 bytes in front of the IP header (twelve zeros, then four 0xFF
/// standing for the LRH) and one byte per header byte.
const MASK_LEN: usize = 16 + MAX_HEADERS + 4;

/// Computes the ICRC of a RoCEv2 packet from its raw parts.
///
/// `ip_header` is the 20-byte IPv4 or 40-byte IPv6 header as on the wire, `udp_header` the 8-byte
/// UDP header, and `transport` the UDP payload from the BTH up to (not including) the ICRC. Only
/// the first byte of `ip_header` decides the version.
pub fn compute(ip_header: &[u8], udp_header: &[u8], transport: &[u8]) -> Result<u32> {
    // `start` takes the headers and at most a few lanes more; the long rest streams.
    Ok(start(ip_header, udp_header, transport)?.finalize())
}

/// The running ICRC after `ip_header`, `udp_header` (both masked) and `transport` (BTH masked):
/// continue it over what follows `transport` in the packet, then finalize.
pub(crate) fn start(ip_header: &[u8], udp_header: &[u8], transport: &[u8]) -> Result<Crc32> {
    let ip_len = ip_header_len(ip_header)?;
    crate::error::check_len(ip_header, ip_len)?;
    crate::error::check_len(udp_header, udp::HEADER_LEN)?;
    crate::error::check_len(transport, bth::HEADER_LEN)?;
    // The parts side by side, as they lie in a packet: the BTH and as much of what follows as
    // one header block takes (whole 4-byte words, at least the 12 of the BTH); the rest streams.
    let t_start = ip_len + udp::HEADER_LEN;
    let t = transport.len().min(MAX_HEADERS - t_start) & !3;
    let mut headers = [0u8; MAX_HEADERS];
    headers[..ip_len].copy_from_slice(&ip_header[..ip_len]);
    headers[ip_len..t_start].copy_from_slice(&udp_header[..udp::HEADER_LEN]);
    headers[t_start..t_start + t].copy_from_slice(&transport[..t]);
    let mut crc = start_packet(&headers, t_start + t)?;
    crc.update(&transport[t..]);
    Ok(crc)
}

/// The IP header's length from its version nibble.
fn ip_header_len(ip_header: &[u8]) -> Result<usize> {
    match ip_header.first().map(|b| b >> 4) {
        Some(4) => Ok(ipv4::HEADER_LEN),
        Some(6) => Ok(ipv6::HEADER_LEN),
        Some(v) => Err(Error::BadIpVersion(v)),
        None => Err(Error::Truncated { needed: 1, got: 0 }),
    }
}

/// The ICRC's masks of the header block, the one place they are written down: the bytes to
/// OR into each header byte (all ones where the ICRC masks a field), laid out as [`MASK_LEN`]
/// says. The LRH's four 0xFF bytes come first.
const fn head_mask(ip_len: usize) -> [u8; MASK_LEN] {
    let mut m = [0u8; MASK_LEN];
    let mut i = 12;
    while i < 16 {
        m[i] = 0xff;
        i += 1;
    }
    let ip = 16;
    if ip_len == ipv4::HEADER_LEN {
        m[ip + ipv4::field::TOS] = 0xff;
        m[ip + ipv4::field::TTL] = 0xff;
        m[ip + ipv4::field::CHECKSUM.start] = 0xff;
        m[ip + ipv4::field::CHECKSUM.start + 1] = 0xff;
    } else {
        // The version nibble stays; traffic class and flow label become all ones.
        m[ip] = 0x0f;
        m[ip + 1] = 0xff;
        m[ip + 2] = 0xff;
        m[ip + 3] = 0xff;
        m[ip + ipv6::HOP_LIMIT_OFFSET] = 0xff;
    }
    let udp = ip + ip_len;
    m[udp + udp::field::CHECKSUM.start] = 0xff;
    m[udp + udp::field::CHECKSUM.start + 1] = 0xff;
    m[udp + udp::HEADER_LEN + bth::FB_RESV_OFFSET] = 0xff;
    m
}

static HEAD_MASK_V4: [u8; MASK_LEN] = head_mask(ipv4::HEADER_LEN);
static HEAD_MASK_V6: [u8; MASK_LEN] = head_mask(ipv6::HEADER_LEN);

/// The running ICRC after a packet's headers, which lie contiguously: `packet` starts with the
/// IP header, and `packet[..hdr_end]` holds it, the UDP header, the BTH and the extension
/// headers (continue it over what follows, then finalize). Where the CPU allows, the headers
/// are loaded straight from the packet into carry-less folds.
#[inline]
pub(crate) fn start_packet(packet: &[u8], hdr_end: usize) -> Result<Crc32> {
    let ip_len = ip_header_len(packet)?;
    let headers = packet.get(..hdr_end).ok_or(Error::Truncated {
        needed: hdr_end,
        got: packet.len(),
    })?;
    crate::error::check_len(headers, ip_len + udp::HEADER_LEN + bth::HEADER_LEN)?;
    let mask = if ip_len == ipv4::HEADER_LEN {
        &HEAD_MASK_V4
    } else {
        &HEAD_MASK_V6
    };
    #[cfg(target_arch = "x86_64")]
    if let Some(reg) = x86_64::head_lanes(headers, hdr_end, mask) {
        // A raw register r is the zlib value !r.
        return Ok(Crc32::new(!reg));
    }
    // The byte path: the LRH's four 0xFF bytes from a zero register (the same as eight from
    // the all-ones one), the masked headers after them in one block, then the rest.
    let n = headers.len().min(MAX_HEADERS);
    let mut block = [0u8; 4 + MAX_HEADERS];
    for (i, b) in block[..4 + n].iter_mut().enumerate() {
        *b = mask[12 + i] | if i < 4 { 0 } else { headers[i - 4] };
    }
    // A zero register is the zlib value !0.
    let mut crc = Crc32::new(!0);
    crc.update(&block[..4 + n]);
    crc.update(&headers[n..]);
    Ok(crc)
}

/// Reads the ICRC stored at the end of a UDP payload.
pub fn received(udp_payload: &[u8]) -> Option<u32> {
    let n = udp_payload.len().checked_sub(ICRC_LEN)?;
    let b = &udp_payload[n..];
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lrh_constant_matches_linux_seed() {
        assert_eq!(!LRH_CRC, 0xdebb_20e3);
    }

    #[test]
    fn soft_engine_matches_the_check_value() {
        assert_eq!(soft::crc32(0, b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(0, b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn chaining_equals_one_shot() {
        let data: [u8; 100] = core::array::from_fn(|i| (i * 7) as u8);
        let one = soft::crc32(0, &data);
        for split in 0..data.len() {
            assert_eq!(
                soft::crc32(soft::crc32(0, &data[..split]), &data[split..]),
                one
            );
            assert_eq!(crc32(crc32(0, &data[..split]), &data[split..]), one);
        }
    }

    #[test]
    fn copy_update_copies_and_matches_the_table_crc() {
        // Every length around the kernel's block sizes, from several starting CRCs, at
        // misaligned offsets.
        let data: [u8; 5000] =
            core::array::from_fn(|i| (i as u32).wrapping_mul(2_654_435_761) as u8 ^ (i >> 8) as u8);
        let mut out = [0u8; 5000];
        let lens = (0..600).chain([1023, 1024, 1025, 4095, 4096, 4097, 4160, 4999 - 3]);
        for len in lens {
            for (seed, at) in [(0u32, 0usize), (0xdebb_20e3, 1), (0x1234_5678, 3)] {
                let src = &data[at..at + len];
                let mut c = Crc32::new(seed);
                out.fill(0xaa);
                assert_eq!(c.copy_update(&mut out[at..], src), len);
                assert_eq!(&out[at..at + len], src, "len {len}");
                assert_eq!(out[at + len], 0xaa);
                assert_eq!(
                    c.finalize(),
                    soft::crc32(seed, src),
                    "len {len} seed {seed:#x}"
                );
            }
        }
    }

    /// The ICRC as IBTA A17.3.3 words it, byte by byte: eight 0xFF bytes, the masked IP, UDP
    /// and BTH headers, the rest unmasked; a check written apart from `head_mask`.
    fn reference_icrc(packet: &[u8], ip_len: usize) -> u32 {
        let mut bytes = [0xffu8; 8].to_vec();
        bytes.extend_from_slice(packet);
        let p = &mut bytes[8..];
        if ip_len == 20 {
            p[1] = 0xff; // TOS
            p[8] = 0xff; // TTL
            p[10..12].fill(0xff); // header checksum
        } else {
            p[0] |= 0x0f; // traffic class and flow label, version kept
            p[1..4].fill(0xff);
            p[7] = 0xff; // hop limit
        }
        p[ip_len + 6..ip_len + 8].fill(0xff); // UDP checksum
        p[ip_len + 8 + 4] = 0xff; // BTH FECN, BECN, reserved
        soft::crc32(0, &bytes)
    }

    #[test]
    fn header_paths_match_the_byte_by_byte_icrc() {
        // Every extension-header length a RoCE opcode has (0 to 28 bytes, by fours), IPv4 and
        // IPv6: the headers in place (start_packet), and as separate parts followed by payloads
        // of several lengths, odd ones included (start).
        let bytes: [u8; 400] = core::array::from_fn(|i| (i as u8).wrapping_mul(151) ^ 0x3c);
        for (version, ip_len) in [(0x45u8, 20usize), (0x60, 40)] {
            let mut packet = bytes;
            packet[0] = version;
            for ext in (0..=28).step_by(4) {
                let hdr_end = ip_len + 8 + 12 + ext;
                let got = start_packet(&packet, hdr_end).unwrap().finalize();
                assert_eq!(
                    got,
                    reference_icrc(&packet[..hdr_end], ip_len),
                    "{ip_len} {ext}"
                );
                for payload in [0usize, 1, 3, 7, 64, 301] {
                    let end = hdr_end + payload;
                    let (ip, rest) = packet[..end].split_at(ip_len);
                    let (udp, t) = rest.split_at(8);
                    let got = start(ip, udp, t).unwrap().finalize();
                    let want = reference_icrc(&packet[..end], ip_len);
                    assert_eq!(got, want, "ip {ip_len} ext {ext} payload {payload}");
                }
            }
        }
        let mut short = [0u8; 30];
        short[0] = 0x45;
        assert!(matches!(
            start_packet(&short, 60),
            Err(Error::Truncated { .. })
        ));
    }

    #[test]
    fn copy_update_takes_the_shorter_slice() {
        let mut c = Crc32::new(0);
        let mut dst = [0u8; 300];
        assert_eq!(c.copy_update(&mut dst, &[9u8; 500]), 300);
        assert_eq!(c.finalize(), soft::crc32(0, &[9u8; 300]));
    }

    #[test]
    fn rejects_unknown_ip_versions_and_short_parts() {
        assert_eq!(
            compute(&[0x50; 20], &[0; 8], &[0; 12]).unwrap_err(),
            Error::BadIpVersion(5)
        );
        assert!(matches!(
            compute(&[0x45; 19], &[0; 8], &[0; 12]),
            Err(Error::Truncated { .. })
        ));
        assert!(matches!(
            compute(&[0x45; 20], &[0; 8], &[0; 11]),
            Err(Error::Truncated { .. })
        ));
        assert!(matches!(
            compute(&[], &[0; 8], &[0; 12]),
            Err(Error::Truncated { .. })
        ));
    }
}
