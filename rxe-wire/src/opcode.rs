//! BTH opcodes and the one table that decides each packet's layout.
//!
//! The table lists exactly the opcodes Linux rxe handles for RC, UC and UD (`rxe_opcode.c`),
//! plus the newer RC FLUSH and ATOMIC WRITE. Reliable datagram (RD), XRC and CNP opcodes are
//! "unknown" here, as they are to rxe.

use core::fmt;

use bitflags::bitflags;

use crate::{aeth, atmack, atmeth, bth, deth, feth, ieth, immdt, reth};

/// The transport service an opcode belongs to: the top three bits of the opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Reliable connection (0x00-0x1f).
    Rc,
    /// Unreliable connection (0x20-0x3f).
    Uc,
    /// Unreliable datagram (0x60-0x7f).
    Ud,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Rc => "RC",
            Transport::Uc => "UC",
            Transport::Ud => "UD",
        })
    }
}

bitflags! {
    /// Which extension headers follow the BTH. They appear on the wire in the order of the bits.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct HeaderSet: u16 {
        /// Datagram ETH: Q_Key and source QP (UD).
        const DETH = 1 << 0;
        /// Flush ETH: placement type and selectivity (FLUSH).
        const FETH = 1 << 1;
        /// RDMA ETH: virtual address, rkey, DMA length.
        const RETH = 1 << 2;
        /// ACK ETH: syndrome and MSN.
        const AETH = 1 << 3;
        /// Atomic ETH: address, rkey, swap/add and compare operands.
        const ATOMIC_ETH = 1 << 4;
        /// Atomic ACK ETH: original remote value.
        const ATOMIC_ACK_ETH = 1 << 5;
        /// Immediate data.
        const IMMDT = 1 << 6;
        /// Invalidate ETH: rkey to invalidate.
        const IETH = 1 << 7;
    }
}

/// Lengths of the headers, in wire order (the order of the `HeaderSet` bits).
const HEADER_LENS: [usize; 8] = [
    deth::HEADER_LEN,
    feth::HEADER_LEN,
    reth::HEADER_LEN,
    aeth::HEADER_LEN,
    atmeth::HEADER_LEN,
    atmack::HEADER_LEN,
    immdt::HEADER_LEN,
    ieth::HEADER_LEN,
];

/// `byte_len` of every set of the eight headers, computed at compile time.
static SET_LENS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut set = 0;
    while set < 256 {
        let mut n = 0;
        let mut bit = 0;
        while bit < 8 {
            if set & (1 << bit) != 0 {
                n += HEADER_LENS[bit];
            }
            bit += 1;
        }
        t[set] = n as u8;
        set += 1;
    }
    t
};

impl HeaderSet {
    /// Total length in bytes of the extension headers in the set.
    #[inline]
    pub const fn byte_len(self) -> usize {
        SET_LENS[(self.bits() & 0xff) as usize] as usize
    }

    /// Offset of `header` from the end of the BTH when the headers of `self` follow it: the
    /// length of the headers of the set that come before it on the wire.
    #[inline]
    pub const fn offset_of(self, header: HeaderSet) -> usize {
        let before = header.bits().wrapping_sub(1) & !header.bits();
        HeaderSet::from_bits_retain(self.bits() & before).byte_len()
    }
}

/// Where a packet sits in its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Position {
    /// First packet of a multi-packet message.
    First,
    /// Middle packet.
    Middle,
    /// Last packet of a multi-packet message.
    Last,
    /// The only packet of the message.
    Only,
}

/// What the packet carries after its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadRule {
    /// No payload (ACK, READ request, atomics, FLUSH).
    None,
    /// Any length up to the path MTU.
    Any,
    /// Exactly this many bytes (ATOMIC WRITE carries 8).
    Exactly(u16),
}

/// The operation family of an opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// SEND (with or without immediate or invalidate).
    Send,
    /// RDMA WRITE (with or without immediate).
    Write,
    /// RDMA READ request.
    ReadRequest,
    /// RDMA READ response.
    ReadResponse,
    /// ACKNOWLEDGE.
    Ack,
    /// ATOMIC ACKNOWLEDGE.
    AtomicAck,
    /// COMPARE & SWAP.
    CompareSwap,
    /// FETCH & ADD.
    FetchAdd,
    /// FLUSH.
    Flush,
    /// ATOMIC WRITE.
    AtomicWrite,
}

/// Everything the table knows about one opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpcodeInfo {
    /// IBTA name without the transport prefix, e.g. `SEND_LAST_WITH_IMMEDIATE`.
    pub name: &'static str,
    /// Transport service.
    pub transport: Transport,
    /// Operation family.
    pub operation: Operation,
    /// Extension headers that follow the BTH.
    pub headers: HeaderSet,
    /// Position in the message.
    pub position: Position,
    /// Payload allowed after the headers.
    pub payload: PayloadRule,
    /// Whether a requester sends it (as opposed to a responder).
    pub is_request: bool,
}

impl OpcodeInfo {
    /// Length of BTH plus extension headers.
    pub const fn header_len(&self) -> usize {
        bth::HEADER_LEN + self.headers.byte_len()
    }
    /// Whether the opcode starts a message (FIRST or ONLY).
    pub const fn is_start(&self) -> bool {
        matches!(self.position, Position::First | Position::Only)
    }
    /// Whether the opcode ends a message (LAST or ONLY).
    pub const fn is_end(&self) -> bool {
        matches!(self.position, Position::Last | Position::Only)
    }
    /// Whether a payload may follow the headers.
    pub const fn has_payload(&self) -> bool {
        !matches!(self.payload, PayloadRule::None)
    }
}

/// A BTH opcode byte. Any `u8` is representable; [`Opcode::info`] says whether rxe handles it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Opcode(pub u8);

macro_rules! opcodes {
    ($( $(#[$m:meta])* $konst:ident = $val:literal => $name:literal, $tr:ident, $op:ident,
        [$($h:ident)|*], $pos:ident, $pl:expr, $req:literal; )*) => {
        impl Opcode {
            $( $(#[$m])* pub const $konst: Opcode = Opcode($val); )*
        }

        /// Every opcode in the table, in numeric order.
        pub const ALL: &[Opcode] = &[$(Opcode::$konst),*];

        static TABLE: [Option<OpcodeInfo>; 256] = {
            let mut t = [None; 256];
            $( t[$val] = Some(OpcodeInfo {
                name: $name,
                transport: Transport::$tr,
                operation: Operation::$op,
                headers: HeaderSet::from_bits_retain(0 $(| HeaderSet::$h.bits())*),
                position: Position::$pos,
                payload: $pl,
                is_request: $req,
            }); )*
            t
        };

        const fn lookup(op: u8) -> Option<&'static OpcodeInfo> {
            TABLE[op as usize].as_ref()
        }
    };
}

use PayloadRule::{Any, Exactly, None as NoPayload};

opcodes! {
    /// RC SEND First.
    RC_SEND_FIRST = 0x00 => "SEND_FIRST", Rc, Send, [], First, Any, true;
    /// RC SEND Middle.
    RC_SEND_MIDDLE = 0x01 => "SEND_MIDDLE", Rc, Send, [], Middle, Any, true;
    /// RC SEND Last.
    RC_SEND_LAST = 0x02 => "SEND_LAST", Rc, Send, [], Last, Any, true;
    /// RC SEND Last with Immediate.
    RC_SEND_LAST_WITH_IMMEDIATE = 0x03 => "SEND_LAST_WITH_IMMEDIATE", Rc, Send, [IMMDT], Last, Any, true;
    /// RC SEND Only.
    RC_SEND_ONLY = 0x04 => "SEND_ONLY", Rc, Send, [], Only, Any, true;
    /// RC SEND Only with Immediate.
    RC_SEND_ONLY_WITH_IMMEDIATE = 0x05 => "SEND_ONLY_WITH_IMMEDIATE", Rc, Send, [IMMDT], Only, Any, true;
    /// RC RDMA WRITE First.
    RC_RDMA_WRITE_FIRST = 0x06 => "RDMA_WRITE_FIRST", Rc, Write, [RETH], First, Any, true;
    /// RC RDMA WRITE Middle.
    RC_RDMA_WRITE_MIDDLE = 0x07 => "RDMA_WRITE_MIDDLE", Rc, Write, [], Middle, Any, true;
    /// RC RDMA WRITE Last.
    RC_RDMA_WRITE_LAST = 0x08 => "RDMA_WRITE_LAST", Rc, Write, [], Last, Any, true;
    /// RC RDMA WRITE Last with Immediate.
    RC_RDMA_WRITE_LAST_WITH_IMMEDIATE = 0x09 => "RDMA_WRITE_LAST_WITH_IMMEDIATE", Rc, Write, [IMMDT], Last, Any, true;
    /// RC RDMA WRITE Only.
    RC_RDMA_WRITE_ONLY = 0x0a => "RDMA_WRITE_ONLY", Rc, Write, [RETH], Only, Any, true;
    /// RC RDMA WRITE Only with Immediate.
    RC_RDMA_WRITE_ONLY_WITH_IMMEDIATE = 0x0b => "RDMA_WRITE_ONLY_WITH_IMMEDIATE", Rc, Write, [RETH | IMMDT], Only, Any, true;
    /// RC RDMA READ Request.
    RC_RDMA_READ_REQUEST = 0x0c => "RDMA_READ_REQUEST", Rc, ReadRequest, [RETH], Only, NoPayload, true;
    /// RC RDMA READ Response First.
    RC_RDMA_READ_RESPONSE_FIRST = 0x0d => "RDMA_READ_RESPONSE_FIRST", Rc, ReadResponse, [AETH], First, Any, false;
    /// RC RDMA READ Response Middle.
    RC_RDMA_READ_RESPONSE_MIDDLE = 0x0e => "RDMA_READ_RESPONSE_MIDDLE", Rc, ReadResponse, [], Middle, Any, false;
    /// RC RDMA READ Response Last.
    RC_RDMA_READ_RESPONSE_LAST = 0x0f => "RDMA_READ_RESPONSE_LAST", Rc, ReadResponse, [AETH], Last, Any, false;
    /// RC RDMA READ Response Only (also the ACK of FLUSH and ATOMIC WRITE, with no payload).
    RC_RDMA_READ_RESPONSE_ONLY = 0x10 => "RDMA_READ_RESPONSE_ONLY", Rc, ReadResponse, [AETH], Only, Any, false;
    /// RC ACKNOWLEDGE.
    RC_ACKNOWLEDGE = 0x11 => "ACKNOWLEDGE", Rc, Ack, [AETH], Only, NoPayload, false;
    /// RC ATOMIC ACKNOWLEDGE.
    RC_ATOMIC_ACKNOWLEDGE = 0x12 => "ATOMIC_ACKNOWLEDGE", Rc, AtomicAck, [AETH | ATOMIC_ACK_ETH], Only, NoPayload, false;
    /// RC COMPARE & SWAP.
    RC_COMPARE_SWAP = 0x13 => "COMPARE_SWAP", Rc, CompareSwap, [ATOMIC_ETH], Only, NoPayload, true;
    /// RC FETCH & ADD.
    RC_FETCH_ADD = 0x14 => "FETCH_ADD", Rc, FetchAdd, [ATOMIC_ETH], Only, NoPayload, true;
    /// RC SEND Last with Invalidate.
    RC_SEND_LAST_WITH_INVALIDATE = 0x16 => "SEND_LAST_WITH_INVALIDATE", Rc, Send, [IETH], Last, Any, true;
    /// RC SEND Only with Invalidate.
    RC_SEND_ONLY_WITH_INVALIDATE = 0x17 => "SEND_ONLY_WITH_INVALIDATE", Rc, Send, [IETH], Only, Any, true;
    /// RC FLUSH (FETH, then RETH).
    RC_FLUSH = 0x1c => "FLUSH", Rc, Flush, [FETH | RETH], Only, NoPayload, true;
    /// RC ATOMIC WRITE (RETH and an 8-byte payload).
    RC_ATOMIC_WRITE = 0x1d => "ATOMIC_WRITE", Rc, AtomicWrite, [RETH], Only, Exactly(8), true;
    /// UC SEND First.
    UC_SEND_FIRST = 0x20 => "SEND_FIRST", Uc, Send, [], First, Any, true;
    /// UC SEND Middle.
    UC_SEND_MIDDLE = 0x21 => "SEND_MIDDLE", Uc, Send, [], Middle, Any, true;
    /// UC SEND Last.
    UC_SEND_LAST = 0x22 => "SEND_LAST", Uc, Send, [], Last, Any, true;
    /// UC SEND Last with Immediate.
    UC_SEND_LAST_WITH_IMMEDIATE = 0x23 => "SEND_LAST_WITH_IMMEDIATE", Uc, Send, [IMMDT], Last, Any, true;
    /// UC SEND Only.
    UC_SEND_ONLY = 0x24 => "SEND_ONLY", Uc, Send, [], Only, Any, true;
    /// UC SEND Only with Immediate.
    UC_SEND_ONLY_WITH_IMMEDIATE = 0x25 => "SEND_ONLY_WITH_IMMEDIATE", Uc, Send, [IMMDT], Only, Any, true;
    /// UC RDMA WRITE First.
    UC_RDMA_WRITE_FIRST = 0x26 => "RDMA_WRITE_FIRST", Uc, Write, [RETH], First, Any, true;
    /// UC RDMA WRITE Middle.
    UC_RDMA_WRITE_MIDDLE = 0x27 => "RDMA_WRITE_MIDDLE", Uc, Write, [], Middle, Any, true;
    /// UC RDMA WRITE Last.
    UC_RDMA_WRITE_LAST = 0x28 => "RDMA_WRITE_LAST", Uc, Write, [], Last, Any, true;
    /// UC RDMA WRITE Last with Immediate.
    UC_RDMA_WRITE_LAST_WITH_IMMEDIATE = 0x29 => "RDMA_WRITE_LAST_WITH_IMMEDIATE", Uc, Write, [IMMDT], Last, Any, true;
    /// UC RDMA WRITE Only.
    UC_RDMA_WRITE_ONLY = 0x2a => "RDMA_WRITE_ONLY", Uc, Write, [RETH], Only, Any, true;
    /// UC RDMA WRITE Only with Immediate.
    UC_RDMA_WRITE_ONLY_WITH_IMMEDIATE = 0x2b => "RDMA_WRITE_ONLY_WITH_IMMEDIATE", Uc, Write, [RETH | IMMDT], Only, Any, true;
    /// UD SEND Only.
    UD_SEND_ONLY = 0x64 => "SEND_ONLY", Ud, Send, [DETH], Only, Any, true;
    /// UD SEND Only with Immediate.
    UD_SEND_ONLY_WITH_IMMEDIATE = 0x65 => "SEND_ONLY_WITH_IMMEDIATE", Ud, Send, [DETH | IMMDT], Only, Any, true;
}

impl Opcode {
    /// Returns the table entry, or `None` for an opcode rxe does not handle.
    #[inline]
    pub const fn info(self) -> Option<&'static OpcodeInfo> {
        lookup(self.0)
    }
    /// Returns the IBTA name without the transport prefix, or `"UNKNOWN"`.
    pub const fn name(self) -> &'static str {
        match lookup(self.0) {
            Some(i) => i.name,
            None => "UNKNOWN",
        }
    }
}

impl fmt::Display for Opcode {
    /// Prints `RC_SEND_ONLY`, `UD_SEND_ONLY`, or `0x81` for an opcode outside the table.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.info() {
            Some(i) => write!(f, "{}_{}", i.transport, i.name),
            None => write!(f, "{:#04x}", self.0),
        }
    }
}

impl fmt::Debug for Opcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Opcode({self})")
    }
}

impl From<u8> for Opcode {
    fn from(v: u8) -> Opcode {
        Opcode(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lengths_match_linux_rxe() {
        // Totals from rxe_opcode.c's `length` column.
        let cases: &[(Opcode, usize)] = &[
            (Opcode::RC_SEND_FIRST, 12),
            (Opcode::RC_SEND_LAST_WITH_IMMEDIATE, 16),
            (Opcode::RC_RDMA_WRITE_FIRST, 28),
            (Opcode::RC_RDMA_WRITE_ONLY_WITH_IMMEDIATE, 32),
            (Opcode::RC_RDMA_READ_REQUEST, 28),
            (Opcode::RC_RDMA_READ_RESPONSE_FIRST, 16),
            (Opcode::RC_RDMA_READ_RESPONSE_MIDDLE, 12),
            (Opcode::RC_ACKNOWLEDGE, 16),
            (Opcode::RC_ATOMIC_ACKNOWLEDGE, 24),
            (Opcode::RC_COMPARE_SWAP, 40),
            (Opcode::RC_FETCH_ADD, 40),
            (Opcode::RC_SEND_ONLY_WITH_INVALIDATE, 16),
            (Opcode::RC_FLUSH, 32),
            (Opcode::RC_ATOMIC_WRITE, 28),
            (Opcode::UC_RDMA_WRITE_ONLY_WITH_IMMEDIATE, 32),
            (Opcode::UD_SEND_ONLY, 20),
            (Opcode::UD_SEND_ONLY_WITH_IMMEDIATE, 24),
        ];
        for &(op, len) in cases {
            assert_eq!(op.info().map(|i| i.header_len()), Some(len), "{op}");
        }
    }

    #[test]
    fn header_offsets_follow_wire_order() {
        let flush = HeaderSet::FETH | HeaderSet::RETH;
        assert_eq!(flush.byte_len(), 20);
        assert_eq!(flush.offset_of(HeaderSet::FETH), 0);
        assert_eq!(flush.offset_of(HeaderSet::RETH), 4);
        let ack = HeaderSet::AETH | HeaderSet::ATOMIC_ACK_ETH;
        assert_eq!(ack.offset_of(HeaderSet::ATOMIC_ACK_ETH), 4);
        let ud = HeaderSet::DETH | HeaderSet::IMMDT;
        assert_eq!(ud.offset_of(HeaderSet::IMMDT), 8);
        let wr = HeaderSet::RETH | HeaderSet::IMMDT;
        assert_eq!(wr.offset_of(HeaderSet::IMMDT), 16);
        assert_eq!(HeaderSet::all().byte_len(), 8 + 4 + 16 + 4 + 28 + 8 + 4 + 4);
    }

    #[test]
    fn transport_is_the_top_three_bits() {
        for &op in ALL {
            let info = op.info().expect("table entry");
            let expected = match op.0 >> 5 {
                0 => Transport::Rc,
                1 => Transport::Uc,
                3 => Transport::Ud,
                _ => unreachable!(),
            };
            assert_eq!(info.transport, expected, "{op}");
        }
    }

    #[test]
    fn rd_xrc_cnp_and_reserved_opcodes_are_unknown() {
        for op in [
            0x15u8, 0x18, 0x1e, 0x2c, 0x40, 0x4c, 0x63, 0x66, 0x81, 0xa0, 0xc0, 0xff,
        ] {
            assert!(Opcode(op).info().is_none(), "{op:#x}");
        }
        assert_eq!(ALL.len(), 25 + 12 + 2);
    }

    #[test]
    fn display_uses_transport_prefix() {
        assert_eq!(format!("{}", Opcode::UD_SEND_ONLY), "UD_SEND_ONLY");
        assert_eq!(format!("{}", Opcode(0x81)), "0x81");
    }
}
