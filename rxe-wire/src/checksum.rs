//! The Internet checksum (RFC 1071) for the IPv4 header and UDP.

/// One's-complement sum of `data` as big-endian 16-bit words, folded to 16 bits (not inverted).
pub fn sum(acc: u32, data: &[u8]) -> u32 {
    // Big-endian 32-bit words summed into 64 bits: the one's-complement sum of 16-bit words
    // is the same after folding (RFC 1071, "byte order independence" and "parallel summation").
    let mut wide = u64::from(acc);
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        wide += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut pairs = rest.chunks_exact(2);
    for c in &mut pairs {
        wide += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = pairs.remainder() {
        wide += u64::from(*last) << 8;
    }
    // 64 -> 32 -> 16 bits, carries folded back in.
    let wide = (wide & 0xffff_ffff) + (wide >> 32);
    let wide = (wide & 0xffff_ffff) + (wide >> 32);
    fold(wide as u32)
}

/// Folds carries back into the low 16 bits.
pub fn fold(mut acc: u32) -> u32 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc
}

/// Returns the checksum to store in a header whose bytes (checksum field zeroed) sum to `acc`.
pub fn finish(acc: u32) -> u16 {
    !(fold(acc) as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_rfc1071_example() {
        // RFC 1071 section 3: 0001 f203 f4f5 f6f7 sums to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(0, &data), 0xddf2);
        assert_eq!(finish(sum(0, &data)), !0xddf2);
    }

    #[test]
    fn wide_sum_equals_the_word_by_word_sum() {
        fn reference(mut acc: u32, data: &[u8]) -> u32 {
            for c in data.chunks(2) {
                let w = u32::from(c[0]) << 8 | u32::from(c.get(1).copied().unwrap_or(0));
                acc = fold(acc + w);
            }
            fold(acc)
        }
        let data: [u8; 1500] = core::array::from_fn(|i| (i as u8).wrapping_mul(199) ^ 0xf3);
        for len in (0..64).chain([1499, 1500]) {
            for acc in [0u32, 1, 0xffff, 0x1_2345, 0xffff_fffe] {
                assert_eq!(
                    sum(acc, &data[..len]),
                    reference(fold(acc), &data[..len]),
                    "len {len}"
                );
            }
        }
        assert_eq!(sum(0, &[0xff; 4000]), 0xffff);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(0, &[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
    }
}
