//! Fault injection on the device's own datagrams, for tests where the network can't be made
//! faulty (no `netem`): drop, duplicate or reorder what it sends, and drop what it receives. The
//! peer then sees a lossy, duplicating, reordering link both ways.
//!
//! Set through [`UdpDeviceConfig::faults`](crate::UdpDeviceConfig::faults), or for any program
//! using the default configuration, the environment variable `RXE_USER_FAULTS`, e.g.
//! `loss=1,dup=1,reorder=5` (percentages, tenths allowed: `loss=0.5`).

/// Probabilities in per mille.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Faults {
    /// Sent and received datagrams dropped.
    pub loss: u16,
    /// Sent datagrams sent twice.
    pub dup: u16,
    /// Sent datagrams held back and sent after the next one.
    pub reorder: u16,
    /// Seeds the decisions (deterministic for a given seed and traffic).
    pub seed: u64,
}

impl Faults {
    /// Parses `loss=1,dup=0.5,reorder=5` (percent); `None` if malformed or out of range.
    pub fn parse(s: &str) -> Option<Faults> {
        let mut f = Faults {
            seed: 0x9e37_79b9_7f4a_7c15,
            ..Faults::default()
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=')?;
            let pct: f64 = v.trim().parse().ok()?;
            if !(0.0..=100.0).contains(&pct) {
                return None;
            }
            let pm = (pct * 10.0).round() as u16;
            match k.trim() {
                "loss" => f.loss = pm,
                "dup" => f.dup = pm,
                "reorder" => f.reorder = pm,
                _ => return None,
            }
        }
        Some(f)
    }

    /// From `RXE_USER_FAULTS`, if set and well-formed.
    pub fn from_env() -> Option<Faults> {
        Faults::parse(&std::env::var("RXE_USER_FAULTS").ok()?)
    }

    /// One decision with probability `per_mille`.
    pub(crate) fn roll(&mut self, per_mille: u16) -> bool {
        if per_mille == 0 {
            return false;
        }
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        (self.seed % 1000) < u64::from(per_mille)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_percentages() {
        let f = Faults::parse("loss=1, dup=0.5,reorder=5").unwrap();
        assert_eq!((f.loss, f.dup, f.reorder), (10, 5, 50));
        assert_eq!(Faults::parse("loss=101"), None);
        assert_eq!(Faults::parse("jitter=1"), None);
        assert_eq!(Faults::parse("loss"), None);
        assert_eq!(Faults::parse("").map(|f| f.loss), Some(0));
    }

    #[test]
    fn rolls_come_out_near_their_rate() {
        let mut f = Faults::parse("loss=5").unwrap();
        let hits = (0..100_000).filter(|_| f.roll(50)).count();
        assert!((4000..6000).contains(&hits), "{hits}");
        assert!(!(0..1000).any(|_| f.roll(0)));
    }
}
