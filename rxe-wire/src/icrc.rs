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

/// Table CRC on the raw register (no pre/post inversion): the reference the kernels are tested
/// against.
#[cfg(test)]
fn soft_raw(reg: u32, data: &[u8]) -> u32 {
    !soft::crc32(!reg, data)
}

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

/// The buffer the masked headers are hashed in: room for the largest header set (4 + IPv6 40 +
/// UDP 8 + BTH 12 + AtomicETH 28 = 92 bytes), rounded up to whole 16-byte lanes.
const HEAD_BLOCK: usize = 96;

/// The raw CRC register after `block` from a zero register. `block` is whole 16-byte lanes
/// whose first `skip` bytes are zero padding: a zero register is unchanged by leading zeros, so
/// the carry-less kernel takes the padded lanes while the other engines skip the padding.
#[inline]
fn head_crc(block: &[u8], skip: usize) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if let Some(reg) = x86_64::crc_lanes(block) {
        return reg;
    }
    let mut crc = Crc32::new(!0);
    crc.update(&block[skip..]);
    !crc.finalize()
}

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
    let ip_len = match ip_header.first().map(|b| b >> 4) {
        Some(4) => ipv4::HEADER_LEN,
        Some(6) => ipv6::HEADER_LEN,
        Some(v) => return Err(Error::BadIpVersion(v)),
        None => return Err(Error::Truncated { needed: 1, got: 0 }),
    };
    crate::error::check_len(ip_header, ip_len)?;
    crate::error::check_len(udp_header, udp::HEADER_LEN)?;
    crate::error::check_len(transport, bth::HEADER_LEN)?;

    // The LRH's eight 0xFF bytes from the all-ones register are the same as four 0xFF bytes
    // from a zero register (the first four cancel the register): so the masked headers follow
    // four 0xFF bytes in one buffer with the extension headers, and one CRC call covers them.
    // The buffer is right-aligned to whole 16-byte lanes, zeros in front.
    let fixed = 4 + ip_len + udp::HEADER_LEN + bth::HEADER_LEN;
    // The extension headers, at most (AtomicETH is the longest); the payload goes to `update`.
    let extra = (transport.len() - bth::HEADER_LEN).min(HEAD_BLOCK - 4 - fixed);
    let total = (fixed + extra).next_multiple_of(16);
    let mut lanes = [0u8; HEAD_BLOCK];
    let skip = total - fixed - extra;
    let block = &mut lanes[skip..total];
    block[..4].fill(0xff);
    let ip = &mut block[4..4 + ip_len];
    ip.copy_from_slice(&ip_header[..ip_len]);
    if ip_len == ipv4::HEADER_LEN {
        ip[ipv4::field::TOS] = 0xff;
        ip[ipv4::field::TTL] = 0xff;
        ip[ipv4::field::CHECKSUM].fill(0xff);
    } else {
        // Keep the version nibble; traffic class and flow label become all ones.
        ip[0] |= 0x0f;
        ip[1..4].fill(0xff);
        ip[ipv6::HOP_LIMIT_OFFSET] = 0xff;
    }
    let u = &mut block[4 + ip_len..4 + ip_len + udp::HEADER_LEN];
    u.copy_from_slice(&udp_header[..udp::HEADER_LEN]);
    u[udp::field::CHECKSUM].fill(0xff);
    let b = &mut block[4 + ip_len + udp::HEADER_LEN..fixed];
    b.copy_from_slice(&transport[..bth::HEADER_LEN]);
    b[bth::FB_RESV_OFFSET] = 0xff;
    block[fixed..fixed + extra]
        .copy_from_slice(&transport[bth::HEADER_LEN..bth::HEADER_LEN + extra]);
    let reg = head_crc(&lanes[..total], skip);
    // A raw register r is the zlib value !r.
    let mut crc = Crc32::new(!reg);
    crc.update(&transport[bth::HEADER_LEN + extra..]);
    Ok(crc)
}

/// The OR-masks of the header block, in the layout of `x86_64::head_lanes`: 16 bytes in front
/// of the IP header (the last four stand for the LRH), then a mask byte per header byte.
#[cfg(target_arch = "x86_64")]
const fn head_mask(ip_len: usize) -> [u8; x86_64::MASK_LEN] {
    let mut m = [0u8; x86_64::MASK_LEN];
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

#[cfg(target_arch = "x86_64")]
static HEAD_MASK_V4: [u8; x86_64::MASK_LEN] = head_mask(ipv4::HEADER_LEN);
#[cfg(target_arch = "x86_64")]
static HEAD_MASK_V6: [u8; x86_64::MASK_LEN] = head_mask(ipv6::HEADER_LEN);

/// Like [`start`], for headers that lie contiguously: `packet` starts with the IP header, and
/// `packet[..hdr_end]` holds it, the UDP header, the BTH and the extension headers. Loads the
/// headers straight from the packet into carry-less folds where the CPU allows.
#[inline]
pub(crate) fn start_packet(packet: &[u8], hdr_end: usize) -> Result<Crc32> {
    let ip_len = match packet.first().map(|b| b >> 4) {
        Some(4) => ipv4::HEADER_LEN,
        Some(6) => ipv6::HEADER_LEN,
        Some(v) => return Err(Error::BadIpVersion(v)),
        None => return Err(Error::Truncated { needed: 1, got: 0 }),
    };
    let t_start = ip_len + udp::HEADER_LEN;
    let headers = packet.get(..hdr_end).ok_or(Error::Truncated {
        needed: hdr_end,
        got: packet.len(),
    })?;
    crate::error::check_len(headers, t_start + bth::HEADER_LEN)?;
    #[cfg(target_arch = "x86_64")]
    {
        let mask = if ip_len == ipv4::HEADER_LEN {
            &HEAD_MASK_V4
        } else {
            &HEAD_MASK_V6
        };
        if let Some(reg) = x86_64::head_lanes(headers, hdr_end, mask) {
            return Ok(Crc32::new(!reg));
        }
    }
    let (ip, rest) = headers.split_at(ip_len);
    let (udp_header, transport) = rest.split_at(udp::HEADER_LEN);
    start(ip, udp_header, transport)
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

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn lane_kernel_matches_the_table_crc() {
        let data: [u8; 96] = core::array::from_fn(|i| (i as u8).wrapping_mul(73) ^ 0x5a);
        for len in (16..=96).step_by(16) {
            if let Some(reg) = x86_64::crc_lanes(&data[..len]) {
                assert_eq!(reg, soft_raw(0, &data[..len]), "len {len}");
            }
        }
        assert_eq!(x86_64::crc_lanes(&data[..17]), None);
        assert_eq!(x86_64::crc_lanes(&[]), None);
    }

    #[test]
    fn header_crc_ignores_the_zero_padding() {
        let mut block = [0u8; 96];
        for (i, b) in block[7..].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(29) ^ 0xc3;
        }
        assert_eq!(head_crc(&block, 7), soft_raw(0, &block[7..]));
        assert_eq!(head_crc(&block[..96], 0), soft_raw(0, &block));
    }

    #[test]
    fn contiguous_headers_give_the_same_crc_as_separate_ones() {
        // Every extension-header length a RoCE opcode has (0 to 28 bytes, by fours), IPv4 and
        // IPv6, with payload bytes after the headers that must not be included.
        let bytes: [u8; 200] = core::array::from_fn(|i| (i as u8).wrapping_mul(151) ^ 0x3c);
        for (version, ip_len) in [(0x45u8, 20usize), (0x60, 40)] {
            let mut packet = bytes;
            packet[0] = version;
            for ext in (0..=28).step_by(4) {
                let hdr_end = ip_len + 8 + 12 + ext;
                let (ip, rest) = packet.split_at(ip_len);
                let (udp, t) = rest.split_at(8);
                let want = start(ip, udp, &t[..12 + ext]).unwrap().finalize();
                let got = start_packet(&packet, hdr_end).unwrap().finalize();
                assert_eq!(got, want, "ip {ip_len} ext {ext}");
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
