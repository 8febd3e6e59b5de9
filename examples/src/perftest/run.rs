//! One perftest run: device and buffer, the exchange, the QP's attributes, the traffic of the
//! test (`perftest_resources.c`: `run_iter_bw`, `run_iter_bw_server`, `run_iter_lat`,
//! `run_iter_lat_write`, `run_iter_lat_send`) and the reports.

use crate::host_addr::HostAddr;
use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use rxe_transport::device::{CqId, Device, QpInit, RcConnect, QP_DEPTH};
use rxe_transport::qp::MAX_RD_ATOMIC;
use rxe_transport::{
    Access, Mtu, QpAttr, QpState, QpType, RecvWr, Remote, SendFlags, SendWr, Sge, WcStatus,
    WorkCompletion, WrOpcode,
};
use rxe_user::{Engine, UdpDevice, UdpDeviceConfig};
use rxe_wire::{Psn, Qpn, Rkey};

use super::duration::{Clock, Phase, Timed};
use super::exchange::{BwReport, KeyMsg, Oob};
use super::report::{self, RESULT_LINE};

/// Which perftest tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Test {
    /// `ib_read_bw`.
    ReadBw,
    /// `ib_read_lat`.
    ReadLat,
    /// `ib_write_bw`.
    WriteBw,
    /// `ib_write_lat`.
    WriteLat,
    /// `ib_send_bw`.
    SendBw,
    /// `ib_send_lat`.
    SendLat,
    /// `ib_atomic_bw` (FETCH_AND_ADD).
    AtomicBw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Read,
    Write,
    Send,
    Atomic,
}

impl Test {
    /// The tool's name, e.g. `ib_read_bw`.
    pub fn name(self) -> &'static str {
        match self {
            Test::ReadBw => "ib_read_bw",
            Test::ReadLat => "ib_read_lat",
            Test::WriteBw => "ib_write_bw",
            Test::WriteLat => "ib_write_lat",
            Test::SendBw => "ib_send_bw",
            Test::SendLat => "ib_send_lat",
            Test::AtomicBw => "ib_atomic_bw",
        }
    }

    fn verb(self) -> Verb {
        match self {
            Test::ReadBw | Test::ReadLat => Verb::Read,
            Test::WriteBw | Test::WriteLat => Verb::Write,
            Test::SendBw | Test::SendLat => Verb::Send,
            Test::AtomicBw => Verb::Atomic,
        }
    }

    fn is_bw(self) -> bool {
        matches!(
            self,
            Test::ReadBw | Test::WriteBw | Test::SendBw | Test::AtomicBw
        )
    }

    /// BW tests in which only the client measures and hands its report to the server.
    fn one_sided_bw(self) -> bool {
        matches!(self, Test::ReadBw | Test::WriteBw | Test::AtomicBw)
    }

    fn title(self, cmp_swap: bool, duplex: bool) -> String {
        let verb = match self.verb() {
            Verb::Read => "RDMA_Read",
            Verb::Write => "RDMA_Write",
            Verb::Send => "Send",
            Verb::Atomic if cmp_swap => "Atomic CMP_AND_SWAP",
            Verb::Atomic => "Atomic FETCH_AND_ADD",
        };
        let kind = match (self.is_bw(), duplex) {
            (true, true) => "Bidirectional BW",
            (true, false) => "BW",
            _ => "Latency",
        };
        format!("{verb} {kind} Test")
    }

    fn default_size(self) -> u64 {
        match self {
            Test::AtomicBw => 8,
            t if t.is_bw() => 65536,
            _ => 2,
        }
    }

    fn default_iters(self) -> u64 {
        if self == Test::WriteBw {
            5000
        } else {
            1000
        }
    }
}

/// perftest's options (those this implementation takes).
#[derive(Debug, Clone)]
pub struct PerftestArgs {
    /// The tool.
    pub test: Test,
    /// The server to connect to; `None`: be the server.
    pub server: Option<HostAddr>,
    /// `-p`: TCP port of the exchange (18515).
    pub port: u16,
    /// `-s`: message size (default: 65536 for BW, 2 for latency, 8 for atomic).
    pub size: Option<u64>,
    /// `-a`: every size from 2 to 2^23.
    pub all: bool,
    /// `-n`: iterations (default 1000; 5000 for ib_write_bw).
    pub iters: Option<u64>,
    /// `-m`: path MTU in bytes (default: the port's active MTU: 4096 on loopback, 1024 on
    /// 1500-byte Ethernet).
    pub mtu: Option<u32>,
    /// `-t`: send queue depth (default 128 for BW, 1 for latency).
    pub tx_depth: Option<u32>,
    /// `-q`: QPs (more than one: the BW tests, up to 256).
    pub qps: u32,
    /// `-b`: bidirectional (the BW tests): both sides run, each prints the sum.
    pub bidirectional: bool,
    /// `--report_gbits`.
    pub report_gbits: bool,
    /// `-d`: the device name printed (rxe0).
    pub device: String,
    /// `-x`: GID index printed (the GID is always the device's address).
    pub gid_index: i32,
    /// This device's address (default: the route to the server; a server takes the address
    /// the client reached it on).
    pub bind: Option<HostAddr>,
    /// RoCEv2 UDP port of this device and the peer.
    pub udp_port: u16,
    /// Give up when nothing happens for this long.
    pub timeout: Duration,
    /// Run the device on an engine thread (rxe-user's background mode) instead of busy-polling
    /// it in this one.
    pub engine: bool,
    /// `-A CMP_AND_SWAP` (ib_atomic_bw; FETCH_AND_ADD otherwise).
    pub cmp_swap: bool,
    /// `-D`: run the test for this many seconds instead of `-n` iterations.
    pub duration: Option<u32>,
    /// `-f`: seconds at either end of a `-D` run left out of the figures (default: a quarter
    /// of the duration).
    pub margin: Option<u32>,
}

impl PerftestArgs {
    /// perftest's defaults for `test`, as a server.
    pub fn new(test: Test) -> PerftestArgs {
        PerftestArgs {
            test,
            server: None,
            port: 18515,
            size: None,
            all: false,
            iters: None,
            mtu: None,
            tx_depth: None,
            qps: 1,
            bidirectional: false,
            report_gbits: false,
            device: "rxe0".into(),
            gid_index: 1,
            bind: None,
            udp_port: 4791,
            timeout: Duration::from_secs(10),
            engine: false,
            cmp_swap: false,
            duration: None,
            margin: None,
        }
    }
}

/// What went wrong, in one line.
#[derive(Debug)]
pub struct PerftestError(pub String);

impl std::fmt::Display for PerftestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn e<T: std::fmt::Display>(what: &'static str) -> impl Fn(T) -> PerftestError {
    move |x| PerftestError(format!("{what}: {x}"))
}

/// Where our buffer lives in the device's address space (any address works; this one looks
/// like a Linux user address, as perftest's would).
const BUF: u64 = 0x5600_0000_0000;
const CYCLE_BUFFER: u64 = 4096;
/// Most QPs `-q` takes.
const MAX_QPS: usize = 256;
const CACHE_LINE: u64 = 64;
/// Receives posted ahead (perftest's 512, capped at the device's queue depth).
const RX_DEPTH: u64 = if QP_DEPTH < 512 { QP_DEPTH as u64 } else { 512 };

fn mtu_enum(m: Mtu) -> u8 {
    match m {
        Mtu::M256 => 1,
        Mtu::M512 => 2,
        Mtu::M1024 => 3,
        Mtu::M2048 => 4,
        Mtu::M4096 => 5,
    }
}

fn mtu_from_enum(v: u8) -> Mtu {
    match v {
        1 => Mtu::M256,
        2 => Mtu::M512,
        4 => Mtu::M2048,
        5 => Mtu::M4096,
        _ => Mtu::M1024,
    }
}

/// How the device makes progress.
enum Dev {
    /// Busy-polled by this thread (lowest latency).
    Poll(Box<UdpDevice>),
    /// Run by an engine thread; this one posts and waits.
    Engine(Engine),
}

/// The RDMA side of a run: device, CQs, QP, buffer.
struct Rdma {
    dev: Dev,
    /// The engine's receive count when last looked at.
    rx_seen: u64,
    /// ib_atomic_bw: CMP_AND_SWAP instead of FETCH_AND_ADD.
    cmp_swap: bool,
    /// The first QP (the only one but for `-q`).
    qpn: Qpn,
    /// Every QP (`-q`), `qpn` first.
    qps: Vec<Qpn>,
    /// `ib_send_bw -b`: the size of the receives the BW loop also services (perftest's
    /// `run_iter_bi`); `None` otherwise.
    duplex_recv: Option<u64>,
    scq: CqId,
    rcq: CqId,
    lkey: u32,
    /// Size of each half of the buffer (`BUFF_SIZE`).
    half: u64,
    timeout: Duration,
    server: bool,
}

impl Rdma {
    /// Runs `f` on the device core.
    fn with<R>(&mut self, f: impl FnOnce(&mut Device) -> R) -> Result<R, PerftestError> {
        match &mut self.dev {
            Dev::Poll(d) => Ok(f(d.core())),
            Dev::Engine(en) => en.with(|d| f(d.core())).map_err(e("device")),
        }
    }

    /// One turn of progress and the next completion on `cq`, if any; with whether anything
    /// arrived from the network (only that shows the peer alive: a requester retransmitting
    /// to a dead peer is busy too).
    fn turn(&mut self, cq: Option<CqId>) -> Result<(Option<WorkCompletion>, bool), PerftestError> {
        match &mut self.dev {
            Dev::Poll(d) => {
                // A completion already there is taken before the device runs again: what the
                // caller posts in answer then leaves with the ACKs the device holds.
                if let Some(wc) = cq.and_then(|cq| d.core().poll_cq(cq)) {
                    return Ok((Some(wc), false));
                }
                let heard = d.progress_received().map_err(e("device"))?;
                Ok((cq.and_then(|cq| d.core().poll_cq(cq)), heard))
            }
            Dev::Engine(en) => {
                let wc = match cq {
                    Some(cq) => en
                        .wait_cq(cq, Duration::from_millis(1))
                        .map_err(e("device"))?,
                    None => {
                        std::thread::yield_now();
                        None
                    }
                };
                let rx = en
                    .inspect(|d| d.counters().rx_syscalls)
                    .map_err(e("device"))?;
                let heard = rx != self.rx_seen;
                self.rx_seen = rx;
                Ok((wc, heard))
            }
        }
    }

    fn pump(&mut self) -> Result<bool, String> {
        self.turn(None).map(|(_, h)| h).map_err(|x| x.0)
    }

    /// Waits for one completion on `cq`; an error status ends the run.
    fn wait_wc(&mut self, cq: CqId, what: &str) -> Result<WorkCompletion, PerftestError> {
        match self.wait_wc_until(cq, what, None)? {
            Some(wc) => Ok(wc),
            None => Err(PerftestError(format!("no {what}"))),
        }
    }

    /// [`wait_wc`](Self::wait_wc), given up (`None`) when a timed run's `clock` reaches its
    /// end, as perftest's waits stop at its END_STATE.
    fn wait_wc_until(
        &mut self,
        cq: CqId,
        what: &str,
        clock: Option<&Clock>,
    ) -> Result<Option<WorkCompletion>, PerftestError> {
        let mut last = Instant::now();
        let mut idle = 0u32;
        loop {
            let (wc, heard) = self.turn(Some(cq))?;
            if let Some(wc) = wc {
                return check(wc, self.server).map(Some);
            }
            if clock.is_some_and(|c| c.phase() == Phase::End) {
                return Ok(None);
            }
            if heard {
                idle = 0;
                continue;
            }
            // The clock is read when idling starts and every 1024 idle turns after.
            if idle == 0 {
                last = Instant::now();
            }
            idle = idle.wrapping_add(1);
            if (idle.is_multiple_of(1024) || matches!(self.dev, Dev::Engine(_)))
                && last.elapsed() > self.timeout
            {
                return Err(PerftestError(format!(
                    "no {what} in {:?}: is the peer still there?",
                    self.timeout
                )));
            }
        }
    }

    /// Lets the last ACKs go out before the device closes.
    fn linger(self) {
        match self.dev {
            Dev::Poll(mut d) => {
                let end = Instant::now() + Duration::from_millis(100);
                while Instant::now() < end {
                    let _ = d.progress();
                }
            }
            Dev::Engine(en) => {
                std::thread::sleep(Duration::from_millis(100));
                let _ = en.stop();
            }
        }
    }

    fn recv_wr(&self, size: u64) -> RecvWr {
        RecvWr::new(
            0,
            Sge {
                addr: BUF + self.half,
                length: size as u32,
                lkey: self.lkey,
            },
        )
    }

    /// Posts a receive of `size` on QP `q`.
    fn post_recv_on(&mut self, q: Qpn, size: u64) -> Result<(), PerftestError> {
        let wr = self.recv_wr(size);
        self.with(|c| c.post_recv(q, wr))?
            .map_err(e("Couldn't post receive"))
    }

    /// Posts `n` receives of `size` on every QP: those a SEND run starts with.
    fn post_recvs(&mut self, size: u64, n: u64) -> Result<(), PerftestError> {
        for q in self.qps.clone() {
            for _ in 0..n {
                self.post_recv_on(q, size)?;
            }
        }
        Ok(())
    }

    /// Posts a receive of `size` on the QP a receive just completed on (`qp_num`).
    fn repost_recv(&mut self, qp_num: u32, size: u64) -> Result<(), PerftestError> {
        let q = self
            .qps
            .iter()
            .copied()
            .find(|q| q.value() == qp_num)
            .unwrap_or(self.qpn);
        self.post_recv_on(q, size)
    }
}

fn check(
    wc: rxe_transport::WorkCompletion,
    server: bool,
) -> Result<rxe_transport::WorkCompletion, PerftestError> {
    if wc.status == WcStatus::Success {
        return Ok(wc);
    }
    Err(PerftestError(format!(
        "Completion with error at {}: Failed status {}: wr_id {} syndrom 0x{:x}",
        if server { "server" } else { "client" },
        wc.status.as_str(),
        wc.wr_id,
        wc.status as u32
    )))
}

fn now_ns(base: Instant) -> u64 {
    base.elapsed().as_nanos() as u64
}

/// Runs one perftest tool; what it prints goes to `out`.
pub fn run(args: &PerftestArgs, out: &mut impl Write) -> Result<(), PerftestError> {
    let t = args.test;
    let nqps = args.qps as usize;
    if !(1..=MAX_QPS).contains(&nqps) {
        return Err(PerftestError(format!("-q: 1 to {MAX_QPS} QPs")));
    }
    if nqps > 1 && !t.is_bw() {
        // perftest's own refusal.
        return Err(PerftestError(
            "-q: Multiple QPs only available on bw tests".into(),
        ));
    }

    let duplex = args.bidirectional;
    if duplex && !t.is_bw() {
        return Err(PerftestError(
            "-b: Bidirectional is only available in BW test".into(),
        ));
    }

    let timed = match args.duration {
        None if args.margin.is_some() => {
            return Err(PerftestError("-f: a margin needs a duration (-D)".into()))
        }
        None => None,
        // perftest's own refusal.
        Some(_) if args.all => {
            return Err(PerftestError(
                "Duration mode currently doesn't support running on all sizes.".into(),
            ))
        }
        Some(d) => Some(Timed::new(d, args.margin).map_err(|x| PerftestError(x.to_string()))?),
    };

    let size = match (t, args.size) {
        (Test::AtomicBw, Some(s)) if s != 8 => {
            return Err(PerftestError("atomic operations are 8 bytes (-s 8)".into()))
        }
        (_, Some(0)) => return Err(PerftestError("-s: size must be at least 1".into())),
        (_, Some(s)) if s > u64::from(u32::MAX) => {
            return Err(PerftestError("-s: size must be below 4 GiB".into()))
        }
        (_, Some(s)) => s,
        (_, None) => t.default_size(),
    };
    let sizes: Vec<u64> = if args.all && t != Test::AtomicBw {
        (1..24).map(|i| 1u64 << i).collect()
    } else {
        vec![size]
    };
    let max_size = *sizes.iter().max().unwrap_or(&size);
    let iters = args
        .iters
        .unwrap_or(t.default_iters())
        .max(if t.is_bw() { 1 } else { 5 });
    let span = match timed {
        Some(tm) => Span::Timed(tm),
        None => Span::Iters(iters),
    };
    let tx_depth = u64::from(
        args.tx_depth
            .unwrap_or(if t.is_bw() { 128 } else { 1 })
            .max(1),
    )
    // A timed run has no iteration count to stay under.
    .min(span.limit());
    if span.timed().is_some() && t.is_bw() {
        // perftest says so while it parses the flags, before anything else.
        let _ = writeln!(out, " WARNING: BW peak won't be measured in this run.");
    }
    let mtu_flag = match args.mtu {
        None => None,
        Some(256) => Some(Mtu::M256),
        Some(512) => Some(Mtu::M512),
        Some(1024) => Some(Mtu::M1024),
        Some(2048) => Some(Mtu::M2048),
        Some(4096) => Some(Mtu::M4096),
        Some(_) => {
            return Err(PerftestError(
                "-m: MTU must be 256, 512, 1024, 2048 or 4096".into(),
            ))
        }
    };
    let client = args.server.is_some();

    // The out-of-band connection first: a server learns its address from it.
    let (sock, local) = match args.server {
        Some(peer) => {
            let local = match args.bind {
                Some(a) => a,
                None => HostAddr::of(
                    rxe_user::netdev::source_address_for(peer.with_port(args.port))
                        .map_err(e("no route to the server"))?,
                ),
            };
            let s = connect_retry(peer.with_port(args.port), args.timeout)?;
            (s, local)
        }
        None => {
            // Listen on the device's address, or on every address (dual-stack) for a link-local
            // device address, whose exchange may well come over IPv4.
            let listen = match args.bind {
                Some(a) if !a.is_link_local() => a.with_port(args.port),
                Some(_) => SocketAddr::from(([0u16; 8], args.port)),
                None => SocketAddr::from(([0u8; 4], args.port)),
            };
            let l = TcpListener::bind(listen).map_err(|x| {
                PerftestError(format!("Couldn't listen to port {}: {x}", args.port))
            })?;
            let _ = writeln!(out, "\n************************************\n* Waiting for client to connect... *\n************************************");
            let (s, _) = l.accept().map_err(e("accept"))?;
            let local = match args.bind {
                Some(a) => a,
                None => HostAddr::of(s.local_addr().map_err(e("accept"))?),
            };
            (s, local)
        }
    };
    // The port's active MTU, as Linux rxe derives it from the interface (loopback: 4096).
    let local_ip = local.ip;
    let mtu = mtu_flag.unwrap_or_else(|| rxe_user::netdev::active_mtu(local_ip));
    let mut oob = Oob::new(sock, client, args.timeout).map_err(e("exchange socket"))?;
    let mtu = mtu_from_enum(oob.setup(mtu_enum(mtu)).map_err(e("exchange"))?);

    let mut cfg = UdpDeviceConfig::new(local.with_port(args.udp_port));
    cfg.mtu = mtu;
    let mut dev = UdpDevice::open(cfg).map_err(|x| {
        PerftestError(format!(
            "cannot open the RoCE device on {local_ip}:{}: {x}",
            args.udp_port
        ))
    })?;
    let half = max_size.max(CYCLE_BUFFER).div_ceil(CACHE_LINE) * CACHE_LINE;
    let c = dev.core();
    let pd = c.alloc_pd().map_err(e("Couldn't allocate PD"))?;
    let access = Access::LOCAL_WRITE
        | match t.verb() {
            Verb::Read => Access::REMOTE_READ,
            Verb::Write | Verb::Send => Access::REMOTE_WRITE,
            Verb::Atomic => Access::REMOTE_ATOMIC,
        };
    // perftest's layout: each QP's send half at `i`, its receive half at `nqps + i`.
    let mr = c
        .reg_mr(pd, BUF, (2 * nqps as u64 * half) as usize, access)
        .map_err(e("Couldn't allocate MR"))?;
    if t != Test::WriteLat {
        // perftest fills its buffer with random bytes (write_lat's stays zero: it polls it).
        let mut x = 0x2545_f491_4f6c_dd1du64 ^ mr.rkey as u64;
        if let Some(m) = c.mr_bytes_mut(mr.lkey) {
            for b in m.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
        }
    }
    let scq = c
        .create_cq(nqps * tx_depth as usize + 1)
        .map_err(e("Couldn't create CQ"))?;
    let rcq = c
        .create_cq(nqps * RX_DEPTH as usize + 1)
        .map_err(e("Couldn't create CQ"))?;
    let reads = matches!(t.verb(), Verb::Read | Verb::Atomic);
    let mut qps = Vec::with_capacity(nqps);
    let mut mine = Vec::with_capacity(nqps);
    for i in 0..nqps {
        let qpn = c
            .create_qp(&QpInit {
                qp_type: QpType::Rc,
                pd,
                send_cq: scq,
                recv_cq: rcq,
                srq: None,
            })
            .map_err(e("Couldn't create QP"))?;
        c.modify_qp(
            qpn,
            &QpAttr {
                state: Some(QpState::Init),
                pkey_index: Some(0),
                port: Some(1),
                access: Some(access),
                ..QpAttr::default()
            },
        )
        .map_err(e("Failed to modify QP to INIT"))?;
        qps.push(qpn);
        mine.push(KeyMsg {
            lid: 0,
            out_reads: if reads { u16::from(MAX_RD_ATOMIC) } else { 1 },
            qpn: qpn.value(),
            psn: c.random_psn().value(),
            rkey: if t.verb() == Verb::Send { 0 } else { mr.rkey },
            vaddr: BUF + (nqps + i) as u64 * half,
            gid: rxe_wire::cma::gid_of(local_ip),
            srqn: 0,
        });
    }
    let qpn = qps[0];
    let my = mine[0];
    let mut r = Rdma {
        dev: if args.engine {
            Dev::Engine(Engine::start(dev).map_err(e("engine thread"))?)
        } else {
            Dev::Poll(Box::new(dev))
        },
        rx_seen: 0,
        cmp_swap: args.cmp_swap,
        qpn,
        qps,
        duplex_recv: None,
        scq,
        rcq,
        lkey: mr.lkey,
        half,
        timeout: args.timeout,
        server: !client,
    };

    // K1: the keys, one message per QP.
    let mut rems = Vec::with_capacity(nqps);
    for m in &mine {
        rems.push(barrier(&mut oob, &mut r, m)?);
    }
    let rem = rems[0];
    if my.gid.to_ipv4_mapped().is_some() != rem.gid.to_ipv4_mapped().is_some() {
        return Err(PerftestError(
            "The two sides' GIDs differ in kind (IPv4-mapped and IPv6)".into(),
        ));
    }
    for (i, (m, rm)) in mine.iter().zip(&rems).enumerate() {
        connect_qp(&mut r, i, m, rm, local_ip, mtu)?;
    }
    print_info(out, args, t, client, mtu, tx_depth);
    let (show_out_reads, show_rkey) = (
        reads && t.verb() == Verb::Read,
        t.verb() != Verb::Send && t.verb() != Verb::Atomic,
    );
    for m in &mine {
        let _ = writeln!(out, "{}", m.describe("local", show_out_reads, show_rkey));
    }
    // K2: the keys again, each peer's printed as it comes.
    for (m, rm) in mine.iter().zip(&rems) {
        barrier(&mut oob, &mut r, m)?;
        let _ = writeln!(out, "{}", rm.describe("remote", show_out_reads, show_rkey));
    }
    barrier(&mut oob, &mut r, &my)?;
    // ib_send_lat and ib_send_bw post their receives and sync once per size (below).
    if !t.one_sided_bw() && t.verb() != Verb::Send {
        barrier(&mut oob, &mut r, &my)?;
    }
    let _ = writeln!(out, "{RESULT_LINE}");
    // ib_read_lat's server is passive and prints no table.
    if t.is_bw() {
        let _ = writeln!(out, "{}", report::bw_header(args.report_gbits));
    } else if t != Test::ReadLat || client {
        let header = match span {
            Span::Timed(_) => report::lat_timed_header(),
            Span::Iters(_) => report::lat_header(),
        };
        let _ = writeln!(out, "{header}");
    }
    let gbits = args.report_gbits;
    let with_peak = iters * nqps as u64 <= 20000;
    let mut last_report = BwReport::default();
    match (t, client) {
        (Test::ReadBw | Test::WriteBw | Test::AtomicBw, _) if duplex => {
            // Both sides run; a barrier before, the reports swapped after, and each side prints
            // the sum of both directions (perftest's print_full_bw_report with the peer's).
            for &s in &sizes {
                barrier(&mut oob, &mut r, &my)?;
                let (b, n) = bw_run(&mut r, t, &rems, s, span, tx_depth, with_peak, gbits)?;
                if args.all {
                    // perftest's RUN_ALL (4.6 and later) syncs after every size's run too.
                    barrier(&mut oob, &mut r, &my)?;
                }
                duplex_report(&mut oob, &mut r, s, n, &b, out)?;
            }
        }
        (Test::ReadBw | Test::WriteBw | Test::AtomicBw, true) => {
            for &s in &sizes {
                let (b, all) = bw_run(&mut r, t, &rems, s, span, tx_depth, with_peak, gbits)?;
                let _ = writeln!(out, "{}", report::bw_row(s, all, &b));
                last_report = BwReport {
                    size: s,
                    iters: all,
                    bw_peak: b.peak,
                    bw_avg: b.avg,
                    msg_rate: b.msg_rate,
                };
            }
            let _ = writeln!(out, "{RESULT_LINE}");
            barrier(&mut oob, &mut r, &my)?;
            oob.bw_report(&last_report, &mut || r.pump())
                .map_err(e("Failed to exchange BW reports"))?;
        }
        (Test::ReadBw | Test::WriteBw | Test::AtomicBw, false) => {
            // Passive: answer until the client reaches the barrier after its run.
            barrier(&mut oob, &mut r, &my)?;
            let rep = oob
                .bw_report(&last_report, &mut || r.pump())
                .map_err(e("Failed to exchange BW reports"))?;
            let b = report::Bw {
                peak: rep.bw_peak,
                avg: rep.bw_avg,
                msg_rate: rep.msg_rate,
            };
            let _ = writeln!(out, "{}", report::bw_row(rep.size, rep.iters, &b));
        }
        (Test::SendBw, _) => {
            for &s in &sizes {
                // The receivers' receives for the size, on every QP, then a barrier so no SEND
                // comes first.
                if !client || duplex {
                    r.post_recvs(s, first_recvs(span))?;
                }
                barrier(&mut oob, &mut r, &my)?;
                if duplex {
                    // run_iter_bi: send and receive at once; then the reports swapped and
                    // summed, as for the one-sided tests.
                    r.duplex_recv = Some(s);
                    let (b, all) = bw_run(&mut r, t, &rems, s, span, tx_depth, with_peak, gbits)?;
                    if span.timed().is_some() {
                        // A timed run_iter_bi swaps no reports: each side prints its own,
                        // SENDs and receives counted together.
                        let _ = writeln!(out, "{}", report::bw_row(s, all, &b));
                    } else {
                        duplex_report(&mut oob, &mut r, s, all, &b, out)?;
                    }
                    if args.all {
                        barrier(&mut oob, &mut r, &my)?;
                    }
                    continue;
                }
                let (b, all) = match (client, span) {
                    (true, _) => bw_run(&mut r, t, &rems, s, span, tx_depth, with_peak, gbits)?,
                    (false, Span::Timed(tm)) => send_bw_server_timed(&mut r, s, tm, gbits)?,
                    (false, Span::Iters(n)) => {
                        (send_bw_server(&mut r, s, n, gbits)?, n * nqps as u64)
                    }
                };
                let _ = writeln!(out, "{}", report::bw_row(s, all, &b));
                if args.all {
                    // perftest's RUN_ALL syncs after every size too.
                    barrier(&mut oob, &mut r, &my)?;
                }
            }
        }
        (Test::ReadLat, false) => {}
        (Test::ReadLat | Test::WriteLat | Test::SendLat, _) => {
            for &s in &sizes {
                let run = match t {
                    Test::ReadLat => read_lat(&mut r, &rem, s, span)?,
                    Test::WriteLat => write_lat(&mut r, &rem, s, span)?,
                    _ => {
                        // Receives for the whole run (reposted as they complete), then a
                        // barrier so no SEND arrives before them.
                        r.post_recvs(s, first_recvs(span))?;
                        barrier(&mut oob, &mut r, &my)?;
                        send_lat(&mut r, s, span)?
                    }
                };
                // READ's latency is a whole round trip; the ping-pongs' half of one.
                let rtt_factor = if t == Test::ReadLat { 1 } else { 2 };
                let row = match span {
                    Span::Timed(tm) => {
                        report::lat_timed_row(s, run.counted, tm.sample(), rtt_factor)
                    }
                    Span::Iters(n) => report::lat_row(s, n, &report::lat(&run.posted, rtt_factor)),
                };
                let _ = writeln!(out, "{row}");
            }
        }
    }
    if t != Test::WriteLat {
        // ctx_close_connection: one more barrier, then "done".
        oob.keys(&my, &mut || r.pump())
            .map_err(e("Failed to close connection between server and client"))?;
        oob.close(&mut || r.pump());
    }
    let silent_end = (t.one_sided_bw() && client && !duplex) || (t == Test::ReadLat && !client);
    if !silent_end {
        let _ = writeln!(out, "{RESULT_LINE}");
    }
    r.linger();
    Ok(())
}

/// One of perftest's `ctx_hand_shake`s: our key message for theirs, the device kept running.
fn barrier(oob: &mut Oob, r: &mut Rdma, mine: &KeyMsg) -> Result<KeyMsg, PerftestError> {
    oob.keys(mine, &mut || r.pump())
        .map_err(e("Failed to exchange data between server and clients"))
}

/// After a bidirectional run: the reports swapped (`xchg_bw_reports`), and the sum of both
/// directions printed (`print_full_bw_report` with the peer's), the same row on both sides.
fn duplex_report(
    oob: &mut Oob,
    r: &mut Rdma,
    size: u64,
    iters: u64,
    b: &report::Bw,
    out: &mut impl Write,
) -> Result<(), PerftestError> {
    let mine = BwReport {
        size,
        iters,
        bw_peak: b.peak,
        bw_avg: b.avg,
        msg_rate: b.msg_rate,
    };
    let theirs = oob
        .bw_report(&mine, &mut || r.pump())
        .map_err(e("Failed to exchange BW reports"))?;
    let sum = report::Bw {
        peak: b.peak + theirs.bw_peak,
        avg: b.avg + theirs.bw_avg,
        msg_rate: b.msg_rate + theirs.msg_rate,
    };
    let _ = writeln!(out, "{}", report::bw_row(size, iters, &sum));
    Ok(())
}

fn connect_qp(
    r: &mut Rdma,
    index: usize,
    my: &KeyMsg,
    rem: &KeyMsg,
    local_ip: IpAddr,
    mtu: Mtu,
) -> Result<(), PerftestError> {
    let qpn = r.qps[index];
    let mut c = RcConnect::new(
        local_ip,
        rxe_wire::cma::ip_of(rem.gid),
        Qpn::new(rem.qpn),
        Psn::new(my.psn),
        Psn::new(rem.psn),
    );
    c.mtu = mtu;
    c.hop_limit = 0xff;
    c.max_dest_rd_atomic = my.out_reads.clamp(1, u16::from(MAX_RD_ATOMIC)) as u8;
    c.max_rd_atomic = rem.out_reads.clamp(1, u16::from(MAX_RD_ATOMIC)) as u8;
    r.with(|d| d.connect_rc(qpn, &c))?
        .map_err(e("Failed to modify QP to RTR/RTS"))
}

fn print_info(out: &mut impl Write, a: &PerftestArgs, t: Test, client: bool, mtu: Mtu, tx: u64) {
    let _ = writeln!(out, "{RESULT_LINE}");
    let _ = writeln!(
        out,
        "                    {}",
        t.title(a.cmp_swap, a.bidirectional)
    );
    let _ = writeln!(
        out,
        " Dual-port       : OFF\t\tDevice         : {}",
        a.device
    );
    let _ = writeln!(out, " Number of qps   : {}\t\tTransport type : IB", a.qps);
    let _ = writeln!(out, " Connection type : RC\t\tUsing SRQ      : OFF");
    let _ = writeln!(out, " PCIe relax order: OFF");
    let _ = writeln!(out, " ibv_wr* API     : OFF");
    if client || !t.is_bw() || a.bidirectional {
        let _ = writeln!(out, " TX depth        : {tx}");
    }
    if t.verb() == Verb::Send && (!client || !t.is_bw() || a.bidirectional) {
        let _ = writeln!(out, " RX depth        : {}", RX_DEPTH);
    }
    if t.is_bw() {
        let _ = writeln!(out, " CQ Moderation   : {}", tx.min(100));
    }
    let _ = writeln!(out, " Mtu             : {}[B]", mtu.bytes());
    let _ = writeln!(out, " Link type       : Ethernet");
    let _ = writeln!(out, " GID index       : {}", a.gid_index);
    match t.verb() {
        Verb::Read | Verb::Atomic => {
            let _ = writeln!(out, " Outstand reads  : {MAX_RD_ATOMIC}");
        }
        _ => {
            let _ = writeln!(out, " Max inline data : 0[B]");
        }
    }
    let _ = writeln!(out, " rdma_cm QPs\t : OFF");
    let _ = writeln!(out, " Data ex. method : Ethernet");
    let _ = writeln!(out, "{RESULT_LINE}");
}

/// perftest's address step: `INC(size, 64)` within the cycle buffer when size ≤ half of it.
fn offset(k: u64, size: u64) -> u64 {
    let inc = size.div_ceil(CACHE_LINE) * CACHE_LINE;
    if size <= CYCLE_BUFFER / 2 {
        (k % (CYCLE_BUFFER / inc)) * inc
    } else {
        0
    }
}

/// Receives posted on each QP before a SEND run: as many as the run needs, at most
/// [`RX_DEPTH`] (a timed run needs them all).
fn first_recvs(span: Span) -> u64 {
    span.limit().min(RX_DEPTH)
}

/// The work request `run_iter_bw` posts for operation `k` on QP `i`: the verb at the remote
/// and local addresses perftest steps through, its wr_id saying which QP and how far.
fn bw_wr(r: &Rdma, t: Test, rem: &KeyMsg, i: usize, k: u64, size: u64, signaled: bool) -> SendWr {
    let off = offset(k, size);
    let remote = Remote {
        addr: rem.vaddr + off,
        rkey: Rkey(rem.rkey),
    };
    let op = match t.verb() {
        Verb::Read => WrOpcode::RdmaRead(remote),
        Verb::Write => WrOpcode::RdmaWrite(remote),
        Verb::Send => WrOpcode::Send,
        // perftest's values: add 1, or compare 0 and swap 0.
        Verb::Atomic if r.cmp_swap => WrOpcode::AtomicCmpSwp {
            remote,
            compare: 0,
            swap: 0,
        },
        Verb::Atomic => WrOpcode::AtomicFetchAdd { remote, add: 1 },
    };
    SendWr::new(
        (i as u64) << 40 | k,
        op,
        Some(Sge {
            addr: BUF + i as u64 * r.half + off,
            length: size as u32,
            lkey: r.lkey,
        }),
        if signaled {
            SendFlags::SIGNALED
        } else {
            SendFlags::empty()
        },
    )
}

/// `run_iter_bw_server` in DURATION mode: the clock starts at the first SEND received (as
/// perftest's `set_on_first_rx_packet`); every receive is reposted, those completing in the
/// sample counted, until the run's end.
fn send_bw_server_timed(
    r: &mut Rdma,
    size: u64,
    timed: Timed,
    gbits: bool,
) -> Result<(report::Bw, u64), PerftestError> {
    let rcq = r.rcq;
    let mut wc = Some(r.wait_wc(rcq, "message")?);
    let clock = Clock::start(timed);
    let mut counted = 0u64;
    let mut last = Instant::now();
    loop {
        let phase = clock.phase();
        if phase == Phase::End {
            break;
        }
        while let Some(c) = wc.take() {
            let c = check(c, r.server)?;
            last = Instant::now();
            if clock.phase() == Phase::Sample {
                counted += 1;
            }
            r.repost_recv(c.qp_num, size)?;
            wc = r.with(|d| d.poll_cq(rcq))?;
        }
        let (next, heard) = r.turn(Some(rcq))?;
        wc = next;
        if heard {
            last = Instant::now();
        }
        // The client stops at its own end, a moment before ours: silence then is no error.
        if last.elapsed() > r.timeout && phase != Phase::CoolDown {
            return Err(PerftestError(format!(
                "no message in {:?}: is the peer still there?",
                r.timeout
            )));
        }
    }
    Ok((
        report::bw_timed(size, counted, timed.sample(), gbits),
        counted,
    ))
}

/// `run_iter_bw` (with `-b` for SENDs, `run_iter_bi`): round-robin over the QPs, each with up
/// to `tx_depth` outstanding and every `cq_mod`-th signaled. Counted (`-n`): `iters` on every
/// QP, the last signaled too, figures from the post and completion times over all QPs'
/// operations in order (perftest's `tposted` / `tcompleted`); the row counts every QP's
/// iterations. Timed (`-D`): posting until the end, the completions of the sample counted
/// (receives too, with `-b`), then stopping without waiting for what is in flight, as perftest;
/// a `-b` server starts, sending and timing, at its first receive. With `-b` for SENDs the
/// peer's SENDs are received meanwhile and their receives reposted.
#[allow(clippy::too_many_arguments)]
fn bw_run(
    r: &mut Rdma,
    t: Test,
    rems: &[KeyMsg],
    size: u64,
    span: Span,
    tx_depth: u64,
    with_peak: bool,
    gbits: bool,
) -> Result<(report::Bw, u64), PerftestError> {
    let cq_mod = tx_depth.min(100);
    let nq = r.qps.len();
    let timed = span.timed();
    // Per QP: operations to post (unbounded when timed); over all QPs, for the times.
    let n = span.limit();
    let total = match span {
        Span::Iters(iters) => iters * nq as u64,
        Span::Timed(_) => 0,
    };
    let mut posted_t = vec![0u64; total as usize];
    let mut done_t = vec![0u64; total as usize];
    // Per QP: posted, completed, receives posted.
    let mut scnt = vec![0u64; nq];
    let mut ccnt = vec![0u64; nq];
    let mut rposted = vec![first_recvs(span); nq];
    let (mut totscnt, mut totccnt, mut rcnt, mut counted) = (0u64, 0u64, 0u64, 0u64);
    let base = Instant::now();
    let mut last = Instant::now();
    let (scq, rcq) = (r.scq, r.rcq);
    let qps = r.qps.clone();
    let recv = r.duplex_recv;
    // run_iter_bi: a timed server sends nothing, and starts its clock, until its first receive.
    let mut clock = if recv.is_some() && r.server {
        None
    } else {
        span.clock()
    };
    loop {
        let phase = clock.map(|c| c.phase());
        let more = match timed {
            Some(_) => phase != Some(Phase::End),
            None => totccnt < total || (recv.is_some() && rcnt < total),
        };
        if !more {
            break;
        }
        // A timed -b server waits for its first receive.
        let may_post = timed.is_none() || phase.is_some();
        for (i, &qpn) in qps.iter().enumerate() {
            while may_post && scnt[i] < n && scnt[i] - ccnt[i] < tx_depth {
                let signaled = (scnt[i] + 1).is_multiple_of(cq_mod) || scnt[i] + 1 == n;
                let wr = bw_wr(r, t, &rems[i], i, scnt[i], size, signaled);
                if let Some(p) = posted_t.get_mut(totscnt as usize) {
                    *p = now_ns(base);
                }
                r.with(|c| c.post_send(qpn, wr))?
                    .map_err(e("Couldn't post send"))?;
                scnt[i] += 1;
                totscnt += 1;
            }
        }
        let (first, heard) = r.turn(Some(scq))?;
        if heard {
            last = Instant::now();
        }
        let mut next = first;
        while let Some(wc) = next {
            let wc = check(wc, false)?;
            let now = now_ns(base);
            let (i, upto) = ((wc.wr_id >> 40) as usize, (wc.wr_id & 0xff_ffff_ffff) + 1);
            if let Some(c) = ccnt.get_mut(i) {
                let newly = upto.min(n).saturating_sub(*c);
                *c += newly;
                for k in totccnt..(totccnt + newly).min(total) {
                    done_t[k as usize] = now;
                }
                totccnt += newly;
                // Counted when seen, as perftest counts in the state its alarm has set.
                if clock.is_some_and(|c| c.phase() == Phase::Sample) {
                    counted += newly;
                }
            }
            last = Instant::now();
            next = r.with(|c| c.poll_cq(scq))?;
        }
        if let Some(rsize) = recv {
            while let Some(wc) = r.with(|c| c.poll_cq(rcq))? {
                let wc = check(wc, r.server)?;
                rcnt += 1;
                last = Instant::now();
                if let Some(tm) = timed {
                    // Receives count too (run_iter_bi's iters), from the first one's clock on.
                    let c = *clock.get_or_insert_with(|| Clock::start(tm));
                    if c.phase() == Phase::Sample {
                        counted += 1;
                    }
                }
                let i = qps.iter().position(|q| q.value() == wc.qp_num).unwrap_or(0);
                if rposted[i] < n {
                    r.repost_recv(wc.qp_num, rsize)?;
                    rposted[i] += 1;
                }
            }
        }
        if last.elapsed() > r.timeout {
            let of = if timed.is_some() {
                String::new()
            } else {
                format!(" of {total}")
            };
            return Err(PerftestError(format!(
                "no completion in {:?} ({totccnt}{of} done): is the peer still there?",
                r.timeout
            )));
        }
    }
    Ok(match timed {
        Some(tm) => (report::bw_timed(size, counted, tm.sample(), gbits), counted),
        None => (
            report::bw(size, &posted_t, &done_t, cq_mod as usize, with_peak, gbits),
            total,
        ),
    })
}

/// `run_iter_bw_server`: receive `iters` SENDs on each QP, reposting; BW from the first
/// completion to the last (no peak, as perftest's server), over every QP's messages.
fn send_bw_server(
    r: &mut Rdma,
    size: u64,
    iters: u64,
    gbits: bool,
) -> Result<report::Bw, PerftestError> {
    let qps = r.qps.clone();
    let total = iters * qps.len() as u64;
    let mut posted = vec![iters.min(RX_DEPTH); qps.len()];
    let (mut first, mut lastc) = (None, 0u64);
    let base = Instant::now();
    let rcq = r.rcq;
    for _ in 0..total {
        let wc = r.wait_wc(rcq, "message")?;
        let now = now_ns(base);
        first.get_or_insert(now);
        lastc = now;
        let i = qps.iter().position(|q| q.value() == wc.qp_num).unwrap_or(0);
        if posted[i] < iters {
            r.post_recv_on(qps[i], size)?;
            posted[i] += 1;
        }
    }
    let start = first.unwrap_or(0);
    let b = report::bw(size, &[start], &[lastc.max(start + 1)], 1, false, gbits);
    // report::bw counted one operation; scale to all of them.
    Ok(report::Bw {
        peak: 0.0,
        avg: b.avg * total as f64,
        msg_rate: b.msg_rate * total as f64,
    })
}

/// How long a test runs: `-n` operations (on each QP), or (`-D`) until its clock's end.
#[derive(Debug, Clone, Copy)]
enum Span {
    Iters(u64),
    Timed(Timed),
}

impl Span {
    /// Operations to do at most (unbounded when timed).
    fn limit(self) -> u64 {
        match self {
            Span::Iters(n) => n,
            Span::Timed(_) => u64::MAX,
        }
    }

    /// The timing of a timed run.
    fn timed(self) -> Option<Timed> {
        match self {
            Span::Timed(t) => Some(t),
            Span::Iters(_) => None,
        }
    }

    /// A timed run's clock, started now.
    fn clock(self) -> Option<Clock> {
        self.timed().map(Clock::start)
    }
}

/// What a latency loop measured: every operation's post time (counted runs), and how many
/// completed in the sample (timed runs).
struct LatRun {
    posted: Vec<u64>,
    counted: u64,
}

impl LatRun {
    fn new(span: Span) -> LatRun {
        let cap = match span {
            Span::Iters(n) => n as usize,
            Span::Timed(_) => 0,
        };
        LatRun {
            posted: Vec::with_capacity(cap),
            counted: 0,
        }
    }

    /// Notes a post at `t` ns (kept only in counted runs, whose samples they are).
    fn post(&mut self, span: Span, t: u64) {
        if let Span::Iters(_) = span {
            self.posted.push(t);
        }
    }

    /// Notes a completion, counted if the clock is in its sample.
    fn complete(&mut self, clock: Option<&Clock>) {
        if clock.is_some_and(|c| c.phase() == Phase::Sample) {
            self.counted += 1;
        }
    }
}

/// Whether a timed run's clock has reached its end.
fn ended(clock: Option<&Clock>) -> bool {
    clock.is_some_and(|c| c.phase() == Phase::End)
}

/// A latency test's signaled work request: `op` on our buffer's first `size` bytes.
fn lat_wr(r: &Rdma, id: u64, op: WrOpcode, size: u64) -> SendWr {
    SendWr::new(
        id,
        op,
        Some(Sge {
            addr: BUF,
            length: size as u32,
            lkey: r.lkey,
        }),
        SendFlags::SIGNALED,
    )
}

/// The peer's buffer.
fn remote(rem: &KeyMsg) -> Remote {
    Remote {
        addr: rem.vaddr,
        rkey: Rkey(rem.rkey),
    }
}

/// `run_iter_lat` for READ: one at a time, each waited for; timed, those completing in the
/// sample counted until the end.
fn read_lat(r: &mut Rdma, rem: &KeyMsg, size: u64, span: Span) -> Result<LatRun, PerftestError> {
    let base = Instant::now();
    let (qpn, scq) = (r.qpn, r.scq);
    let clock = span.clock();
    let mut run = LatRun::new(span);
    let mut k = 0;
    while k < span.limit() && !ended(clock.as_ref()) {
        let wr = lat_wr(r, k, WrOpcode::RdmaRead(remote(rem)), size);
        run.post(span, now_ns(base));
        r.with(|c| c.post_send(qpn, wr))?
            .map_err(e("Couldn't post send"))?;
        if r.wait_wc_until(scq, "READ completion", clock.as_ref())?
            .is_none()
        {
            break;
        }
        run.complete(clock.as_ref());
        k += 1;
    }
    Ok(run)
}

/// `run_iter_lat_write`: each side WRITEs its buffer (whose last byte counts the iterations)
/// into the peer's, and waits to see the peer's count arrive in its own; the server goes first.
/// Timed, every wait gives up at the end and the WRITEs completing in the sample are counted.
fn write_lat(r: &mut Rdma, rem: &KeyMsg, size: u64, span: Span) -> Result<LatRun, PerftestError> {
    let base = Instant::now();
    let (lkey, qpn, scq) = (r.lkey, r.qpn, r.scq);
    let post_at = (size - 1) as usize;
    let poll_at = (r.half + size - 1) as usize;
    let clock = span.clock();
    let n = span.limit();
    let mut run = LatRun::new(span);
    let (mut scnt, mut rcnt, mut ccnt) = (0u64, 0u64, 0u64);
    'run: while (scnt < n || rcnt < n || ccnt < n) && !ended(clock.as_ref()) {
        if rcnt < n && !(scnt < 1 && r.server) {
            rcnt += 1;
            let want = rcnt as u8;
            let mut last = Instant::now();
            loop {
                let seen = r.with(|c| c.mr_bytes(lkey).and_then(|m| m.get(poll_at).copied()))?;
                if seen == Some(want) {
                    break;
                }
                if ended(clock.as_ref()) {
                    break 'run;
                }
                if r.turn(None)?.1 {
                    last = Instant::now();
                } else if last.elapsed() > r.timeout {
                    return Err(PerftestError(format!(
                        "no WRITE from the peer in {:?} (iteration {rcnt})",
                        r.timeout
                    )));
                }
            }
        }
        if scnt < n {
            run.post(span, now_ns(base));
            scnt += 1;
            let count = scnt as u8;
            r.with(|c| {
                if let Some(b) = c.mr_bytes_mut(lkey).and_then(|m| m.get_mut(post_at)) {
                    *b = count;
                }
            })?;
            let wr = lat_wr(r, scnt, WrOpcode::RdmaWrite(remote(rem)), size);
            r.with(|c| c.post_send(qpn, wr))?
                .map_err(e("Couldn't post send"))?;
        }
        if ccnt < n {
            if r.wait_wc_until(scq, "WRITE completion", clock.as_ref())?
                .is_none()
            {
                break;
            }
            ccnt += 1;
            run.complete(clock.as_ref());
        }
    }
    Ok(run)
}

/// `run_iter_lat_send`: SEND ping-pong, the client first; receives reposted as they complete.
/// Timed, each side's clock starts at the first SEND it receives (perftest's
/// `set_on_first_rx_packet`), the receives of the sample are counted, and every wait gives up
/// at the end.
fn send_lat(r: &mut Rdma, size: u64, span: Span) -> Result<LatRun, PerftestError> {
    let base = Instant::now();
    let (qpn, scq, rcq) = (r.qpn, r.scq, r.rcq);
    let n = span.limit();
    let mut recv_posted = first_recvs(span);
    let mut clock: Option<Clock> = None;
    let mut run = LatRun::new(span);
    let (mut scnt, mut rcnt) = (0u64, 0u64);
    while (scnt < n || rcnt < n) && !ended(clock.as_ref()) {
        // The client sends first.
        if rcnt < n && (scnt >= 1 || r.server) {
            if r.wait_wc_until(rcq, "message from the peer", clock.as_ref())?
                .is_none()
            {
                break;
            }
            rcnt += 1;
            if let Span::Timed(t) = span {
                run.complete(Some(clock.get_or_insert_with(|| Clock::start(t))));
            }
            if recv_posted < n {
                r.post_recv_on(qpn, size)?;
                recv_posted += 1;
            }
        }
        if scnt < n {
            run.post(span, now_ns(base));
            scnt += 1;
            let wr = lat_wr(r, scnt, WrOpcode::Send, size);
            r.with(|c| c.post_send(qpn, wr))?
                .map_err(e("Couldn't post send"))?;
            if r.wait_wc_until(scq, "SEND completion", clock.as_ref())?
                .is_none()
            {
                break;
            }
        }
    }
    Ok(run)
}

fn connect_retry(to: SocketAddr, timeout: Duration) -> Result<TcpStream, PerftestError> {
    let end = Instant::now() + timeout;
    loop {
        match TcpStream::connect_timeout(&to, timeout) {
            Ok(s) => return Ok(s),
            Err(x) if Instant::now() < end && x.kind() == std::io::ErrorKind::ConnectionRefused => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(x) => return Err(PerftestError(format!("Couldn't connect to {to}: {x}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_step_like_perftest() {
        assert_eq!(offset(0, 64), 0);
        assert_eq!(offset(1, 64), 64);
        assert_eq!(offset(64, 64), 0);
        assert_eq!(offset(1, 100), 128);
        assert_eq!(offset(5, 4096), 0);
        assert_eq!(offset(2, 2048), 0);
        assert_eq!(offset(3, 2049), 0);
        assert_eq!(offset(1, 2048), 2048);
    }
}
