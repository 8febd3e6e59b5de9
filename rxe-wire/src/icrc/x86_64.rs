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

const FOLD_2048: (i64, i64) = fold_pair(2048);
const FOLD_512: (i64, i64) = fold_pair(512);
const FOLD_384: (i64, i64) = fold_pair(384);
const FOLD_256: (i64, i64) = fold_pair(256);
const FOLD_128: (i64, i64) = fold_pair(128);

/// Smallest input the kernel takes: four 64-byte blocks.
pub(super) const MIN_LEN: usize = 256;

/// Whether this CPU runs [`copy_crc`].
#[inline]
pub(super) fn available() -> bool {
    #[cfg(feature = "std")]
    {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("vpclmulqdq")
            && std::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(not(feature = "std"))]
    {
        cfg!(all(
            target_feature = "avx512f",
            target_feature = "vpclmulqdq",
            target_feature = "pclmulqdq"
        ))
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
    let mut rest = [0u8; 16];
    // SAFETY: a 16-byte store into a 16-byte array.
    unsafe { _mm_storeu_si128(rest.as_mut_ptr().cast(), acc) };
    // What is left is congruent to the whole input: its CRC from a zero register is the
    // register after the input.
    super::soft_raw(0, &rest)
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
