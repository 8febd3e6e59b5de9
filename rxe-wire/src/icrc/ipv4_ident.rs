//! Recovering the IPv4 Identification of a received RoCEv2 packet from its ICRC.
//!
//! The ICRC covers the whole IPv4 header, Identification included, and Linux rxe sends changing
//! Identification values. A host receiving through a UDP socket never sees the IP header, so it
//! cannot simply recompute the ICRC. But a CRC is affine over GF(2): with everything else known,
//! the ICRC is `f(0) ^ L(ident)` for a linear map `L` from the 16 Identification bits to the 32
//! CRC bits, and `L` depends only on how many bytes follow the field. So the receiver computes
//! `f(0)` (the ICRC with Identification 0), and solves `L(ident) = f(0) ^ received` for the one
//! Identification that makes the packet's ICRC right:
//!
//! - if a solution exists, the packet is accepted with that Identification;
//! - if none does, the packet is corrupt.
//!
//! 32 equations in 16 unknowns leave 16 bits of check: a corrupted packet passes with probability
//! 2^-16 on this path (against 2^-32 when the header is known). IPv6 has no such field and keeps
//! the full check; a host that sees the real header (raw socket, AF_PACKET, a NIC) needs none
//! of this.
//!
//! ```
//! use rxe_wire::icrc::ipv4_ident::IdentSolver;
//! use rxe_wire::{bth, ipv4, udp, ExtHeaders, IpRepr, Opcode, PKey, Psn, Qpn, RoceRepr, RoceV2Repr};
//!
//! // A packet as a Linux rxe peer sends it, Identification 0x4d2.
//! let ip = ipv4::Repr {
//!     src: [10, 0, 0, 1].into(),
//!     dst: [10, 0, 0, 2].into(),
//!     tos: 0,
//!     ident: 0x4d2,
//!     dont_frag: true,
//!     ttl: 64,
//! };
//! let udp = udp::Repr { src_port: 0xc123, dst_port: udp::ROCE_PORT, checksum: false };
//! let bth = bth::Repr {
//!     opcode: Opcode::RC_SEND_ONLY, solicited: false, mig_req: false, pad_count: 0,
//!     pkey: PKey::DEFAULT, fecn: false, becn: false, dest_qp: Qpn::new(0x11),
//!     ack_req: true, psn: Psn::new(7),
//! };
//! let packet = RoceV2Repr {
//!     ip: IpRepr::V4(ip),
//!     udp,
//!     roce: RoceRepr::new(bth, ExtHeaders::default(), b"hello"),
//! };
//! let mut buf = vec![0u8; packet.buffer_len()];
//! packet.emit(&mut buf).unwrap();
//!
//! // What a UDP socket shows: addresses, ports and the UDP payload, not the Identification.
//! let udp_payload = &buf[28..];
//! let (transport, icrc) = udp_payload.split_at(udp_payload.len() - 4);
//! let icrc = u32::from_le_bytes(icrc.try_into().unwrap());
//! let solver = IdentSolver::new(transport.len());
//! let unknown = ipv4::Repr { ident: 0, ..ip };
//! assert_eq!(solver.solve(&unknown, &udp, transport, icrc), Some(0x4d2));
//! // A corrupted packet finds no Identification (but for 1 in 65536).
//! assert_eq!(solver.solve(&unknown, &udp, transport, icrc ^ 1), None);
//! ```

use crate::error::Result;
use crate::packet::IpRepr;
use crate::{ipv4, udp};

use super::Crc32;

/// Solves for the Identification of IPv4 RoCEv2 packets whose transport part (BTH up to, not
/// including, the ICRC) has a given length. Building one costs a few microseconds; keep one per
/// packet length seen (a device sees few: its MTU-sized packets, ACKs, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentSolver {
    transport_len: usize,
    /// Reduced basis: (vector, which Identification bits XOR to it), by pivot bit.
    basis: [(u32, u16); 16],
}

/// Bytes of the ICRC input after the Identification field's second byte: the rest of the IPv4
/// header (14 bytes), the UDP header and the transport part.
fn bytes_after_ident(transport_len: usize) -> usize {
    (ipv4::HEADER_LEN - 6) + udp::HEADER_LEN + transport_len
}

/// The raw CRC register after `n` zero bytes, from register `reg`.
fn advance_zeros(reg: u32, n: usize) -> u32 {
    const ZEROS: [u8; 4096] = [0; 4096];
    // Crc32 keeps zlib values: the raw register is its complement.
    let mut c = Crc32::new(!reg);
    let mut left = n;
    while left > 0 {
        let k = left.min(ZEROS.len());
        c.update(&ZEROS[..k]);
        left -= k;
    }
    !c.finalize()
}

impl IdentSolver {
    /// A solver for transport parts of `transport_len` bytes.
    pub fn new(transport_len: usize) -> IdentSolver {
        let after = bytes_after_ident(transport_len);
        // Column i: what Identification bit i adds to the raw CRC. The field is big-endian: bit
        // 8..15 in its first byte, 0..7 in its second; the reflected CRC takes each byte's bit 0
        // first.
        let mut cols = [0u32; 16];
        for (i, col) in cols.iter_mut().enumerate() {
            let (byte_value, trailing) = if i >= 8 {
                (1u8 << (i - 8), after + 1)
            } else {
                (1u8 << i, after)
            };
            let reg = !super::soft::crc32(!0, &[byte_value]);
            *col = advance_zeros(reg, trailing);
        }
        // Gaussian elimination into a basis with distinct pivots.
        let mut basis = [(0u32, 0u16); 16];
        let mut n = 0;
        for (i, &c) in cols.iter().enumerate() {
            let (mut v, mut combo) = (c, 1u16 << i);
            for &(b, bc) in &basis[..n] {
                if v & pivot(b) != 0 {
                    v ^= b;
                    combo ^= bc;
                }
            }
            if v != 0 {
                // Keep the basis reduced: clear the new pivot from the others.
                let p = pivot(v);
                for e in &mut basis[..n] {
                    if e.0 & p != 0 {
                        e.0 ^= v;
                        e.1 ^= combo;
                    }
                }
                basis[n] = (v, combo);
                n += 1;
            }
        }
        // 16 consecutive powers of x are independent modulo a degree-32 polynomial with a
        // constant term, so the rank is always 16.
        debug_assert_eq!(n, 16);
        IdentSolver {
            transport_len,
            basis,
        }
    }

    /// The transport length this solver is for.
    pub fn transport_len(&self) -> usize {
        self.transport_len
    }

    /// The Identification bits whose CRC contribution is `syndrome`, if any.
    pub fn solve_syndrome(&self, mut syndrome: u32) -> Option<u16> {
        let mut x = 0u16;
        for &(v, combo) in &self.basis {
            if v != 0 && syndrome & pivot(v) != 0 {
                syndrome ^= v;
                x ^= combo;
            }
        }
        (syndrome == 0).then_some(x)
    }

    /// The Identification that makes `icrc` the ICRC of a packet with header `ip` (its `ident`
    /// is ignored), UDP header `udp` and transport part `transport`; `None` when no value does
    /// (the packet is corrupt) or `transport` is not this solver's length.
    pub fn solve(
        &self,
        ip: &ipv4::Repr,
        udp: &udp::Repr,
        transport: &[u8],
        icrc: u32,
    ) -> Option<u16> {
        if transport.len() != self.transport_len {
            return None;
        }
        let f0 = ident0_icrc(ip, udp, transport).ok()?;
        self.solve_syndrome(f0 ^ icrc)
    }
}

fn ident0_icrc(ip: &ipv4::Repr, udp: &udp::Repr, transport: &[u8]) -> Result<u32> {
    IpRepr::V4(ipv4::Repr { ident: 0, ..*ip }).icrc(udp, transport)
}

/// The lowest set bit of `v`.
fn pivot(v: u32) -> u32 {
    v & v.wrapping_neg()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_single_ident_bit_is_recovered_for_several_lengths() {
        for len in [12usize, 16, 28, 300, 1036, 4108] {
            let s = IdentSolver::new(len);
            let transport: [u8; 5000] = core::array::from_fn(|i| (i * 13) as u8);
            let transport = &transport[..len];
            let ip = ipv4::Repr {
                src: [10, 0, 0, 1].into(),
                dst: [10, 0, 0, 2].into(),
                tos: 0,
                ident: 0,
                dont_frag: true,
                ttl: 64,
            };
            let u = udp::Repr {
                src_port: 1234,
                dst_port: udp::ROCE_PORT,
                checksum: false,
            };
            for ident in (0..16)
                .map(|b| 1u16 << b)
                .chain([0, 0xffff, 0x1234, 0xbeef])
            {
                let real = IpRepr::V4(ipv4::Repr { ident, ..ip })
                    .icrc(&u, transport)
                    .unwrap();
                assert_eq!(s.solve(&ip, &u, transport, real), Some(ident), "len {len}");
            }
            assert_eq!(s.solve(&ip, &u, &transport[..len - 1], 0), None);
        }
    }
}
