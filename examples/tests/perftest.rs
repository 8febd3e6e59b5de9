//! `rxe ib_*` against each other over loopback: each of perftest's seven tools as server and
//! client in two threads (two devices, 127.0.0.1 and 127.0.0.2), through the real TCP exchange;
//! and their errors for bad flags and absent peers.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use rxe_examples::perftest::{run, PerftestArgs, Test};

/// The port slot of the CMP_AND_SWAP run (the others FETCH_AND_ADD, as perftest by default).
const CAS_PORT_SLOT: u16 = 7;

fn pair(test: Test, size: Option<u64>, iters: u64, all: bool, n: u16) -> (String, String) {
    pair_in(test, size, iters, all, n, |_| {})
}

fn pair_in(
    test: Test,
    size: Option<u64>,
    iters: u64,
    all: bool,
    n: u16,
    tweak: fn(&mut PerftestArgs),
) -> (String, String) {
    // Below the ephemeral range (32768 and up), where the kernel's own picks for TCP client
    // sockets, and those still in TIME_WAIT, can hold a port a moment before the server binds
    // it. The RoCE UDP port takes the same number (another protocol's space).
    let port = 10000 + ((std::process::id() % 3000) as u16 * 7 + n) % 22000;
    let mut srv = PerftestArgs::new(test);
    srv.bind = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)).into());
    srv.port = port;
    srv.udp_port = port;
    srv.size = size;
    srv.iters = Some(iters);
    srv.all = all;
    srv.timeout = Duration::from_secs(20);
    srv.cmp_swap = test == Test::AtomicBw && n == CAS_PORT_SLOT;
    tweak(&mut srv);
    let mut cli = srv.clone();
    cli.server = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)).into());
    cli.bind = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)).into());
    let s = std::thread::spawn(move || {
        let mut out = Vec::new();
        let r = run(&srv, &mut out);
        (
            r.map_err(|e| e.to_string()),
            String::from_utf8_lossy(&out).into_owned(),
        )
    });
    let mut out = Vec::new();
    let r = run(&cli, &mut out);
    let c = String::from_utf8_lossy(&out).into_owned();
    let (sr, so) = s.join().unwrap();
    r.unwrap_or_else(|e| panic!("{} client: {e}\n{c}", test.name()));
    sr.unwrap_or_else(|e| panic!("{} server: {e}\n{so}", test.name()));
    (so, c)
}

fn row(out: &str, size: u64, iters: u64) -> Option<Vec<f64>> {
    out.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() >= 5 && f[0] == size.to_string() && f[1] == iters.to_string())
            .then(|| f[2..].iter().filter_map(|x| x.parse().ok()).collect())
    })
}

#[test]
fn one_sided_bw_tests_hand_the_clients_report_to_the_server() {
    for (i, (t, size)) in [
        (Test::ReadBw, 4096),
        (Test::WriteBw, 65536),
        (Test::AtomicBw, 8),
    ]
    .into_iter()
    .enumerate()
    {
        let (s, c) = pair(t, Some(size), 300, false, i as u16);
        let cr = row(&c, size, 300).unwrap_or_else(|| panic!("no row:\n{c}"));
        let sr = row(&s, size, 300).unwrap_or_else(|| panic!("no row:\n{s}"));
        assert_eq!(cr, sr, "the server prints the client's figures");
        assert!(
            cr[1] > 0.0 && cr[0] >= cr[1] * 0.99,
            "peak ≥ average > 0: {cr:?}"
        );
        assert!(c.contains(&format!(
            "                    {}",
            match t {
                Test::ReadBw => "RDMA_Read BW Test",
                Test::WriteBw => "RDMA_Write BW Test",
                _ => "Atomic FETCH_AND_ADD BW Test",
            }
        )));
        assert!(
            c.contains(" local address: LID 0000 QPN 0x")
                && c.contains(" GID: 00:00:00:00:00:00:00:00:00:00:255:255:127:00:00:02")
        );
    }
}

#[test]
fn send_bw_measures_on_both_sides() {
    let (s, c) = pair(Test::SendBw, Some(65536), 600, false, 3);
    let cr = row(&c, 65536, 600).unwrap();
    let sr = row(&s, 65536, 600).unwrap();
    assert!(cr[1] > 0.0 && sr[1] > 0.0);
    assert_eq!(sr[0], 0.0, "perftest's server reports no peak");
}

#[test]
fn latency_tests_report_perftests_columns() {
    for (i, (t, size)) in [
        (Test::ReadLat, 4096),
        (Test::WriteLat, 64),
        (Test::SendLat, 64),
    ]
    .into_iter()
    .enumerate()
    {
        let (s, c) = pair(t, Some(size), 600, false, 100 + i as u16);
        let cr = row(&c, size, 600).unwrap_or_else(|| panic!("no row:\n{c}"));
        assert_eq!(cr.len(), 7, "{c}");
        // min ≤ typical ≤ max, min ≤ avg, 99% ≤ 99.9% ≤ ... all positive.
        assert!(
            cr[0] > 0.0 && cr[0] <= cr[2] && cr[2] <= cr[1] && cr[0] <= cr[3],
            "{cr:?}"
        );
        assert!(cr[5] <= cr[6], "{cr:?}");
        if t == Test::ReadLat {
            assert!(
                row(&s, size, 600).is_none(),
                "ib_read_lat's server is passive"
            );
        } else {
            assert_eq!(row(&s, size, 600).map(|r| r.len()), Some(7), "{s}");
        }
    }
}

#[test]
fn all_sizes_run_every_power_of_two() {
    for (k, t) in [Test::ReadBw, Test::SendLat, Test::WriteLat, Test::SendBw]
        .into_iter()
        .enumerate()
    {
        let (s, c) = pair(t, None, 5, true, 200 + k as u16);
        for i in 1..24 {
            assert!(row(&c, 1 << i, 5).is_some(), "{t:?} size {}:\n{c}", 1 << i);
            if t != Test::ReadBw {
                // Both sides of a ping-pong measure.
                assert!(row(&s, 1 << i, 5).is_some(), "{t:?} size {}:\n{s}", 1 << i);
            }
        }
    }
}

#[test]
fn bad_flags_and_absent_peers_are_one_line_errors() {
    for q in [0, 257] {
        let mut a = PerftestArgs::new(Test::ReadBw);
        a.qps = q;
        assert!(run(&a, &mut Vec::new()).unwrap_err().0.starts_with("-q"));
    }
    let mut a = PerftestArgs::new(Test::ReadBw);
    a.mtu = Some(1000);
    assert!(run(&a, &mut Vec::new()).unwrap_err().0.starts_with("-m"));
    let mut a = PerftestArgs::new(Test::AtomicBw);
    a.size = Some(16);
    assert!(run(&a, &mut Vec::new()).unwrap_err().0.contains("8 bytes"));
    // Nobody listens: the client says so within its timeout.
    let mut a = PerftestArgs::new(Test::ReadBw);
    a.server = Some(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
    a.port = 1;
    a.timeout = Duration::from_secs(1);
    let e = run(&a, &mut Vec::new()).unwrap_err().0;
    assert!(e.starts_with("Couldn't connect to 127.0.0.1:1"), "{e}");
}

#[test]
fn a_client_whose_peer_vanishes_reports_it() {
    // A "server" that accepts and closes at once, as a crashed perftest would.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || drop(l.accept()));
    let mut a = PerftestArgs::new(Test::ReadLat);
    a.server = Some(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
    a.port = port;
    a.udp_port = port;
    a.timeout = Duration::from_secs(2);
    let e = run(&a, &mut Vec::new()).unwrap_err().0;
    t.join().unwrap();
    assert!(e.contains("exchange"), "{e}");
}

#[test]
fn every_tool_runs_with_engine_threads_too() {
    for (i, t) in [
        Test::ReadBw,
        Test::ReadLat,
        Test::WriteBw,
        Test::WriteLat,
        Test::SendBw,
        Test::SendLat,
        Test::AtomicBw,
    ]
    .into_iter()
    .enumerate()
    {
        let size = if t == Test::AtomicBw { 8 } else { 4096 };
        let (_, c) = pair_in(t, Some(size), 300, false, 300 + i as u16, |a| {
            a.engine = true
        });
        assert!(row(&c, size, 300).is_some(), "{}:\n{c}", t.name());
    }
}

#[test]
fn atomic_bw_does_compare_and_swap_too() {
    let (s, c) = pair(Test::AtomicBw, Some(8), 300, false, CAS_PORT_SLOT);
    assert!(c.contains("Atomic CMP_AND_SWAP BW Test"), "{c}");
    assert_eq!(row(&c, 8, 300), row(&s, 8, 300));
}

/// The four BW tests, each with a message size and its index (for a port slot).
fn bw_tests() -> impl Iterator<Item = (u16, Test, u64)> {
    [
        (Test::WriteBw, 65536),
        (Test::ReadBw, 4096),
        (Test::AtomicBw, 8),
        (Test::SendBw, 4096),
    ]
    .into_iter()
    .zip(0u16..)
    .map(|((t, size), i)| (i, t, size))
}

#[test]
fn bw_tests_run_on_several_qps() {
    for (i, t, size) in bw_tests() {
        let (s, c) = pair_in(t, Some(size), 200, false, 400 + i, |a| a.qps = 4);
        for out in [&s, &c] {
            assert!(out.contains(" Number of qps   : 4\t"), "{out}");
            assert_eq!(out.matches(" local address: ").count(), 4, "{out}");
            assert_eq!(out.matches(" remote address: ").count(), 4, "{out}");
        }
        // Four QPs, each its own QPN on each side.
        let mut qpns: Vec<&str> = c
            .lines()
            .filter(|l| l.starts_with(" local address: "))
            .filter_map(|l| l.split("QPN ").nth(1))
            .collect();
        qpns.dedup();
        assert_eq!(qpns.len(), 4, "{c}");
        // The row counts every QP's iterations (4 × 200), as perftest's; the one-sided tests'
        // server prints the client's figures, ib_send_bw's server measures its own.
        let cr = row(&c, size, 800).unwrap_or_else(|| panic!("no row:\n{c}"));
        let sr = row(&s, size, 800).unwrap_or_else(|| panic!("no row:\n{s}"));
        if t != Test::SendBw {
            assert_eq!(cr, sr, "{s}");
        }
        assert!(cr[1] > 0.0, "{cr:?}");
    }
    // Latency tests refuse several QPs as perftest does.
    let mut a = PerftestArgs::new(Test::SendLat);
    a.qps = 2;
    a.server = Some(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
    let err = run(&a, &mut Vec::new()).unwrap_err().to_string();
    assert!(
        err.contains("Multiple QPs only available on bw tests"),
        "{err}"
    );
    a.qps = 0;
    assert!(run(&a, &mut Vec::new())
        .unwrap_err()
        .to_string()
        .contains("-q"));
}

#[test]
fn bidirectional_bw_tests_run_both_ways_and_print_the_sum_on_both_sides() {
    for (i, t, size) in bw_tests() {
        let (s, c) = pair_in(t, Some(size), 300, false, 500 + i, |a| {
            a.bidirectional = true
        });
        for out in [&s, &c] {
            assert!(out.contains(" Bidirectional BW Test\n"), "{out}");
            assert!(out.contains(" TX depth        : 128\n"), "{out}");
        }
        let cr = row(&c, size, 300).unwrap_or_else(|| panic!("no row:\n{c}"));
        assert_eq!(Some(cr.clone()), row(&s, size, 300), "{s}");
        assert!(cr[1] > 0.0, "{cr:?}");
    }
    let mut a = PerftestArgs::new(Test::SendLat);
    a.bidirectional = true;
    let err = run(&a, &mut Vec::new()).unwrap_err().to_string();
    assert!(
        err.contains("Bidirectional is only available in BW test"),
        "{err}"
    );
}

/// The row of a table whose iteration count is not known beforehand (a timed run's).
fn any_row(out: &str, size: u64) -> Option<(u64, Vec<f64>)> {
    out.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 5 || f[0] != size.to_string() {
            return None;
        }
        let n = f[1].parse().ok()?;
        Some((n, f[2..].iter().filter_map(|x| x.parse().ok()).collect()))
    })
}

#[test]
fn timed_bw_runs_count_the_sample_and_measure_no_peak() {
    // -D 2: no margin (a quarter of 2 s in whole seconds is 0), two seconds sampled.
    for (i, t, size) in bw_tests() {
        let (s, c) = pair_in(t, Some(size), 1, false, 600 + i, |a| a.duration = Some(2));
        assert!(
            c.starts_with(" WARNING: BW peak won't be measured in this run.\n"),
            "{c}"
        );
        let (n, cr) = any_row(&c, size).unwrap_or_else(|| panic!("no row:\n{c}"));
        // Far more than the one iteration -n asked for: the clock decides. perftest counts a
        // signaled completion as cq_mod (100) operations.
        assert!(n >= 1000 && n % 100 == 0, "{n}\n{c}");
        assert_eq!(cr[0], 0.0, "no peak: {cr:?}");
        // The average is the counted bytes over the two seconds of the sample.
        let avg = size as f64 * n as f64 / 2.0 / 1_048_576.0;
        assert!((cr[1] - avg).abs() <= avg * 1e-3 + 0.01, "{avg} vs {cr:?}");
        let (sn, sr) = any_row(&s, size).unwrap_or_else(|| panic!("no row:\n{s}"));
        if t == Test::SendBw {
            // The receiver counts its own sample, started by the first SEND.
            assert!(sn > 0 && sr[0] == 0.0 && sr[1] > 0.0, "{s}");
        } else {
            assert_eq!((sn, sr), (n, cr), "the server prints the client's figures");
        }
    }
    // Bidirectional: both sides time their own runs and print the same sum.
    let (s, c) = pair_in(Test::WriteBw, Some(4096), 1, false, 620, |a| {
        a.duration = Some(2);
        a.bidirectional = true;
    });
    let (_, cr) = any_row(&c, 4096).unwrap_or_else(|| panic!("no row:\n{c}"));
    let (_, sr) = any_row(&s, 4096).unwrap_or_else(|| panic!("no row:\n{s}"));
    assert!(cr[1] > 0.0 && sr[1] == cr[1], "{c}\n{s}");
}

#[test]
fn timed_runs_refuse_what_perftest_refuses() {
    let err = |f: fn(&mut PerftestArgs)| {
        let mut a = PerftestArgs::new(Test::WriteBw);
        f(&mut a);
        run(&a, &mut Vec::new()).unwrap_err().to_string()
    };
    assert_eq!(
        err(|a| {
            a.duration = Some(4);
            a.margin = Some(2);
        }),
        "please check that DURATION > 2*MARGIN"
    );
    assert_eq!(
        err(|a| {
            a.duration = Some(4);
            a.all = true;
        }),
        "Duration mode currently doesn't support running on all sizes."
    );
    assert!(err(|a| a.margin = Some(1)).starts_with("-f"));
    assert!(err(|a| a.duration = Some(0)).starts_with("-D"));
}

#[test]
fn timed_latency_runs_report_the_average_and_rate_of_the_sample() {
    for (i, (t, size, rtt)) in [
        (Test::ReadLat, 4096u64, 1.0),
        (Test::WriteLat, 64, 2.0),
        (Test::SendLat, 64, 2.0),
    ]
    .into_iter()
    .enumerate()
    {
        let (s, c) = pair_in(t, Some(size), 5, false, 640 + i as u16, |a| {
            a.duration = Some(2)
        });
        assert!(!c.contains("WARNING"), "{c}");
        assert!(
            c.contains(" #bytes        #iterations       t_avg[usec]    tps average\n"),
            "{c}"
        );
        let (n, f) = any_lat_row(&c, size).unwrap_or_else(|| panic!("no row:\n{c}"));
        assert!(n > 100, "{c}");
        // t_avg and tps both come from the same two-second sample.
        let (t_avg, tps) = (f[0], f[1]);
        assert!((tps - n as f64 / 2.0).abs() <= 0.01, "{c}");
        assert!((t_avg - 2e6 / rtt / n as f64).abs() <= 0.01, "{c}");
        if t == Test::ReadLat {
            // Its server is passive and prints no table.
            assert!(any_lat_row(&s, size).is_none(), "{s}");
        } else {
            assert!(any_lat_row(&s, size).is_some_and(|(n, _)| n > 100), "{s}");
        }
    }
}

/// A timed latency row: size, iterations, t_avg, tps.
fn any_lat_row(out: &str, size: u64) -> Option<(u64, Vec<f64>)> {
    out.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() != 4 || f[0] != size.to_string() {
            return None;
        }
        let n = f[1].parse().ok()?;
        Some((n, f[2..].iter().filter_map(|x| x.parse().ok()).collect()))
    })
}

#[test]
fn bidirectional_runs_take_every_size_too() {
    for (k, t) in [Test::WriteBw, Test::SendBw].into_iter().enumerate() {
        let (s, c) = pair_in(t, None, 5, true, 660 + k as u16, |a| a.bidirectional = true);
        for i in 1..24 {
            // Both sides print the same sum for every size, as perftest's RUN_ALL with -b.
            let cr = row(&c, 1 << i, 5).unwrap_or_else(|| panic!("{t:?} {}:\n{c}", 1 << i));
            assert_eq!(
                Some(cr.clone()),
                row(&s, 1 << i, 5),
                "{t:?} {}:\n{s}",
                1 << i
            );
            // (2 bytes five times is 0.00 MB/sec to two places; the message rate shows.)
            assert!(cr[2] > 0.0, "{cr:?}");
        }
        // One result line closes the table, after the last size.
        assert!(c.ends_with(&format!(
            "{}\n",
            rxe_examples::perftest::report::RESULT_LINE
        )));
    }
}

#[test]
fn a_timed_bidirectional_send_run_prints_each_sides_own_count() {
    // perftest's run_iter_bi in DURATION mode swaps no reports: each side counts its SENDs and
    // receives of the sample and prints them.
    let (s, c) = pair_in(Test::SendBw, Some(4096), 1, false, 670, |a| {
        a.duration = Some(2);
        a.bidirectional = true;
    });
    let (cn, cr) = any_row(&c, 4096).unwrap_or_else(|| panic!("no row:\n{c}"));
    let (sn, sr) = any_row(&s, 4096).unwrap_or_else(|| panic!("no row:\n{s}"));
    assert!(cn > 1000 && sn > 1000, "{c}\n{s}");
    assert!(cr[0] == 0.0 && sr[0] == 0.0 && cr[1] > 0.0 && sr[1] > 0.0);
    let avg = 4096.0 * cn as f64 / 2.0 / 1_048_576.0;
    assert!((cr[1] - avg).abs() <= avg * 1e-3 + 0.01, "{avg} vs {cr:?}");
}
