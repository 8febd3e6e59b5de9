//! The device on a UDP socket: receive with headroom for a rebuilt IP/UDP header (Identification
//! solved from the ICRC on IPv4), send the UDP payload of what the core emits.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Instant as StdInstant;

use rxe_transport::device::{Device, DeviceConfig};
use rxe_transport::{Instant, Mtu};
use rxe_wire::icrc::ipv4_ident::IdentSolver;
use rxe_wire::{ipv4, ipv6, udp, IpRepr};

/// Settings of a [`UdpDevice`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpDeviceConfig {
    /// Address and port to bind: a specific address (it is the device's GID), port 4791 for real
    /// RoCEv2 peers.
    pub bind: SocketAddr,
    /// The UDP port peers listen on (4791 for RoCEv2).
    pub peer_port: u16,
    /// Active MTU.
    pub mtu: Mtu,
    /// Seeds keys, PSNs and CM IDs.
    pub seed: u64,
    /// Send runs of equal-sized packets to one peer as one GSO `sendmsg`. On by default for
    /// loopback peers only: when the kernel splits a GSO send it numbers the segments' IPv4
    /// Identification from the first one's, which a Linux rxe peer's ICRC check would see
    /// (receivers of this crate solve the Identification and don't mind).
    pub gso: bool,
    /// A QP's `retry_cnt` of 7 retries forever (`true`, as Linux rxe) or seven times (`false`, as
    /// the IBTA, so a vanished peer ends in `RETRY_EXC_ERR`).
    pub retry_cnt_7_is_infinite: bool,
    /// Faults injected into this device's datagrams (tests); `None` by default, or what
    /// `RXE_USER_FAULTS` says. Turns GSO off.
    pub faults: Option<crate::Faults>,
}

impl UdpDeviceConfig {
    /// Defaults for `bind`: peers on the same port, the active MTU that Linux rxe would give the
    /// interface holding the address (4096 on loopback, 1024 on 1500-byte Ethernet, 1024 when
    /// unknown), seed from the clock.
    pub fn new(bind: SocketAddr) -> UdpDeviceConfig {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        UdpDeviceConfig {
            bind,
            peer_port: bind.port(),
            mtu: crate::netdev::active_mtu(bind.ip()),
            seed,
            gso: bind.ip().is_loopback(),
            retry_cnt_7_is_infinite: true,
            faults: crate::Faults::from_env(),
        }
    }
}

/// Counters of the socket layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UdpDeviceCounters {
    /// Datagrams sent.
    pub tx: u64,
    /// Datagrams received.
    pub rx: u64,
    /// IPv4 datagrams whose ICRC no Identification satisfies (corrupt).
    pub rx_icrc_unsolved: u64,
    /// Datagrams too short to be RoCEv2.
    pub rx_short: u64,
    /// Sends the kernel refused (would block, ...).
    pub tx_errors: u64,
    /// `sendmsg` calls (one per datagram, or one per GSO run of datagrams).
    pub tx_syscalls: u64,
    /// Receive calls that returned data (one per datagram, or per GRO-coalesced run).
    pub rx_syscalls: u64,
    /// Datagrams the fault injector dropped (sent or received), duplicated, reordered.
    pub faults_dropped: u64,
    /// See `faults_dropped`.
    pub faults_duplicated: u64,
    /// See `faults_dropped`.
    pub faults_reordered: u64,
}

/// A message gathered for the next `sendmmsg`: `batch[start..start + len]` to `to`, `count`
/// datagrams of `segment` bytes.
#[derive(Debug, Clone, Copy)]
struct Pending {
    to: SocketAddr,
    start: usize,
    len: usize,
    segment: usize,
    count: u64,
}

/// BTH opcode of an RC ACKNOWLEDGE (ACK or NAK, AETH only).
const RC_ACKNOWLEDGE: u8 = 0x11;

/// Bytes gathered before a `sendmmsg` goes out anyway.
const MAX_BATCH_BYTES: usize = 1 << 20;

/// A Soft-RoCE device on a UDP socket.
#[derive(Debug)]
pub struct UdpDevice {
    sock: UdpSocket,
    local: SocketAddr,
    core: Device,
    cfg: UdpDeviceConfig,
    epoch: StdInstant,
    solvers: HashMap<usize, IdentSolver>,
    rx_buf: Vec<u8>,
    tx_buf: Vec<u8>,
    /// UDP payloads waiting to go out in the next `sendmmsg`, back to back: the finished
    /// messages in `pending`, then the GSO run being gathered (from `batch_start`, to
    /// `batch_to`, `batch_count` datagrams of `batch_seg` bytes).
    batch: Vec<u8>,
    pending: Vec<Pending>,
    batch_start: usize,
    batch_to: Option<SocketAddr>,
    batch_seg: usize,
    batch_count: usize,
    /// ACKs of this transmit turn, sent after its other packets (`acks[start..start + len]` to
    /// `to`): an answer the application just posted leaves first, in the same sendmmsg.
    acks: Vec<u8>,
    ack_msgs: Vec<(SocketAddr, usize, usize)>,
    /// A datagram the fault injector holds back, and where it goes.
    held: Option<(Vec<u8>, SocketAddr)>,
    counters: UdpDeviceCounters,
    tap: Option<crate::PcapTap>,
}

impl Drop for UdpDevice {
    /// Sends what is still queued (ACKs held for the application's answer, a DREP), so a
    /// program that ends right after its last completion leaves no peer waiting.
    fn drop(&mut self) {
        let now = self.now();
        let _ = self.gather(now);
        self.flush_all();
    }
}

/// `setsockopt(IPPROTO_UDP, UDP_NO_CHECK6_RX)`: accept IPv6 UDP datagrams whose checksum is zero
/// (linux/udp.h; not in the libc crate).
const UDP_NO_CHECK6_RX: libc::c_int = 102;

/// Room before the UDP payload for the rebuilt IP and UDP headers.
const HEADROOM: usize = ipv6::HEADER_LEN + udp::HEADER_LEN;

impl UdpDevice {
    /// Binds the socket and creates the device.
    pub fn open(mut cfg: UdpDeviceConfig) -> io::Result<UdpDevice> {
        if cfg.bind.ip().is_unspecified() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "bind a specific address: it is the device's GID",
            ));
        }
        if let SocketAddr::V6(a) = &mut cfg.bind {
            // A link-local GID lives on one interface: the one holding the address.
            if crate::netdev::is_link_local(*a.ip()) && a.scope_id() == 0 {
                let scope = crate::netdev::scope_of(*a.ip()).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::AddrNotAvailable,
                        "no interface holds this link-local address",
                    )
                })?;
                a.set_scope_id(scope);
            }
        }
        let sock = UdpSocket::bind(cfg.bind)?;
        sock.set_nonblocking(true)?;
        if cfg.bind.is_ipv4() {
            // DF datagrams with Identification 0 (unconnected socket), as the ICRC assumes.
            set_sockopt(
                &sock,
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                libc::IP_PMTUDISC_DO,
            )?;
        } else {
            // Linux rxe sends its IPv6 datagrams with a zero UDP checksum (RoCEv2 relies on the
            // ICRC), which the kernel drops unless the socket accepts them.
            set_sockopt(&sock, libc::IPPROTO_UDP, UDP_NO_CHECK6_RX, 1)?;
        }
        for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
            // Best effort: bigger buffers absorb bursts of a window of packets.
            let _ = set_sockopt(&sock, libc::SOL_SOCKET, opt, 8 << 20);
        }
        // Coalesced receive where the kernel offers it (every segment is handled on its own).
        crate::batch_io::enable_gro(&sock);
        let bound = sock.local_addr()?;
        let mut dcfg = DeviceConfig::new(bound.ip(), cfg.seed);
        dcfg.port_mtu = cfg.mtu;
        dcfg.udp_sport = Some(bound.port());
        dcfg.ipv4_ident_step = 0;
        dcfg.retry_cnt_7_is_infinite = cfg.retry_cnt_7_is_infinite;
        let core = Device::new(dcfg).map_err(|e| io::Error::other(e.to_string()))?;
        Ok(UdpDevice {
            sock,
            local: bound,
            core,
            cfg,
            epoch: StdInstant::now(),
            solvers: HashMap::new(),
            rx_buf: vec![0u8; HEADROOM + 65536 + 4096],
            tx_buf: vec![0u8; 65536],
            batch: Vec::with_capacity(65536),
            pending: Vec::with_capacity(crate::batch_io::MAX_MESSAGES),
            acks: Vec::new(),
            ack_msgs: Vec::new(),
            batch_start: 0,
            batch_to: None,
            batch_seg: 0,
            batch_count: 0,
            held: None,
            counters: UdpDeviceCounters::default(),
            tap: None,
        })
    }

    /// The device core: verbs objects, connections, counters.
    pub fn core(&mut self) -> &mut Device {
        &mut self.core
    }

    /// The UDP socket (to wait on it for readability).
    pub fn socket(&self) -> &UdpSocket {
        &self.sock
    }

    /// The socket's address (the device's GID and port).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Records every packet sent and received in a pcap at `path` from now on (see
    /// [`PcapTap`](crate::PcapTap)).
    pub fn tap(&mut self, path: &std::path::Path) -> io::Result<()> {
        self.tap = Some(crate::PcapTap::create(path)?);
        Ok(())
    }

    /// Writes out what the tap has buffered.
    pub fn flush_tap(&mut self) -> io::Result<()> {
        match self.tap.as_mut() {
            Some(t) => t.flush(),
            None => Ok(()),
        }
    }

    /// Socket-layer counters.
    pub fn counters(&self) -> UdpDeviceCounters {
        self.counters
    }

    /// The device clock: time since the device was opened.
    pub fn now(&self) -> Instant {
        Instant::from_nanos(self.epoch.elapsed().as_nanos() as u64)
    }

    /// Runs the protocol once without blocking: receives what has arrived, runs due timers,
    /// sends what is ready. Returns whether anything happened.
    pub fn progress(&mut self) -> io::Result<bool> {
        // Send first what the caller posted since the last turn (with the ACKs queued so far).
        // With only ACKs queued, receive first: what arrives may give the application
        // something to answer, and its answer then leaves with those ACKs in one sendmmsg.
        let now = self.now();
        let mut any = self.send_requests(now)?;
        for _ in 0..64 {
            let completions = self.core.device_counters().completions;
            if !self.receive_one()? {
                break;
            }
            any = true;
            // Answer requests (READ responses, atomic results) before looking for more: one
            // (EAGAIN) receive call sooner, most of a round trip's overhead on loopback. A
            // burst still batches: GRO hands it over in one receive.
            self.send_requests(now)?;
            if self.core.device_counters().completions != completions {
                // The application has a completion to act on: let it (the ACKs wait for the
                // next turn, a moment away, or the device's drop).
                return Ok(true);
            }
        }
        let now = self.now();
        if self.core.poll_timeout().is_some_and(|t| t <= now) {
            self.core.handle_timeout(now);
            any = true;
        }
        any |= self.gather(now)?;
        self.flush_all();
        Ok(any)
    }

    /// Gathers what the core has to send and sends it if it holds more than ACKs (which
    /// then ride along); returns whether the core had anything.
    fn send_requests(&mut self, now: Instant) -> io::Result<bool> {
        let any = self.gather(now)?;
        if self.has_requests() {
            self.flush_all();
        }
        Ok(any)
    }

    /// [`progress`](Self::progress), returning whether anything arrived from the network: the
    /// sign that the peers are alive (a requester retransmitting to a dead peer is busy too).
    pub fn progress_received(&mut self) -> io::Result<bool> {
        let before = self.counters.rx_syscalls;
        self.progress()?;
        Ok(self.counters.rx_syscalls != before)
    }

    fn receive_one(&mut self) -> io::Result<bool> {
        let (n, from, segment) =
            match crate::batch_io::recv_segments(&self.sock, &mut self.rx_buf[HEADROOM..]) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            };
        self.counters.rx_syscalls += 1;
        // Each coalesced datagram in turn, in order: the headers rebuilt before datagram k
        // overwrite the tail of datagram k - 1, which is done with by then.
        let seg = segment.unwrap_or(n).max(1);
        let mut off = 0;
        while off < n {
            let len = seg.min(n - off);
            if let Some(f) = self.cfg.faults.as_mut() {
                if f.roll(f.loss) {
                    self.counters.faults_dropped += 1;
                    off += len;
                    continue;
                }
            }
            self.receive_datagram(HEADROOM + off, len, from)?;
            off += len;
        }
        Ok(true)
    }

    /// Handles the datagram at `rx_buf[at..at + n]` (with room for headers before it).
    fn receive_datagram(&mut self, at: usize, n: usize, from: SocketAddr) -> io::Result<()> {
        self.counters.rx += 1;
        if n < 12 + 4 {
            self.counters.rx_short += 1;
            return Ok(());
        }
        let local = self.local;
        // The ICRC covers the UDP ports. On a port other than 4791 (only another rxe-user device
        // listens there) both sides build and check packets as if addressed to 4791.
        let udp_repr = udp::Repr {
            src_port: from.port(),
            dst_port: udp::ROCE_PORT,
            checksum: false,
        };
        let payload_end = at + n;
        let mut verified = false;
        let start = match (from.ip(), local.ip()) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let transport = &self.rx_buf[at..payload_end - 4];
                let icrc_bytes = &self.rx_buf[payload_end - 4..payload_end];
                let icrc = u32::from_le_bytes([
                    icrc_bytes[0],
                    icrc_bytes[1],
                    icrc_bytes[2],
                    icrc_bytes[3],
                ]);
                let mut ip = ipv4::Repr {
                    src,
                    dst,
                    tos: 0,
                    ident: 0,
                    dont_frag: true,
                    ttl: 64,
                };
                let solver = self
                    .solvers
                    .entry(transport.len())
                    .or_insert_with(|| IdentSolver::new(transport.len()));
                let Some(ident) = solver.solve(&ip, &udp_repr, transport, icrc) else {
                    self.counters.rx_icrc_unsolved += 1;
                    return Ok(());
                };
                ip.ident = ident;
                // Solved from the ICRC: right by construction, no need to compute it again.
                verified = true;
                let start = at - ipv4::HEADER_LEN - udp::HEADER_LEN;
                emit_headers(
                    &IpRepr::V4(ip),
                    &udp_repr,
                    &mut self.rx_buf[start..payload_end],
                );
                start
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                // Traffic class, flow label and hop limit are masked out of the ICRC.
                let ip = ipv6::Repr {
                    src,
                    dst,
                    traffic_class: 0,
                    flow_label: 0,
                    hop_limit: 64,
                };
                let start = at - ipv6::HEADER_LEN - udp::HEADER_LEN;
                emit_headers(
                    &IpRepr::V6(ip),
                    &udp_repr,
                    &mut self.rx_buf[start..payload_end],
                );
                start
            }
            _ => {
                self.counters.rx_short += 1;
                return Ok(());
            }
        };
        if let Some(t) = self.tap.as_mut() {
            t.write(&self.rx_buf[start..payload_end])?;
        }
        let now = self.now();
        let pkt = &self.rx_buf[start..payload_end];
        if verified {
            self.core.handle_verified_packet(now, pkt);
        } else {
            self.core.handle_packet(now, pkt);
        }
        Ok(())
    }

    /// Takes what the core has to send into the batch (ACKs aside), flushing only when the
    /// batch is full; returns whether there was anything.
    fn gather(&mut self, now: Instant) -> io::Result<bool> {
        let mut any = false;
        while let Some(n) = self.core.poll_transmit(now, &mut self.tx_buf) {
            any = true;
            let pkt = &self.tx_buf[..n];
            if let Some(t) = self.tap.as_mut() {
                t.write(pkt)?;
            }
            let (dst, hdr) = match pkt[0] >> 4 {
                4 => (
                    IpAddr::V4([pkt[16], pkt[17], pkt[18], pkt[19]].into()),
                    ipv4::HEADER_LEN,
                ),
                _ => {
                    let mut a = [0u8; 16];
                    a.copy_from_slice(&pkt[24..40]);
                    (IpAddr::V6(a.into()), ipv6::HEADER_LEN)
                }
            };
            let to = self.peer_addr(dst);
            let payload_len = n - hdr - udp::HEADER_LEN;
            if self.cfg.faults.is_some() {
                self.send_faulty(hdr + udp::HEADER_LEN, n, to);
                continue;
            }
            let udp_payload = hdr + udp::HEADER_LEN;
            if self.tx_buf[udp_payload] == RC_ACKNOWLEDGE && self.ack_msgs.len() < 64 {
                // Independent of the requests going the same way: they can wait for the end
                // of the batch.
                self.ack_msgs.push((to, self.acks.len(), n - udp_payload));
                self.acks.extend_from_slice(&self.tx_buf[udp_payload..n]);
                continue;
            }
            let dest_qp = u32::from_be_bytes([
                0,
                self.tx_buf[udp_payload + 5],
                self.tx_buf[udp_payload + 6],
                self.tx_buf[udp_payload + 7],
            ]);
            if dest_qp == 1 {
                // A CM message (a DREQ, say) must not overtake the ACKs before it: the peer
                // would flush what they acknowledge.
                self.queue_acks();
            }
            // Gather runs of equal-sized datagrams to one peer (a shorter one ends a run) into
            // GSO messages where allowed, and all messages into one sendmmsg.
            let gso = self.cfg.gso;
            let fits = gso
                && self.batch_to == Some(to)
                && payload_len <= self.batch_seg
                && self.batch.len() - self.batch_start + payload_len
                    <= crate::batch_io::MAX_GSO_BYTES
                && self.batch_count < crate::batch_io::MAX_SEGMENTS;
            if !fits {
                self.end_run();
                self.batch_to = Some(to);
                self.batch_seg = payload_len;
                self.batch_start = self.batch.len();
            }
            self.batch
                .extend_from_slice(&self.tx_buf[hdr + udp::HEADER_LEN..n]);
            self.batch_count += 1;
            if !gso || payload_len < self.batch_seg {
                self.end_run();
            }
            if self.pending.len() >= crate::batch_io::MAX_MESSAGES
                || self.batch.len() >= MAX_BATCH_BYTES
            {
                self.flush_batch();
            }
        }
        Ok(any)
    }

    /// Whether the batch holds anything but ACKs.
    fn has_requests(&self) -> bool {
        !self.pending.is_empty() || self.batch_to.is_some()
    }

    /// Sends the batch, then the ACKs, each its own datagram, in the same sendmmsg.
    fn flush_all(&mut self) {
        self.queue_acks();
        self.flush_batch();
        if let Some((p, to)) = self.held.take() {
            self.send_bytes(&p, to);
        }
    }

    /// Moves the ACKs set aside into the batch, after what it holds.
    fn queue_acks(&mut self) {
        self.end_run();
        for (to, start, len) in std::mem::take(&mut self.ack_msgs) {
            let at = self.batch.len();
            self.batch.extend_from_slice(&self.acks[start..start + len]);
            self.pending.push(Pending {
                to,
                start: at,
                len,
                segment: len,
                count: 1,
            });
            self.batch_start = self.batch.len();
        }
        self.acks.clear();
    }

    /// Sends `tx_buf[from..end]` through the fault injector.
    /// Where a packet for `dst` goes: the peers' port and, for a link-local peer, this device's
    /// interface.
    fn peer_addr(&self, dst: IpAddr) -> SocketAddr {
        match (dst, self.cfg.bind) {
            (IpAddr::V6(d), SocketAddr::V6(b)) if crate::netdev::is_link_local(d) => {
                SocketAddr::V6(std::net::SocketAddrV6::new(
                    d,
                    self.cfg.peer_port,
                    0,
                    b.scope_id(),
                ))
            }
            _ => SocketAddr::new(dst, self.cfg.peer_port),
        }
    }

    fn send_faulty(&mut self, from: usize, end: usize, to: SocketAddr) {
        let Some(f) = self.cfg.faults.as_mut() else {
            return;
        };
        let (drop, dup, hold) = (f.roll(f.loss), f.roll(f.dup), f.roll(f.reorder));
        if drop {
            self.counters.faults_dropped += 1;
            return;
        }
        if hold && self.held.is_none() {
            self.counters.faults_reordered += 1;
            self.held = Some((self.tx_buf[from..end].to_vec(), to));
            return;
        }
        self.send_one(from, end, to);
        if dup {
            self.counters.faults_duplicated += 1;
            self.send_one(from, end, to);
        }
        if let Some((p, to)) = self.held.take() {
            self.send_bytes(&p, to);
        }
    }

    fn send_bytes(&mut self, p: &[u8], to: SocketAddr) {
        self.counters.tx_syscalls += 1;
        match self.sock.send_to(p, to) {
            Ok(_) => self.counters.tx += 1,
            Err(_) => self.counters.tx_errors += 1,
        }
    }

    fn send_one(&mut self, from: usize, to_end: usize, to: SocketAddr) {
        self.counters.tx_syscalls += 1;
        match self.sock.send_to(&self.tx_buf[from..to_end], to) {
            Ok(_) => self.counters.tx += 1,
            Err(_) => self.counters.tx_errors += 1,
        }
    }

    /// Closes the run being gathered into a pending message.
    fn end_run(&mut self) {
        let Some(to) = self.batch_to.take() else {
            return;
        };
        self.pending.push(Pending {
            to,
            start: self.batch_start,
            len: self.batch.len() - self.batch_start,
            segment: self.batch_seg,
            count: std::mem::take(&mut self.batch_count) as u64,
        });
        self.batch_start = self.batch.len();
    }

    /// Sends every gathered message: one `sendmsg` for one, one `sendmmsg` for several; a run
    /// of several datagrams goes as one GSO message (`UDP_SEGMENT`).
    fn flush_batch(&mut self) {
        self.end_run();
        match self.pending.len() {
            0 => {}
            1 => {
                let p = self.pending[0];
                self.counters.tx_syscalls += 1;
                let payload = &self.batch[p.start..p.start + p.len];
                match crate::batch_io::send_segments(&self.sock, p.to, payload, p.segment) {
                    Ok(_) => self.counters.tx += p.count,
                    Err(_) => self.counters.tx_errors += p.count,
                }
            }
            _ => {
                let msgs: Vec<crate::batch_io::OutMsg<'_>> = self
                    .pending
                    .iter()
                    .map(|p| crate::batch_io::OutMsg {
                        to: p.to,
                        payload: &self.batch[p.start..p.start + p.len],
                        segment: p.segment,
                    })
                    .collect();
                let (sent, calls) = crate::batch_io::send_many(&self.sock, &msgs);
                self.counters.tx_syscalls += calls;
                let total: u64 = self.pending.iter().map(|p| p.count).sum();
                // Which messages failed is not known here; count datagrams conservatively.
                let ok: u64 = if sent == self.pending.len() {
                    total
                } else {
                    self.pending[..sent].iter().map(|p| p.count).sum()
                };
                self.counters.tx += ok;
                self.counters.tx_errors += total - ok;
            }
        }
        self.pending.clear();
        self.batch.clear();
        self.batch_start = 0;
    }
}

/// Writes IP and UDP headers at the start of `packet` (whose tail is the UDP payload).
fn emit_headers(ip: &IpRepr, udp_repr: &udp::Repr, packet: &mut [u8]) {
    let ip_len = ip.header_len();
    let udp_len = packet.len() - ip_len;
    let _ = match ip {
        IpRepr::V4(r) => r.emit(packet, udp_len),
        IpRepr::V6(r) => r.emit(packet, udp_len),
    };
    let _ = udp_repr.emit(&mut packet[ip_len..], udp_len - udp::HEADER_LEN);
}

/// `setsockopt` with an int value (std has no API for these options).
#[allow(unsafe_code)]
pub(crate) fn set_sockopt(sock: &UdpSocket, level: i32, name: i32, value: i32) -> io::Result<()> {
    let v: libc::c_int = value;
    // SAFETY: a valid socket and a pointer to a c_int of the size passed.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
