//! Newtypes for the numbers of the IBTA transport: raw integers never cross crate APIs.

use core::cmp::Ordering;
use core::fmt;

use crate::error::{Error, Result};

const MASK24: u32 = 0x00ff_ffff;

/// A 24-bit packet sequence number with wrapping arithmetic.
///
/// Ordering follows IBTA 9.7.1 (like TCP sequence numbers): `a < b` when `b` is ahead of `a` by less
/// than half the PSN space (2^23). `PartialOrd` is deliberately the modular order, so compare
/// only PSNs within a window, as the transport does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Psn(u32);

impl Psn {
    /// The largest PSN, 2^24 - 1.
    pub const MAX: Psn = Psn(MASK24);

    /// Makes a PSN from the low 24 bits of `v`.
    pub const fn new(v: u32) -> Psn {
        Psn(v & MASK24)
    }
    /// Makes a PSN, rejecting values above 2^24 - 1.
    pub const fn try_new(v: u32) -> Result<Psn> {
        if v > MASK24 {
            Err(Error::FieldOverflow)
        } else {
            Ok(Psn(v))
        }
    }
    /// Returns the PSN as an integer.
    pub const fn value(self) -> u32 {
        self.0
    }
    /// Returns `self + n`, wrapping at 2^24.
    #[must_use]
    pub const fn add(self, n: u32) -> Psn {
        Psn(self.0.wrapping_add(n) & MASK24)
    }
    /// Returns `self - n`, wrapping at 2^24.
    #[must_use]
    pub const fn sub(self, n: u32) -> Psn {
        Psn(self.0.wrapping_sub(n) & MASK24)
    }
    /// Signed distance from `other` to `self` in the range -2^23 ..= 2^23 - 1.
    pub const fn diff(self, other: Psn) -> i32 {
        // Shift the 24-bit difference into the top of an i32 and back to sign-extend it.
        ((self.0.wrapping_sub(other.0) << 8) as i32) >> 8
    }
}

impl PartialOrd for Psn {
    fn partial_cmp(&self, other: &Psn) -> Option<Ordering> {
        Some(self.diff(*other).cmp(&0))
    }
}

impl fmt::Display for Psn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#08x}", self.0)
    }
}

macro_rules! u24_newtype {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(u32);

        impl $name {
            /// The largest value, 2^24 - 1.
            pub const MAX: $name = $name(MASK24);
            /// Makes a value from the low 24 bits of `v`.
            pub const fn new(v: u32) -> $name {
                $name(v & MASK24)
            }
            /// Makes a value, rejecting anything above 2^24 - 1.
            pub const fn try_new(v: u32) -> Result<$name> {
                if v > MASK24 {
                    Err(Error::FieldOverflow)
                } else {
                    Ok($name(v))
                }
            }
            /// Returns the value as an integer.
            pub const fn value(self) -> u32 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#08x}", self.0)
            }
        }
    };
}

u24_newtype!(
    /// A 24-bit queue pair number. QP1 is the GSI QP that carries CM MADs.
    Qpn
);
u24_newtype!(
    /// A 24-bit message sequence number (AETH MSN).
    Msn
);

impl Qpn {
    /// QP0, the subnet management QP (unused on RoCE).
    pub const SMI: Qpn = Qpn(0);
    /// QP1, the general services QP (CM MADs).
    pub const GSI: Qpn = Qpn(1);
}

impl Msn {
    /// Returns `self + n`, wrapping at 2^24.
    #[must_use]
    pub const fn add(self, n: u32) -> Msn {
        Msn(self.0.wrapping_add(n) & MASK24)
    }
}

macro_rules! int_newtype {
    ($(#[$m:meta])* $name:ident($int:ty), $fmt:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub $int);

        impl $name {
            /// Returns the value as an integer.
            pub const fn value(self) -> $int {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, $fmt, self.0)
            }
        }
    };
}

int_newtype!(
    /// A 16-bit partition key (BTH P_Key). Bit 15 is the full-membership bit.
    PKey(u16),
    "{:#06x}"
);
int_newtype!(
    /// A 32-bit queue key (DETH Q_Key). Keys with bit 31 set are privileged.
    QKey(u32),
    "{:#010x}"
);
int_newtype!(
    /// A 32-bit remote key naming a memory region or window (RETH, AtomicETH, IETH).
    Rkey(u32),
    "{:#010x}"
);

impl PKey {
    /// The default partition, full member.
    pub const DEFAULT: PKey = PKey(0xffff);
}

impl QKey {
    /// The Q_Key of QP1 (GSI): `0x80010000`.
    pub const GSI: QKey = QKey(0x8001_0000);
    /// Returns whether the key is privileged (bit 31 set).
    pub const fn is_privileged(self) -> bool {
        self.0 & 0x8000_0000 != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psn_wraps_at_24_bits() {
        assert_eq!(Psn::MAX.add(1), Psn::new(0));
        assert_eq!(Psn::new(0).sub(1), Psn::MAX);
        assert_eq!(Psn::new(0x1ff_ffff), Psn::MAX);
        assert!(Psn::try_new(1 << 24).is_err());
    }

    #[test]
    fn psn_orders_across_the_wrap() {
        assert!(Psn::MAX < Psn::new(3));
        assert_eq!(Psn::new(3).diff(Psn::MAX), 4);
        assert_eq!(Psn::MAX.diff(Psn::new(3)), -4);
        assert_eq!(Psn::new(0x80_0000).diff(Psn::new(0)), -0x80_0000);
        assert_eq!(Psn::new(0x7f_ffff).diff(Psn::new(0)), 0x7f_ffff);
    }

    #[test]
    fn qkey_privilege_is_bit_31() {
        assert!(QKey::GSI.is_privileged());
        assert!(!QKey(0x1111_1111).is_privileged());
    }
}
