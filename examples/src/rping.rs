//! `rxe rping`: rdma-core's `rping` (librdmacm/examples/rping.c) on an rxe-user device, the same
//! exchange on the wire, so it talks to a real `rping` on a Linux rxe peer.
//!
//! The client sends its start buffer's `{be64 addr, be32 rkey, be32 len}`; the server RDMA
//! READs it and SENDs a "go ahead"; the client sends its sink buffer's address; the server RDMA
//! WRITEs the data back there and goes ahead again; with `-V` the client compares. The start
//! buffer holds `rdma-ping-%d: ` and then ASCII `A`..`z` from a start that moves each ping.

use crate::host_addr::HostAddr;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rxe_transport::cm::{CmEvent, ConnId};
use rxe_transport::device::{CqId, DeviceEvent, QpInit};
use rxe_transport::{
    Access, QpState, RecvWr, Remote, SendFlags, SendWr, Sge, WcOpcode, WcStatus, WorkCompletion,
    WrOpcode,
};
use rxe_user::{UdpDevice, UdpDeviceConfig};
use rxe_wire::{Qpn, Rkey};

/// rping's options.
#[derive(Debug, Clone)]
pub struct RpingArgs {
    /// Server (`-s`) or client (`-c`).
    pub server: bool,
    /// `-a`: the server's address (client) or the address to bind (server).
    pub addr: HostAddr,
    /// `-p`: the rdma_cm port (7174).
    pub port: u16,
    /// `-C`: pings (client; 0 = forever).
    pub count: u32,
    /// `-S`: buffer size (at least 16, default 64).
    pub size: usize,
    /// `-v`: print each ping.
    pub verbose: bool,
    /// `-V`: check each pong.
    pub validate: bool,
    /// The RoCEv2 UDP port of this device and the peer (4791).
    pub udp_port: u16,
    /// Give up when nothing happens for this long.
    pub timeout: Duration,
    /// `-P`: persistent server: after a client disconnects, wait for the next one (one client at
    /// a time; later clients wait in the CM, whose REQ retransmissions outlast a ping run).
    pub persistent: bool,
    /// `-d`: print rping's debug log (objects created, CM events, completions, the peer's
    /// buffer advertisements).
    pub debug: bool,
    /// `-q`: create the QP ourselves rather than through rdma_cm. This tool always does (the CM
    /// only moves the QP through INIT/RTR/RTS), so the flag changes nothing on the wire, as it
    /// doesn't for rping.
    pub self_created_qp: bool,
}

/// What went wrong, in one line.
#[derive(Debug)]
pub struct RpingError(pub String);

impl std::fmt::Display for RpingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn e<T: std::fmt::Display>(what: &'static str) -> impl Fn(T) -> RpingError {
    move |x| RpingError(format!("{what}: {x}"))
}

const BASE: u64 = 0x5000_0000;
/// Layout of the one region: start buffer, sink (rdma) buffer, send message, receive message.
struct Layout {
    start: u64,
    rdma: u64,
    send: u64,
    recv: u64,
}

fn layout(size: usize) -> Layout {
    let s = (size as u64).next_multiple_of(64);
    Layout {
        start: BASE,
        rdma: BASE + s,
        send: BASE + 2 * s,
        recv: BASE + 2 * s + 64,
    }
}

struct Rping {
    dev: UdpDevice,
    pd: rxe_transport::Pd,
    qpn: Qpn,
    cq: CqId,
    key: u32,
    lay: Layout,
    size: usize,
    timeout: Duration,
    /// The peer's messages that completed while we waited for our own request's completion
    /// (its ACK can come after the peer's answer to it); already reposted.
    early_recvs: u32,
    /// `-d`: debug lines not yet printed (`None`: no debug log).
    debug: Option<Vec<String>>,
}

impl Rping {
    fn open(
        bind: SocketAddr,
        size: usize,
        timeout: Duration,
        debug: bool,
    ) -> Result<Rping, RpingError> {
        let mut dev = UdpDevice::open(UdpDeviceConfig::new(bind)).map_err(e("open device"))?;
        let c = dev.core();
        let pd = c.alloc_pd().map_err(e("alloc_pd"))?;
        let lay = layout(size);
        let len = (lay.recv - BASE + 64) as usize;
        let access = Access::LOCAL_WRITE | Access::REMOTE_READ | Access::REMOTE_WRITE;
        let mr = c.reg_mr(pd, BASE, len, access).map_err(e("reg_mr"))?;
        let cq = c.create_cq(64).map_err(e("create_cq"))?;
        let mut r = Rping {
            dev,
            pd,
            qpn: Qpn::new(0),
            cq,
            key: mr.lkey,
            lay,
            size,
            timeout,
            early_recvs: 0,
            debug: debug.then(Vec::new),
        };
        r.dbg(format_args!("created pd {pd:?}"));
        r.dbg(format_args!("created cq {}", cq.0));
        r.dbg(format_args!(
            "allocated & registered buffers... (key {:#x}, {len} bytes at {BASE:#x})",
            mr.lkey
        ));
        r.new_qp()?;
        Ok(r)
    }

    /// A fresh RC QP (a persistent server's next client), the old one destroyed.
    fn new_qp(&mut self) -> Result<(), RpingError> {
        let (pd, cq, old) = (self.pd, self.cq, self.qpn);
        let c = self.dev.core();
        if old.value() != 0 {
            let _ = c.destroy_qp(old);
        }
        while c.poll_cq(cq).is_some() {}
        self.qpn = c.create_qp(&QpInit::rc(pd, cq)).map_err(e("create_qp"))?;
        self.early_recvs = 0;
        let q = self.qpn;
        self.dbg(format_args!("created qp {:#x}", q.value()));
        Ok(())
    }

    /// Adds a line to the debug log (`-d`).
    fn dbg(&mut self, line: std::fmt::Arguments<'_>) {
        if let Some(d) = self.debug.as_mut() {
            d.push(line.to_string());
        }
    }

    /// Prints the debug log so far.
    fn flush(&mut self, out: &mut impl Write) -> Result<(), RpingError> {
        if let Some(d) = self.debug.as_mut() {
            for l in d.drain(..) {
                writeln!(out, "{l}").map_err(e("output"))?;
            }
        }
        Ok(())
    }

    /// Busy-polls until `f` gives a value or nothing has happened for the timeout.
    fn until<T>(
        &mut self,
        what: &str,
        mut f: impl FnMut(&mut Rping) -> Result<Option<T>, RpingError>,
    ) -> Result<T, RpingError> {
        let mut last = Instant::now();
        loop {
            if self.dev.progress_received().map_err(e("socket"))? {
                last = Instant::now();
            }
            if let Some(v) = f(self)? {
                return Ok(v);
            }
            if last.elapsed() > self.timeout {
                return Err(RpingError(format!("{what}: timed out")));
            }
        }
    }

    fn event(&mut self) -> Option<DeviceEvent> {
        let ev = self.dev.core().poll_event();
        if let Some(DeviceEvent::Cm(c)) = &ev {
            let name = match c {
                CmEvent::ConnectRequest { .. } => "RDMA_CM_EVENT_CONNECT_REQUEST",
                CmEvent::ConnectReply { .. } => "RDMA_CM_EVENT_CONNECT_RESPONSE",
                CmEvent::Established { .. } => "RDMA_CM_EVENT_ESTABLISHED",
                CmEvent::Rejected { .. } => "RDMA_CM_EVENT_REJECTED",
                CmEvent::Unreachable { .. } => "RDMA_CM_EVENT_UNREACHABLE",
                CmEvent::Disconnected { .. } => "RDMA_CM_EVENT_DISCONNECTED",
                CmEvent::TimewaitExit { .. } => "RDMA_CM_EVENT_TIMEWAIT_EXIT",
            };
            self.dbg(format_args!("cma_event type {name}"));
        }
        ev
    }

    /// The next completion; errors (flushes after a disconnect too) end the run.
    fn wc(&mut self, what: &str) -> Result<WorkCompletion, RpingError> {
        let cq = self.cq;
        let wc = self.until(what, |r| {
            if let Some(DeviceEvent::Cm(CmEvent::Disconnected { .. })) = r.event() {
                return Err(RpingError(format!("{what}: peer disconnected")));
            }
            Ok(r.dev.core().poll_cq(cq))
        })?;
        if wc.status != WcStatus::Success {
            return Err(RpingError(format!("{what}: {}", wc.status.as_str())));
        }
        match wc.opcode {
            WcOpcode::Send => self.dbg(format_args!("send completion")),
            WcOpcode::Recv => self.dbg(format_args!("recv completion")),
            WcOpcode::RdmaRead => self.dbg(format_args!("rdma read completion")),
            WcOpcode::RdmaWrite => self.dbg(format_args!("rdma write completion")),
            _ => {}
        }
        Ok(wc)
    }

    fn mem(&mut self) -> &mut [u8] {
        let key = self.key;
        self.dev.core().mr_bytes_mut(key).unwrap_or_default()
    }

    fn at(&mut self, addr: u64, len: usize) -> &mut [u8] {
        let o = (addr - BASE) as usize;
        &mut self.mem()[o..o + len]
    }

    fn post_recv(&mut self) -> Result<(), RpingError> {
        let (q, key, at) = (self.qpn, self.key, self.lay.recv);
        self.dev
            .core()
            .post_recv(
                q,
                RecvWr::new(
                    9,
                    Sge {
                        addr: at,
                        length: 16,
                        lkey: key,
                    },
                ),
            )
            .map_err(e("post_recv"))
    }

    fn post(&mut self, id: u64, op: WrOpcode, addr: u64, len: u32) -> Result<(), RpingError> {
        let (q, key) = (self.qpn, self.key);
        let sge = Sge {
            addr,
            length: len,
            lkey: key,
        };
        self.dev
            .core()
            .post_send(q, SendWr::new(id, op, Some(sge), SendFlags::SIGNALED))
            .map_err(e("post_send"))
    }

    /// Sends `{addr, rkey, len}` of one of our buffers.
    fn send_info(&mut self, addr: u64) -> Result<(), RpingError> {
        let (key, size, at) = (self.key, self.size, self.lay.send);
        let m = self.at(at, 16);
        m[..8].copy_from_slice(&addr.to_be_bytes());
        m[8..12].copy_from_slice(&key.to_be_bytes());
        m[12..16].copy_from_slice(&(size as u32).to_be_bytes());
        self.post(1, WrOpcode::Send, at, 16)
    }

    fn received_info(&mut self) -> (u64, u32, u32) {
        let at = self.lay.recv;
        let b = self.at(at, 16).to_vec();
        let addr = u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        let rkey = u32::from_be_bytes([b[8], b[9], b[10], b[11]]);
        let len = u32::from_be_bytes([b[12], b[13], b[14], b[15]]);
        self.dbg(format_args!(
            "Received rkey {rkey:x} addr {addr:x} len {len} from peer"
        ));
        (addr, rkey, len)
    }

    /// Waits for a receive (the peer's message), then reposts the receive as rping does.
    fn wait_recv(&mut self, what: &str) -> Result<(), RpingError> {
        if self.early_recvs > 0 {
            self.early_recvs -= 1;
            return Ok(());
        }
        loop {
            let wc = self.wc(what)?;
            if matches!(wc.opcode, WcOpcode::Recv) {
                return self.post_recv();
            }
        }
    }

    /// Waits for the completion of our own request. The peer's next message may complete
    /// first (its answer can overtake our request's ACK on a lossy link): it is kept for the
    /// next [`wait_recv`](Self::wait_recv).
    fn wait_send(&mut self, what: &str) -> Result<(), RpingError> {
        loop {
            let wc = self.wc(what)?;
            if !matches!(wc.opcode, WcOpcode::Recv) {
                return Ok(());
            }
            if self.early_recvs > 0 {
                return Err(RpingError(format!(
                    "{what}: unexpected message from the peer"
                )));
            }
            self.early_recvs += 1;
            self.post_recv()?;
        }
    }
}

/// rping's start-buffer contents for ping `i`.
pub fn ping_pattern(i: u32, size: usize) -> Vec<u8> {
    let mut data = format!("rdma-ping-{i}: ").into_bytes();
    data.truncate(size.saturating_sub(1));
    let mut c = b'A' + (i % 58) as u8;
    while data.len() < size.saturating_sub(1) {
        data.push(c);
        c = if c == b'z' { b'A' } else { c + 1 };
    }
    data.push(0);
    data
}

/// Runs rping; writes what rping prints to `out`.
pub fn run(args: &RpingArgs, out: &mut impl Write) -> Result<(), RpingError> {
    if args.size < 16 {
        return Err(RpingError("-S: size must be at least 16".into()));
    }
    if args.server {
        server(args, out)
    } else {
        client(args, out)
    }
}

fn client(args: &RpingArgs, out: &mut impl Write) -> Result<(), RpingError> {
    let local = rxe_user::netdev::source_address_for(args.addr.with_port(args.port))
        .map_err(e("no route to the server"))?;
    let mut r = Rping::open(
        HostAddr::of(local).with_port(args.udp_port),
        args.size,
        args.timeout,
        args.debug,
    )?;
    let now = r.dev.now();
    let qpn = r.qpn;
    let conn = r
        .dev
        .core()
        .connect(
            now,
            qpn,
            args.addr.ip,
            args.port,
            40000 + (std::process::id() % 20000) as u16,
            1,
            1,
            &[],
        )
        .map_err(e("connect"))?;
    r.until("connect", |r| {
        match r.event() {
            Some(DeviceEvent::Cm(CmEvent::Rejected { reason, .. })) => {
                return Err(RpingError(format!("connection rejected ({reason})")))
            }
            Some(DeviceEvent::Cm(CmEvent::Unreachable { .. })) => {
                return Err(RpingError("server unreachable".into()))
            }
            _ => {}
        }
        let st = r.dev.core().qp(qpn).map(|q| q.state());
        Ok((st == Some(QpState::Rts)).then_some(()))
    })?;
    r.dbg(format_args!("rdma_connect successful"));
    r.flush(out)?;
    r.post_recv()?;
    let size = args.size;
    let mut i = 0u32;
    while args.count == 0 || i < args.count {
        let pattern = ping_pattern(i, size);
        let (start, rdma) = (r.lay.start, r.lay.rdma);
        r.at(start, size).copy_from_slice(&pattern);
        r.at(rdma, size).fill(0);
        r.send_info(start)?;
        r.wait_send("send start buffer")?;
        r.wait_recv("wait for the server's go ahead")?;
        r.send_info(rdma)?;
        r.wait_send("send sink buffer")?;
        r.wait_recv("wait for the server's go ahead")?;
        let pong = r.at(rdma, size).to_vec();
        if args.validate && pong != pattern {
            return Err(RpingError(format!("data mismatch in ping {i}")));
        }
        r.flush(out)?;
        if args.verbose {
            let text = String::from_utf8_lossy(&pong[..size - 1]);
            let text = text.trim_end_matches('\0');
            writeln!(out, "ping data: {text}").map_err(e("output"))?;
        }
        i += 1;
    }
    let now = r.dev.now();
    r.dev
        .core()
        .disconnect(now, conn)
        .map_err(e("disconnect"))?;
    let _ = r.until("disconnect", |r| {
        Ok(matches!(
            r.event(),
            Some(DeviceEvent::Cm(CmEvent::Disconnected { .. }))
        )
        .then_some(()))
    });
    Ok(())
}

fn server(args: &RpingArgs, out: &mut impl Write) -> Result<(), RpingError> {
    let mut r = Rping::open(
        args.addr.with_port(args.udp_port),
        args.size,
        Duration::from_secs(u64::MAX / 4),
        args.debug,
    )?;
    r.dev.core().listen(args.port).map_err(e("listen"))?;
    let port = args.port;
    r.dbg(format_args!("rdma_listen on port {port}"));
    r.flush(out)?;
    loop {
        r.timeout = Duration::from_secs(u64::MAX / 4);
        let id: ConnId = r.until("wait for a client", |r| {
            Ok(match r.event() {
                Some(DeviceEvent::Cm(CmEvent::ConnectRequest { id, .. })) => Some(id),
                _ => None,
            })
        })?;
        let now = r.dev.now();
        let qpn = r.qpn;
        r.dev
            .core()
            .accept(now, id, qpn, 1, 1, &[])
            .map_err(e("accept"))?;
        r.dbg(format_args!("accepting client connection request"));
        r.post_recv()?;
        r.timeout = args.timeout;
        let n = serve(&mut r, args, out)?;
        r.flush(out)?;
        writeln!(out, "server DISCONNECT EVENT... ({n} pings)").map_err(e("output"))?;
        if !args.persistent {
            return Ok(());
        }
        r.new_qp()?;
        r.flush(out)?;
    }
}

/// Serves one client until it disconnects; returns the pings served.
fn serve(r: &mut Rping, args: &RpingArgs, out: &mut impl Write) -> Result<u32, RpingError> {
    let mut n = 0u32;
    loop {
        // The client's start buffer, or its disconnection.
        match r.wait_recv("wait for the client's start buffer") {
            Ok(()) => {}
            Err(err) if err.0.contains("disconnected") || err.0.contains("Flushed") => break,
            Err(err) => return Err(err),
        }
        let (addr, rkey, len) = r.received_info();
        let len = len.min(r.size as u32);
        let rdma = r.lay.rdma;
        r.post(
            2,
            WrOpcode::RdmaRead(Remote {
                addr,
                rkey: Rkey(rkey),
            }),
            rdma,
            len,
        )?;
        r.wait_send("RDMA READ of the client's buffer")?;
        if args.verbose {
            let data = r.at(rdma, len as usize).to_vec();
            let text = String::from_utf8_lossy(&data);
            writeln!(out, "server ping data: {}", text.trim_end_matches('\0'))
                .map_err(e("output"))?;
        }
        let send = r.lay.send;
        r.post(3, WrOpcode::Send, send, 16)?;
        r.wait_send("go ahead")?;
        r.wait_recv("wait for the client's sink buffer")?;
        let (addr, rkey, _) = r.received_info();
        // rping writes strlen(rdma_buf) + 1 bytes.
        let data = r.at(rdma, len as usize).to_vec();
        let wlen = data
            .iter()
            .position(|&b| b == 0)
            .map_or(len, |p| p as u32 + 1);
        r.post(
            4,
            WrOpcode::RdmaWrite(Remote {
                addr,
                rkey: Rkey(rkey),
            }),
            rdma,
            wlen,
        )?;
        r.wait_send("RDMA WRITE of the pong")?;
        r.post(5, WrOpcode::Send, send, 16)?;
        r.wait_send("go ahead")?;
        r.flush(out)?;
        n += 1;
    }
    Ok(n)
}
