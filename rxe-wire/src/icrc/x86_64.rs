//! Copy and CRC-32 in one pass on x86-64 with AVX-512 and VPCLMULQDQ.
//!
//! Every 64-byte block is loaded once, stored to the destination and folded into four 512-bit
//! CRC accumulators with carry-less multiplies (the folding method of Intel's "Fast CRC
//! Computation for Generic Polynomials Using PCLMULQDQ"). The data crosses the core once instead
//! of twice (memcpy, then CRC), so copying into or out of a packet costs about as much as the copy
//! alone. This module is the only `unsafe` code in `rxe-wire`: intrinsics behind a CPU-feature
//! check, and unaligned loads/stores inside the bounds of the two slices.

use core::arch::x86_64::*;

/// Reflected CRC-32 polynomial with its x^32 term (the bit-reversed form of 0x104C11DB7).
const P: u64 = 0x1_04c1_1db7;

/// x^n mod P in the normal bit order.
const fn xpow_mod(n: u32) -> u32 {
    let mut r: u64 = 1;
    let mut i = 0;
    while i < n {
        r <<= 1;
        if r >> 32 != 0 {
            r ^= P;
        }
        i += 1;
    }
    r as u32
}

/// The folding constant for the reflected domain: x^n mod P, bit-reversed, shifted left once.
const fn k(n: u32) -> i64 {
    ((xpow_mod(n).reverse_bits() as u64) << 1) as i64
}

/// Constants that move a 128-bit lane `bits` further down the message: low quadword by
/// x^(bits+32), high quadword by x^(bits-32).
const fn fold_pair(bits: u32) -> (i64, i64) {
    (k(bits + 32), k(bits - 32))
}

/// x^64 divided by P (the quotient), bit-reversed over 33 bits: Barrett's constant.
const fn barrett_mu() -> i64 {
    // Long division of x^64 by P over GF(2).
    let mut rem: u128 = 1 << 64;
    let mut q: u64 = 0;
    let mut bit = 32;
    loop {
        if rem >> (bit + 32) & 1 != 0 {
            rem ^= (P as u128) << bit;
            q |= 1 << bit;
        }
        if bit == 0 {
            break;
        }
        bit -= 1;
    }
    (q.reverse_bits() >> 31) as i64
}

/// P bit-reversed over its 33 bits.
const P_REFLECTED: i64 = (P.reverse_bits() >> 31) as i64;
const MU_REFLECTED: i64 = barrett_mu();

const FOLD_2048: (i64, i64) = fold_pair(2048);
/// `LANE_FOLDS[j]` moves a 16-byte lane `j` lanes further (index 0 is unused).
const LANE_FOLDS: [(i64, i64); 6] = [
    (0, 0),
    fold_pair(128),
    fold_pair(256),
    fold_pair(384),
    fold_pair(512),
    fold_pair(640),
];
const FOLD_512: (i64, i64) = fold_pair(512);
const FOLD_384: (i64, i64) = fold_pair(384);
const FOLD_256: (i64, i64) = fold_pair(256);
const FOLD_128: (i64, i64) = fold_pair(128);

/// Smallest input the kernel takes: four 64-byte blocks.
pub(super) const MIN_LEN: usize = 256;

/// Whether this CPU runs [`copy_crc`].
#[inline]
pub(super) fn available() -> bool {
    cpu::features() & cpu::FUSED != 0
}

/// Whether this CPU runs [`head_lanes`].
#[inline]
pub(super) fn lanes_available() -> bool {
    cpu::features() & cpu::PCLMUL != 0
}

/// The CPU features the kernels need, found once with CPUID and XGETBV: no `std` needed, so
/// `no_std` builds (firmware, the kernel-style host, the C library without std) pick the fused
/// kernels at run time too. AVX-512 counts only when the OS saves its registers (XCR0).
mod cpu {
    use core::arch::x86_64::{__cpuid_count, _xgetbv, CpuidResult};
    use core::sync::atomic::{AtomicU8, Ordering};

    /// PCLMULQDQ.
    pub(super) const PCLMUL: u8 = 1;
    /// AVX-512F, VPCLMULQDQ and PCLMULQDQ, with the OS saving the AVX-512 state.
    pub(super) const FUSED: u8 = 2;
    const KNOWN: u8 = 0x80;

    static FEATURES: AtomicU8 = AtomicU8::new(0);

    /// The feature bits; the first call detects them.
    #[inline]
    pub(super) fn features() -> u8 {
        let f = FEATURES.load(Ordering::Relaxed);
        if f & KNOWN != 0 {
            return f;
        }
        let f = detect() | KNOWN;
        FEATURES.store(f, Ordering::Relaxed);
        f
    }

    #[cold]
    fn detect() -> u8 {
        let cpuid = |leaf, sub| -> CpuidResult {
            #[allow(unused_unsafe)]
            // SAFETY: CPUID exists on every x86-64 CPU; callers ask only for leaves up to the
            // highest one leaf 0 reports (the intrinsic is `unsafe` on older toolchains).
            unsafe {
                __cpuid_count(leaf, sub)
            }
        };
        let max_leaf = cpuid(0, 0).eax;
        let l1 = cpuid(1, 0);
        let pclmul = l1.ecx & (1 << 1) != 0;
        let osxsave = l1.ecx & (1 << 27) != 0;
        let mut f = if pclmul { PCLMUL } else { 0 };
        if osxsave && max_leaf >= 7 {
            // SAFETY: OSXSAVE says XGETBV is enabled.
            let xcr0 = unsafe { xgetbv0() };
            // SSE, AVX, opmask, ZMM upper halves and ZMM16-31 state all enabled by the OS.
            let os_avx512 = xcr0 & 0xe6 == 0xe6;
            let l7 = cpuid(7, 0);
            let avx512f = l7.ebx & (1 << 16) != 0;
            let vpclmulqdq = l7.ecx & (1 << 10) != 0;
            if pclmul && os_avx512 && avx512f && vpclmulqdq {
                f |= FUSED;
            }
        }
        f
    }

    /// # Safety
    /// The CPU has XSAVE and the OS enabled it (CPUID.1:ECX.OSXSAVE).
    #[target_feature(enable = "xsave")]
    unsafe fn xgetbv0() -> u64 {
        _xgetbv(0)
    }

    #[cfg(all(test, feature = "std"))]
    mod tests {
        #[test]
        fn agrees_with_std_detection() {
            let f = super::features();
            let pclmul = std::is_x86_feature_detected!("pclmulqdq");
            let fused = pclmul
                && std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("vpclmulqdq");
            assert_eq!(f & super::PCLMUL != 0, pclmul);
            assert_eq!(f & super::FUSED != 0, fused);
        }
    }
}

use super::MASK_LEN;

/// The raw CRC register, from a zero register, after the ICRC's masked header block of a
/// packet whose headers lie contiguously in `packet[..len]` (IP, UDP, BTH and extension
/// headers): four 0xFF bytes, then those bytes ORed with `mask[16..]`. The lanes are loaded
/// straight from the packet and masked in registers; nothing is copied to a buffer first.
///
/// `None` (use the byte path) when the CPU lacks PCLMULQDQ, or `len` is under 16, not a
/// multiple of 4, over 92, or past the end of `packet`.
#[inline]
pub(super) fn head_lanes(packet: &[u8], len: usize, mask: &[u8; MASK_LEN]) -> Option<u32> {
    if !(16..=92).contains(&len)
        || !len.is_multiple_of(4)
        || len > packet.len()
        || !lanes_available()
    {
        return None;
    }
    // SAFETY: PCLMULQDQ was checked just above; the kernel reads `packet[..len]` and `mask`
    // within their bounds (see its comments).
    Some(unsafe { head_kernel(packet.as_ptr(), len, mask) })
}

/// # Safety
/// The CPU has PCLMULQDQ; `packet` is valid for `len` bytes, `len` in `16..=92` and a
/// multiple of 4.
#[target_feature(enable = "pclmulqdq,sse2")]
unsafe fn head_kernel(packet: *const u8, len: usize, mask: &[u8; MASK_LEN]) -> u32 {
    // The block is the LRH's four bytes plus `len`, right-aligned to whole lanes: `skip`
    // leading zeros (0, 4, 8 or 12), which a zero register ignores.
    let total = (len + 4).next_multiple_of(16);
    let skip = total - len - 4;
    // SAFETY (whole body): lane k covers packet bytes `16k - skip - 4 ..` for 16 bytes; for
    // k >= 1 that starts at or after byte 0 and the last lane ends at `len`. Lane 0 is the
    // packet's first 16 bytes (len >= 16) shifted up by `skip + 4`. Mask lane k starts at
    // `12 - skip + 16k`, and `12 + total <= MASK_LEN`.
    unsafe {
        let m = |k: usize| _mm_loadu_si128(mask.as_ptr().add(12 - skip + 16 * k).cast());
        let first = _mm_loadu_si128(packet.cast());
        let first = match skip {
            0 => _mm_bslli_si128(first, 4),
            4 => _mm_bslli_si128(first, 8),
            8 => _mm_bslli_si128(first, 12),
            _ => _mm_setzero_si128(),
        };
        // Every lane but the last moves onto the last at once (independent multiplies, no
        // chain through an accumulator): lane k by 128 bits times the lanes after it.
        let lanes = total / 16;
        let mut acc = fold128(_mm_or_si128(first, m(0)), LANE_FOLDS[lanes - 1]);
        let mut k = 1;
        while k < lanes {
            let lane = _mm_or_si128(_mm_loadu_si128(packet.add(16 * k - skip - 4).cast()), m(k));
            let moved = if k + 1 == lanes {
                lane
            } else {
                fold128(lane, LANE_FOLDS[lanes - 1 - k])
            };
            acc = _mm_xor_si128(acc, moved);
            k += 1;
        }
        reduce128(acc)
    }
}

/// Copies the longest multiple of 64 bytes of `src` (at least [`MIN_LEN`]) into `dst` while
/// advancing the raw CRC register `reg` over them. Returns the new raw register and how many
/// bytes were done; 0 when `src` is shorter than [`MIN_LEN`] or the CPU lacks the instructions.
#[inline]
pub(super) fn copy_crc(reg: u32, dst: &mut [u8], src: &[u8]) -> (u32, usize) {
    let n = src.len().min(dst.len());
    if n < MIN_LEN || !available() {
        return (reg, 0);
    }
    // SAFETY: the CPU features were checked just above; the kernel reads and writes only
    // within the first `n` bytes of both slices.
    unsafe { kernel(reg, dst.as_mut_ptr(), src.as_ptr(), n) }
}

/// The raw CRC, from a zero register, of the 64 bytes whose folded form is `x`.
#[inline]
#[target_feature(enable = "avx512f,vpclmulqdq,pclmulqdq")]
fn reduce(x: __m512i) -> u32 {
    // Four 128-bit lanes, the first one earliest in the message: move each to the last.
    let l0 = _mm512_extracti32x4_epi32(x, 0);
    let l1 = _mm512_extracti32x4_epi32(x, 1);
    let l2 = _mm512_extracti32x4_epi32(x, 2);
    let l3 = _mm512_extracti32x4_epi32(x, 3);
    let acc = _mm_xor_si128(
        _mm_xor_si128(fold128(l0, FOLD_384), fold128(l1, FOLD_256)),
        _mm_xor_si128(fold128(l2, FOLD_128), l3),
    );
    // What is left is congruent to the whole input: its CRC from a zero register is the
    // register after the input.
    reduce128(acc)
}

/// The raw CRC, from a zero register, of the 16 bytes in `x`: folded to 64 bits, then to the
/// 32-bit remainder by Barrett reduction (Intel's "Fast CRC Computation" paper, reflected).
#[inline]
#[target_feature(enable = "pclmulqdq,sse2")]
fn reduce128(x: __m128i) -> u32 {
    let low32 = _mm_set_epi32(0, 0, 0, -1);
    let folds = _mm_set_epi64x(k(64), k(96));
    // The first eight bytes moved onto the last eight: 96 bits remain.
    let x = _mm_xor_si128(_mm_clmulepi64_si128(x, folds, 0x00), _mm_srli_si128(x, 8));
    // The first four onto the rest: 64 bits remain.
    let x = _mm_xor_si128(
        _mm_clmulepi64_si128(_mm_and_si128(x, low32), folds, 0x10),
        _mm_srli_si128(x, 4),
    );
    let pu = _mm_set_epi64x(MU_REFLECTED, P_REFLECTED);
    let t1 = _mm_clmulepi64_si128(_mm_and_si128(x, low32), pu, 0x10);
    let t2 = _mm_clmulepi64_si128(_mm_and_si128(t1, low32), pu, 0x00);
    _mm_cvtsi128_si32(_mm_srli_si128(_mm_xor_si128(x, t2), 4)) as u32
}

#[inline]
#[target_feature(enable = "avx512f,vpclmulqdq,pclmulqdq")]
fn fold512_xor(x: __m512i, k: __m512i, y: __m512i) -> __m512i {
    // 0x96: a ^ b ^ c.
    _mm512_ternarylogic_epi64(
        _mm512_clmulepi64_epi128(x, k, 0x00),
        _mm512_clmulepi64_epi128(x, k, 0x11),
        y,
        0x96,
    )
}

#[inline]
#[target_feature(enable = "pclmulqdq,sse2")]
fn fold128(x: __m128i, (lo, hi): (i64, i64)) -> __m128i {
    let k = _mm_set_epi64x(hi, lo);
    _mm_xor_si128(
        _mm_clmulepi64_si128(x, k, 0x00),
        _mm_clmulepi64_si128(x, k, 0x11),
    )
}

#[inline]
#[target_feature(enable = "avx512f")]
fn lanes(pair: (i64, i64)) -> __m512i {
    let (lo, hi) = pair;
    _mm512_set_epi64(hi, lo, hi, lo, hi, lo, hi, lo)
}

/// # Safety
/// The CPU has AVX-512F, VPCLMULQDQ and PCLMULQDQ; `src` and `dst` are valid for `n >= 256`
/// bytes and do not overlap.
#[target_feature(enable = "avx512f,vpclmulqdq,pclmulqdq")]
unsafe fn kernel(reg: u32, dst: *mut u8, src: *const u8, n: usize) -> (u32, usize) {
    // SAFETY (whole body): every offset below stays under `n`, the caller's bound.
    unsafe {
        let load = |off: usize| _mm512_loadu_si512(src.add(off).cast());
        let store = |off: usize, v: __m512i| _mm512_storeu_si512(dst.add(off).cast(), v);

        let mut x0 = load(0);
        let mut x1 = load(64);
        let mut x2 = load(128);
        let mut x3 = load(192);
        store(0, x0);
        store(64, x1);
        store(128, x2);
        store(192, x3);
        // The register enters as the first four message bytes xored with it.
        x0 = _mm512_xor_si512(x0, _mm512_zextsi128_si512(_mm_cvtsi32_si128(reg as i32)));

        let k2048 = lanes(FOLD_2048);
        let mut off = 256;
        while off + 256 <= n {
            let y0 = load(off);
            let y1 = load(off + 64);
            let y2 = load(off + 128);
            let y3 = load(off + 192);
            store(off, y0);
            store(off + 64, y1);
            store(off + 128, y2);
            store(off + 192, y3);
            x0 = fold512_xor(x0, k2048, y0);
            x1 = fold512_xor(x1, k2048, y1);
            x2 = fold512_xor(x2, k2048, y2);
            x3 = fold512_xor(x3, k2048, y3);
            off += 256;
        }
        let k512 = lanes(FOLD_512);
        let mut x = fold512_xor(x0, k512, x1);
        x = fold512_xor(x, k512, x2);
        x = fold512_xor(x, k512, x3);
        while off + 64 <= n {
            let y = load(off);
            store(off, y);
            x = fold512_xor(x, k512, y);
            off += 64;
        }
        (reduce(x), off)
    }
}
