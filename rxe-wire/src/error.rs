//! The one error type of the crate: every way a buffer can be wrong.

use core::fmt;

use crate::opcode::{Opcode, Transport};

/// Why a buffer is not a packet this crate can parse, or why a `Repr` cannot be emitted.
///
/// `Copy`, no allocation, and a `Display` that writes without allocating: usable in firmware.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer ends before the headers it announces.
    Truncated {
        /// Bytes the headers need.
        needed: usize,
        /// Bytes the buffer has.
        got: usize,
    },
    /// The frame is valid but is not RoCEv2 (other EtherType, IP protocol or UDP port).
    NotRoce(NotRoce),
    /// An IP header with a version other than the one expected (4 or 6).
    BadIpVersion(u8),
    /// The IPv4 header checksum does not match the header.
    BadIpChecksum,
    /// The UDP checksum is non-zero and does not match the datagram.
    BadUdpChecksum,
    /// Length fields disagree with each other or with the buffer (IP total length, UDP length).
    BadLength,
    /// A valid encoding that RoCEv2 never uses and this crate does not handle.
    Unsupported(Unsupported),
    /// BTH transport header version (TVer) is not 0.
    BadTransportVersion(u8),
    /// An opcode that Linux rxe does not handle (reserved, RD, XRC, CNP, manufacturer specific).
    UnknownOpcode(u8),
    /// The opcode belongs to another transport than the one the QP speaks.
    WrongTransport {
        /// The opcode received.
        opcode: Opcode,
        /// The transport of the QP.
        expected: Transport,
    },
    /// A `Repr`'s extension headers do not match what its opcode requires.
    BadOpcodeLayout(Opcode),
    /// The payload length is not allowed for the opcode (payload on an ACK, an 8-byte rule broken).
    BadPayloadLen {
        /// The opcode.
        opcode: Opcode,
        /// Payload length after removing pad and ICRC.
        len: usize,
    },
    /// The BTH pad count is larger than the payload, or non-zero on an opcode without payload.
    BadPad {
        /// BTH PadCnt.
        pad: u8,
        /// Bytes between the headers and the ICRC.
        available: usize,
    },
    /// The invariant CRC does not match the packet.
    IcrcMismatch {
        /// ICRC computed over the packet.
        computed: u32,
        /// ICRC carried by the packet.
        received: u32,
    },
    /// A field value does not fit its wire width (e.g. a QPN above 2^24 - 1).
    FieldOverflow,
    /// The output buffer is too small; nothing was written.
    BufferTooSmall {
        /// Bytes the emitted packet needs.
        required: usize,
    },
    /// A MAD that is not one this crate handles (see [`BadMad`]).
    BadMad(BadMad),
    /// An rdma_cm header (in REQ private data) with an unknown version or IP version.
    BadCmaHeader {
        /// `cma_version` (0 expected).
        version: u8,
        /// The IP version nibble (4 or 6 expected).
        ip_version: u8,
    },
    /// Private data longer than the message carries.
    PrivateDataTooLong {
        /// Bytes the message has room for.
        max: usize,
        /// Bytes given.
        got: usize,
    },
}

/// What is wrong with a MAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BadMad {
    /// Base version other than 1.
    BaseVersion(u8),
    /// Management class other than the one expected (CM: 0x07).
    Class(u8),
    /// Class version other than the one expected (CM: 2).
    ClassVersion(u8),
    /// A method the class does not use (CM: only Send).
    Method(u8),
    /// An attribute ID the class does not define (or this crate does not handle: LAP, APR,
    /// SIDR, ClassPortInfo).
    Attribute(u16),
}

/// What made a frame "not RoCEv2".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotRoce {
    /// Ethernet type that is neither IPv4 nor IPv6 (after an optional 802.1Q tag).
    EtherType(u16),
    /// IP protocol / IPv6 next header other than UDP.
    IpProtocol(u8),
    /// UDP destination port other than the RoCEv2 port.
    UdpPort(u16),
}

/// Valid encodings that RoCEv2 senders never produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unsupported {
    /// IPv4 header with options (IHL > 5).
    Ipv4Options,
    /// IPv4 fragment (MF set or non-zero fragment offset).
    Ipv4Fragment,
    /// More than one VLAN tag.
    StackedVlan,
    /// Link type of a capture file that is not Ethernet, raw IP or Linux cooked.
    LinkType(u32),
    /// A UDP checksum asked of a [`PacketTemplate`](crate::PacketTemplate): it covers the
    /// payload, so it cannot be pre-rendered.
    TemplateUdpChecksum,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Truncated { needed, got } => {
                write!(
                    f,
                    "truncated: headers need {needed} bytes, buffer has {got}"
                )
            }
            Error::NotRoce(n) => write!(f, "not RoCEv2: {n}"),
            Error::BadIpVersion(v) => write!(f, "bad IP version {v}"),
            Error::BadIpChecksum => f.write_str("bad IPv4 header checksum"),
            Error::BadUdpChecksum => f.write_str("bad UDP checksum"),
            Error::BadLength => f.write_str("length fields disagree with the buffer"),
            Error::Unsupported(u) => write!(f, "unsupported: {u}"),
            Error::BadTransportVersion(v) => write!(f, "BTH transport version {v}, expected 0"),
            Error::UnknownOpcode(op) => write!(f, "unknown opcode 0x{op:02x}"),
            Error::WrongTransport { opcode, expected } => {
                write!(f, "opcode {opcode} is not valid on a {expected} QP")
            }
            Error::BadOpcodeLayout(op) => {
                write!(f, "extension headers do not match opcode {op}")
            }
            Error::BadPayloadLen { opcode, len } => {
                write!(f, "payload of {len} bytes not allowed for {opcode}")
            }
            Error::BadPad { pad, available } => {
                write!(f, "pad count {pad} with {available} payload bytes")
            }
            Error::IcrcMismatch { computed, received } => {
                write!(
                    f,
                    "ICRC mismatch: computed {computed:#010x}, received {received:#010x}"
                )
            }
            Error::FieldOverflow => f.write_str("field value does not fit its wire width"),
            Error::BufferTooSmall { required } => {
                write!(f, "buffer too small: {required} bytes required")
            }
            Error::BadMad(b) => write!(f, "bad MAD: {b}"),
            Error::BadCmaHeader {
                version,
                ip_version,
            } => write!(
                f,
                "rdma_cm header version {version}, IP version {ip_version}: expected 0 and 4 or 6"
            ),
            Error::PrivateDataTooLong { max, got } => {
                write!(f, "private data of {got} bytes, at most {max} fit")
            }
        }
    }
}

impl fmt::Display for NotRoce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            NotRoce::EtherType(t) => write!(f, "ethertype 0x{t:04x}"),
            NotRoce::IpProtocol(p) => write!(f, "IP protocol {p}"),
            NotRoce::UdpPort(p) => write!(f, "UDP destination port {p}"),
        }
    }
}

impl fmt::Display for BadMad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BadMad::BaseVersion(v) => write!(f, "base version {v}, expected 1"),
            BadMad::Class(c) => write!(f, "management class 0x{c:02x}"),
            BadMad::ClassVersion(v) => write!(f, "class version {v}"),
            BadMad::Method(m) => write!(f, "method 0x{m:02x}"),
            BadMad::Attribute(a) => write!(f, "attribute 0x{a:04x}"),
        }
    }
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Unsupported::Ipv4Options => f.write_str("IPv4 options"),
            Unsupported::Ipv4Fragment => f.write_str("IPv4 fragment"),
            Unsupported::StackedVlan => f.write_str("stacked VLAN tags"),
            Unsupported::LinkType(l) => write!(f, "capture link type {l}"),
            Unsupported::TemplateUdpChecksum => f.write_str("UDP checksum in a packet template"),
        }
    }
}

impl Error {
    /// Whether the error means "this frame is not RoCEv2" (skip it) rather than "a broken one".
    pub const fn is_not_roce(&self) -> bool {
        matches!(self, Error::NotRoce(_))
    }
}

impl From<NotRoce> for Error {
    fn from(n: NotRoce) -> Error {
        Error::NotRoce(n)
    }
}

impl core::error::Error for Error {}

/// The result type of this crate.
pub type Result<T> = core::result::Result<T, Error>;

/// Returns `Truncated` unless `buf` holds at least `needed` bytes.
#[inline]
pub(crate) fn check_len(buf: &[u8], needed: usize) -> Result<()> {
    if buf.len() < needed {
        Err(Error::Truncated {
            needed,
            got: buf.len(),
        })
    } else {
        Ok(())
    }
}
