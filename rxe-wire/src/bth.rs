//! Base Transport Header (IBTA 9.2): the 12 bytes that start every RoCEv2 UDP payload.
//!
//! ```text
//!  0       1       2       3
//! +-------+-------+-------+-------+
//! |opcode |SE M PadCnt TVer| P_Key |
//! +-------+-------+-------+-------+
//! |F B rsv|        DestQP         |
//! +-------+-------+-------+-------+
//! |A  rsv |          PSN          |
//! +-------+-------+-------+-------+
//! ```

use crate::error::{check_len, Error, Result};
use crate::opcode::Opcode;
use crate::types::{PKey, Psn, Qpn};
use crate::{be16, be24, put24};

pub(crate) mod field {
    use crate::Field;
    pub(crate) const OPCODE: usize = 0;
    pub(crate) const FLAGS: usize = 1;
    pub(crate) const PKEY: Field = 2..4;
    /// FECN, BECN and 6 reserved bits: masked to 0xff in the ICRC.
    pub(crate) const FB_RESV: usize = 4;
    pub(crate) const DEST_QP: Field = 5..8;
    pub(crate) const ACK_REQ: usize = 8;
    pub(crate) const PSN: Field = 9..12;
}

/// Length of the BTH.
pub const HEADER_LEN: usize = field::PSN.end;
/// Offset of the byte holding FECN/BECN/reserved, which the ICRC masks.
pub const FB_RESV_OFFSET: usize = field::FB_RESV;

const SE: u8 = 0x80;
const MIG: u8 = 0x40;
const PAD_MASK: u8 = 0x30;
const PAD_SHIFT: u8 = 4;
const TVER_MASK: u8 = 0x0f;
const FECN: u8 = 0x80;
const BECN: u8 = 0x40;
const ACK_REQ: u8 = 0x80;

/// A read/write view of a BTH at the start of a buffer.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking its length; accessors may panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }
    /// Wraps a buffer after [`check_len`](Self::check_len). Use this on untrusted input.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }
    /// Ensures every accessor stays within the buffer.
    pub fn check_len(&self) -> Result<()> {
        check_len(self.buffer.as_ref(), HEADER_LEN)
    }
    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
    /// Returns the opcode.
    pub fn opcode(&self) -> Opcode {
        Opcode(self.buffer.as_ref()[field::OPCODE])
    }
    /// Returns the solicited event bit.
    pub fn solicited(&self) -> bool {
        self.buffer.as_ref()[field::FLAGS] & SE != 0
    }
    /// Returns the migration request bit (rxe always sends 0).
    pub fn mig_req(&self) -> bool {
        self.buffer.as_ref()[field::FLAGS] & MIG != 0
    }
    /// Returns the pad count (0-3 bytes between payload and ICRC).
    pub fn pad_count(&self) -> u8 {
        (self.buffer.as_ref()[field::FLAGS] & PAD_MASK) >> PAD_SHIFT
    }
    /// Returns the transport header version (must be 0).
    pub fn tver(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS] & TVER_MASK
    }
    /// Returns the partition key.
    pub fn pkey(&self) -> PKey {
        PKey(be16(&self.buffer.as_ref()[field::PKEY]))
    }
    /// Returns the forward explicit congestion notification bit.
    pub fn fecn(&self) -> bool {
        self.buffer.as_ref()[field::FB_RESV] & FECN != 0
    }
    /// Returns the backward explicit congestion notification bit.
    pub fn becn(&self) -> bool {
        self.buffer.as_ref()[field::FB_RESV] & BECN != 0
    }
    /// Returns the destination QP number.
    pub fn dest_qp(&self) -> Qpn {
        Qpn::new(be24(&self.buffer.as_ref()[field::DEST_QP]))
    }
    /// Returns the acknowledge request bit.
    pub fn ack_req(&self) -> bool {
        self.buffer.as_ref()[field::ACK_REQ] & ACK_REQ != 0
    }
    /// Returns the packet sequence number.
    pub fn psn(&self) -> Psn {
        Psn::new(be24(&self.buffer.as_ref()[field::PSN]))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the opcode.
    pub fn set_opcode(&mut self, op: Opcode) {
        self.buffer.as_mut()[field::OPCODE] = op.0;
    }
    /// Sets SE, MigReq, PadCnt and TVer in one go.
    pub fn set_flags(&mut self, solicited: bool, mig_req: bool, pad_count: u8, tver: u8) {
        let mut b = (pad_count << PAD_SHIFT) & PAD_MASK | (tver & TVER_MASK);
        if solicited {
            b |= SE;
        }
        if mig_req {
            b |= MIG;
        }
        self.buffer.as_mut()[field::FLAGS] = b;
    }
    /// Sets the partition key.
    pub fn set_pkey(&mut self, pkey: PKey) {
        self.buffer.as_mut()[field::PKEY].copy_from_slice(&pkey.0.to_be_bytes());
    }
    /// Sets FECN and BECN; the reserved bits become 0.
    pub fn set_ecn(&mut self, fecn: bool, becn: bool) {
        self.buffer.as_mut()[field::FB_RESV] =
            if fecn { FECN } else { 0 } | if becn { BECN } else { 0 };
    }
    /// Sets the destination QP number.
    pub fn set_dest_qp(&mut self, qpn: Qpn) {
        put24(&mut self.buffer.as_mut()[field::DEST_QP], qpn.value());
    }
    /// Sets AckReq; the reserved bits become 0.
    pub fn set_ack_req(&mut self, ack_req: bool) {
        self.buffer.as_mut()[field::ACK_REQ] = if ack_req { ACK_REQ } else { 0 };
    }
    /// Sets the packet sequence number.
    pub fn set_psn(&mut self, psn: Psn) {
        put24(&mut self.buffer.as_mut()[field::PSN], psn.value());
    }
}

/// A parsed BTH. Reserved bits are ignored on parse and emitted as zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Opcode.
    pub opcode: Opcode,
    /// Solicited event.
    pub solicited: bool,
    /// Migration request (Linux rxe sends 0).
    pub mig_req: bool,
    /// Pad bytes between payload and ICRC, 0-3.
    pub pad_count: u8,
    /// Partition key.
    pub pkey: PKey,
    /// Forward ECN.
    pub fecn: bool,
    /// Backward ECN.
    pub becn: bool,
    /// Destination QP.
    pub dest_qp: Qpn,
    /// Acknowledge request.
    pub ack_req: bool,
    /// Packet sequence number.
    pub psn: Psn,
}

impl Repr {
    /// Parses a BTH; rejects a transport version other than 0.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        let tver = packet.tver();
        if tver != 0 {
            return Err(Error::BadTransportVersion(tver));
        }
        Ok(Repr {
            opcode: packet.opcode(),
            solicited: packet.solicited(),
            mig_req: packet.mig_req(),
            pad_count: packet.pad_count(),
            pkey: packet.pkey(),
            fecn: packet.fecn(),
            becn: packet.becn(),
            dest_qp: packet.dest_qp(),
            ack_req: packet.ack_req(),
            psn: packet.psn(),
        })
    }

    /// Writes the BTH into `packet` (whose buffer must hold [`HEADER_LEN`] bytes).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_opcode(self.opcode);
        packet.set_flags(self.solicited, self.mig_req, self.pad_count, 0);
        packet.set_pkey(self.pkey);
        packet.set_ecn(self.fecn, self.becn);
        packet.set_dest_qp(self.dest_qp);
        packet.set_ack_req(self.ack_req);
        packet.set_psn(self.psn);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    // RC SEND_ONLY from rc_pingpong_send_only.pcap: SE=0, pad 0, P_Key 0xffff, QP 0x12, AckReq, PSN.
    static PACKET_BYTES: [u8; 12] = [
        0x04, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x12, 0x80, 0xc8, 0x26, 0x3b,
    ];

    /// The BTH of that capture, for other modules' tests to start from.
    pub(crate) fn repr() -> Repr {
        Repr {
            opcode: Opcode::RC_SEND_ONLY,
            solicited: false,
            mig_req: false,
            pad_count: 0,
            pkey: PKey(0xffff),
            fecn: false,
            becn: false,
            dest_qp: Qpn::new(0x12),
            ack_req: true,
            psn: Psn::new(0xc8263b),
        }
    }

    #[test]
    fn deconstructs_a_send_only() {
        let p = Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(p.opcode(), Opcode::RC_SEND_ONLY);
        assert_eq!(p.pkey(), PKey(0xffff));
        assert_eq!(p.dest_qp(), Qpn::new(0x12));
        assert!(p.ack_req());
        assert_eq!(p.psn(), Psn::new(0xc8263b));
    }

    #[test]
    fn parses_and_emits_the_same_bytes() {
        let p = Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(Repr::parse(&p).unwrap(), repr());
        let mut buf = [0xa5u8; 12];
        repr().emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, PACKET_BYTES);
    }

    #[test]
    fn flags_round_trip() {
        let r = Repr {
            solicited: true,
            mig_req: true,
            pad_count: 3,
            fecn: true,
            becn: true,
            ..repr()
        };
        let mut buf = [0xa5u8; 12];
        r.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf[1], 0xf0);
        assert_eq!(buf[4], 0xc0);
        assert_eq!(Repr::parse(&Packet::new_unchecked(&buf[..])).unwrap(), r);
    }

    #[test]
    fn rejects_truncated_input() {
        assert_eq!(
            Packet::new_checked(&PACKET_BYTES[..11]).unwrap_err(),
            Error::Truncated {
                needed: 12,
                got: 11
            }
        );
    }

    #[test]
    fn rejects_nonzero_tver() {
        let mut b = PACKET_BYTES;
        b[1] = 0x01;
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&b[..])).unwrap_err(),
            Error::BadTransportVersion(1)
        );
    }
}
