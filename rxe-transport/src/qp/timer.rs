//! The QP's timers, in quinn-proto's manner: one deadline per kind, the earliest wins.

use crate::time::Instant;

/// A kind of timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Timer {
    /// Local ACK timeout: packets are outstanding and nothing acknowledged them in time.
    Retransmit = 0,
    /// RNR NAK received: wait the NAK's timer, then resend.
    RnrNak = 1,
}

impl Timer {
    pub(crate) const VALUES: [Timer; 2] = [Timer::Retransmit, Timer::RnrNak];
}

/// Deadlines of every timer kind.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TimerTable {
    data: [Option<Instant>; 2],
}

impl TimerTable {
    pub(crate) fn set(&mut self, t: Timer, at: Instant) {
        self.data[t as usize] = Some(at);
    }
    pub(crate) fn get(&self, t: Timer) -> Option<Instant> {
        self.data[t as usize]
    }
    pub(crate) fn stop(&mut self, t: Timer) {
        self.data[t as usize] = None;
    }
    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.data.iter().flatten().min().copied()
    }
    /// Stops and returns the timers that expired at `now`.
    pub(crate) fn expire(&mut self, now: Instant) -> [bool; 2] {
        let mut out = [false; 2];
        for t in Timer::VALUES {
            if self.get(t).is_some_and(|d| d <= now) {
                self.stop(t);
                out[t as usize] = true;
            }
        }
        out
    }
    pub(crate) fn clear(&mut self) {
        self.data = [None; 2];
    }
}
