//! ACK Extended Transport Header (IBTA 9.3.5): syndrome and MSN of ACKs, NAKs and READ responses.

use core::fmt;

use crate::error::{check_len, Result};
use crate::types::Msn;
use crate::{be24, put24};

mod field {
    use crate::Field;
    pub(crate) const SYNDROME: usize = 0;
    pub(crate) const MSN: Field = 1..4;
}

/// Length of the AETH.
pub const HEADER_LEN: usize = field::MSN.end;

const TYPE_MASK: u8 = 0xe0;
const VALUE_MASK: u8 = 0x1f;
const TYPE_ACK: u8 = 0x00;
const TYPE_RNR_NAK: u8 = 0x20;
const TYPE_NAK: u8 = 0x60;

/// The NAK codes of IBTA table 46.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NakCode {
    /// PSN sequence error: the responder expected another PSN.
    PsnSequenceError,
    /// Invalid request (unsupported or malformed).
    InvalidRequest,
    /// Remote access error (rkey, PD, bounds or access rights).
    RemoteAccessError,
    /// Remote operational error.
    RemoteOperationalError,
    /// Invalid RD request.
    InvalidRdRequest,
    /// A reserved code, kept so it round-trips.
    Reserved(u8),
}

impl NakCode {
    const fn from_bits(v: u8) -> NakCode {
        match v {
            0 => NakCode::PsnSequenceError,
            1 => NakCode::InvalidRequest,
            2 => NakCode::RemoteAccessError,
            3 => NakCode::RemoteOperationalError,
            4 => NakCode::InvalidRdRequest,
            v => NakCode::Reserved(v & VALUE_MASK),
        }
    }
    const fn bits(self) -> u8 {
        match self {
            NakCode::PsnSequenceError => 0,
            NakCode::InvalidRequest => 1,
            NakCode::RemoteAccessError => 2,
            NakCode::RemoteOperationalError => 3,
            NakCode::InvalidRdRequest => 4,
            NakCode::Reserved(v) => v & VALUE_MASK,
        }
    }
}

/// The 5-bit RNR NAK timer code; [`RnrTimer::micros`] gives the IBTA table 45 delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RnrTimer(u8);

/// IBTA table 45, in microseconds, indexed by timer code (code 0 is the longest, 655.36 ms).
const RNR_TIMER_MICROS: [u32; 32] = [
    655_360, 10, 20, 30, 40, 60, 80, 120, 160, 240, 320, 480, 640, 960, 1_280, 1_920, 2_560, 3_840,
    5_120, 7_680, 10_240, 15_360, 20_480, 30_720, 40_960, 61_440, 81_920, 122_880, 163_840,
    245_760, 327_680, 491_520,
];

impl RnrTimer {
    /// Makes a timer code from the low 5 bits of `code`.
    pub const fn new(code: u8) -> RnrTimer {
        RnrTimer(code & VALUE_MASK)
    }
    /// Returns the 5-bit code.
    pub const fn code(self) -> u8 {
        self.0
    }
    /// Returns the delay the code stands for, in microseconds.
    pub const fn micros(self) -> u32 {
        RNR_TIMER_MICROS[(self.0 & VALUE_MASK) as usize]
    }
}

/// The AETH syndrome byte, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Syndrome {
    /// Positive acknowledgement with the 5-bit credit count (31 = no credit information).
    Ack {
        /// Credit count code.
        credits: u8,
    },
    /// Receiver not ready: retry after the timer.
    RnrNak(RnrTimer),
    /// Negative acknowledgement.
    Nak(NakCode),
    /// A syndrome with a reserved type, kept raw so it round-trips.
    Reserved(u8),
}

impl Syndrome {
    /// The credit code that means "no end-to-end credit information" (Linux `AETH_ACK_UNLIMITED`).
    pub const UNLIMITED_CREDITS: u8 = 0x1f;

    /// Decodes a syndrome byte.
    pub const fn from_byte(b: u8) -> Syndrome {
        match b & TYPE_MASK {
            TYPE_ACK => Syndrome::Ack {
                credits: b & VALUE_MASK,
            },
            TYPE_RNR_NAK => Syndrome::RnrNak(RnrTimer::new(b)),
            TYPE_NAK => Syndrome::Nak(NakCode::from_bits(b & VALUE_MASK)),
            _ => Syndrome::Reserved(b),
        }
    }
    /// Encodes the syndrome byte.
    pub const fn to_byte(self) -> u8 {
        match self {
            Syndrome::Ack { credits } => TYPE_ACK | (credits & VALUE_MASK),
            Syndrome::RnrNak(t) => TYPE_RNR_NAK | t.code(),
            Syndrome::Nak(c) => TYPE_NAK | c.bits(),
            Syndrome::Reserved(b) => b,
        }
    }
    /// Whether this is a positive ACK.
    pub const fn is_ack(self) -> bool {
        matches!(self, Syndrome::Ack { .. })
    }
}

impl fmt::Display for Syndrome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Syndrome::Ack { credits } => write!(f, "ACK credits={credits}"),
            Syndrome::RnrNak(t) => write!(f, "RNR_NAK timer={}({}us)", t.code(), t.micros()),
            Syndrome::Nak(c) => match c {
                NakCode::PsnSequenceError => f.write_str("NAK psn_seq_err"),
                NakCode::InvalidRequest => f.write_str("NAK inv_req"),
                NakCode::RemoteAccessError => f.write_str("NAK rem_access_err"),
                NakCode::RemoteOperationalError => f.write_str("NAK rem_op_err"),
                NakCode::InvalidRdRequest => f.write_str("NAK inv_rd_req"),
                NakCode::Reserved(v) => write!(f, "NAK reserved({v})"),
            },
            Syndrome::Reserved(b) => write!(f, "reserved({b:#04x})"),
        }
    }
}

/// A read/write view of an AETH.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking its length.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }
    /// Wraps a buffer that holds at least [`HEADER_LEN`] bytes.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        check_len(buffer.as_ref(), HEADER_LEN)?;
        Ok(Packet { buffer })
    }
    /// Returns the decoded syndrome.
    pub fn syndrome(&self) -> Syndrome {
        Syndrome::from_byte(self.buffer.as_ref()[field::SYNDROME])
    }
    /// Returns the message sequence number.
    pub fn msn(&self) -> Msn {
        Msn::new(be24(&self.buffer.as_ref()[field::MSN]))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the syndrome.
    pub fn set_syndrome(&mut self, s: Syndrome) {
        self.buffer.as_mut()[field::SYNDROME] = s.to_byte();
    }
    /// Sets the MSN.
    pub fn set_msn(&mut self, msn: Msn) {
        put24(&mut self.buffer.as_mut()[field::MSN], msn.value());
    }
}

/// A parsed AETH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// ACK, RNR NAK or NAK.
    pub syndrome: Syndrome,
    /// Message sequence number of the last completed message.
    pub msn: Msn,
}

impl Repr {
    /// Parses an AETH.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Repr {
        Repr {
            syndrome: p.syndrome(),
            msn: p.msn(),
        }
    }
    /// Writes the AETH.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_syndrome(self.syndrome);
        p.set_msn(self.msn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_syndrome_type() {
        assert_eq!(Syndrome::from_byte(0x1f), Syndrome::Ack { credits: 31 });
        assert_eq!(
            Syndrome::from_byte(0x2c),
            Syndrome::RnrNak(RnrTimer::new(12))
        );
        assert_eq!(
            Syndrome::from_byte(0x60),
            Syndrome::Nak(NakCode::PsnSequenceError)
        );
        assert_eq!(
            Syndrome::from_byte(0x61),
            Syndrome::Nak(NakCode::InvalidRequest)
        );
        assert_eq!(
            Syndrome::from_byte(0x62),
            Syndrome::Nak(NakCode::RemoteAccessError)
        );
        assert_eq!(
            Syndrome::from_byte(0x63),
            Syndrome::Nak(NakCode::RemoteOperationalError)
        );
        assert_eq!(
            Syndrome::from_byte(0x64),
            Syndrome::Nak(NakCode::InvalidRdRequest)
        );
        assert_eq!(
            Syndrome::from_byte(0x65),
            Syndrome::Nak(NakCode::Reserved(5))
        );
        assert_eq!(Syndrome::from_byte(0x40), Syndrome::Reserved(0x40));
        assert_eq!(Syndrome::from_byte(0x9f), Syndrome::Reserved(0x9f));
    }

    #[test]
    fn every_syndrome_byte_round_trips() {
        for b in 0..=255u8 {
            assert_eq!(Syndrome::from_byte(b).to_byte(), b);
        }
    }

    #[test]
    fn rnr_timer_table_matches_ibta() {
        assert_eq!(RnrTimer::new(0).micros(), 655_360);
        assert_eq!(RnrTimer::new(1).micros(), 10);
        assert_eq!(RnrTimer::new(12).micros(), 640);
        assert_eq!(RnrTimer::new(31).micros(), 491_520);
    }

    #[test]
    fn round_trips_an_ack() {
        let bytes = [0x1f, 0x00, 0x00, 0x05];
        let r = Repr::parse(&Packet::new_checked(&bytes[..]).unwrap());
        assert_eq!(
            r,
            Repr {
                syndrome: Syndrome::Ack { credits: 31 },
                msn: Msn::new(5)
            }
        );
        let mut buf = [0xa5u8; 4];
        r.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, bytes);
        assert!(Packet::new_checked(&bytes[..3]).is_err());
    }
}
