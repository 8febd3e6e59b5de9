//! perftest's figures and tables (`perftest_parameters.c`: `print_report_bw`,
//! `print_report_lat`), computed the same way from the same timestamps, in nanoseconds where
//! perftest counts CPU cycles.

use std::fmt::Write as _;

/// perftest's 87-dash result line.
pub const RESULT_LINE: &str =
    "---------------------------------------------------------------------------------------";

/// Bandwidth figures of one run.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Bw {
    /// Best rate over any run of operations (0 when not computed), in the report's unit.
    pub peak: f64,
    /// Average rate, in the report's unit.
    pub avg: f64,
    /// Millions of messages per second.
    pub msg_rate: f64,
}

/// Computes BW from post and completion times (ns). `completed[j]` is meaningful at `j` on
/// `cq_mod` boundaries and at the last index (where a signaled completion was seen);
/// `peak` as perftest: the shortest per-operation time from any post `i` to any later
/// signaled completion `j`.
pub fn bw(
    size: u64,
    posted: &[u64],
    completed: &[u64],
    cq_mod: usize,
    with_peak: bool,
    gbits: bool,
) -> Bw {
    let n = posted.len().min(completed.len());
    if n == 0 {
        return Bw::default();
    }
    let cq_mod = cq_mod.max(1);
    let factor = if gbits { 125e6 } else { 1_048_576.0 };
    let total = completed[n - 1].saturating_sub(posted[0]).max(1) as f64 / 1e9;
    let avg = size as f64 * n as f64 / total / factor;
    let msg_rate = n as f64 / total / 1e6;
    let mut peak = 0.0;
    if with_peak {
        let mut opt = completed[n - 1].saturating_sub(posted[0]) / n as u64;
        for (i, &p) in posted[..n].iter().enumerate() {
            let mut j = (i + 1).div_ceil(cq_mod) * cq_mod - 1;
            while j < n {
                let t = completed[j].saturating_sub(p) / (j - i + 1) as u64;
                opt = opt.min(t);
                j += cq_mod;
            }
            if !n.is_multiple_of(cq_mod) {
                let j = n - 1;
                opt = opt.min(completed[j].saturating_sub(p) / (j - i + 1) as u64);
            }
        }
        peak = size as f64 / (opt.max(1) as f64 / 1e9) / factor;
    }
    Bw {
        peak,
        avg,
        msg_rate,
    }
}

/// BW of a timed run (`-D`): `iters` operations of `size` bytes completed in a `sample`; no
/// peak, as perftest measures none in DURATION mode.
pub fn bw_timed(size: u64, iters: u64, sample: std::time::Duration, gbits: bool) -> Bw {
    let factor = if gbits { 125e6 } else { 1_048_576.0 };
    let secs = sample.as_secs_f64().max(1e-9);
    Bw {
        peak: 0.0,
        avg: size as f64 * iters as f64 / secs / factor,
        msg_rate: iters as f64 / secs / 1e6,
    }
}

/// The BW table header.
pub fn bw_header(gbits: bool) -> String {
    let unit = if gbits { "Gb/sec" } else { "MB/sec" };
    format!(" #bytes     #iterations    BW peak[{unit}]    BW average[{unit}]   MsgRate[Mpps]")
}

/// One BW row, perftest's `REPORT_FMT`.
pub fn bw_row(size: u64, iters: u64, b: &Bw) -> String {
    format!(
        " {size:<7}    {iters:<10}       {:<7.2}            {:<7.2}\t\t   {:<7.6}",
        b.peak, b.avg, b.msg_rate
    )
}

/// Latency figures in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Lat {
    /// Smallest.
    pub min: f64,
    /// Largest kept.
    pub max: f64,
    /// Median of the kept samples.
    pub typical: f64,
    /// Mean of the kept samples.
    pub avg: f64,
    /// Standard deviation (perftest truncates each difference to whole microseconds).
    pub stdev: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
}

/// Latency from the post times (ns) of consecutive operations, as `print_report_lat`: the
/// differences of successive posts, divided by `rtt_factor` (2 for ping-pong tests), sorted,
/// the two largest dropped.
pub fn lat(posted: &[u64], rtt_factor: u32) -> Lat {
    let mut d: Vec<u64> = posted
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .collect();
    d.sort_unstable();
    lat_of_sorted(&d, rtt_factor)
}

/// Latency from sorted differences in ns (`print_report_lat` after its sort).
pub fn lat_of_sorted(d: &[u64], rtt_factor: u32) -> Lat {
    let q = 1000.0 * f64::from(rtt_factor.max(1));
    if d.len() < 3 {
        let v = d.first().map_or(0.0, |&x| x as f64 / q);
        return Lat {
            min: v,
            max: d.last().map_or(0.0, |&x| x as f64 / q),
            typical: v,
            avg: v,
            stdev: 0.0,
            p99: v,
            p999: v,
        };
    }
    // LAT_MEASURE_TAIL: the two largest samples are left out of the median, mean and stdev;
    // the maximum and percentiles index the array at the kept count.
    let n = d.len() - 2;
    let median = if (n - 1) % 2 == 1 {
        (d[n / 2] + d[n / 2 - 1]) / 2
    } else {
        d[n / 2]
    };
    let us = |x: u64| x as f64 / q;
    let avg = d[..n].iter().map(|&x| us(x)).sum::<f64>() / n as f64;
    let var = d[..n]
        .iter()
        .map(|&x| {
            let t = (avg - us(x)) as i64;
            (t * t) as f64
        })
        .sum::<f64>()
        / n as f64;
    let at = |p: f64| us(d[((n as f64 * p).ceil() as usize).min(d.len() - 1)]);
    Lat {
        min: us(d[0]),
        max: us(d[n]),
        typical: us(median),
        avg,
        stdev: var.sqrt(),
        p99: at(0.99),
        p999: at(0.999),
    }
}

/// The latency table header.
pub fn lat_header() -> &'static str {
    " #bytes #iterations    t_min[usec]    t_max[usec]  t_typical[usec]    t_avg[usec]    t_stdev[usec]   99% percentile[usec]   99.9% percentile[usec] "
}

/// The latency table header of a timed run, perftest's `RESULT_FMT_LAT_DUR`.
pub fn lat_timed_header() -> &'static str {
    " #bytes        #iterations       t_avg[usec]    tps average"
}

/// One latency row of a timed run (`print_report_lat_duration`): `iters` operations in the
/// `sample`, each counted `rtt_factor` times in the time (2 for the ping-pongs, whose sample
/// holds both directions; 1 for READ).
pub fn lat_timed_row(
    size: u64,
    iters: u64,
    sample: std::time::Duration,
    rtt_factor: u32,
) -> String {
    let us = sample.as_secs_f64() * 1e6;
    let n = iters.max(1) as f64;
    let t_avg = us / f64::from(rtt_factor.max(1)) / n;
    let tps = iters as f64 / sample.as_secs_f64().max(1e-9);
    format!(" {size:<7}       {iters}            {t_avg:<7.2}        {tps:<7.2}")
}

/// One latency row, perftest's `REPORT_FMT_LAT`.
pub fn lat_row(size: u64, iters: u64, l: &Lat) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        " {size:<7} {iters}          {:<7.2}        {:<7.2}      {:<7.2}  \t       {:<7.2}     \t{:<7.2}\t\t{:<7.2} \t\t{:<7.2}",
        l.min, l.max, l.typical, l.avg, l.stdev, l.p99, l.p999
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timed_latency_row_is_perftests() {
        // 1000 READs in 2 s: 2000 us each, 500 per second.
        let r = lat_timed_row(4096, 1000, std::time::Duration::from_secs(2), 1);
        assert_eq!(r, " 4096          1000            2000.00        500.00 ");
        // A ping-pong counts both directions in its time: half.
        let w = lat_timed_row(64, 1000, std::time::Duration::from_secs(2), 2);
        assert_eq!(w.split_whitespace().nth(2), Some("1000.00"));
    }

    #[test]
    fn a_timed_run_reports_its_average_and_no_peak() {
        // 1000 x 64 KiB in 2 s: 31.25 MB/sec (of 2^20 bytes, as perftest), 500 messages/s.
        let b = bw_timed(65536, 1000, std::time::Duration::from_secs(2), false);
        assert_eq!(b.peak, 0.0);
        assert!((b.avg - 31.25).abs() < 1e-9, "{b:?}");
        assert!((b.msg_rate - 0.0005).abs() < 1e-12, "{b:?}");
        let g = bw_timed(65536, 1000, std::time::Duration::from_secs(2), true);
        assert!((g.avg - 65536.0 * 500.0 / 125e6).abs() < 1e-9, "{g:?}");
        assert_eq!(
            bw_row(65536, 1000, &b).split_whitespace().nth(2),
            Some("0.00")
        );
    }

    #[test]
    fn latency_is_perftests() {
        // 21 posts 1 µs apart, except one 100 µs gap and one 50 µs gap.
        let mut t = vec![0u64];
        for i in 0..20u64 {
            let gap = match i {
                5 => 100_000,
                9 => 50_000,
                _ => 1_000 + i,
            };
            t.push(t.last().unwrap() + gap);
        }
        let l = lat(&t, 1);
        // 20 differences; the two largest (50 and 100 µs) are out of the mean and median.
        assert_eq!(l.min, 1.0);
        // Median of 18 kept: (1010 + 1011) / 2 in whole ns, as perftest's integer cycles.
        assert!((l.typical - 1.010).abs() < 1e-9, "{l:?}");
        assert_eq!(l.max, 50.0);
        assert!(l.avg < 1.02);
        assert_eq!(l.stdev, 0.0);
        assert_eq!(l.p99, 50.0);
        // Ping-pong tests report half the round trip.
        assert!((lat(&t, 2).min - 0.5).abs() < 1e-12);
    }

    #[test]
    fn bandwidth_and_peak() {
        // 10 operations of 1 MiB: posted at 0 ms, completed every ms; signaled every 5.
        let posted = vec![0u64; 10];
        let completed: Vec<u64> = (1..=10).map(|i| i * 1_000_000).collect();
        let b = bw(1 << 20, &posted, &completed, 5, true, false);
        assert!((b.avg - 1000.0).abs() < 1e-6, "{b:?}");
        // Best: 5 operations posted at 0 and completed by 5 ms = 1 ms each.
        assert!((b.peak - 1000.0).abs() < 1e-6, "{b:?}");
        assert!((b.msg_rate - 0.001).abs() < 1e-12);
        let g = bw(1 << 20, &posted, &completed, 5, false, true);
        assert_eq!(g.peak, 0.0);
        assert!((g.avg - 8.388608).abs() < 1e-9);
    }

    #[test]
    fn rows_line_up_with_the_headers() {
        let r = bw_row(
            65536,
            20,
            &Bw {
                peak: 16.05,
                avg: 15.69,
                msg_rate: 0.000251,
            },
        );
        assert_eq!(
            r,
            " 65536      20               16.05              15.69  \t\t   0.000251"
        );
        let l = lat_row(
            2,
            20,
            &Lat {
                min: 310.48,
                max: 2722.45,
                typical: 753.91,
                avg: 872.92,
                stdev: 670.01,
                p99: 2722.45,
                p999: 2722.45,
            },
        );
        assert_eq!(l, " 2       20          310.48         2722.45      753.91   \t       872.92      \t670.01 \t\t2722.45 \t\t2722.45");
    }
}
