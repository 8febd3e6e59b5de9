//! `rxe demo` end to end, small: two UDP devices on loopback run rping (checking every pong) and
//! each measurement; the output has rping's lines and perftest's tables.

use rxe_examples::demo::{run, DemoConfig};

#[test]
fn the_demo_runs_rping_and_the_measurements_on_loopback() {
    let cfg = DemoConfig {
        port: 30000 + (std::process::id() % 20000) as u16,
        rping_count: 5,
        iters: 50,
    };
    let out = run(&cfg).unwrap_or_else(|e| panic!("demo failed: {e}"));
    let pings: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("ping data: "))
        .collect();
    assert_eq!(pings.len(), 5);
    assert!(pings[0].starts_with("ping data: rdma-ping-0: ABCDEFG"));
    assert!(pings[4].starts_with("ping data: rdma-ping-4: EFGHIJK"));
    for title in [
        "RDMA_Read BW Test",
        "RDMA_Read Latency Test",
        "RDMA_Write BW Test",
        "Send Latency Test",
    ] {
        assert!(out.contains(title), "{title} missing:\n{out}");
    }
    // The table rows carry the sizes and iteration counts.
    assert!(out
        .lines()
        .any(|l| l.trim_start().starts_with("4096       50")));
    assert!(out
        .lines()
        .any(|l| l.trim_start().starts_with("65536      50")));
    assert!(out.contains("icrc_err 0"));
}
