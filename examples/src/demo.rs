//! `rxe demo`: two Soft-RoCE devices on loopback in one process (127.0.0.1 and 127.0.0.2, UDP
//! sockets, busy-polled in this thread) run rping's exchange and perftest-style READ, WRITE and
//! SEND measurements over connections the rdma_cm-compatible CM sets up, and print the results
//! as those tools do, beside the figures of the original Soft-RoCE board.

use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rxe_transport::cm::CmEvent;
use rxe_transport::device::{CqId, DeviceEvent, QpInit};
use rxe_transport::{
    Access, QpState, RecvWr, Remote, SendFlags, SendWr, Sge, WcOpcode, WcStatus, WorkCompletion,
    WrOpcode,
};
use rxe_user::{UdpDevice, UdpDeviceConfig};
use rxe_wire::Rkey;

/// What went wrong in the demo, in one line.
#[derive(Debug)]
pub struct DemoError(pub String);

impl std::fmt::Display for DemoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<io::Error> for DemoError {
    fn from(e: io::Error) -> DemoError {
        DemoError(e.to_string())
    }
}

fn err<T: std::fmt::Display>(what: &str) -> impl FnOnce(T) -> DemoError + '_ {
    move |e| DemoError(format!("{what}: {e}"))
}

/// Settings of the demo.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// UDP port of both devices.
    pub port: u16,
    /// rping iterations.
    pub rping_count: u32,
    /// Iterations of each measurement.
    pub iters: u32,
    /// Record the client device's packets of the rping run in this pcap.
    pub pcap: Option<std::path::PathBuf>,
}

impl Default for DemoConfig {
    fn default() -> DemoConfig {
        DemoConfig {
            port: 4791,
            rping_count: 10,
            iters: 1000,
            pcap: None,
        }
    }
}

const BUF: u64 = 0x10_0000;
const BUF_LEN: usize = 1 << 20;
/// The original board's figures (ib_read_bw 4096 B average, ib_read_lat 4096 B typical).
const BOARD_READ_BW_MBS: f64 = 103.69;
const BOARD_READ_LAT_US: f64 = 102.53;

/// One side: device, QP, CQ, a 1 MiB region.
struct Side {
    dev: UdpDevice,
    qpn: rxe_wire::Qpn,
    cq: CqId,
    key: u32,
}

struct Pair {
    a: Side,
    b: Side,
    deadline: Duration,
}

impl Pair {
    fn poll(&mut self) -> Result<(), DemoError> {
        self.a.dev.progress()?;
        self.b.dev.progress()?;
        Ok(())
    }

    /// Runs both devices until `f` gives a value.
    fn until<T>(
        &mut self,
        what: &str,
        mut f: impl FnMut(&mut Pair) -> Option<T>,
    ) -> Result<T, DemoError> {
        let end = Instant::now() + self.deadline;
        loop {
            self.poll()?;
            if let Some(v) = f(self) {
                return Ok(v);
            }
            if Instant::now() > end {
                return Err(DemoError(format!(
                    "{what}: no progress in {:?}",
                    self.deadline
                )));
            }
        }
    }

    /// Waits for one completion on side a (`a == true`) or b.
    fn wc(&mut self, a: bool) -> Result<WorkCompletion, DemoError> {
        let wc = self.until("completion", |p| {
            let s = if a { &mut p.a } else { &mut p.b };
            s.dev.core().poll_cq(s.cq)
        })?;
        if wc.status != WcStatus::Success {
            return Err(DemoError(format!(
                "work request {} failed: {}",
                wc.wr_id,
                wc.status.as_str()
            )));
        }
        Ok(wc)
    }
}

fn side(last: u8, port: u16, seed: u64) -> Result<Side, DemoError> {
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)), port);
    let mut cfg = UdpDeviceConfig::new(addr);
    cfg.seed ^= seed;
    let mut dev = UdpDevice::open(cfg).map_err(err("open device on 127.0.0.x"))?;
    let c = dev.core();
    let pd = c.alloc_pd().map_err(err("alloc_pd"))?;
    let access = Access::LOCAL_WRITE | Access::REMOTE_WRITE | Access::REMOTE_READ;
    let mr = c.reg_mr(pd, BUF, BUF_LEN, access).map_err(err("reg_mr"))?;
    let cq = c.create_cq(4096).map_err(err("create_cq"))?;
    let qpn = c.create_qp(&QpInit::rc(pd, cq)).map_err(err("create_qp"))?;
    Ok(Side {
        dev,
        qpn,
        cq,
        key: mr.lkey,
    })
}

/// Connects a (client) to b (server, listening on `cm_port`).
fn connect(cfg: &DemoConfig, cm_port: u16, seed: u64) -> Result<Pair, DemoError> {
    let mut p = Pair {
        a: side(1, cfg.port, seed)?,
        b: side(2, cfg.port, seed + 1)?,
        deadline: Duration::from_secs(20),
    };
    p.b.dev.core().listen(cm_port).map_err(err("listen"))?;
    let now = p.a.dev.now();
    let qa = p.a.qpn;
    p.a.dev
        .core()
        .connect(
            now,
            qa,
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
            cm_port,
            40000,
            16,
            16,
            &[],
        )
        .map_err(err("connect"))?;
    let id = p.until("connect request", |p| {
        while let Some(e) = p.b.dev.core().poll_event() {
            if let DeviceEvent::Cm(CmEvent::ConnectRequest { id, .. }) = e {
                return Some(id);
            }
        }
        None
    })?;
    let now = p.b.dev.now();
    let qb = p.b.qpn;
    p.b.dev
        .core()
        .accept(now, id, qb, 16, 16, &[])
        .map_err(err("accept"))?;
    p.until("established", |p| {
        let a = p.a.dev.core().qp(qa).map(|q| q.state());
        let b = p.b.dev.core().qp(qb).map(|q| q.state());
        (a == Some(QpState::Rts) && b == Some(QpState::Rts)).then_some(())
    })?;
    Ok(p)
}

fn post(s: &mut Side, wr: SendWr) -> Result<(), DemoError> {
    let q = s.qpn;
    s.dev.core().post_send(q, wr).map_err(err("post_send"))
}

fn post_recv(s: &mut Side, id: u64, addr: u64, len: u32) -> Result<(), DemoError> {
    let (q, key) = (s.qpn, s.key);
    s.dev
        .core()
        .post_recv(
            q,
            RecvWr::new(
                id,
                Sge {
                    addr,
                    length: len,
                    lkey: key,
                },
            ),
        )
        .map_err(err("post_recv"))
}

fn sge(key: u32, addr: u64, len: u32) -> Option<Sge> {
    Some(Sge {
        addr,
        length: len,
        lkey: key,
    })
}

/// rping's exchange (`librdmacm/examples/rping.c`): the client sends its buffer's address, the
/// server READs it, says "go ahead", the client sends its sink's address, the server WRITEs the
/// data there and says "go ahead"; `-V` compares. Returns the lines rping -v prints.
pub fn rping(cfg: &DemoConfig, out: &mut String) -> Result<(), DemoError> {
    let mut p = connect(cfg, 7174, 1)?;
    if let Some(path) = &cfg.pcap {
        p.a.dev.tap(path).map_err(err("pcap"))?;
    }
    let size: usize = 64;
    // Client: start buffer at BUF, sink at BUF + 4096, info messages at BUF + 8192.
    // Server: rdma buffer at BUF, info at BUF + 8192, received info at BUF + 12288.
    let (c_start, c_sink, c_msg) = (BUF, BUF + 4096, BUF + 8192);
    let (s_buf, s_msg, s_recv) = (BUF, BUF + 8192, BUF + 12288);
    let info = |addr: u64, key: u32, size: usize| {
        let mut m = [0u8; 16];
        m[..8].copy_from_slice(&addr.to_be_bytes());
        m[8..12].copy_from_slice(&key.to_be_bytes());
        m[12..].copy_from_slice(&(size as u32).to_be_bytes());
        m
    };
    for i in 0..cfg.rping_count {
        // rping's pattern: "rdma-ping-%d: ", then ASCII 'A'..='z' from a start that moves one
        // character per ping, wrapping; the last byte is 0.
        let mut data = format!("rdma-ping-{i}: ").into_bytes();
        let mut c = b'A' + (i % 58) as u8;
        while data.len() < size - 1 {
            data.push(c);
            c = if c == b'z' { b'A' } else { c + 1 };
        }
        data.push(0);
        let (ka, kb) = (p.a.key, p.b.key);
        {
            let m =
                p.a.dev
                    .core()
                    .mr_bytes_mut(ka)
                    .ok_or(DemoError("client region".into()))?;
            let o = (c_start - BUF) as usize;
            m[o..o + size].copy_from_slice(&data);
            let o = (c_sink - BUF) as usize;
            m[o..o + size].fill(0);
            let o = (c_msg - BUF) as usize;
            m[o..o + 16].copy_from_slice(&info(c_start, ka, size));
            m[o + 16..o + 32].copy_from_slice(&info(c_sink, ka, size));
        }
        // The server waits for the client's info, the client for the go-aheads.
        post_recv(&mut p.b, 100, s_recv, 16)?;
        post_recv(&mut p.a, 200, c_msg + 64, 16)?;
        post(
            &mut p.a,
            SendWr::new(1, WrOpcode::Send, sge(ka, c_msg, 16), SendFlags::SIGNALED),
        )?;
        p.wc(true)?;
        let r = p.wc(false)?;
        debug_assert_eq!(r.opcode, WcOpcode::Recv);
        let msg = read_info(&mut p.b, s_recv)?;
        // Server: READ the client's buffer, then go ahead.
        post(
            &mut p.b,
            SendWr::new(
                2,
                WrOpcode::RdmaRead(Remote {
                    addr: msg.0,
                    rkey: Rkey(msg.1),
                }),
                sge(kb, s_buf, msg.2),
                SendFlags::SIGNALED,
            ),
        )?;
        p.wc(false)?;
        {
            let m =
                p.b.dev
                    .core()
                    .mr_bytes_mut(kb)
                    .ok_or(DemoError("server region".into()))?;
            let o = (s_msg - BUF) as usize;
            m[o..o + 16].copy_from_slice(&info(s_buf, kb, size));
        }
        post_recv(&mut p.b, 101, s_recv, 16)?;
        post(
            &mut p.b,
            SendWr::new(3, WrOpcode::Send, sge(kb, s_msg, 16), SendFlags::SIGNALED),
        )?;
        p.wc(false)?;
        p.wc(true)?;
        // Client: send the sink's info; the server WRITEs there and goes ahead again.
        post_recv(&mut p.a, 201, c_msg + 64, 16)?;
        post(
            &mut p.a,
            SendWr::new(
                4,
                WrOpcode::Send,
                sge(ka, c_msg + 16, 16),
                SendFlags::SIGNALED,
            ),
        )?;
        p.wc(true)?;
        p.wc(false)?;
        let sink = read_info(&mut p.b, s_recv)?;
        post(
            &mut p.b,
            SendWr::new(
                5,
                WrOpcode::RdmaWrite(Remote {
                    addr: sink.0,
                    rkey: Rkey(sink.1),
                }),
                sge(kb, s_buf, sink.2),
                SendFlags::SIGNALED,
            ),
        )?;
        p.wc(false)?;
        post(
            &mut p.b,
            SendWr::new(6, WrOpcode::Send, sge(kb, s_msg, 16), SendFlags::SIGNALED),
        )?;
        p.wc(false)?;
        p.wc(true)?;
        // -V: the pong must equal the ping.
        let m =
            p.a.dev
                .core()
                .mr_bytes(ka)
                .ok_or(DemoError("client region".into()))?;
        let (s0, k0) = ((c_start - BUF) as usize, (c_sink - BUF) as usize);
        if m[s0..s0 + size] != m[k0..k0 + size] {
            return Err(DemoError(format!("rping: data mismatch in ping {i}")));
        }
        let text = String::from_utf8_lossy(&m[k0..k0 + size - 1]).into_owned();
        let _ = writeln!(out, "ping data: {text}");
    }
    p.a.dev.flush_tap().map_err(err("pcap"))?;
    Ok(())
}

fn read_info(s: &mut Side, at: u64) -> Result<(u64, u32, u32), DemoError> {
    let key = s.key;
    let m = s
        .dev
        .core()
        .mr_bytes(key)
        .ok_or(DemoError("region".into()))?;
    let o = (at - BUF) as usize;
    let b = &m[o..o + 16];
    let addr = u64::from_be_bytes(b[..8].try_into().unwrap_or([0; 8]));
    let rkey = u32::from_be_bytes(b[8..12].try_into().unwrap_or([0; 4]));
    let len = u32::from_be_bytes(b[12..16].try_into().unwrap_or([0; 4]));
    Ok((addr, rkey, len))
}

/// Bandwidth of `iters` operations of `size` bytes from a to b, up to `depth` outstanding.
fn bandwidth(
    p: &mut Pair,
    op: fn(Remote) -> WrOpcode,
    size: u32,
    iters: u32,
    depth: u32,
) -> Result<(f64, f64), DemoError> {
    let (ka, kb) = (p.a.key, p.b.key);
    let start = Instant::now();
    let (mut posted, mut done) = (0u32, 0u32);
    // Peak: the best rate over any window of `depth` completions (perftest takes the best
    // interval between completions over its cycle counts, which this approximates).
    let mut peak: f64 = 0.0;
    let mut window_start = (start, 0u32);
    while done < iters {
        while posted < iters && posted - done < depth {
            let slot = u64::from(posted % 64) * u64::from(size);
            let off = slot % (BUF_LEN as u64 - u64::from(size));
            let wr = SendWr::new(
                u64::from(posted),
                op(Remote {
                    addr: BUF + off,
                    rkey: Rkey(kb),
                }),
                sge(ka, BUF + off, size),
                SendFlags::SIGNALED,
            );
            post(&mut p.a, wr)?;
            posted += 1;
        }
        p.poll()?;
        let cq = p.a.cq;
        while let Some(wc) = p.a.dev.core().poll_cq(cq) {
            if wc.status != WcStatus::Success {
                return Err(DemoError(format!("bandwidth: {}", wc.status.as_str())));
            }
            done += 1;
            if done - window_start.1 >= depth {
                let dt = window_start.0.elapsed().as_secs_f64();
                if dt > 0.0 {
                    peak = peak.max(f64::from(size) * f64::from(done - window_start.1) / dt);
                }
                window_start = (Instant::now(), done);
            }
        }
        if start.elapsed() > p.deadline {
            return Err(DemoError("bandwidth: no progress".into()));
        }
    }
    let avg = f64::from(size) * f64::from(iters) / start.elapsed().as_secs_f64();
    Ok((peak.max(avg), avg))
}

/// Latencies (µs) of `iters` single operations.
fn latency(
    p: &mut Pair,
    op: fn(Remote) -> WrOpcode,
    size: u32,
    iters: u32,
) -> Result<Vec<f64>, DemoError> {
    let (ka, kb) = (p.a.key, p.b.key);
    let mut v = Vec::with_capacity(iters as usize);
    for i in 0..iters {
        let wr = SendWr::new(
            u64::from(i),
            op(Remote {
                addr: BUF,
                rkey: Rkey(kb),
            }),
            sge(ka, BUF + 0x8_0000, size),
            SendFlags::SIGNALED,
        );
        let t = Instant::now();
        post(&mut p.a, wr)?;
        p.wc(true)?;
        v.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(v)
}

/// SEND latency: half of a ping-pong round trip, as ib_send_lat reports.
fn send_latency(p: &mut Pair, size: u32, iters: u32) -> Result<Vec<f64>, DemoError> {
    let (ka, kb) = (p.a.key, p.b.key);
    let mut v = Vec::with_capacity(iters as usize);
    for i in 0..u64::from(iters) {
        post_recv(&mut p.b, i, BUF + 0x4_0000, size)?;
        post_recv(&mut p.a, i, BUF + 0x4_0000, size)?;
        let t = Instant::now();
        post(
            &mut p.a,
            SendWr::new(i, WrOpcode::Send, sge(ka, BUF, size), SendFlags::SIGNALED),
        )?;
        p.wc(false)?;
        post(
            &mut p.b,
            SendWr::new(i, WrOpcode::Send, sge(kb, BUF, size), SendFlags::SIGNALED),
        )?;
        // a: its send's completion and the pong.
        p.wc(true)?;
        p.wc(true)?;
        p.wc(false)?;
        v.push(t.elapsed().as_secs_f64() * 1e6 / 2.0);
    }
    Ok(v)
}

/// perftest's latency figures: min, max, typical (median after dropping the two largest),
/// average, stdev, 99% and 99.9% percentiles.
pub fn lat_stats(v: &[f64]) -> [f64; 7] {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return [0.0; 7];
    }
    let n = s.len();
    let kept = &s[..n.saturating_sub(2).max(1)];
    let typical = kept[kept.len() / 2];
    let avg = s.iter().sum::<f64>() / n as f64;
    let var = s.iter().map(|x| (x - avg) * (x - avg)).sum::<f64>() / n as f64;
    let pct = |q: f64| s[((n as f64 * q).ceil() as usize).clamp(1, n) - 1];
    [
        s[0],
        s[n - 1],
        typical,
        avg,
        var.sqrt(),
        pct(0.99),
        pct(0.999),
    ]
}

const MB: f64 = 1024.0 * 1024.0;

fn bw_table(
    out: &mut String,
    title: &str,
    size: u32,
    iters: u32,
    bw: (f64, f64),
    board: Option<f64>,
) {
    let _ = writeln!(out, "{:-<83}", "");
    let _ = writeln!(out, "                    {title}");
    let _ = writeln!(
        out,
        " #bytes     #iterations    BW peak[MB/sec]    BW average[MB/sec]   MsgRate[Mpps]"
    );
    let _ = write!(
        out,
        " {:<10} {:<14} {:<18.2} {:<20.2} {:.6}",
        size,
        iters,
        bw.0 / MB,
        bw.1 / MB,
        bw.1 / f64::from(size) / 1e6
    );
    if let Some(b) = board {
        let _ = write!(out, "   (board: {b:.2} MB/sec; here {:.1}x)", bw.1 / MB / b);
    }
    let _ = writeln!(out);
}

fn lat_table(out: &mut String, title: &str, size: u32, v: &[f64], board: Option<f64>) {
    let s = lat_stats(v);
    let _ = writeln!(out, "{:-<83}", "");
    let _ = writeln!(out, "                    {title}");
    let _ = writeln!(
        out,
        " #bytes #iterations    t_min[usec]    t_max[usec]  t_typical[usec]    t_avg[usec]    t_stdev[usec]   99% percentile[usec]   99.9% percentile[usec]"
    );
    let _ = write!(
        out,
        " {:<6} {:<14} {:<14.2} {:<12.2} {:<16.2} {:<14.2} {:<15.2} {:<22.2} {:.2}",
        size,
        v.len(),
        s[0],
        s[1],
        s[2],
        s[3],
        s[4],
        s[5],
        s[6]
    );
    if let Some(b) = board {
        let _ = write!(out, "   (board: {b:.2} usec typical)");
    }
    let _ = writeln!(out);
}

/// Runs the whole demo; returns what it prints.
pub fn run(cfg: &DemoConfig) -> Result<String, DemoError> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "rxe demo: two Soft-RoCE devices on loopback (127.0.0.1:{0} and 127.0.0.2:{0}), RoCEv2 over UDP, busy-polled",
        cfg.port
    );
    let _ = writeln!(
        out,
        "\nrping -c -a 127.0.0.2 -C {} -V -v -S 64",
        cfg.rping_count
    );
    rping(cfg, &mut out)?;
    let _ = writeln!(out, "client DISCONNECT EVENT...");

    let read = |r| WrOpcode::RdmaRead(r);
    let write = |r| WrOpcode::RdmaWrite(r);
    let mut p = connect(cfg, 18515, 7)?;
    let bw = bandwidth(&mut p, read, 4096, cfg.iters, 16)?;
    bw_table(
        &mut out,
        "RDMA_Read BW Test (ib_read_bw -s 4096)",
        4096,
        cfg.iters,
        bw,
        Some(BOARD_READ_BW_MBS),
    );
    let v = latency(&mut p, read, 4096, cfg.iters)?;
    lat_table(
        &mut out,
        "RDMA_Read Latency Test (ib_read_lat -s 4096)",
        4096,
        &v,
        Some(BOARD_READ_LAT_US),
    );
    let bw = bandwidth(&mut p, write, 65536, cfg.iters, 128)?;
    bw_table(
        &mut out,
        "RDMA_Write BW Test (ib_write_bw -s 65536)",
        65536,
        cfg.iters,
        bw,
        None,
    );
    let v = send_latency(&mut p, 64, cfg.iters)?;
    lat_table(
        &mut out,
        "Send Latency Test (ib_send_lat -s 64)",
        64,
        &v,
        None,
    );
    let _ = writeln!(out, "{:-<83}", "");
    let (_, qa) = p.a.dev.core().counters();
    let _ = writeln!(
        out,
        "client QP counters: sent_pkts {} rcvd_pkts {} retransmissions {} icrc_err {}",
        qa.sent_pkts, qa.rcvd_pkts, qa.completer_retry_err, qa.icrc_err
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perftest_statistics() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = lat_stats(&v);
        assert_eq!((s[0], s[1]), (1.0, 100.0));
        // Typical: the median of the 98 smallest.
        assert_eq!(s[2], 50.0);
        assert!((s[3] - 50.5).abs() < 1e-9);
        assert_eq!((s[5], s[6]), (99.0, 100.0));
    }
}
