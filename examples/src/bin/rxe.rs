//! `rxe`: the Soft-RoCE command-line tool.
//!
//! - `rxe demo`: two Soft-RoCE devices on loopback run rping and perftest-style READ/WRITE/SEND
//!   measurements, printed like those tools.
//! - `rxe rping -s|-c -a ADDR [-p PORT] [-C N] [-S SIZE] [-v] [-V] [-P] [-d] [-q]`: rdma-core's rping.
//! - `rxe ibv_rc_pingpong [SERVER]`, `rxe ibv_ud_pingpong [SERVER]`: rdma-core's examples.
//! - `rxe ib_read_bw`, `ib_read_lat`, `ib_write_bw`, `ib_write_lat`, `ib_send_bw`, `ib_send_lat`,
//!   `ib_atomic_bw` `[SERVER] [-s SIZE] [-n ITERS] [-a] [-m MTU] [-t DEPTH] [--report_gbits]`:
//!   perftest's tools, interoperating with the real ones.
//! - `rxe devinfo [-a ADDR] [-v]`, `rxe status`: the device an address carries, and the host's
//!   interfaces (like `ibv_devinfo -v` and `rxe_cfg status`).
//! - `rxe dump FILE`: one line per RoCEv2 frame of a pcap/pcapng capture; exit status 0 only if
//!   every RoCE frame parsed and its ICRC verified.
//! - `rxe samples -o FILE`: write a pcap of frames emitted by rxe-wire (every opcode, IPv4 and
//!   IPv6, with and without pad); with `--cm`, the connection manager's MADs instead.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rxe_examples::{capture, demo, devinfo, dump, perftest, pingpong, rping, samples};

#[derive(Parser)]
#[command(name = "rxe", version, about = "Soft-RoCE (RoCEv2) in Rust: tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Two Soft-RoCE devices on loopback: rping, ib_read_bw, ib_read_lat, ib_write_bw, ib_send_lat.
    Demo {
        /// UDP port of both devices (127.0.0.1 and 127.0.0.2).
        #[arg(short, long, default_value_t = 4791)]
        port: u16,
        /// Iterations of each measurement.
        #[arg(short = 'n', long, default_value_t = 1000)]
        iters: u32,
        /// rping iterations.
        #[arg(short = 'C', long, default_value_t = 10)]
        count: u32,
        /// Write the client device's packets of the rping run to this pcap.
        #[arg(long)]
        pcap: Option<PathBuf>,
    },
    /// rping (rdma-core's rping, same exchange on the wire) on a userspace device.
    Rping {
        /// Server.
        #[arg(short = 's', conflicts_with = "client")]
        server: bool,
        /// Client.
        #[arg(short = 'c')]
        client: bool,
        /// Server address (client) or address to bind (server).
        #[arg(short = 'a')]
        addr: rxe_examples::host_addr::HostAddr,
        /// rdma_cm port.
        #[arg(short = 'p', default_value_t = 7174)]
        port: u16,
        /// Pings (client; 0 = forever).
        #[arg(short = 'C', default_value_t = 0)]
        count: u32,
        /// Buffer size.
        #[arg(short = 'S', default_value_t = 64)]
        size: usize,
        /// Print each ping.
        #[arg(short = 'v')]
        verbose: bool,
        /// Check each pong.
        #[arg(short = 'V')]
        validate: bool,
        /// Persistent server: serve one client after another.
        #[arg(short = 'P')]
        persistent: bool,
        /// Debug log (objects, CM events, completions, buffer advertisements).
        #[arg(short = 'd')]
        debug: bool,
        /// Self-created QP (always so here; accepted for rping's command lines).
        #[arg(short = 'q')]
        self_created_qp: bool,
        /// RoCEv2 UDP port of this device and the peer.
        #[arg(long, default_value_t = 4791)]
        udp_port: u16,
        /// Seconds without progress before giving up.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
    /// ibv_rc_pingpong (rdma-core's, same TCP exchange and wire) on a userspace device.
    #[command(name = "ibv_rc_pingpong")]
    RcPingpong {
        /// The server; none: be the server.
        server: Option<rxe_examples::host_addr::HostAddr>,
        /// TCP port of the address exchange.
        #[arg(short = 'p', long, default_value_t = 18515)]
        port: u16,
        /// Message size.
        #[arg(short = 's', long, default_value_t = 4096)]
        size: u32,
        /// Path MTU.
        #[arg(short = 'm', long, default_value_t = 1024)]
        mtu: u32,
        /// Receives posted at a time.
        #[arg(short = 'r', long = "rx-depth", default_value_t = 500)]
        rx_depth: u32,
        /// Exchanges.
        #[arg(short = 'n', long, default_value_t = 1000)]
        iters: u32,
        /// GID index (accepted for compatibility; the device has one GID, its address).
        #[arg(short = 'g', long = "gid-idx")]
        gid_idx: Option<u32>,
        /// This device's address (a server must give it).
        #[arg(long)]
        bind: Option<rxe_examples::host_addr::HostAddr>,
        /// RoCEv2 UDP port of this device and the peer.
        #[arg(long, default_value_t = 4791)]
        udp_port: u16,
        /// Seconds without progress before giving up.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
    /// ibv_ud_pingpong (rdma-core's, same TCP exchange and wire) on a userspace device.
    #[command(name = "ibv_ud_pingpong")]
    UdPingpong {
        /// The server; none: be the server.
        server: Option<rxe_examples::host_addr::HostAddr>,
        /// TCP port of the address exchange.
        #[arg(short = 'p', long, default_value_t = 18515)]
        port: u16,
        /// Message size.
        #[arg(short = 's', long, default_value_t = 2048)]
        size: u32,
        /// Path MTU.
        #[arg(short = 'm', long, default_value_t = 1024)]
        mtu: u32,
        /// Receives posted at a time.
        #[arg(short = 'r', long = "rx-depth", default_value_t = 500)]
        rx_depth: u32,
        /// Exchanges.
        #[arg(short = 'n', long, default_value_t = 1000)]
        iters: u32,
        /// GID index (accepted for compatibility; the device has one GID, its address).
        #[arg(short = 'g', long = "gid-idx")]
        gid_idx: Option<u32>,
        /// This device's address (a server must give it).
        #[arg(long)]
        bind: Option<rxe_examples::host_addr::HostAddr>,
        /// RoCEv2 UDP port of this device and the peer.
        #[arg(long, default_value_t = 4791)]
        udp_port: u16,
        /// Seconds without progress before giving up.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
    /// ib_read_bw (perftest's, same TCP exchange and wire) on a userspace device.
    #[command(name = "ib_read_bw")]
    ReadBw(PerftestOpts),
    /// ib_read_lat (perftest's) on a userspace device.
    #[command(name = "ib_read_lat")]
    ReadLat(PerftestOpts),
    /// ib_write_bw (perftest's) on a userspace device.
    #[command(name = "ib_write_bw")]
    WriteBw(PerftestOpts),
    /// ib_write_lat (perftest's) on a userspace device.
    #[command(name = "ib_write_lat")]
    WriteLat(PerftestOpts),
    /// ib_send_bw (perftest's) on a userspace device.
    #[command(name = "ib_send_bw")]
    SendBw(PerftestOpts),
    /// ib_send_lat (perftest's) on a userspace device.
    #[command(name = "ib_send_lat")]
    SendLat(PerftestOpts),
    /// ib_atomic_bw (perftest's, FETCH_AND_ADD) on a userspace device.
    #[command(name = "ib_atomic_bw")]
    AtomicBw(PerftestOpts),
    /// Describe the device a given address would carry (like ibv_devinfo).
    Devinfo {
        /// The device's address (its GID).
        #[arg(short = 'a', long, default_value = "127.0.0.1")]
        addr: std::net::IpAddr,
        /// Its UDP port.
        #[arg(long, default_value_t = 4791)]
        udp_port: u16,
        /// Also print the limits.
        #[arg(short = 'v', long)]
        verbose: bool,
    },
    /// List this host's interfaces and the RoCE device each can carry (like rxe_cfg status).
    Status,
    /// Print one line per RoCEv2 frame of a pcap or pcapng file and verify every ICRC.
    Dump {
        /// Capture file (Ethernet, raw IP or Linux cooked link type).
        file: PathBuf,
    },
    /// Write a pcap of sample frames emitted by rxe-wire: every opcode, IPv4 and IPv6, with pad.
    Samples {
        /// Output pcap file.
        #[arg(short, long)]
        output: PathBuf,
        /// Write CM MADs on QP1 (REQ, REP, RTU, DREQ, DREP, REJ, MRA) instead.
        #[arg(long)]
        cm: bool,
    },
}

/// perftest's flags.
#[derive(clap::Args)]
struct PerftestOpts {
    /// The server; none: be the server.
    server: Option<rxe_examples::host_addr::HostAddr>,
    /// TCP port of the out-of-band exchange.
    #[arg(short = 'p', long, default_value_t = 18515)]
    port: u16,
    /// Message size (default 65536 for BW tests, 2 for latency tests, 8 for atomics).
    #[arg(short = 's', long)]
    size: Option<u64>,
    /// Run every size from 2 to 2^23.
    #[arg(short = 'a', long)]
    all: bool,
    /// Iterations (default 1000; 5000 for ib_write_bw).
    #[arg(short = 'n', long)]
    iters: Option<u64>,
    /// Path MTU in bytes (default: the port's active MTU, 4096 on loopback, 1024 on Ethernet).
    #[arg(short = 'm', long)]
    mtu: Option<u32>,
    /// Device name (printed).
    #[arg(short = 'd', long = "ib-dev", default_value = "rxe0")]
    device: String,
    /// GID index (printed; the device has one GID, its address).
    #[arg(short = 'x', long = "gid-index", default_value_t = 1)]
    gid_index: i32,
    /// Send queue depth (default 128 for BW tests, 1 for latency tests).
    #[arg(short = 't', long = "tx-depth")]
    tx_depth: Option<u32>,
    /// QPs (the BW tests take up to 256; the latency tests 1, as perftest).
    #[arg(short = 'q', long = "qp", default_value_t = 1)]
    qps: u32,
    /// Bidirectional: both sides send (the BW tests).
    #[arg(short = 'b', long)]
    bidirectional: bool,
    /// Don't fail on CPU frequency differences (accepted; there is no such check here).
    #[arg(short = 'F', long = "CPU-freq")]
    cpu_freq: bool,
    /// Report bandwidth in Gb/s.
    #[arg(long = "report_gbits")]
    report_gbits: bool,
    /// This device's address (default: the route to the server; a server uses the address the
    /// client reached it on).
    #[arg(long)]
    bind: Option<rxe_examples::host_addr::HostAddr>,
    /// RoCEv2 UDP port of this device and the peer.
    #[arg(long, default_value_t = 4791)]
    udp_port: u16,
    /// Seconds without progress before giving up.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// Run the device on a background engine thread instead of busy-polling it.
    #[arg(long)]
    engine: bool,
    /// Run the test for this many seconds instead of a number of iterations.
    #[arg(short = 'D', long, value_parser = clap::value_parser!(u32).range(1..))]
    duration: Option<u32>,
    /// Seconds at either end of a -D run left out of the figures (default: a quarter of it).
    #[arg(short = 'f', long)]
    margin: Option<u32>,
    /// ib_atomic_bw's operation: FETCH_AND_ADD or CMP_AND_SWAP.
    #[arg(short = 'A', long = "atomic_type", default_value = "FETCH_AND_ADD",
          value_parser = ["FETCH_AND_ADD", "CMP_AND_SWAP"])]
    atomic_type: String,
}

fn perftest_main(test: perftest::Test, o: PerftestOpts) -> ExitCode {
    let args = perftest::PerftestArgs {
        test,
        server: o.server,
        port: o.port,
        size: o.size,
        all: o.all,
        iters: o.iters,
        mtu: o.mtu,
        tx_depth: o.tx_depth,
        qps: o.qps,
        bidirectional: o.bidirectional,
        report_gbits: o.report_gbits,
        device: o.device,
        gid_index: o.gid_index,
        bind: o.bind,
        udp_port: o.udp_port,
        timeout: std::time::Duration::from_secs(o.timeout.max(1)),
        engine: o.engine,
        cmp_swap: o.atomic_type == "CMP_AND_SWAP",
        duration: o.duration,
        margin: o.margin,
    };
    let _ = o.cpu_freq;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match perftest::run(&args, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = std::io::Write::flush(&mut out);
            eprintln!("rxe {}: {e}", test.name());
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::ReadBw(o) => perftest_main(perftest::Test::ReadBw, o),
        Command::ReadLat(o) => perftest_main(perftest::Test::ReadLat, o),
        Command::WriteBw(o) => perftest_main(perftest::Test::WriteBw, o),
        Command::WriteLat(o) => perftest_main(perftest::Test::WriteLat, o),
        Command::SendBw(o) => perftest_main(perftest::Test::SendBw, o),
        Command::SendLat(o) => perftest_main(perftest::Test::SendLat, o),
        Command::AtomicBw(o) => perftest_main(perftest::Test::AtomicBw, o),
        Command::Demo {
            port,
            iters,
            count,
            pcap,
        } => {
            let cfg = demo::DemoConfig {
                port,
                rping_count: count,
                iters: iters.max(1),
                pcap,
            };
            match demo::run(&cfg) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("rxe demo: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Rping {
            server,
            client,
            addr,
            port,
            count,
            size,
            verbose,
            validate,
            persistent,
            debug,
            self_created_qp,
            udp_port,
            timeout,
        } => {
            if server == client {
                eprintln!("rxe rping: give exactly one of -s (server) and -c (client)");
                return ExitCode::from(2);
            }
            let args = rping::RpingArgs {
                server,
                addr,
                port,
                count,
                size,
                verbose,
                validate,
                udp_port,
                timeout: std::time::Duration::from_secs(timeout.max(1)),
                persistent,
                debug,
                self_created_qp,
            };
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            match rping::run(&args, &mut out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("rxe rping: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::RcPingpong {
            server,
            port,
            size,
            mtu,
            rx_depth,
            iters,
            gid_idx: _,
            bind,
            udp_port,
            timeout,
        } => {
            let args = pingpong::PingpongArgs {
                ud: false,
                server,
                port,
                size,
                mtu,
                rx_depth,
                iters: iters.max(1),
                bind,
                udp_port,
                timeout: std::time::Duration::from_secs(timeout.max(1)),
            };
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            match pingpong::run(&args, &mut out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("rxe ibv_rc_pingpong: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::UdPingpong {
            server,
            port,
            size,
            mtu,
            rx_depth,
            iters,
            gid_idx: _,
            bind,
            udp_port,
            timeout,
        } => {
            let args = pingpong::PingpongArgs {
                ud: true,
                server,
                port,
                size,
                mtu,
                rx_depth,
                iters: iters.max(1),
                bind,
                udp_port,
                timeout: std::time::Duration::from_secs(timeout.max(1)),
            };
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            match pingpong::run(&args, &mut out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("rxe ibv_ud_pingpong: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Devinfo {
            addr,
            udp_port,
            verbose,
        } => match devinfo::devinfo(addr, udp_port, verbose) {
            Ok(t) => {
                print!("{t}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("rxe devinfo: {e}");
                ExitCode::from(1)
            }
        },
        Command::Status => {
            print!("{}", devinfo::status());
            ExitCode::SUCCESS
        }
        Command::Dump { file } => {
            let frames = match capture::read_file(&file) {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("rxe dump: {}: {e}", file.display());
                    return ExitCode::from(2);
                }
            };
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            match dump::dump(&frames, &mut out) {
                Ok(s) if s.is_clean() => ExitCode::SUCCESS,
                Ok(_) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("rxe dump: {}: {e}", file.display());
                    ExitCode::from(2)
                }
            }
        }
        Command::Samples { output, cm } => {
            let frames = if cm {
                samples::cm_frames()
            } else {
                samples::frames()
            };
            let result = frames.map_err(|e| e.to_string()).and_then(|f| {
                capture::write_pcap(&output, &f)
                    .map(|()| f.len())
                    .map_err(|e| e.to_string())
            });
            match result {
                Ok(n) => {
                    println!("wrote {n} frames to {}", output.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("rxe samples: {}: {e}", output.display());
                    ExitCode::from(2)
                }
            }
        }
    }
}
