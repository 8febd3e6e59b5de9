//! The communication manager, sans-IO: connection setup and teardown over QP1 that is
//! `rdma_cm` on the wire (IBTA vol. 1 chapter 12; Linux `cm.c` and `cma.c`).
//!
//! A [`Cm`] serves one local address. MADs in ([`Cm::handle_mad`]) and time in
//! ([`Cm::handle_timeout`]); MADs out ([`Cm::poll_transmit`], each to the peer's QP1 with Q_Key
//! `0x80010000`), events out ([`Cm::poll_event`]) and the next deadline ([`Cm::poll_timeout`]).
//! The host owns the QPs and moves them with the attributes [`Cm::qp_attr`] gives:
//!
//! ```text
//! active                                   passive
//! connect() ── REQ ──────────────────────▶ ConnectRequest  (accept(); QP → INIT, RTR)
//! ConnectReply ◀──────────────────── REP ─┘
//! (QP → INIT, RTR, RTS; rtu()) ── RTU ───▶ Established     (QP → RTS)
//! Established
//! disconnect() ── DREQ ──────────────────▶ Disconnected    (QP → ERR)
//! Disconnected ◀──────────────────── DREP ─┘
//! ... TimewaitExit                         ... TimewaitExit
//! ```
//!
//! REQ, REP and DREQ are resent after the CM response timeout, up to the REQ's max CM retries;
//! a repeated REQ, REP or DREQ is answered again (MRA, RTU, DREP) without a second event; a REQ
//! nobody listens for is rejected with reason 8 (invalid service ID) as Linux does, one for a
//! QP already connected with reason 10 (stale connection). Left out: LAP/APR (path migration:
//! RoCE has one path) and SIDR (UD service resolution, which rdma_cm over RoCE does not use).

mod conn;

use core::fmt;
use core::net::IpAddr;
use core::time::Duration;

use heapless::{Deque, Vec};
use rxe_wire::cm::{self, Message, RejReason};
use rxe_wire::cma::{self, CmaHeader};
use rxe_wire::mad::MAD_LEN;
use rxe_wire::{PKey, Psn, Qpn};

pub use self::conn::ConnState;
use self::conn::{Conn, Negotiated};
use crate::qp::state::QpState;
use crate::qp::{AddressVector, Mtu, QpAttr};
use crate::time::Instant;
use crate::verbs::Access;

/// Private data carried by an event (at most 224 bytes, the most any CM message has).
pub type PrivateData = Vec<u8, 224>;

/// Identifies a connection of a [`Cm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u32);

/// Settings of a [`Cm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CmConfig {
    /// Our address (our GID: IPv4-mapped or IPv6).
    pub local_ip: IpAddr,
    /// Our CA GUID (Linux rxe derives it from the netdev's MAC).
    pub ca_guid: u64,
    /// Seeds the communication IDs and transaction IDs (no hidden randomness).
    pub seed: u64,
    /// The port's active MTU: the most a connection may use.
    pub port_mtu: Mtu,
    /// Packet lifetime exponent (Linux rdma_cm: 18 for RoCE); the REQ's local ACK timeout is
    /// one more.
    pub packet_life_time: u8,
    /// CM response timeout exponent we announce (rdma_cm: 20, about 4.3 s).
    pub cm_response_timeout: u8,
    /// CM retries we announce and make (rdma_cm: 15).
    pub max_cm_retries: u8,
    /// Hop limit of connections (IPv4 TTL).
    pub hop_limit: u8,
    /// RNR NAK timer code our QPs' responders send.
    pub min_rnr_timer: u8,
}

impl CmConfig {
    /// rdma_cm's settings for `local_ip`.
    pub const fn new(local_ip: IpAddr, ca_guid: u64, seed: u64) -> CmConfig {
        CmConfig {
            local_ip,
            ca_guid,
            seed,
            port_mtu: Mtu::M1024,
            packet_life_time: 18,
            cm_response_timeout: 20,
            max_cm_retries: 15,
            hop_limit: 64,
            min_rnr_timer: 12,
        }
    }
}

/// What an active side asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectParams<'a> {
    /// The passive side's address.
    pub dst: IpAddr,
    /// The port it listens on.
    pub dst_port: u16,
    /// Our rdma_cm source port (rdma_cm binds an ephemeral one).
    pub src_port: u16,
    /// Our QP.
    pub qpn: Qpn,
    /// The first PSN our responder expects (what rdma_cm puts in the REQ; the peer sends from
    /// it).
    pub psn: Psn,
    /// READ/atomic requests we accept at once.
    pub responder_resources: u8,
    /// READ/atomic requests we issue at once.
    pub initiator_depth: u8,
    /// Transport retries (0-7) the peer's requester should make.
    pub retry_count: u8,
    /// RNR retries (0-7, 7 = infinite) the peer's requester should make.
    pub rnr_retry_count: u8,
    /// User private data (at most 56 bytes: rdma_cm's header takes 36 of the REQ's 92).
    pub private_data: &'a [u8],
}

/// What a passive side answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptParams<'a> {
    /// Our QP.
    pub qpn: Qpn,
    /// The first PSN our responder expects (what rdma_cm puts in the REP).
    pub psn: Psn,
    /// READ/atomic requests we accept at once.
    pub responder_resources: u8,
    /// READ/atomic requests we issue at once (at most the REQ's responder resources).
    pub initiator_depth: u8,
    /// RNR retries (0-7) the active side's requester should make.
    pub rnr_retry_count: u8,
    /// Private data (at most 196 bytes).
    pub private_data: &'a [u8],
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmEvent {
    /// Passive: a REQ for a port we listen on. [`Cm::accept`] (or [`Cm::reject`]), then move
    /// a QP to INIT and RTR with [`Cm::qp_attr`] before the REP goes out
    /// ([`Cm::poll_transmit`]).
    ConnectRequest {
        /// The new connection.
        id: ConnId,
        /// The active side's address and rdma_cm port.
        src: IpAddr,
        /// The active side's rdma_cm source port.
        src_port: u16,
        /// The port it connected to.
        port: u16,
        /// The active side's QP.
        remote_qpn: Qpn,
        /// READ/atomic requests it accepts at once.
        responder_resources: u8,
        /// READ/atomic requests it issues at once.
        initiator_depth: u8,
        /// User private data (after rdma_cm's header).
        private_data: PrivateData,
    },
    /// Active: the REP arrived. Move the QP to INIT, RTR and RTS with [`Cm::qp_attr`], then
    /// call [`Cm::rtu`].
    ConnectReply {
        /// The connection.
        id: ConnId,
        /// The passive side's QP.
        remote_qpn: Qpn,
        /// The REP's private data.
        private_data: PrivateData,
    },
    /// The connection is up (passive: the RTU arrived; active: [`Cm::rtu`] sent it). Passive:
    /// move the QP to RTS.
    Established {
        /// The connection.
        id: ConnId,
    },
    /// The peer refused (or nobody listens: reason 8). The connection is gone.
    Rejected {
        /// The connection.
        id: ConnId,
        /// Why.
        reason: RejReason,
        /// The REJ's private data: all 148 bytes (IB carries no length; rdma_cm reports the
        /// whole field too).
        private_data: PrivateData,
    },
    /// The peer never answered within the CM retries. The connection is gone.
    Unreachable {
        /// The connection.
        id: ConnId,
    },
    /// The connection is down (a DREQ arrived, or ours was answered or timed out). Move the
    /// QP to ERR.
    Disconnected {
        /// The connection.
        id: ConnId,
    },
    /// The connection's timewait ended; its ID is free.
    TimewaitExit {
        /// The connection.
        id: ConnId,
    },
}

/// A MAD to send to the peer's QP1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The peer's address.
    pub dst: IpAddr,
    /// The MAD.
    pub mad: [u8; MAD_LEN],
}

/// Why a CM call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmError {
    /// No connection has this ID.
    UnknownConnection(ConnId),
    /// The connection is not in a state that allows the call.
    InvalidState(ConnState),
    /// The port is listened on already.
    AlreadyListening(u16),
    /// No room for another connection or listener.
    NoResources,
    /// Private data longer than the message carries.
    PrivateDataTooLong {
        /// Bytes the message has room for.
        max: usize,
    },
    /// The destination is not of our address family.
    AddressFamily,
}

impl fmt::Display for CmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CmError::UnknownConnection(id) => write!(f, "no connection {}", id.0),
            CmError::InvalidState(s) => write!(f, "not allowed in state {s:?}"),
            CmError::AlreadyListening(p) => write!(f, "port {p} is listened on already"),
            CmError::NoResources => f.write_str("no room for another connection or listener"),
            CmError::PrivateDataTooLong { max } => {
                write!(f, "private data longer than {max} bytes")
            }
            CmError::AddressFamily => f.write_str("destination of another address family"),
        }
    }
}

impl core::error::Error for CmError {}

/// Counters of a [`Cm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CmCounters {
    /// MADs queued for sending.
    pub sent: u64,
    /// CM MADs received and handled.
    pub received: u64,
    /// MADs that did not parse as CM messages.
    pub malformed: u64,
    /// REQ, REP and DREQ resent after a timeout.
    pub retransmitted: u64,
    /// Repeated messages answered again (or ignored).
    pub duplicates: u64,
    /// Messages for no connection of ours.
    pub unmatched: u64,
    /// REJs sent.
    pub rejects_sent: u64,
}

/// Most ports listened on at once.
pub const MAX_LISTENERS: usize = 16;
/// Most MADs waiting to be sent, and most events waiting to be polled.
pub const QUEUE_LEN: usize = 64;

/// A communication manager for one local address, with room for `N` connections.
#[derive(Debug)]
pub struct Cm<const N: usize> {
    cfg: CmConfig,
    rng: u64,
    next_id: u32,
    listeners: Vec<u16, MAX_LISTENERS>,
    conns: Vec<Conn, N>,
    tx: Deque<Outgoing, QUEUE_LEN>,
    events: Deque<CmEvent, QUEUE_LEN>,
    counters: CmCounters,
}

/// 4.096 µs × 2^exp, the IBTA time encoding (capped at 2^31).
fn cm_time(exp: u8) -> Duration {
    Duration::from_nanos(4096 << u32::from(exp.min(31)))
}

fn mtu_of(ib: u8) -> Option<Mtu> {
    Some(match ib {
        1 => Mtu::M256,
        2 => Mtu::M512,
        3 => Mtu::M1024,
        4 => Mtu::M2048,
        5 => Mtu::M4096,
        _ => return None,
    })
}

fn private(data: &[u8]) -> PrivateData {
    let mut v = PrivateData::new();
    let _ = v.extend_from_slice(&data[..data.len().min(224)]);
    v
}

impl<const N: usize> Cm<N> {
    /// A CM with no listeners and no connections.
    pub fn new(cfg: CmConfig) -> Cm<N> {
        Cm {
            cfg,
            rng: cfg.seed | 1,
            next_id: 1,
            listeners: Vec::new(),
            conns: Vec::new(),
            tx: Deque::new(),
            events: Deque::new(),
            counters: CmCounters::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &CmConfig {
        &self.cfg
    }
    /// The counters.
    pub fn counters(&self) -> &CmCounters {
        &self.counters
    }
    /// The state of a connection.
    pub fn state(&self, id: ConnId) -> Option<ConnState> {
        self.conn(id).map(|c| c.state)
    }
    /// The rdma_cm port a connection was made to.
    pub fn port(&self, id: ConnId) -> Option<u16> {
        self.conn(id).map(|c| c.port)
    }
    /// The peer's address of a connection.
    pub fn remote_ip(&self, id: ConnId) -> Option<IpAddr> {
        self.conn(id).map(|c| c.remote_ip)
    }
    /// The connections, with their states.
    pub fn connections(&self) -> impl Iterator<Item = (ConnId, ConnState)> + '_ {
        self.conns.iter().map(|c| (ConnId(c.id), c.state))
    }

    fn random(&mut self) -> u32 {
        // xorshift64*: deterministic from the seed.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }
    fn new_comm_id(&mut self) -> u32 {
        loop {
            let id = self.random();
            if id != 0 && !self.conns.iter().any(|c| c.local_comm_id == id) {
                return id;
            }
        }
    }
    fn conn(&self, id: ConnId) -> Option<&Conn> {
        self.conns.iter().find(|c| c.id == id.0)
    }
    fn conn_mut(&mut self, id: ConnId) -> Result<&mut Conn, CmError> {
        self.conns
            .iter_mut()
            .find(|c| c.id == id.0)
            .ok_or(CmError::UnknownConnection(id))
    }
    fn remove(&mut self, id: u32) {
        if let Some(i) = self.conns.iter().position(|c| c.id == id) {
            self.conns.swap_remove(i);
        }
    }
    fn event(&mut self, e: CmEvent) {
        // A host that never polls loses the oldest events rather than the newest.
        if self.events.is_full() {
            self.events.pop_front();
        }
        let _ = self.events.push_back(e);
    }
    fn send(&mut self, dst: IpAddr, mad: [u8; MAD_LEN]) {
        if self.tx.is_full() {
            // Dropped like a lost packet: the peer's retransmission or ours recovers.
            self.tx.pop_front();
        }
        self.counters.sent += 1;
        let _ = self.tx.push_back(Outgoing { dst, mad });
    }
    fn emit(tid: u64, msg: &Message<'_>) -> [u8; MAD_LEN] {
        let mut mad = [0u8; MAD_LEN];
        // Our messages are built with private data within bounds (checked at the API).
        let _ = msg.emit(tid, &mut mad);
        mad
    }
    fn timewait(&self) -> Duration {
        cm_time(self.cfg.packet_life_time.saturating_add(1)) * 2
    }

    // ---- API ----

    /// Accepts connection requests for `port` (rdma_cm's TCP port space).
    pub fn listen(&mut self, port: u16) -> Result<(), CmError> {
        if self.listeners.contains(&port) {
            return Err(CmError::AlreadyListening(port));
        }
        self.listeners.push(port).map_err(|_| CmError::NoResources)
    }

    /// Stops accepting requests for `port`; connections already made stay.
    pub fn unlisten(&mut self, port: u16) {
        self.listeners.retain(|&p| p != port);
    }

    /// Sends a REQ to `p.dst:p.dst_port`; the answer comes as [`CmEvent::ConnectReply`],
    /// [`CmEvent::Rejected`] or [`CmEvent::Unreachable`].
    pub fn connect(&mut self, now: Instant, p: &ConnectParams<'_>) -> Result<ConnId, CmError> {
        let max_user = cm::private_data_len::REQ - cma::HEADER_LEN;
        if p.private_data.len() > max_user {
            return Err(CmError::PrivateDataTooLong { max: max_user });
        }
        if p.dst.is_ipv4() != self.cfg.local_ip.is_ipv4() {
            return Err(CmError::AddressFamily);
        }
        if self.conns.is_full() {
            return Err(CmError::NoResources);
        }
        let mut pd = [0u8; cm::private_data_len::REQ];
        CmaHeader {
            port: p.src_port,
            src: self.cfg.local_ip,
            dst: p.dst,
        }
        .emit(&mut pd)
        .map_err(|_| CmError::AddressFamily)?;
        pd[cma::HEADER_LEN..cma::HEADER_LEN + p.private_data.len()].copy_from_slice(p.private_data);
        let local_comm_id = self.new_comm_id();
        let tid = (u64::from(self.random()) << 32) | u64::from(local_comm_id);
        let ack_timeout = self.cfg.packet_life_time.saturating_add(1);
        let flow_label = cma::flow_label(p.src_port, p.dst_port);
        let req = cm::Req {
            local_comm_id,
            service_id: cma::service_id(cma::PS_TCP, p.dst_port),
            local_ca_guid: self.cfg.ca_guid,
            local_qkey: 0,
            local_qpn: p.qpn,
            responder_resources: p.responder_resources,
            local_eecn: 0,
            initiator_depth: p.initiator_depth,
            remote_eecn: 0,
            remote_cm_response_timeout: self.cfg.cm_response_timeout,
            transport_type: 0,
            end_to_end_flow_control: false,
            starting_psn: p.psn,
            local_cm_response_timeout: self.cfg.cm_response_timeout,
            retry_count: p.retry_count & 7,
            pkey: PKey::DEFAULT,
            path_mtu: self.cfg.port_mtu as u8,
            rdc_exists: false,
            rnr_retry_count: p.rnr_retry_count & 7,
            max_cm_retries: self.cfg.max_cm_retries & 0xf,
            srq: false,
            extended_transport_type: 0,
            primary: cm::Path {
                local_lid: 0xffff,
                remote_lid: 0xffff,
                local_gid: cma::gid_of(self.cfg.local_ip),
                remote_gid: cma::gid_of(p.dst),
                flow_label,
                packet_rate: 0,
                traffic_class: 0,
                hop_limit: self.cfg.hop_limit,
                sl: 0,
                subnet_local: false,
                local_ack_timeout: ack_timeout,
            },
            alternate: cm::Path::NONE,
            sap_supported: false,
            private_data: &pd,
        };
        let mad = Self::emit(tid, &Message::Req(req));
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let response_timeout =
            cm_time(self.cfg.packet_life_time) * 2 + cm_time(self.cfg.cm_response_timeout);
        let conn = Conn {
            id,
            state: ConnState::ReqSent,
            active: true,
            local_comm_id,
            remote_comm_id: 0,
            remote_ca_guid: 0,
            local_ip: self.cfg.local_ip,
            remote_ip: p.dst,
            port: p.dst_port,
            tid,
            neg: Negotiated {
                local_qpn: p.qpn,
                remote_qpn: Qpn::new(0),
                local_psn: p.psn,
                remote_psn: Psn::new(0),
                mtu: self.cfg.port_mtu,
                responder_resources: p.responder_resources,
                initiator_depth: p.initiator_depth,
                retry_count: p.retry_count & 7,
                rnr_retry: 7,
                ack_timeout,
                hop_limit: self.cfg.hop_limit,
                traffic_class: 0,
                flow_label,
            },
            last_sent: Some(mad),
            last_reply: None,
            deadline: Some(now + response_timeout),
            response_timeout,
            retries_left: self.cfg.max_cm_retries,
            max_retries: self.cfg.max_cm_retries,
        };
        self.conns.push(conn).map_err(|_| CmError::NoResources)?;
        self.send(p.dst, mad);
        Ok(ConnId(id))
    }

    /// Passive: answers a [`CmEvent::ConnectRequest`] with a REP, queued for
    /// [`poll_transmit`](Self::poll_transmit): move the QP to RTR ([`qp_attr`](Self::qp_attr))
    /// before sending it.
    pub fn accept(
        &mut self,
        now: Instant,
        id: ConnId,
        p: &AcceptParams<'_>,
    ) -> Result<(), CmError> {
        if p.private_data.len() > cm::private_data_len::REP {
            return Err(CmError::PrivateDataTooLong {
                max: cm::private_data_len::REP,
            });
        }
        let ca_guid = self.cfg.ca_guid;
        let c = self.conn_mut(id)?;
        if c.active || !matches!(c.state, ConnState::ReqRcvd | ConnState::MraReqSent) {
            return Err(CmError::InvalidState(c.state));
        }
        c.neg.local_qpn = p.qpn;
        c.neg.local_psn = p.psn;
        c.neg.responder_resources = p.responder_resources;
        // We may not issue more READs at once than the peer accepts.
        c.neg.initiator_depth = p.initiator_depth.min(c.neg.initiator_depth);
        let rep = cm::Rep {
            local_comm_id: c.local_comm_id,
            remote_comm_id: c.remote_comm_id,
            local_qkey: 0,
            local_qpn: p.qpn,
            local_eecn: 0,
            starting_psn: p.psn,
            responder_resources: p.responder_resources,
            initiator_depth: c.neg.initiator_depth,
            target_ack_delay: 15,
            failover_accepted: 0,
            end_to_end_flow_control: false,
            rnr_retry_count: p.rnr_retry_count & 7,
            srq: false,
            local_ca_guid: ca_guid,
            private_data: p.private_data,
        };
        let mad = Self::emit(c.tid, &Message::Rep(rep));
        c.state = ConnState::RepSent;
        c.last_sent = Some(mad);
        c.deadline = Some(now + c.response_timeout);
        c.retries_left = c.max_retries;
        let dst = c.remote_ip;
        self.send(dst, mad);
        Ok(())
    }

    /// Passive: refuses a [`CmEvent::ConnectRequest`] (REJ, reason 28 "consumer defined", as
    /// `rdma_reject`). The connection is gone.
    pub fn reject(&mut self, id: ConnId, private_data: &[u8]) -> Result<(), CmError> {
        if private_data.len() > cm::private_data_len::REJ {
            return Err(CmError::PrivateDataTooLong {
                max: cm::private_data_len::REJ,
            });
        }
        let c = self.conn_mut(id)?;
        if c.active || !matches!(c.state, ConnState::ReqRcvd | ConnState::MraReqSent) {
            return Err(CmError::InvalidState(c.state));
        }
        let (tid, dst, local, remote) = (c.tid, c.remote_ip, c.local_comm_id, c.remote_comm_id);
        self.send_rej(
            tid,
            dst,
            local,
            remote,
            0,
            RejReason::CONSUMER_DEFINED,
            private_data,
        );
        self.remove(id.0);
        Ok(())
    }

    /// Active: after [`CmEvent::ConnectReply`] and moving the QP to RTS, sends the RTU; the
    /// connection is established.
    pub fn rtu(&mut self, id: ConnId) -> Result<(), CmError> {
        let c = self.conn_mut(id)?;
        if !c.active || c.state != ConnState::RepRcvd {
            return Err(CmError::InvalidState(c.state));
        }
        let rtu = cm::Rtu {
            local_comm_id: c.local_comm_id,
            remote_comm_id: c.remote_comm_id,
            private_data: &[],
        };
        let mad = Self::emit(c.tid, &Message::Rtu(rtu));
        c.state = ConnState::Established;
        c.last_reply = Some(mad);
        c.deadline = None;
        let dst = c.remote_ip;
        self.send(dst, mad);
        self.event(CmEvent::Established { id });
        Ok(())
    }

    /// Passive: the QP received a packet before the RTU (which was lost): the connection is
    /// established (the verbs "communication established" event).
    pub fn notify_established(&mut self, id: ConnId) -> Result<(), CmError> {
        let c = self.conn_mut(id)?;
        if c.state != ConnState::RepSent {
            return Err(CmError::InvalidState(c.state));
        }
        c.state = ConnState::Established;
        c.deadline = None;
        self.event(CmEvent::Established { id });
        Ok(())
    }

    /// Sends a DREQ; [`CmEvent::Disconnected`] follows when the DREP arrives (or the retries
    /// run out).
    pub fn disconnect(
        &mut self,
        now: Instant,
        id: ConnId,
        private_data: &[u8],
    ) -> Result<(), CmError> {
        if private_data.len() > cm::private_data_len::DREQ {
            return Err(CmError::PrivateDataTooLong {
                max: cm::private_data_len::DREQ,
            });
        }
        let c = self.conn_mut(id)?;
        if !matches!(c.state, ConnState::Established | ConnState::RepSent) {
            return Err(CmError::InvalidState(c.state));
        }
        let dreq = cm::Dreq {
            local_comm_id: c.local_comm_id,
            remote_comm_id: c.remote_comm_id,
            remote_qpn: c.neg.remote_qpn,
            private_data,
        };
        let mad = Self::emit(c.tid, &Message::Dreq(dreq));
        c.state = ConnState::DreqSent;
        c.last_sent = Some(mad);
        c.deadline = Some(now + c.response_timeout);
        c.retries_left = c.max_retries;
        let dst = c.remote_ip;
        self.send(dst, mad);
        Ok(())
    }

    /// The QP attributes for moving a connection's QP to `state` (INIT, RTR or RTS), as
    /// `rdma_init_qp_attr` gives them.
    pub fn qp_attr(&self, id: ConnId, state: QpState) -> Result<QpAttr, CmError> {
        let c = self.conn(id).ok_or(CmError::UnknownConnection(id))?;
        let n = &c.neg;
        Ok(match state {
            QpState::Init => QpAttr {
                state: Some(QpState::Init),
                pkey_index: Some(0),
                port: Some(1),
                access: Some(Access::REMOTE_WRITE | Access::REMOTE_READ | Access::REMOTE_ATOMIC),
                ..QpAttr::default()
            },
            QpState::Rtr => {
                if matches!(c.state, ConnState::ReqSent | ConnState::MraReqRcvd) {
                    return Err(CmError::InvalidState(c.state));
                }
                QpAttr {
                    state: Some(QpState::Rtr),
                    av: Some(AddressVector {
                        sgid: c.local_ip,
                        dgid: c.remote_ip,
                        hop_limit: n.hop_limit,
                        traffic_class: n.traffic_class,
                        flow_label: n.flow_label,
                        udp_sport: None,
                    }),
                    path_mtu: Some(n.mtu),
                    dest_qp: Some(n.remote_qpn),
                    rq_psn: Some(n.local_psn),
                    max_dest_rd_atomic: Some(n.responder_resources.clamp(1, 16)),
                    min_rnr_timer: Some(self.cfg.min_rnr_timer),
                    ..QpAttr::default()
                }
            }
            QpState::Rts => {
                if matches!(
                    c.state,
                    ConnState::ReqSent | ConnState::MraReqRcvd | ConnState::ReqRcvd
                ) {
                    return Err(CmError::InvalidState(c.state));
                }
                QpAttr {
                    state: Some(QpState::Rts),
                    sq_psn: Some(n.remote_psn),
                    timeout: Some(n.ack_timeout),
                    retry_cnt: Some(n.retry_count),
                    rnr_retry: Some(n.rnr_retry),
                    max_rd_atomic: Some(n.initiator_depth.clamp(1, 16)),
                    ..QpAttr::default()
                }
            }
            _ => return Err(CmError::InvalidState(c.state)),
        })
    }

    // ---- I/O ----

    /// The next MAD to send.
    pub fn poll_transmit(&mut self) -> Option<Outgoing> {
        self.tx.pop_front()
    }
    /// The next event.
    pub fn poll_event(&mut self) -> Option<CmEvent> {
        self.events.pop_front()
    }
    /// When [`handle_timeout`](Self::handle_timeout) next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conns.iter().filter_map(|c| c.deadline).min()
    }

    /// Resends what is unanswered and ends timewaits, as of `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<u32, N> = self
            .conns
            .iter()
            .filter(|c| c.deadline.is_some_and(|d| d <= now))
            .map(|c| c.id)
            .collect();
        let timewait = self.timewait();
        for id in due {
            let Some(c) = self.conns.iter_mut().find(|c| c.id == id) else {
                continue;
            };
            let dst = c.remote_ip;
            match c.state {
                ConnState::Timewait => {
                    self.remove(id);
                    self.event(CmEvent::TimewaitExit { id: ConnId(id) });
                }
                ConnState::ReqSent
                | ConnState::MraReqRcvd
                | ConnState::RepSent
                | ConnState::DreqSent
                    if c.retries_left > 0 =>
                {
                    c.retries_left -= 1;
                    c.deadline = Some(now + c.response_timeout);
                    let mad = c.last_sent;
                    self.counters.retransmitted += 1;
                    if let Some(mad) = mad {
                        self.send(dst, mad);
                    }
                }
                ConnState::ReqSent | ConnState::MraReqRcvd | ConnState::RepSent => {
                    // Out of retries: tell the peer (REJ "timeout", ARI = our CA GUID).
                    let (tid, local, remote) = (c.tid, c.local_comm_id, c.remote_comm_id);
                    let which = if c.active { 0 } else { 1 };
                    let guid = self.cfg.ca_guid.to_be_bytes();
                    self.send_rej(tid, dst, local, remote, which, RejReason::TIMEOUT, &guid);
                    self.remove(id);
                    self.event(CmEvent::Unreachable { id: ConnId(id) });
                }
                ConnState::DreqSent => {
                    c.state = ConnState::Timewait;
                    c.deadline = Some(now + timewait);
                    self.event(CmEvent::Disconnected { id: ConnId(id) });
                }
                _ => c.deadline = None,
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn send_rej(
        &mut self,
        tid: u64,
        dst: IpAddr,
        local_comm_id: u32,
        remote_comm_id: u32,
        message_rejected: u8,
        reason: RejReason,
        ari_or_pd: &[u8],
    ) {
        let (ari, pd) = if reason == RejReason::TIMEOUT {
            (ari_or_pd, &[][..])
        } else {
            (&[][..], ari_or_pd)
        };
        let rej = cm::Rej {
            local_comm_id,
            remote_comm_id,
            message_rejected,
            rejected_info_length: ari.len() as u8,
            reason,
            ari,
            private_data: pd,
        };
        let mad = Self::emit(tid, &Message::Rej(rej));
        self.counters.rejects_sent += 1;
        self.send(dst, mad);
    }

    /// Handles a MAD that arrived on QP1 from `src`.
    pub fn handle_mad(&mut self, now: Instant, src: IpAddr, mad: &[u8]) {
        let Ok((hdr, msg)) = Message::parse(mad) else {
            self.counters.malformed += 1;
            return;
        };
        self.counters.received += 1;
        match msg {
            Message::Req(req) => self.on_req(src, hdr.tid, &req),
            Message::Mra(m) => self.on_mra(now, &m),
            Message::Rej(r) => self.on_rej(&r),
            Message::Rep(r) => self.on_rep(src, &r),
            Message::Rtu(r) => self.on_rtu(&r),
            Message::Dreq(d) => self.on_dreq(now, src, hdr.tid, &d),
            Message::Drep(d) => self.on_drep(now, &d),
        }
    }

    /// Our connection that message `remote_comm_id` (our local ID) names.
    fn by_local(&mut self, local_comm_id: u32) -> Option<&mut Conn> {
        self.conns
            .iter_mut()
            .find(|c| c.local_comm_id == local_comm_id)
    }

    fn on_req(&mut self, src: IpAddr, tid: u64, req: &cm::Req<'_>) {
        // A repeated REQ: answer again, no new connection.
        if let Some(c) = self.conns.iter_mut().find(|c| {
            !c.active
                && c.remote_comm_id == req.local_comm_id
                && c.remote_ca_guid == req.local_ca_guid
        }) {
            self.counters.duplicates += 1;
            let dst = c.remote_ip;
            match c.state {
                ConnState::ReqRcvd => {
                    // The host is slow to answer: tell the peer to wait (MRA).
                    let mra = cm::Mra {
                        local_comm_id: c.local_comm_id,
                        remote_comm_id: c.remote_comm_id,
                        message_mraed: 0,
                        service_timeout: self.cfg.cm_response_timeout,
                        private_data: &[],
                    };
                    let mad = Self::emit(c.tid, &Message::Mra(mra));
                    c.state = ConnState::MraReqSent;
                    c.last_reply = Some(mad);
                    self.send(dst, mad);
                }
                ConnState::MraReqSent => {
                    if let Some(mad) = c.last_reply {
                        self.send(dst, mad);
                    }
                }
                // RepSent: the REP timer resends (Linux `cm_dup_req_handler` ignores these too).
                ConnState::Timewait => {
                    let (t, l, r) = (c.tid, c.local_comm_id, c.remote_comm_id);
                    self.send_rej(t, dst, l, r, 0, RejReason::STALE_CONN, &[]);
                }
                _ => {}
            }
            return;
        }
        let reject = |cm: &mut Self, reason| {
            cm.send_rej(tid, src, 0, req.local_comm_id, 0, reason, &[]);
        };
        // A QP of the peer that is connected to us already: stale.
        if self.conns.iter().any(|c| {
            c.remote_ip == src
                && c.neg.remote_qpn == req.local_qpn
                && c.state != ConnState::Timewait
        }) {
            return reject(self, RejReason::STALE_CONN);
        }
        let port = match cma::port_of(req.service_id) {
            Some((cma::PS_TCP, port)) if self.listeners.contains(&port) => port,
            _ => return reject(self, RejReason::INVALID_SERVICE_ID),
        };
        let Ok(cma_hdr) = CmaHeader::parse(req.private_data) else {
            return reject(self, RejReason::CONSUMER_DEFINED);
        };
        if req.transport_type != 0 {
            return reject(self, RejReason::INVALID_TRANSPORT_TYPE);
        }
        let Some(req_mtu) = mtu_of(req.path_mtu) else {
            return reject(self, RejReason::INVALID_MTU);
        };
        if self.conns.is_full() {
            return reject(self, RejReason::NO_RESOURCES);
        }
        let mtu = if (req_mtu as u8) < (self.cfg.port_mtu as u8) {
            req_mtu
        } else {
            self.cfg.port_mtu
        };
        let local_comm_id = self.new_comm_id();
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let conn = Conn {
            id,
            state: ConnState::ReqRcvd,
            active: false,
            local_comm_id,
            remote_comm_id: req.local_comm_id,
            remote_ca_guid: req.local_ca_guid,
            local_ip: self.cfg.local_ip,
            remote_ip: src,
            port,
            tid,
            neg: Negotiated {
                local_qpn: Qpn::new(0),
                remote_qpn: req.local_qpn,
                local_psn: Psn::new(0),
                remote_psn: req.starting_psn,
                mtu,
                responder_resources: 1,
                // At most what the active side accepts at once.
                initiator_depth: req.responder_resources,
                retry_count: req.retry_count,
                rnr_retry: req.rnr_retry_count,
                ack_timeout: req.primary.local_ack_timeout,
                hop_limit: req.primary.hop_limit,
                traffic_class: req.primary.traffic_class,
                flow_label: req.primary.flow_label,
            },
            last_sent: None,
            last_reply: None,
            deadline: None,
            response_timeout: cm_time(self.cfg.packet_life_time) * 2
                + cm_time(req.local_cm_response_timeout),
            retries_left: req.max_cm_retries,
            max_retries: req.max_cm_retries,
        };
        if self.conns.push(conn).is_err() {
            return reject(self, RejReason::NO_RESOURCES);
        }
        self.event(CmEvent::ConnectRequest {
            id: ConnId(id),
            src: cma_hdr.src,
            src_port: cma_hdr.port,
            port,
            remote_qpn: req.local_qpn,
            responder_resources: req.responder_resources,
            initiator_depth: req.initiator_depth,
            private_data: private(&req.private_data[cma::HEADER_LEN..]),
        });
    }

    fn on_mra(&mut self, now: Instant, m: &cm::Mra<'_>) {
        let pkt = cm_time(self.cfg.packet_life_time) * 2;
        let Some(c) = self.by_local(m.remote_comm_id) else {
            self.counters.unmatched += 1;
            return;
        };
        let waiting = match (c.state, m.message_mraed) {
            (ConnState::ReqSent, 0) => {
                c.state = ConnState::MraReqRcvd;
                true
            }
            (ConnState::MraReqRcvd, 0) | (ConnState::RepSent, 1) => true,
            _ => false,
        };
        if waiting {
            c.deadline = Some(now + pkt + cm_time(m.service_timeout));
        } else {
            self.counters.duplicates += 1;
        }
    }

    fn on_rej(&mut self, r: &cm::Rej<'_>) {
        let Some(c) = self.by_local(r.remote_comm_id) else {
            self.counters.unmatched += 1;
            return;
        };
        let rejectable = matches!(
            c.state,
            ConnState::ReqSent
                | ConnState::MraReqRcvd
                | ConnState::RepRcvd
                | ConnState::RepSent
                | ConnState::MraReqSent
        );
        if !rejectable {
            self.counters.duplicates += 1;
            return;
        }
        let id = c.id;
        self.remove(id);
        self.event(CmEvent::Rejected {
            id: ConnId(id),
            reason: r.reason,
            private_data: private(r.private_data),
        });
    }

    fn on_rep(&mut self, src: IpAddr, r: &cm::Rep<'_>) {
        let Some(c) = self.by_local(r.remote_comm_id) else {
            self.counters.unmatched += 1;
            return;
        };
        if !c.active || c.remote_ip != src {
            self.counters.unmatched += 1;
            return;
        }
        match c.state {
            ConnState::ReqSent | ConnState::MraReqRcvd => {
                c.remote_comm_id = r.local_comm_id;
                c.remote_ca_guid = r.local_ca_guid;
                c.neg.remote_qpn = r.local_qpn;
                c.neg.remote_psn = r.starting_psn;
                c.neg.initiator_depth = c.neg.initiator_depth.min(r.responder_resources);
                c.neg.rnr_retry = r.rnr_retry_count;
                c.state = ConnState::RepRcvd;
                c.deadline = None;
                let id = c.id;
                self.event(CmEvent::ConnectReply {
                    id: ConnId(id),
                    remote_qpn: r.local_qpn,
                    private_data: private(r.private_data),
                });
            }
            ConnState::Established | ConnState::DreqSent | ConnState::Timewait => {
                // Our RTU was lost: send it again.
                let (dst, again) = (c.remote_ip, c.last_reply);
                self.counters.duplicates += 1;
                if let Some(mad) = again {
                    self.send(dst, mad);
                }
            }
            _ => self.counters.duplicates += 1,
        }
    }

    fn on_rtu(&mut self, r: &cm::Rtu<'_>) {
        let Some(c) = self.by_local(r.remote_comm_id) else {
            self.counters.unmatched += 1;
            return;
        };
        if c.active || c.state != ConnState::RepSent {
            self.counters.duplicates += 1;
            return;
        }
        c.state = ConnState::Established;
        c.deadline = None;
        let id = c.id;
        self.event(CmEvent::Established { id: ConnId(id) });
    }

    fn on_dreq(&mut self, now: Instant, src: IpAddr, tid: u64, d: &cm::Dreq<'_>) {
        let timewait = self.timewait();
        let Some(c) = self.by_local(d.remote_comm_id) else {
            // Linux answers a DREQ for a connection it no longer knows, so the peer stops.
            self.counters.unmatched += 1;
            let drep = cm::Drep {
                local_comm_id: d.remote_comm_id,
                remote_comm_id: d.local_comm_id,
                private_data: &[],
            };
            let mad = Self::emit(tid, &Message::Drep(drep));
            self.send(src, mad);
            return;
        };
        let drep = cm::Drep {
            local_comm_id: c.local_comm_id,
            remote_comm_id: c.remote_comm_id,
            private_data: &[],
        };
        let mad = Self::emit(c.tid, &Message::Drep(drep));
        let dst = c.remote_ip;
        match c.state {
            ConnState::Established | ConnState::RepSent | ConnState::DreqSent => {
                // DreqSent too: both sides disconnected at once; each answers the other.
                c.state = ConnState::Timewait;
                c.last_reply = Some(mad);
                c.deadline = Some(now + timewait);
                let id = c.id;
                self.send(dst, mad);
                self.event(CmEvent::Disconnected { id: ConnId(id) });
            }
            ConnState::Timewait => {
                let again = c.last_reply.unwrap_or(mad);
                self.counters.duplicates += 1;
                self.send(dst, again);
            }
            _ => self.counters.duplicates += 1,
        }
    }

    fn on_drep(&mut self, now: Instant, d: &cm::Drep<'_>) {
        let timewait = self.timewait();
        let Some(c) = self.by_local(d.remote_comm_id) else {
            self.counters.unmatched += 1;
            return;
        };
        if c.state != ConnState::DreqSent {
            self.counters.duplicates += 1;
            return;
        }
        c.state = ConnState::Timewait;
        c.deadline = Some(now + timewait);
        let id = c.id;
        self.event(CmEvent::Disconnected { id: ConnId(id) });
    }
}
