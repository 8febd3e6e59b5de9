//! # rxe-wire
//!
//! RoCEv2 wire formats for Soft-RoCE, bit-exact with the Linux kernel's `rdma_rxe`: the Base
//! Transport Header and every extension header, the opcode table, the invariant CRC, and the
//! Ethernet / IPv4 / IPv6 / UDP framing around them. `no_std`, no allocation; the only `unsafe` is the x86-64 fused copy-and-CRC kernel (`icrc/x86_64.rs`).
//!
//! ## Shape
//!
//! Each header has a module in the style of smoltcp's `wire`: a `Packet<T: AsRef<[u8]>>` view
//! with getters (and setters when `T: AsMut<[u8]>`) over a byte buffer, and a `Repr`, the parsed
//! high-level form with `parse` and `emit`. On top of them:
//!
//! - [`RoceRepr`]: the transport packet (BTH, extension headers, payload; pad and ICRC implied).
//! - [`RocePacket`] and [`RoceV2Packet`]: checked zero-copy views for the receive fast path
//!   (every check of the `Repr`s, no copying until a field is read).
//! - [`RoceV2Repr`]: IP + UDP + transport packet, with ICRC and checksums.
//! - [`PacketTemplate`]: a connection's IP and UDP headers rendered once, for the send fast
//!   path (the same bytes as `RoceV2Repr`, less work per packet).
//! - [`FrameRepr`]: the same inside an Ethernet frame.
//! - [`Opcode`] and its [`OpcodeInfo`] table: which headers follow, payload rule, position.
//!
//! ## Untrusted input
//!
//! Every `parse` and every `Packet::new_checked` validates lengths first, so no accessor can
//! index out of bounds afterwards, and returns a typed [`Error`] for anything wrong: truncation,
//! bad versions, unknown opcodes, pad larger than payload, length fields that disagree, a bad
//! ICRC. When parsing untrusted input, it is *necessary* to use `new_checked` or a `Repr::parse`;
//! `Packet::new_unchecked` accessors may panic on a short buffer. The parsers are fuzzed
//! (`fuzz/`) and property-tested never to panic on any input.
//!
//! ## ICRC speed
//!
//! With the default `fast-crc` feature the ICRC goes through `crc32fast` (PCLMULQDQ): about
//! 0.1 µs per 4 KiB packet. Without it, a slice-by-8 table CRC in pure `core` (about 20 times
//! slower); the two are tested to agree. On x86-64 three kernels of our own sit on the hot
//! path, each tested against the table CRC:
//!
//! - payload copy and CRC in one pass (AVX-512 + VPCLMULQDQ), for [`PayloadSink`] and
//!   [`PayloadSource`]: copying into or out of a packet costs about what the CRC alone does;
//! - the masked header block (IP, UDP, BTH, extension headers) loaded straight from the packet
//!   in 16-byte lanes, masked in registers and folded with PCLMULQDQ: no copy into a scratch
//!   block, no table lookups;
//! - a Barrett reduction that ends both.
//!
//! A connected QP's IP and UDP headers can be rendered once ([`PacketTemplate`]), so a packet
//! costs a copy of them and a few patched fields.
//!
//! ## Example
//!
//! ```
//! use core::net::Ipv4Addr;
//! use rxe_wire::{bth, ipv4, udp, ExtHeaders, IpRepr, Opcode, PKey, Psn, Qpn, RoceRepr, RoceV2Repr};
//!
//! let bth = bth::Repr {
//!     opcode: Opcode::RC_SEND_ONLY, solicited: false, mig_req: false, pad_count: 0,
//!     pkey: PKey::DEFAULT, fecn: false, becn: false, dest_qp: Qpn::new(0x11),
//!     ack_req: true, psn: Psn::new(0x1234),
//! };
//! let packet = RoceV2Repr {
//!     ip: IpRepr::V4(ipv4::Repr {
//!         src: Ipv4Addr::new(10, 0, 0, 1), dst: Ipv4Addr::new(10, 0, 0, 2),
//!         tos: 0, ident: 1, dont_frag: true, ttl: 64,
//!     }),
//!     udp: udp::Repr { src_port: 0xc000, dst_port: udp::ROCE_PORT, checksum: false },
//!     roce: RoceRepr::new(bth, ExtHeaders::default(), b"hello"),
//! };
//! let mut buf = [0u8; 128];
//! let n = packet.emit(&mut buf)?;
//! // 20 IP + 8 UDP + 12 BTH + 5 payload + 3 pad + 4 ICRC
//! assert_eq!(n, 52);
//! let parsed = RoceV2Repr::parse(&buf[..n])?; // verifies checksum and ICRC
//! assert_eq!(parsed, packet);
//! # Ok::<(), rxe_wire::Error>(())
//! ```
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(unsafe_code)]
#![warn(
    missing_docs,
    clippy::std_instead_of_core,
    clippy::alloc_instead_of_core
)]

pub mod aeth;
pub mod atmack;
pub mod atmeth;
pub mod bth;
pub mod checksum;
pub mod cm;
pub mod cma;
pub mod deth;
mod error;
pub mod ethernet;
pub mod feth;
pub mod icrc;
pub mod ieth;
pub mod immdt;
pub mod ipv4;
pub mod ipv6;
pub mod mad;
pub mod opcode;
mod packet;
mod payload;
pub mod reth;
mod roce;
mod template;
mod types;
pub mod udp;

pub use error::{BadMad, Error, NotRoce, Result, Unsupported};
pub use ethernet::{IpVersion, MacAddr};
pub use immdt::ImmDt;
pub use opcode::{HeaderSet, Opcode, OpcodeInfo, Operation, PayloadRule, Position, Transport};
pub use packet::{Checks, FrameRepr, IpRepr, RoceV2Packet, RoceV2Repr};
pub use payload::{PayloadSink, PayloadSource};
pub use roce::{pad_for, ExtHeaders, RocePacket, RoceRepr};
pub use template::PacketTemplate;
pub use types::{Msn, PKey, Psn, QKey, Qpn, Rkey};

/// Short aliases in smoltcp's manner.
pub use aeth::{Repr as AethRepr, Syndrome};
pub use bth::{Packet as BthPacket, Repr as BthRepr};
pub use deth::Repr as DethRepr;
pub use reth::Repr as RethRepr;

/// A byte range of a header field.
pub(crate) type Field = core::ops::Range<usize>;

#[inline]
pub(crate) fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}
#[inline]
pub(crate) fn be24(b: &[u8]) -> u32 {
    u32::from_be_bytes([0, b[0], b[1], b[2]])
}
#[inline]
pub(crate) fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
#[inline]
pub(crate) fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}
#[inline]
pub(crate) fn put24(b: &mut [u8], v: u32) {
    let x = v.to_be_bytes();
    b[..3].copy_from_slice(&x[1..]);
}
