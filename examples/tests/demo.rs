//! `rxe demo` end to end, small: two UDP devices on loopback run rping (checking every pong) and
//! each measurement; the output has rping's lines and perftest's tables.

use rxe_examples::demo::{run, DemoConfig};

#[test]
fn the_demo_runs_rping_and_the_measurements_on_loopback() {
    // A port picked from the process ID can be taken by some other socket on loopback: then
    // the next one is tried (a few times), any other failure fails the test.
    let base = 30000 + (std::process::id() % 20000) as u16;
    let mut result = None;
    for k in 0..5u16 {
        let cfg = DemoConfig {
            port: base + k * 97,
            rping_count: 5,
            iters: 50,
            pcap: None,
        };
        match run(&cfg) {
            Err(e) if e.to_string().contains("Address already in use") => continue,
            r => {
                result = Some(r);
                break;
            }
        }
    }
    let out = result
        .expect("five ports in use")
        .unwrap_or_else(|e| panic!("demo failed: {e}"));
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

#[test]
fn rping_client_and_server_in_two_threads_over_loopback() {
    use rxe_examples::rping::{run as rping, RpingArgs};
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;
    let udp_port = 50000 + (std::process::id() % 10000) as u16;
    let args = move |server: bool| RpingArgs {
        server,
        addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)).into(),
        port: 7174,
        count: 20,
        size: 200,
        verbose: true,
        validate: true,
        udp_port,
        timeout: Duration::from_secs(10),
        persistent: false,
        debug: false,
        self_created_qp: false,
    };
    let srv = std::thread::spawn(move || {
        let mut out = Vec::new();
        rping(&args(true), &mut out).map(|()| String::from_utf8_lossy(&out).into_owned())
    });
    std::thread::sleep(Duration::from_millis(200));
    let mut out = Vec::new();
    rping(&args(false), &mut out).unwrap_or_else(|e| panic!("client: {e}"));
    let client = String::from_utf8_lossy(&out).into_owned();
    assert_eq!(client.lines().count(), 20);
    assert!(client
        .lines()
        .all(|l| l.starts_with("ping data: rdma-ping-")));
    let server = srv
        .join()
        .expect("server thread")
        .unwrap_or_else(|e| panic!("server: {e}"));
    assert!(
        server.ends_with("server DISCONNECT EVENT... (20 pings)\n"),
        "{server}"
    );
}

#[test]
fn the_pcap_tap_records_both_directions_and_every_icrc_verifies() {
    use rxe_examples::{capture, dump};
    let dir = std::env::temp_dir().join(format!("rxe-tap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rping.pcap");
    let cfg = DemoConfig {
        port: 20000 + (std::process::id() % 10000) as u16,
        rping_count: 3,
        iters: 5,
        pcap: Some(path.clone()),
    };
    run(&cfg).unwrap_or_else(|e| panic!("demo failed: {e}"));
    let frames = capture::read_file(&path).expect("the tap wrote a readable pcap");
    let mut text = Vec::new();
    let summary = dump::dump(&frames, &mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(summary.is_clean(), "{text}");
    // Per ping: the client's SEND (ACKed), the server's READ (answered), its go-ahead SEND (ACKed),
    // the client's second SEND (ACKed), the server's WRITE (ACKed) and last go-ahead (ACKed).
    assert_eq!(summary.roce, 3 * 12, "{text}");
    assert_eq!(summary.icrc_ok, summary.roce);
    // Sent frames and received ones (their IPv4 Identification solved) are both there.
    assert!(text.contains("127.0.0.1:") && text.contains("> 127.0.0.1:4791"));
    for op in [
        "RC_SEND_ONLY",
        "RC_RDMA_READ_REQUEST",
        "RC_RDMA_READ_RESPONSE_ONLY",
        "RC_RDMA_WRITE_ONLY",
        "RC_ACKNOWLEDGE",
    ] {
        assert!(text.contains(op), "{op} missing:\n{text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `Write` shared with the test thread.
#[derive(Clone, Default)]
struct SharedOut(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for SharedOut {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_persistent_rping_server_serves_one_client_after_another_with_a_debug_log() {
    use rxe_examples::rping::{run as rping, RpingArgs};
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::{Duration, Instant};
    let udp_port = 40000 + (std::process::id() % 10000) as u16;
    let args = move |server: bool, count: u32| RpingArgs {
        server,
        addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4)).into(),
        port: 7175,
        count,
        size: 64,
        verbose: false,
        validate: true,
        udp_port,
        timeout: Duration::from_secs(10),
        persistent: server,
        debug: true,
        self_created_qp: true,
    };
    let log = SharedOut::default();
    let mut srv_out = log.clone();
    // The server never returns (-P); the thread ends with the test process.
    std::thread::spawn(move || rping(&args(true, 0), &mut srv_out));
    std::thread::sleep(Duration::from_millis(200));
    for (i, count) in [5u32, 7].into_iter().enumerate() {
        let mut out = Vec::new();
        rping(&args(false, count), &mut out).unwrap_or_else(|e| panic!("client {i}: {e}"));
        let client = String::from_utf8_lossy(&out).into_owned();
        assert!(client.contains("created qp 0x"), "{client}");
        assert!(client.contains("rdma_connect successful"), "{client}");
        assert_eq!(
            client.matches("recv completion").count(),
            2 * count as usize,
            "{client}"
        );
    }
    let end = Instant::now() + Duration::from_secs(10);
    let server = loop {
        let s = String::from_utf8_lossy(&log.0.lock().unwrap()).into_owned();
        if s.contains("(7 pings)") || Instant::now() > end {
            break s;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let done: Vec<&str> = server
        .lines()
        .filter(|l| l.starts_with("server DISCONNECT EVENT"))
        .collect();
    assert_eq!(
        done,
        [
            "server DISCONNECT EVENT... (5 pings)",
            "server DISCONNECT EVENT... (7 pings)"
        ],
        "{server}"
    );
    assert!(server.contains("rdma_listen on port 7175"), "{server}");
    assert_eq!(
        server
            .matches("cma_event type RDMA_CM_EVENT_CONNECT_REQUEST")
            .count(),
        2,
        "{server}"
    );
    // Each ping: the start buffer and the sink buffer advertised.
    assert_eq!(server.matches("from peer").count(), 24, "{server}");
    // A QP per client (the one for the next client may not be logged yet).
    assert!(server.matches("created qp 0x").count() >= 2, "{server}");
}
