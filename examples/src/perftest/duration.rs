//! perftest's DURATION test type (`-D SECONDS`, `-f MARGIN`): instead of `-n` iterations a run
//! lasts `duration` seconds, of which only the middle is measured. perftest steps through its
//! states with `alarm()` (`catch_alarm` in `perftest_resources.c`): a warm-up of `margin`
//! seconds, the sample of `duration - 2 * margin`, a cool-down of `margin`, then the end. Here
//! the same phases are read off a monotonic clock each time round the loop.

use std::time::{Duration, Instant};

/// Where a timed run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Traffic flows, nothing is counted yet (perftest's START_STATE).
    WarmUp,
    /// Completions are counted (SAMPLE_STATE).
    Sample,
    /// Traffic still flows so the end of the sample is not a drain (STOP_SAMPLE_STATE).
    CoolDown,
    /// Nothing more is posted (END_STATE).
    End,
}

/// A timed run's length and margin, checked as perftest checks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timed {
    duration: Duration,
    margin: Duration,
}

/// Why `-D` / `-f` were refused, in perftest's words where it has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimedError {
    /// `-D 0`.
    ZeroDuration,
    /// The two margins leave no sample.
    MarginTooLong,
}

impl std::fmt::Display for TimedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TimedError::ZeroDuration => "-D: Duration period must be positive",
            TimedError::MarginTooLong => "please check that DURATION > 2*MARGIN",
        })
    }
}

impl Timed {
    /// `-D duration` with `-f margin`; without `-f` the margin is a quarter of the duration
    /// in whole seconds, as perftest's default.
    pub fn new(duration_s: u32, margin_s: Option<u32>) -> Result<Timed, TimedError> {
        if duration_s == 0 {
            return Err(TimedError::ZeroDuration);
        }
        let margin_s = margin_s.unwrap_or(duration_s / 4);
        if u64::from(duration_s) <= 2 * u64::from(margin_s) {
            return Err(TimedError::MarginTooLong);
        }
        Ok(Timed {
            duration: Duration::from_secs(duration_s.into()),
            margin: Duration::from_secs(margin_s.into()),
        })
    }

    /// The phase `since` the run (or, for a SEND server, its first arrival) began.
    pub fn phase(&self, since: Duration) -> Phase {
        if since < self.margin {
            Phase::WarmUp
        } else if since < self.duration - self.margin {
            Phase::Sample
        } else if since < self.duration {
            Phase::CoolDown
        } else {
            Phase::End
        }
    }

    /// How long the sample lasts: the time the counted operations are divided by.
    pub fn sample(&self) -> Duration {
        self.duration - 2 * self.margin
    }
}

/// A timed run's clock: [`Timed`] from a start instant.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    timed: Timed,
    start: Instant,
}

impl Clock {
    /// Starts now.
    pub fn start(timed: Timed) -> Clock {
        Clock {
            timed,
            start: Instant::now(),
        }
    }

    /// The phase now.
    pub fn phase(&self) -> Phase {
        self.timed.phase(self.start.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_follow_perftest_alarms() {
        // -D 8: margin 2 s, sample [2 s, 6 s).
        let t = Timed::new(8, None).unwrap();
        let s = Duration::from_secs;
        assert_eq!(t.phase(s(0)), Phase::WarmUp);
        assert_eq!(t.phase(Duration::from_millis(1999)), Phase::WarmUp);
        assert_eq!(t.phase(s(2)), Phase::Sample);
        assert_eq!(t.phase(Duration::from_millis(5999)), Phase::Sample);
        assert_eq!(t.phase(s(6)), Phase::CoolDown);
        assert_eq!(t.phase(s(8)), Phase::End);
        assert_eq!(t.sample(), s(4));
    }

    #[test]
    fn margins_default_and_are_checked_like_perftest() {
        // -D 3: a quarter in whole seconds is 0: no warm-up, all of it sampled.
        let t = Timed::new(3, None).unwrap();
        assert_eq!(t.phase(Duration::ZERO), Phase::Sample);
        assert_eq!(t.sample(), Duration::from_secs(3));
        assert_eq!(t.phase(Duration::from_secs(3)), Phase::End);
        // -D 5 -f 1: sample of 3 s.
        assert_eq!(
            Timed::new(5, Some(1)).unwrap().sample(),
            Duration::from_secs(3)
        );
        // DURATION > 2 * MARGIN or nothing.
        assert_eq!(Timed::new(4, Some(2)), Err(TimedError::MarginTooLong));
        assert_eq!(Timed::new(0, None), Err(TimedError::ZeroDuration));
        assert_eq!(
            TimedError::MarginTooLong.to_string(),
            "please check that DURATION > 2*MARGIN"
        );
    }
}
