//! The `rxe` perftest tools as two processes on loopback (server and client binaries), and a
//! server process killed mid-transfer: the client stops with a one-line error within its
//! timeout instead of hanging.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn rxe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rxe"))
}

fn ports(n: u16) -> (String, String) {
    // Below the ephemeral range (32768 and up), whose ports TCP clients and TIME_WAIT hold.
    let p = 10000 + ((std::process::id() % 10000) as u16 * 2 + n * 8000) % 22000;
    (p.to_string(), (p + 1).to_string())
}

#[test]
fn server_and_client_processes_run_each_tool() {
    for (i, (tool, size)) in [
        ("ib_read_bw", "4096"),
        ("ib_send_lat", "64"),
        ("ib_write_bw", "65536"),
    ]
    .into_iter()
    .enumerate()
    {
        let (tcp, udp) = ports(i as u16);
        let common = ["-s", size, "-n", "500", "-p", &tcp, "--udp-port", &udp];
        let srv = rxe()
            .arg(tool)
            .args(["--bind", "127.0.0.1"])
            .args(common)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let cli = rxe()
            .arg(tool)
            .arg("127.0.0.1")
            .args(["--bind", "127.0.0.2"])
            .args(common)
            .output()
            .unwrap();
        let srv = srv.wait_with_output().unwrap();
        let (c, s) = (
            String::from_utf8_lossy(&cli.stdout),
            String::from_utf8_lossy(&srv.stdout),
        );
        assert!(
            cli.status.success(),
            "{tool} client: {c}{}",
            String::from_utf8_lossy(&cli.stderr)
        );
        assert!(
            srv.status.success(),
            "{tool} server: {s}{}",
            String::from_utf8_lossy(&srv.stderr)
        );
        let row = format!(" {size:<7}");
        assert!(c.lines().any(|l| l.starts_with(&row)), "{c}");
        assert!(s.lines().any(|l| l.starts_with(&row)), "{s}");
    }
}

#[test]
fn a_killed_server_leaves_the_client_a_clear_error() {
    let (tcp, udp) = ports(3);
    let common = [
        "-s",
        "65536",
        "-n",
        "10000000",
        "-p",
        &tcp,
        "--udp-port",
        &udp,
    ];
    let mut srv = rxe()
        .arg("ib_write_bw")
        .args(["--bind", "127.0.0.1"])
        .args(common)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let cli = rxe()
        .arg("ib_write_bw")
        .arg("127.0.0.1")
        .args(["--bind", "127.0.0.2", "--timeout", "2"])
        .args(common)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Let the transfer get going, then kill the server.
    std::thread::sleep(Duration::from_millis(700));
    srv.kill().unwrap();
    srv.wait().unwrap();
    let killed = Instant::now();
    let out = cli.wait_with_output().unwrap();
    let waited = killed.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("rxe ib_write_bw: no completion in 2s"),
        "{err}"
    );
    assert!(err.contains("is the peer still there?"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(waited < Duration::from_secs(6), "{waited:?}");
}

#[test]
fn rping_processes_check_1000_pings_of_65535_bytes() {
    let (tcp, udp) = ports(4);
    let common = ["-p", &tcp, "--udp-port", &udp, "-S", "65535"];
    // The server on its own loopback address; the client's route to it starts at 127.0.0.1.
    let srv = rxe()
        .args(["rping", "-s", "-a", "127.0.0.5"])
        .args(common)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let cli = rxe()
        .args(["rping", "-c", "-a", "127.0.0.5", "-V", "-C", "1000"])
        .args(common)
        .output()
        .unwrap();
    let srv = srv.wait_with_output().unwrap();
    assert!(
        cli.status.success(),
        "client: {}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert!(srv.status.success());
    assert!(
        String::from_utf8_lossy(&srv.stdout).contains("server DISCONNECT EVENT... (1000 pings)")
    );
}
