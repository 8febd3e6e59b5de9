//! Invalidate Extended Transport Header (IBTA 9.3.8): the rkey a SEND with Invalidate invalidates.

use crate::be32;
use crate::error::{check_len, Result};
use crate::types::Rkey;

/// Length of the IETH.
pub const HEADER_LEN: usize = 4;

/// A parsed IETH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The remote key to invalidate at the responder.
    pub rkey: Rkey,
}

impl Repr {
    /// Reads an IETH from the start of `buf`.
    pub fn parse(buf: &[u8]) -> Result<Repr> {
        check_len(buf, HEADER_LEN)?;
        Ok(Repr {
            rkey: Rkey(be32(&buf[..HEADER_LEN])),
        })
    }
    /// Writes the IETH to the start of `buf`, which must hold [`HEADER_LEN`] bytes.
    pub fn emit(&self, buf: &mut [u8]) {
        buf[..HEADER_LEN].copy_from_slice(&self.rkey.0.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_short_buffers() {
        let r = Repr {
            rkey: Rkey(0x0000_1a2b),
        };
        let mut buf = [0xa5u8; 4];
        r.emit(&mut buf);
        assert_eq!(buf, [0, 0, 0x1a, 0x2b]);
        assert_eq!(Repr::parse(&buf).unwrap(), r);
        assert!(Repr::parse(&buf[..3]).is_err());
    }
}
