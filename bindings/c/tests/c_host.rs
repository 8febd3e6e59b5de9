//! The C side of rxe-capi, built with the system compiler and run:
//! - `tests/c/host.c` (two devices on an in-memory wire with a 16-frame NIC queue: RC SEND,
//!   WRITE, READ, atomics, UD through an AH into an SRQ, refusals, transmission control) as
//!   C11 with `-Wall -Wextra -Werror`, as C++17, and under AddressSanitizer + UBSan with leak
//!   checks;
//! - the README's C example, which must compile and run;
//! - an RC WRITE frame from the C host compared byte for byte with the one rxe-user sends for
//!   the same parameters, both checked by `rxe dump`'s decoder (ICRC included).
//!
//! These need `cc` and `c++` (gcc with libasan); `.ci/run` installs them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;

use rxe_transport::device::{QpInit, RcConnect};
use rxe_transport::{Access, SendFlags, SendWr, Sge, WcStatus, WrOpcode};
use rxe_user::{UdpDevice, UdpDeviceConfig};
use rxe_wire::{Psn, Rkey};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where cargo put librxe.a for this test: target/<profile>/deps beside the test binary (`cargo
/// test` builds it there), or target/<profile> (`cargo build`).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("deps dir");
    let found = [deps, deps.parent().expect("profile dir")]
        .into_iter()
        .find(|d| d.join("librxe.a").exists())
        .unwrap_or_else(|| panic!("no librxe.a in {} or its parent", deps.display()))
        .to_path_buf();
    found
}

fn out_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("c_host")
        .join(name);
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

/// Compiles `src` against include/rxe.h and librxe.a into `out`.
fn compile(compiler: &str, flags: &[&str], src: &Path, out: &Path) {
    let lib = lib_dir().join("librxe.a");
    let mut cmd = Command::new(compiler);
    cmd.args(flags)
        .arg("-I")
        .arg(crate_dir().join("include"))
        .arg(src)
        .args(["-x", "none"])
        .arg(&lib)
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(out);
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("{compiler}: {e} (install gcc and g++)"));
    assert!(
        o.status.success(),
        "{compiler} {flags:?} {} failed:\n{}",
        src.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Runs `exe` with `args`; returns stdout; fails the test on a non-zero exit.
fn run(exe: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let o = Command::new(exe)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run the C host");
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{} {args:?} exited with {}:\n{stdout}\n{}",
        exe.display(),
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    stdout
}

const STRICT_C: &[&str] = &["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1"];

fn host_c() -> PathBuf {
    crate_dir().join("tests/c/host.c")
}

#[test]
fn c_host_as_c11() {
    let exe = out_dir("c11").join("host");
    compile("cc", STRICT_C, &host_c(), &exe);
    let out = run(&exe, &[], &[]);
    print!("{out}");
    assert!(out.contains("c host: every check passed"));
    // The transmission-control lines are the figures the issue asks for.
    assert!(out.contains("tx control watermark 8") && out.contains("tx control bandwidth"));
}

#[test]
fn c_host_as_cplusplus() {
    let exe = out_dir("cxx").join("host");
    compile(
        "c++",
        &[
            "-std=c++17",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-O1",
            "-x",
            "c++",
        ],
        &host_c(),
        &exe,
    );
    assert!(run(&exe, &[], &[]).contains("c host: every check passed"));
}

#[test]
fn c_host_under_address_sanitizer() {
    let exe = out_dir("asan").join("host");
    let mut flags = STRICT_C.to_vec();
    flags.extend([
        "-g",
        "-fsanitize=address,undefined",
        "-fno-omit-frame-pointer",
    ]);
    flags.push("-fno-sanitize-recover=all");
    compile("cc", &flags, &host_c(), &exe);
    let out = run(
        &exe,
        &[],
        &[(
            "ASAN_OPTIONS",
            "detect_leaks=1:abort_on_error=0:exitcode=23",
        )],
    );
    assert!(out.contains("c host: every check passed"));
}

/// The first ```c block of the README.
#[test]
fn readme_c_example_compiles_and_runs() {
    let readme = std::fs::read_to_string(crate_dir().join("../../README.md")).expect("README");
    let start = readme.find("```c\n").expect("a ```c block in the README") + 5;
    let len = readme[start..].find("```").expect("its end");
    let code = &readme[start..start + len];
    let lines = code.lines().count();
    assert!(lines <= 20, "the README example is {lines} lines");
    let dir = out_dir("readme");
    let src = dir.join("example.c");
    std::fs::write(&src, code).expect("write");
    let exe = dir.join("example");
    compile("cc", STRICT_C, &src, &exe);
    let out = run(&exe, &[], &[]);
    assert!(out.contains("rxe0"), "the example prints its device: {out}");
}

/// The RC WRITE frame rxe-user sends: 256 bytes 0..=255 from QP 0x11 at 127.0.0.51 to QP 0x11
/// at 127.0.0.52, UDP port 4791 both ways, PSN `psn`. Returns the frame (Ethernet, as rxe-user's
/// pcap tap writes it) and the rkey and address it wrote to.
fn rxe_user_write_frame(psn: u32, dir: &Path) -> (Vec<u8>, u32, u64) {
    let ip = |last| IpAddr::V4(Ipv4Addr::new(127, 0, 0, last));
    let open = |last: u8, seed: u64| {
        let mut c = UdpDeviceConfig::new(SocketAddr::new(ip(last), 4791));
        c.seed = seed;
        c.faults = None;
        UdpDevice::open(c).expect("bind 127.0.0.x:4791")
    };
    let (mut a, mut b) = (open(51, 1), open(52, 2));
    let tap = dir.join("rxe-user-write.pcap");
    a.tap(&tap).expect("tap");
    const BUF: u64 = 0x10_0000;
    let access = Access::LOCAL_WRITE | Access::REMOTE_WRITE;
    let mut ends = Vec::new();
    for d in [&mut a, &mut b] {
        let c = d.core();
        let pd = c.alloc_pd().expect("pd");
        let mr = c.reg_mr(pd, BUF, 4096, access).expect("mr");
        let cq = c.create_cq(16).expect("cq");
        let qp = c.create_qp(&QpInit::rc(pd, cq)).expect("qp");
        ends.push((qp, cq, mr));
    }
    assert_eq!(ends[0].0.value(), 0x11);
    let (qa, qb) = (ends[0].0, ends[1].0);
    a.core()
        .connect_rc(
            qa,
            &RcConnect::new(ip(51), ip(52), qb, Psn::new(psn), Psn::new(0x200)),
        )
        .expect("connect");
    b.core()
        .connect_rc(
            qb,
            &RcConnect::new(ip(52), ip(51), qa, Psn::new(0x200), Psn::new(psn)),
        )
        .expect("connect");
    let (lkey, rkey) = (ends[0].2.lkey, ends[1].2.rkey);
    let src = a.core().mr_bytes_mut(lkey).expect("region");
    for (i, x) in src[..256].iter_mut().enumerate() {
        *x = i as u8;
    }
    let wr = SendWr::new(
        1,
        WrOpcode::RdmaWrite(rxe_transport::Remote {
            addr: BUF,
            rkey: Rkey(rkey),
        }),
        Some(Sge {
            addr: BUF,
            length: 256,
            lkey,
        }),
        SendFlags::SIGNALED,
    );
    a.core().post_send(qa, wr).expect("post");
    let mut done = None;
    for _ in 0..200_000 {
        a.progress().expect("a");
        b.progress().expect("b");
        if let Some(wc) = a.core().poll_cq(ends[0].1) {
            done = Some(wc);
            break;
        }
    }
    let wc = done.expect("the WRITE completed");
    assert_eq!(wc.status, WcStatus::Success);
    let landed = b.core().mr_bytes(ends[1].2.lkey).expect("region")[..256].to_vec();
    assert!(landed.iter().enumerate().all(|(i, &x)| x == i as u8));
    a.flush_tap().expect("flush");
    drop(a);
    let frames = rxe_examples::capture::read_file(&tap).expect("tap pcap");
    let frame = frames
        .iter()
        .find(|f| f.data.len() > 42 && f.data[42] == 0x0a)
        .expect("a WRITE ONLY frame in the tap")
        .data
        .clone();
    (frame, rkey, BUF)
}

/// Decodes a pcap with `rxe dump`'s decoder: one RoCE frame, ICRC good.
fn dump_one(path: &Path) -> String {
    let frames = rxe_examples::capture::read_file(path).expect("pcap");
    let mut out = Vec::new();
    let sum = rxe_examples::dump::dump(&frames, &mut out).expect("dump");
    let text = String::from_utf8(out).expect("utf8");
    assert_eq!(
        (sum.roce, sum.icrc_ok),
        (1, 1),
        "{}: {text}",
        path.display()
    );
    text
}

#[test]
fn c_host_write_frame_is_byte_identical_to_rxe_user() {
    let dir = out_dir("frame");
    let psn = 0x12_3456;
    let (user, rkey, va) = rxe_user_write_frame(psn, &dir);
    let exe = dir.join("host");
    compile("cc", STRICT_C, &host_c(), &exe);
    let c_pcap = dir.join("c-host-write.pcap");
    run(
        &exe,
        &[
            "--frame",
            c_pcap.to_str().expect("utf8 path"),
            "--rkey",
            &format!("{rkey:#x}"),
            "--va",
            &format!("{va:#x}"),
            "--psn",
            &format!("{psn:#x}"),
        ],
        &[],
    );
    let c_frames = rxe_examples::capture::read_file(&c_pcap).expect("C host pcap");
    assert_eq!(c_frames.len(), 1);
    assert_eq!(
        c_frames[0].data, user,
        "the C host's WRITE frame differs from rxe-user's"
    );
    let user_pcap = dir.join("rxe-user-write-only.pcap");
    rxe_examples::capture::write_pcap(&user_pcap, &[user]).expect("write pcap");
    let (c_line, u_line) = (dump_one(&c_pcap), dump_one(&user_pcap));
    assert_eq!(c_line, u_line);
    assert!(c_line.contains("RC_RDMA_WRITE_ONLY"), "{c_line}");
    print!("{c_line}");
}

/// A network namespace for one test, with a veth pair vA <-> vB up (no IP addresses: the C hosts
/// own 10.99.0.1 on vA and 10.99.0.2 on vB) and loopback up; deleted on drop.
struct Netns(String);

impl Netns {
    /// `None` where namespaces cannot be made (not root, or a container without the right):
    /// the caller then checks only that its programs compile.
    fn new(tag: &str) -> Option<Netns> {
        if !root() {
            return None;
        }
        let name = format!("rxe-capi-{tag}-{}", std::process::id());
        let made = Command::new("ip").args(["netns", "add", &name]).output();
        if !made.is_ok_and(|o| o.status.success()) {
            return None;
        }
        let ns = Netns(name);
        ns.ip(&[
            "-n", &ns.0, "link", "add", "vA", "type", "veth", "peer", "name", "vB",
        ]);
        for dev in ["vA", "vB", "lo"] {
            ns.ip(&["-n", &ns.0, "link", "set", dev, "up"]);
        }
        Some(ns)
    }
    fn ip(&self, args: &[&str]) {
        let o = Command::new("ip").args(args).output().expect("ip(8)");
        assert!(
            o.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    /// Runs `exe args` in the namespace (at most 60 s).
    fn command(&self, exe: &Path, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, "timeout", "60"])
            .arg(exe)
            .args(args);
        c
    }
    /// Starts `server`, then runs `client` until it gets past connecting; both must succeed.
    /// Returns (server's output, client's output), stdout and stderr together.
    fn pair(&self, exe: &Path, server: &[&str], client: &[&str]) -> (String, String) {
        let srv = self
            .command(exe, server)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("server");
        let mut client_out = String::new();
        for _ in 0..50 {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let o = self.command(exe, client).output().expect("client");
            client_out = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            if !client_out.contains("couldn't connect") {
                assert!(o.status.success(), "client: {client_out}");
                break;
            }
        }
        let s = srv.wait_with_output().expect("server output");
        let server_out = format!(
            "{}{}",
            String::from_utf8_lossy(&s.stdout),
            String::from_utf8_lossy(&s.stderr)
        );
        assert!(s.status.success(), "server: {server_out}");
        (server_out, client_out)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Compiles one of `examples/*.c` (with packet_nic.h) as gnu11, warnings as errors.
fn example(name: &str) -> PathBuf {
    let exe = out_dir("examples").join(name);
    compile(
        "cc",
        &["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-O2"],
        &crate_dir().join(format!("examples/{name}.c")),
        &exe,
    );
    exe
}

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() == 0 }
}

/// `examples/rc_pingpong.c` (ibv_rc_pingpong on the C API over AF_PACKET) against itself in a
/// namespace this test makes, the TCP exchange over the namespace's loopback: 200 ping-pongs of
/// 4096 bytes, counters clean. Against Linux it runs in tests/interop/run. Running needs root
/// (namespaces, CAP_NET_RAW); without root only the compilation is checked.
#[test]
fn rc_pingpong_over_af_packet_in_a_namespace() {
    let exe = example("rc_pingpong");
    let Some(ns) = Netns::new("pp") else {
        eprintln!(
            "rc_pingpong_over_af_packet_in_a_namespace: no network namespaces here: compiled only"
        );
        return;
    };
    let (server, client) = ns.pair(
        &exe,
        &["-i", "vA", "-a", "10.99.0.1", "-n", "200", "-t", "20"],
        &[
            "-i",
            "vB",
            "-a",
            "10.99.0.2",
            "-n",
            "200",
            "-t",
            "20",
            "127.0.0.1",
        ],
    );
    for (out, peer) in [(&client, "10.99.0.1"), (&server, "10.99.0.2")] {
        assert!(out.contains("200 iters in"), "{out}");
        assert!(
            out.contains("remote address: LID 0x0000, QPN 0x000011"),
            "{out}"
        );
        assert!(out.contains(&format!("GID ::ffff:{peer}")), "{out}");
        assert!(
            out.contains("rcvd_seq_err 0 retry_exceeded_err 0 tx_queue_full 0"),
            "{out}"
        );
    }
    print!("{client}");
}

/// `examples/rping.c` (rping on the C API: rdma_cm through QP1, then READ/WRITE pings) against
/// itself in a namespace: 20 pings of 100 bytes, each checked (-V) and printed by both sides.
#[test]
fn rping_over_af_packet_in_a_namespace() {
    let exe = example("rping");
    let Some(ns) = Netns::new("rp") else {
        eprintln!("rping_over_af_packet_in_a_namespace: no network namespaces here: compiled only");
        return;
    };
    let (server, client) = ns.pair(
        &exe,
        &[
            "-s",
            "-i",
            "vA",
            "-a",
            "10.99.0.1",
            "-v",
            "-S",
            "100",
            "-t",
            "20",
        ],
        &[
            "-c",
            "-i",
            "vB",
            "-I",
            "10.99.0.2",
            "-a",
            "10.99.0.1",
            "-C",
            "20",
            "-v",
            "-V",
            "-S",
            "100",
            "-t",
            "20",
        ],
    );
    assert_eq!(
        client.matches("ping data: rdma-ping-").count(),
        20,
        "{client}"
    );
    assert!(client.contains("ping data: rdma-ping-19: "), "{client}");
    assert_eq!(
        server.matches("server ping data: rdma-ping-").count(),
        20,
        "{server}"
    );
    assert!(
        server.contains("server DISCONNECT EVENT... (20 pings)"),
        "{server}"
    );
    for out in [&client, &server] {
        assert!(out.contains("rcvd_seq_err 0 retry_exceeded_err 0"), "{out}");
    }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}
