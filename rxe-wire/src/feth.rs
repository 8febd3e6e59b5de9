//! FLUSH Extended Transport Header (IBTA Memory Placement Extensions): placement type and
//! selectivity level of a FLUSH. One 32-bit word: bits 3-0 placement type, 5-4 selectivity.

use crate::be32;
use crate::error::{check_len, Result};

/// Length of the FETH.
pub const HEADER_LEN: usize = 4;

const PLT_MASK: u32 = 0x0f;
const SEL_MASK: u32 = 0x30;
const SEL_SHIFT: u32 = 4;

/// A parsed FETH. Reserved bits 31-6 are ignored on parse and emitted as zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Placement type bits: 1 = global visibility, 2 = persistence (Linux `IB_FLUSH_*`).
    pub placement_type: u8,
    /// Selectivity level: 0 = memory region range, 1 = whole memory region.
    pub selectivity: u8,
}

impl Repr {
    /// Reads an FETH from the start of `buf`.
    pub fn parse(buf: &[u8]) -> Result<Repr> {
        check_len(buf, HEADER_LEN)?;
        let bits = be32(&buf[..HEADER_LEN]);
        Ok(Repr {
            placement_type: (bits & PLT_MASK) as u8,
            selectivity: ((bits & SEL_MASK) >> SEL_SHIFT) as u8,
        })
    }
    /// Writes the FETH to the start of `buf`, which must hold [`HEADER_LEN`] bytes.
    pub fn emit(&self, buf: &mut [u8]) {
        let bits = (u32::from(self.placement_type) & PLT_MASK)
            | ((u32::from(self.selectivity) << SEL_SHIFT) & SEL_MASK);
        buf[..HEADER_LEN].copy_from_slice(&bits.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_placement_and_selectivity() {
        let r = Repr {
            placement_type: 2,
            selectivity: 1,
        };
        let mut buf = [0xa5u8; 4];
        r.emit(&mut buf);
        assert_eq!(buf, [0, 0, 0, 0x12]);
        assert_eq!(Repr::parse(&buf).unwrap(), r);
        assert!(Repr::parse(&buf[..3]).is_err());
    }
}
