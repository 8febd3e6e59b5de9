//! Immediate Data Extended Transport Header (IBTA 9.3.7): 4 bytes handed to the receiver's
//! completion as `imm_data`.

use crate::error::{check_len, Result};

/// Length of the ImmDt header.
pub const HEADER_LEN: usize = 4;

/// Immediate data, kept as the four bytes of the wire (verbs' `imm_data` is big-endian too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ImmDt(pub [u8; 4]);

impl ImmDt {
    /// Makes immediate data from a big-endian integer.
    pub const fn from_be_u32(v: u32) -> ImmDt {
        ImmDt(v.to_be_bytes())
    }
    /// Returns the bytes as a big-endian integer.
    pub const fn as_be_u32(self) -> u32 {
        u32::from_be_bytes(self.0)
    }
    /// Reads immediate data from the start of `buf`.
    pub fn parse(buf: &[u8]) -> Result<ImmDt> {
        check_len(buf, HEADER_LEN)?;
        Ok(ImmDt([buf[0], buf[1], buf[2], buf[3]]))
    }
    /// Writes immediate data to the start of `buf`, which must hold [`HEADER_LEN`] bytes.
    pub fn emit(&self, buf: &mut [u8]) {
        buf[..HEADER_LEN].copy_from_slice(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_short_buffers() {
        let i = ImmDt::from_be_u32(0xdead_beef);
        let mut buf = [0xa5u8; 4];
        i.emit(&mut buf);
        assert_eq!(buf, [0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(ImmDt::parse(&buf).unwrap(), i);
        assert!(ImmDt::parse(&buf[..3]).is_err());
    }
}
