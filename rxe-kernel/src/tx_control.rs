//! Transmission control, as the original Soft-RoCE port had it: keep the device from handing
//! the NIC more than its transmit queue holds.
//!
//! Per interface, a method and a value, set with the module parameters' strings:
//! - `control_method`: `"<interface> none|watermark|bandwidth"`;
//! - `control_value`: `"<interface> <number>"`: for `watermark` the most frames handed to the
//!   NIC and not yet taken by it, for `bandwidth` bits per second.
//!
//! A bad string is refused with a [`ParamError`] and leaves the setting as it was. A method whose
//! value is still 0 holds nothing back. [`TxGate`] applies one interface's setting.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use rxe_transport::Instant;

/// How transmission is held back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ControlMethod {
    /// Not at all (the default).
    #[default]
    None,
    /// While the frames handed to the NIC minus those it has taken reach the value.
    Watermark,
    /// To the value in bits per second (a token bucket).
    Bandwidth,
}

impl ControlMethod {
    /// The method's name in the parameter strings.
    pub fn name(self) -> &'static str {
        match self {
            ControlMethod::None => "none",
            ControlMethod::Watermark => "watermark",
            ControlMethod::Bandwidth => "bandwidth",
        }
    }
}

/// One interface's setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Control {
    /// The method.
    pub method: ControlMethod,
    /// Frames (watermark) or bits per second (bandwidth); 0: not set yet.
    pub value: u64,
}

/// Why a parameter string was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamError {
    /// Not `"<interface> <word>"`.
    Format,
    /// The interface name is empty, longer than 15 bytes or has a `/`.
    InterfaceName,
    /// Not `none`, `watermark` or `bandwidth`.
    UnknownMethod,
    /// Not a decimal number from 1 to 2^64 - 1.
    BadValue,
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParamError::Format => "expected \"<interface> <setting>\", e.g. \"ni1 watermark\"",
            ParamError::InterfaceName => "interface names are 1 to 15 bytes, without '/'",
            ParamError::UnknownMethod => "the method is none, watermark or bandwidth",
            ParamError::BadValue => "the value is a decimal number from 1 to 18446744073709551615",
        })
    }
}

/// Splits `"<interface> <word>"` (a trailing newline, as `echo` writes to sysfs, is fine).
fn split(param: &str) -> Result<(&str, &str), ParamError> {
    let mut it = param.split_ascii_whitespace();
    let (Some(ifname), Some(word), None) = (it.next(), it.next(), it.next()) else {
        return Err(ParamError::Format);
    };
    if ifname.len() > 15 || ifname.contains('/') {
        return Err(ParamError::InterfaceName);
    }
    Ok((ifname, word))
}

/// Every interface's setting.
#[derive(Debug, Clone, Default)]
pub struct TxControls {
    entries: Vec<(String, Control)>,
}

impl TxControls {
    /// `control_method`: `"<interface> none|watermark|bandwidth"`.
    pub fn set_method(&mut self, param: &str) -> Result<(), ParamError> {
        let (ifname, word) = split(param)?;
        let method = match word {
            "none" => ControlMethod::None,
            "watermark" => ControlMethod::Watermark,
            "bandwidth" => ControlMethod::Bandwidth,
            _ => return Err(ParamError::UnknownMethod),
        };
        self.entry(ifname).method = method;
        Ok(())
    }

    /// `control_value`: `"<interface> <number>"`.
    pub fn set_value(&mut self, param: &str) -> Result<(), ParamError> {
        let (ifname, word) = split(param)?;
        let value: u64 = word.parse().map_err(|_| ParamError::BadValue)?;
        if value == 0 {
            return Err(ParamError::BadValue);
        }
        self.entry(ifname).value = value;
        Ok(())
    }

    /// The setting of `ifname` (none if never set).
    pub fn get(&self, ifname: &str) -> Control {
        self.entries
            .iter()
            .find(|(n, _)| n == ifname)
            .map(|(_, c)| *c)
            .unwrap_or_default()
    }

    fn entry(&mut self, ifname: &str) -> &mut Control {
        let i = match self.entries.iter().position(|(n, _)| n == ifname) {
            Some(i) => i,
            None => {
                self.entries.push((ifname.to_string(), Control::default()));
                self.entries.len() - 1
            }
        };
        &mut self.entries[i].1
    }
}

/// Whether a frame may go to the NIC now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Yes.
    Now,
    /// Not before this instant (bandwidth).
    At(Instant),
    /// Not before the NIC has taken more frames (watermark): poll again when it reports some.
    WhenTaken,
}

/// One interface's transmission control at work.
#[derive(Debug, Clone)]
pub struct TxGate {
    control: Control,
    /// Frames handed to the NIC.
    handed: u64,
    /// Token-bucket credit in bits × 10^9 (so refills are exact in integer nanoseconds).
    credit: u128,
    last: Option<Instant>,
}

/// The bucket holds 1 ms of the rate, and at least two 9000-byte frames.
fn depth(rate: u64) -> u128 {
    u128::from((rate / 1000).max(2 * 9018 * 8)) * 1_000_000_000
}

impl TxGate {
    /// A gate applying `control`. The bucket starts empty, so the rate holds from the first
    /// frame; it fills to 1 ms of the rate (at least two 9000-byte frames) while idle.
    pub fn new(control: Control) -> TxGate {
        TxGate {
            control,
            handed: 0,
            credit: 0,
            last: None,
        }
    }

    /// Applies a new setting (the bucket starts empty again).
    pub fn set(&mut self, control: Control) {
        self.control = control;
        self.credit = 0;
        self.last = None;
    }

    /// The setting applied.
    pub fn control(&self) -> Control {
        self.control
    }

    /// Frames handed to the NIC so far.
    pub fn handed(&self) -> u64 {
        self.handed
    }

    /// Whether a frame of `len` bytes may go now, given the frames the NIC has `taken`.
    pub fn admit(&mut self, now: Instant, len: usize, taken: u64) -> Admit {
        let value = self.control.value;
        match self.control.method {
            _ if value == 0 => Admit::Now,
            ControlMethod::None => Admit::Now,
            ControlMethod::Watermark => {
                if self.handed.saturating_sub(taken) < value {
                    Admit::Now
                } else {
                    Admit::WhenTaken
                }
            }
            ControlMethod::Bandwidth => {
                self.refill(now);
                let cost = (len as u128) * 8 * 1_000_000_000;
                if self.credit >= cost {
                    Admit::Now
                } else {
                    let wait = (cost - self.credit).div_ceil(u128::from(value));
                    Admit::At(Instant::from_nanos(
                        now.as_nanos()
                            .saturating_add(u64::try_from(wait).unwrap_or(u64::MAX)),
                    ))
                }
            }
        }
    }

    /// Records that a frame of `len` bytes went to the NIC (after [`Admit::Now`]).
    pub fn handed_one(&mut self, len: usize) {
        self.handed += 1;
        if self.control.method == ControlMethod::Bandwidth && self.control.value != 0 {
            self.credit = self
                .credit
                .saturating_sub((len as u128) * 8 * 1_000_000_000);
        }
    }

    fn refill(&mut self, now: Instant) {
        let last = self.last.replace(now).unwrap_or(now);
        let dt = u128::from(now.as_nanos().saturating_sub(last.as_nanos()));
        self.credit =
            (self.credit + dt * u128::from(self.control.value)).min(depth(self.control.value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_parameter_strings_set_each_interface() {
        let mut c = TxControls::default();
        assert_eq!(c.get("ni1"), Control::default());
        c.set_method("ni1 watermark").unwrap();
        c.set_value("ni1 45000\n").unwrap();
        c.set_method("  eth0   bandwidth ").unwrap();
        c.set_value("eth0 100000000").unwrap();
        assert_eq!(
            c.get("ni1"),
            Control {
                method: ControlMethod::Watermark,
                value: 45000
            }
        );
        assert_eq!(c.get("eth0").method, ControlMethod::Bandwidth);
        assert_eq!(c.get("eth0").value, 100_000_000);
        c.set_method("ni1 none").unwrap();
        assert_eq!(c.get("ni1").method, ControlMethod::None);
        assert_eq!(
            c.get("ni1").value,
            45000,
            "the value stays for a later method"
        );
    }

    #[test]
    fn bad_strings_are_refused_and_change_nothing() {
        let mut c = TxControls::default();
        c.set_method("ni1 watermark").unwrap();
        c.set_value("ni1 45000").unwrap();
        let before = c.get("ni1");
        for (bad, err) in [
            ("ni1", ParamError::Format),
            ("", ParamError::Format),
            ("ni1 watermark extra", ParamError::Format),
            ("ni1 fastest", ParamError::UnknownMethod),
            ("ni1 Watermark", ParamError::UnknownMethod),
            ("averyveryverylongname watermark", ParamError::InterfaceName),
            ("a/b none", ParamError::InterfaceName),
        ] {
            assert_eq!(c.set_method(bad), Err(err.clone()), "{bad:?}");
            assert!(!err.to_string().is_empty());
        }
        for bad in [
            "ni1 0",
            "ni1 -5",
            "ni1 4.5",
            "ni1 lots",
            "ni1 99999999999999999999",
        ] {
            assert_eq!(c.set_value(bad), Err(ParamError::BadValue), "{bad:?}");
        }
        assert_eq!(c.get("ni1"), before);
    }

    /// A NIC with a bounded queue that sends at `rate` bits per second, in simulated time.
    struct Nic {
        cap: usize,
        rate: u64,
        queue: alloc::collections::VecDeque<usize>,
        busy_until: u64,
        taken: u64,
        refused: u64,
        bits_sent: u64,
    }

    impl Nic {
        fn new(cap: usize, rate: u64) -> Nic {
            Nic {
                cap,
                rate,
                queue: Default::default(),
                busy_until: 0,
                taken: 0,
                refused: 0,
                bits_sent: 0,
            }
        }
        /// Sends what the line allows by `now`.
        fn run(&mut self, now: u64) {
            while let Some(&len) = self.queue.front() {
                let start = self.busy_until;
                let done = start + (len as u64 * 8 * 1_000_000_000).div_ceil(self.rate);
                if done > now {
                    break;
                }
                self.busy_until = done;
                self.queue.pop_front();
                self.taken += 1;
                self.bits_sent += len as u64 * 8;
            }
            if self.queue.is_empty() {
                self.busy_until = self.busy_until.max(now);
            }
        }
        fn transmit(&mut self, len: usize) -> bool {
            if self.queue.len() >= self.cap {
                self.refused += 1;
                return false;
            }
            self.queue.push_back(len);
            true
        }
    }

    /// A device with frames always waiting, through `gate`, into a 16-frame, 1 Gbit/s NIC for
    /// `ms` simulated milliseconds; returns the NIC and the largest backlog seen.
    fn drive(gate: &mut TxGate, ms: u64) -> (Nic, u64) {
        let mut nic = Nic::new(16, 1_000_000_000);
        let len = 1078; // a 1024-byte RDMA WRITE payload, framed
        let mut max_in_flight = 0;
        let mut now = 0u64;
        while now < ms * 1_000_000 {
            nic.run(now);
            while gate.admit(Instant::from_nanos(now), len, nic.taken) == Admit::Now {
                if !nic.transmit(len) {
                    break; // held, tried again on the next tick
                }
                gate.handed_one(len);
                max_in_flight = max_in_flight.max(gate.handed() - nic.taken);
            }
            now += 1_000; // the host polls every microsecond
        }
        (nic, max_in_flight)
    }

    #[test]
    fn without_control_a_small_nic_queue_overflows() {
        let (nic, _) = drive(&mut TxGate::new(Control::default()), 20);
        assert!(nic.refused > 0, "{}", nic.refused);
    }

    #[test]
    fn watermark_is_never_exceeded_and_nothing_is_refused() {
        for mark in [1u64, 8, 16] {
            let mut g = TxGate::new(Control {
                method: ControlMethod::Watermark,
                value: mark,
            });
            let (nic, max) = drive(&mut g, 20);
            assert!(max <= mark, "watermark {mark}: {max} in flight");
            assert_eq!(nic.refused, 0, "watermark {mark}");
            // And the line stays busy: within 5% of 1 Gbit/s over 20 ms.
            let bps = nic.bits_sent as f64 / 0.020;
            assert!(bps > 0.95e9, "watermark {mark}: {bps}");
        }
    }

    #[test]
    fn bandwidth_holds_the_rate_within_five_percent_and_nothing_is_refused() {
        for rate in [10_000_000u64, 100_000_000, 500_000_000, 900_000_000] {
            let mut g = TxGate::new(Control {
                method: ControlMethod::Bandwidth,
                value: rate,
            });
            let (nic, _) = drive(&mut g, 200);
            let bps = nic.bits_sent as f64 / 0.200;
            let err = (bps - rate as f64).abs() / rate as f64;
            assert!(
                err < 0.05,
                "rate {rate}: {bps} bit/s ({:.1}% off)",
                err * 100.0
            );
            assert_eq!(nic.refused, 0, "rate {rate}");
        }
    }

    #[test]
    fn bandwidth_says_when_the_next_frame_may_go() {
        let mut g = TxGate::new(Control {
            method: ControlMethod::Bandwidth,
            value: 8_000_000, // 1 byte per microsecond
        });
        // Empty at first: 8000 bits take 1 ms.
        let t0 = Instant::from_nanos(1_000);
        assert_eq!(
            g.admit(t0, 1000, 0),
            Admit::At(Instant::from_nanos(1_001_000))
        );
        // Idle for a second: the bucket fills to its depth (1 ms of rate, at least two
        // 9018-byte frames: 144288 bits), so 18 frames go at once, then the rate rules.
        let t1 = Instant::from_nanos(1_000_000_000);
        let mut sent = 0;
        while g.admit(t1, 1000, 0) == Admit::Now {
            g.handed_one(1000);
            sent += 1;
        }
        assert_eq!(sent, 18);
        match g.admit(t1, 1000, 0) {
            // 288 bits of credit left: 7712 more bits at 8 Mbit/s take 964 µs.
            Admit::At(t) => assert_eq!(t.as_nanos() - t1.as_nanos(), 964_000),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            g.admit(Instant::from_nanos(1_000_000_000 + 964_000), 1000, 0),
            Admit::Now
        );
    }

    #[test]
    fn a_method_without_a_value_holds_nothing_back() {
        let mut g = TxGate::new(Control {
            method: ControlMethod::Watermark,
            value: 0,
        });
        for _ in 0..100 {
            assert_eq!(g.admit(Instant::ZERO, 1500, 0), Admit::Now);
            g.handed_one(1500);
        }
    }
}
