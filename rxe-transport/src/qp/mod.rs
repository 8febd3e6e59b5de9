//! The queue pair: one sans-IO state machine with a requester, a responder and a completer.
//!
//! Heads up! Before working on this module read IBTA Volume 1 chapter 9 ("Transport Layer",
//! 9.7 Reliable Service) and chapter 10/11 (QP states, Modify QP), and Annex A17 (RoCEv2). Linux
//! rxe (`drivers/infiniband/sw/rxe/rxe_{req,resp,comp}.c`) is the behaviour we match on the wire.
//!
//! ## Call order (after quinn-proto)
//!
//! A host drives a [`Qp`] with four kinds of calls, always passing monotonically non-decreasing
//! time and the memory the QP's keys name:
//!
//! - verbs: [`modify`](Qp::modify), [`post_send`](Qp::post_send), [`post_recv`](Qp::post_recv);
//! - input: [`handle_packet`](Qp::handle_packet) for each verified packet to this QP, and
//!   [`handle_timeout`](Qp::handle_timeout) once [`poll_timeout`](Qp::poll_timeout) has passed
//!   (spurious extra calls do nothing);
//! - output, after any input or verb: [`poll_transmit`](Qp::poll_transmit) until it returns
//!   `None`, then [`poll_timeout`](Qp::poll_timeout) for the next deadline;
//! - completions: [`poll_send_completion`](Qp::poll_send_completion) and
//!   [`poll_recv_completion`](Qp::poll_recv_completion).
//!
//! Nothing here reads a clock, allocates, or draws random numbers: the same calls give the same
//! packets and completions.
//!
//! ## Capacities
//!
//! `Qp<SQ, RQ>` holds at most `SQ` send and `RQ` receive work requests, counting both those in
//! flight and those whose completions have not been polled yet: a slot frees when its completion
//! is polled, so completions can never overflow. Responder resources for READ and atomic replay
//! hold [`MAX_RD_ATOMIC`] entries.

mod attr;
mod completer;
mod cut_through;
mod datagram;
mod requester;
mod responder;
pub mod state;
mod timer;

use core::fmt;
use core::net::IpAddr;

use heapless::Deque;
use rxe_wire::{
    bth, ipv4, ipv6, udp, ExtHeaders, IpRepr, Opcode, PacketTemplate, PayloadSink, Psn, Qpn,
    RoceRepr, RoceV2Packet, RoceV2Repr,
};

pub use self::attr::{udp_sport, AddressVector, Attrs, Mtu, QpAttr};
use self::cut_through::CutThrough;
pub use self::datagram::GRH_LEN;
use self::requester::{Req, SendWqe};
use self::responder::Resp;
use self::state::{AttrMask, QpState, QpType};
use self::timer::{Timer, TimerTable};
use crate::counters::Counters;
use crate::memory::{Memory, Pd};
use crate::time::Instant;
use crate::verbs::{
    RecvWr, SendFlags, SendWr, WcFlags, WcOpcode, WcStatus, WorkCompletion, WrOpcode,
};

/// Most outstanding READ/atomic requests per direction (`max_rd_atomic`, `max_dest_rd_atomic`).
pub const MAX_RD_ATOMIC: u8 = 16;
/// Most PSNs the requester keeps unacknowledged (Linux `RXE_MAX_UNACKED_PSNS`).
pub const MAX_UNACKED_PSNS: i32 = 128;
/// A middle packet asks for an ACK after this many packets without one (`RXE_MAX_PKT_PER_ACK`).
pub const MAX_PKT_PER_ACK: u32 = 64;

/// How a QP is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QpConfig {
    /// This QP's number.
    pub qpn: Qpn,
    /// Transport service (RC or UC in this release).
    pub qp_type: QpType,
    /// Protection domain: every key the QP uses must belong to it.
    pub pd: Pd,
    /// Whether `retry_cnt` = 7 retries forever. Linux rxe never decrements 7 (a quirk: the IBTA
    /// gives "infinite" only to `rnr_retry`); `true` matches Linux, `false` follows the IBTA.
    pub retry_cnt_7_is_infinite: bool,
    /// First IPv4 Identification value; each IPv4 packet takes the next one.
    pub ipv4_ident: u16,
    /// The port's active MTU: the largest UD message (Linux uses the port MTU for UD QPs; an
    /// Ethernet MTU of 1500 gives 1024).
    pub port_mtu: Mtu,
    /// Added to the IPv4 Identification after each packet: 1 counts like Linux; 0 keeps
    /// `ipv4_ident` for every packet (a UDP-socket host whose kernel sends Identification 0,
    /// see `rxe_wire::icrc::ipv4_ident`).
    pub ipv4_ident_step: u16,
    /// Every packet's UDP source port, whatever the address vector says: for hosts sending
    /// through one UDP socket, whose source port the ICRC covers.
    pub udp_sport: Option<u16>,
    /// The QP draws receive requests from a shared receive queue ([`crate::Srq`]), passed to
    /// [`Qp::handle_packet_srq`]; its own `post_recv` is refused.
    pub srq: bool,
}

impl QpConfig {
    /// A UD QP configuration.
    pub fn ud(qpn: Qpn, pd: Pd) -> QpConfig {
        QpConfig {
            qp_type: QpType::Ud,
            ..QpConfig::rc(qpn, pd)
        }
    }

    /// A UC QP configuration.
    pub fn uc(qpn: Qpn, pd: Pd) -> QpConfig {
        QpConfig {
            qp_type: QpType::Uc,
            ..QpConfig::rc(qpn, pd)
        }
    }

    /// An RC QP configuration with Linux's retry behaviour.
    pub fn rc(qpn: Qpn, pd: Pd) -> QpConfig {
        QpConfig {
            qpn,
            qp_type: QpType::Rc,
            pd,
            retry_cnt_7_is_infinite: true,
            ipv4_ident: 1,
            port_mtu: Mtu::M1024,
            ipv4_ident_step: 1,
            udp_sport: None,
            srq: false,
        }
    }
}

/// Why a QP could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateQpError {
    /// UD QPs come with the datagram transport; this release has RC and UC.
    UnsupportedType(QpType),
    /// A capacity of 0.
    ZeroCapacity,
}

/// Why `modify` refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModifyQpError {
    /// `state` is missing.
    NoState,
    /// `cur_state` does not match the QP's state.
    WrongCurrentState {
        /// The QP's state.
        actual: QpState,
    },
    /// No such transition for this QP type.
    InvalidTransition {
        /// From.
        from: QpState,
        /// To.
        to: QpState,
    },
    /// The transition needs attributes that were not set.
    MissingAttributes(AttrMask),
    /// Attributes set that the transition does not allow.
    UnexpectedAttributes(AttrMask),
    /// An attribute value out of range (named by its mask bit).
    InvalidValue(AttrMask),
}

/// Why `post_send` refused (nothing was queued).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostSendError {
    /// The QP is in a state that takes no send requests (RESET, INIT, RTR).
    InvalidState(QpState),
    /// `SQ` requests are in flight or have unpolled completions.
    QueueFull,
    /// The opcode is not valid on this QP type.
    InvalidOpcode,
    /// Inline data longer than [`MAX_INLINE`](crate::verbs::MAX_INLINE), or an inline range
    /// outside its region.
    InvalidInline,
    /// An atomic whose scatter list is not 8 bytes, or whose remote address is not 8-aligned.
    InvalidAtomic,
    /// A message longer than 2^31 bytes.
    MessageTooLong,
}

/// Why `post_recv` refused (nothing was queued).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostRecvError {
    /// The QP is in RESET.
    InvalidState(QpState),
    /// `RQ` requests are queued or have unpolled completions.
    QueueFull,
    /// The QP takes its receive requests from an SRQ: post them there.
    HasSrq,
}

/// Why `poll_transmit` could not write a packet (nothing changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferTooSmall {
    /// Bytes the buffer must hold: [`Qp::max_packet_len`].
    pub required: usize,
}

macro_rules! display_debug {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self, f)
            }
        }
        impl core::error::Error for $t {}
    )*};
}
display_debug!(
    CreateQpError,
    ModifyQpError,
    PostSendError,
    PostRecvError,
    BufferTooSmall
);

/// Asynchronous events of a QP (`ibv_event_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QpEvent {
    /// The QP moved to ERR because of an error (the status of the failed request).
    Fatal(WcStatus),
    /// The send queue drained after a move to SQD with `en_sqd_async_notify`.
    SqDrained,
}

/// A received work request in the RQ.
pub(crate) type RecvWqe = RecvWr;

/// A queue pair. See the [module documentation](self) for the call order.
#[derive(Debug)]
pub struct Qp<const SQ: usize, const RQ: usize> {
    cfg: QpConfig,
    state: QpState,
    attrs: Attrs,
    sq: Deque<SendWqe, SQ>,
    rq: Deque<RecvWqe, RQ>,
    send_cq: Deque<WorkCompletion, SQ>,
    recv_cq: Deque<WorkCompletion, RQ>,
    req: Req,
    resp: Resp,
    timers: TimerTable,
    counters: Counters,
    events: Deque<QpEvent, 4>,
    ident: u16,
    /// The connection's IP and UDP headers, rendered on first use after the address or
    /// destination changes (RC and UC; UD addresses every request on its own).
    template: Option<PacketTemplate>,
    sqd_notify_pending: bool,
}

impl<const SQ: usize, const RQ: usize> Qp<SQ, RQ> {
    /// Creates a QP in RESET.
    pub fn new(cfg: QpConfig) -> Result<Qp<SQ, RQ>, CreateQpError> {
        if SQ == 0 || RQ == 0 {
            return Err(CreateQpError::ZeroCapacity);
        }
        Ok(Qp {
            cfg,
            state: QpState::Reset,
            attrs: Attrs::default(),
            sq: Deque::new(),
            rq: Deque::new(),
            send_cq: Deque::new(),
            recv_cq: Deque::new(),
            req: Req::default(),
            resp: Resp::default(),
            timers: TimerTable::default(),
            counters: Counters::default(),
            events: Deque::new(),
            ident: cfg.ipv4_ident,
            template: None,
            sqd_notify_pending: false,
        })
    }

    // ---- getters ----

    /// This QP's number.
    pub fn qpn(&self) -> Qpn {
        self.cfg.qpn
    }
    /// The transport service.
    pub fn qp_type(&self) -> QpType {
        self.cfg.qp_type
    }
    /// The protection domain.
    pub fn pd(&self) -> Pd {
        self.cfg.pd
    }
    /// The current state.
    pub fn state(&self) -> QpState {
        self.state
    }
    /// The attributes in force.
    pub fn attrs(&self) -> &Attrs {
        &self.attrs
    }
    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
    /// The next PSN the requester will send.
    pub fn sq_psn(&self) -> Psn {
        self.req.psn
    }
    /// The PSN the responder expects next.
    pub fn rq_psn(&self) -> Psn {
        self.resp.epsn
    }
    /// Send requests in flight (posted and not completed).
    pub fn send_queue_len(&self) -> usize {
        self.sq.len()
    }
    /// Receive requests posted and not consumed.
    pub fn recv_queue_len(&self) -> usize {
        self.rq.len()
    }
    /// The largest packet `poll_transmit` writes: the buffer it needs.
    pub fn max_packet_len(&self) -> usize {
        ipv6::HEADER_LEN + udp::HEADER_LEN + 40 + self.attrs.path_mtu.bytes() as usize + 3 + 4
    }

    // ---- verbs ----

    /// Changes state and attributes (`ibv_modify_qp`). On error nothing changes.
    pub fn modify(&mut self, attr: &QpAttr) -> Result<(), ModifyQpError> {
        let next = attr.state.ok_or(ModifyQpError::NoState)?;
        if let Some(cur) = attr.cur_state {
            if cur != self.state {
                return Err(ModifyQpError::WrongCurrentState { actual: self.state });
            }
        }
        let (required, optional) = state::transition(self.cfg.qp_type, self.state, next).ok_or(
            ModifyQpError::InvalidTransition {
                from: self.state,
                to: next,
            },
        )?;
        let mask = attr.mask() - AttrMask::STATE;
        let missing = required - mask;
        if !missing.is_empty() {
            return Err(ModifyQpError::MissingAttributes(missing));
        }
        let extra = mask - required - optional;
        if !extra.is_empty() {
            return Err(ModifyQpError::UnexpectedAttributes(extra));
        }
        validate_values(attr)?;
        self.apply(attr);
        let from = self.state;
        self.set_state(next);
        match (from, next) {
            (_, QpState::Reset) => self.reset(),
            (_, QpState::Err) if from != QpState::Err => self.flush(None),
            (QpState::Init, QpState::Rtr) => {
                self.resp.start(attr.rq_psn.unwrap_or_default());
            }
            (QpState::Rtr, QpState::Rts) => {
                self.req.start(
                    attr.sq_psn.unwrap_or_default(),
                    self.attrs.retry_cnt,
                    self.attrs.rnr_retry,
                );
            }
            (QpState::Rts, QpState::Sqd) => {
                self.sqd_notify_pending = attr.en_sqd_async_notify.unwrap_or(false);
                self.check_sq_drained();
            }
            _ => {}
        }
        Ok(())
    }

    fn apply(&mut self, a: &QpAttr) {
        // Rendered headers follow the attributes.
        self.template = None;
        let t = &mut self.attrs;
        if let Some(v) = a.access {
            t.access = v;
        }
        if let Some(v) = a.qkey {
            t.qkey = v;
        }
        if let Some(v) = a.av {
            t.av = Some(v);
        }
        if let Some(v) = a.path_mtu {
            t.path_mtu = v;
        }
        if let Some(v) = a.timeout {
            t.timeout = v;
        }
        if let Some(v) = a.retry_cnt {
            t.retry_cnt = v;
            self.req.retry_left = v;
        }
        if let Some(v) = a.rnr_retry {
            t.rnr_retry = v;
            self.req.rnr_left = v;
        }
        if let Some(v) = a.min_rnr_timer {
            t.min_rnr_timer = v;
        }
        if let Some(v) = a.max_rd_atomic {
            t.max_rd_atomic = v;
        }
        if let Some(v) = a.max_dest_rd_atomic {
            t.max_dest_rd_atomic = v;
        }
        if let Some(v) = a.dest_qp {
            t.dest_qp = v;
        }
        if let Some(v) = a.en_sqd_async_notify {
            t.en_sqd_async_notify = v;
        }
    }

    /// Traces and performs every state change.
    fn set_state(&mut self, next: QpState) {
        self.state = next;
    }

    fn reset(&mut self) {
        self.attrs = Attrs::default();
        self.template = None;
        self.sq.clear();
        self.rq.clear();
        self.send_cq.clear();
        self.recv_cq.clear();
        self.req = Req::default();
        self.resp = Resp::default();
        self.timers.clear();
        self.events.clear();
        self.sqd_notify_pending = false;
    }

    /// Queues a send request (`ibv_post_send`). In ERR it completes at once with `WR_FLUSH_ERR`.
    pub fn post_send<M: Memory + ?Sized>(
        &mut self,
        wr: SendWr,
        mem: &M,
    ) -> Result<(), PostSendError> {
        match self.state {
            QpState::Rts | QpState::Sqd | QpState::Sqe | QpState::Err => {}
            s => return Err(PostSendError::InvalidState(s)),
        }
        if self.sq.len() + self.send_cq.len() >= SQ {
            return Err(PostSendError::QueueFull);
        }
        // UC carries SEND and RDMA WRITE (with immediate) only (Linux `rxe_wr_opcode_info`).
        let uc_ok = matches!(
            wr.opcode,
            WrOpcode::Send
                | WrOpcode::SendWithImm(_)
                | WrOpcode::RdmaWrite(_)
                | WrOpcode::RdmaWriteWithImm(..)
        );
        if self.cfg.qp_type == QpType::Uc && !uc_ok {
            return Err(PostSendError::InvalidOpcode);
        }
        if self.cfg.qp_type == QpType::Ud {
            // UD: SEND (with immediate) of at most one port MTU, to an address handle.
            let ud_ok = matches!(wr.opcode, WrOpcode::Send | WrOpcode::SendWithImm(_));
            if !ud_ok || wr.ud.is_none() {
                return Err(PostSendError::InvalidOpcode);
            }
            if wr.total_len() > u64::from(self.cfg.port_mtu.bytes()) {
                return Err(PostSendError::MessageTooLong);
            }
        }
        let wqe = SendWqe::new(wr, mem, self.cfg.pd)?;
        if self.state == QpState::Err {
            let wc = self.flush_wc(&wqe.wr, WcStatus::WrFlushErr);
            let _ = self.send_cq.push_back(wc);
            return Ok(());
        }
        // Room was checked above.
        let _ = self.sq.push_back(wqe);
        Ok(())
    }

    /// Queues a receive request (`ibv_post_recv`). In ERR it completes at once with
    /// `WR_FLUSH_ERR`.
    pub fn post_recv(&mut self, wr: RecvWr) -> Result<(), PostRecvError> {
        if self.cfg.srq {
            return Err(PostRecvError::HasSrq);
        }
        if self.state == QpState::Reset {
            return Err(PostRecvError::InvalidState(self.state));
        }
        if self.rq.len() + self.recv_cq.len() >= RQ {
            return Err(PostRecvError::QueueFull);
        }
        if self.state == QpState::Err {
            let wc = self.recv_wc(wr.wr_id, WcStatus::WrFlushErr, WcOpcode::Recv);
            let _ = self.recv_cq.push_back(wc);
            return Ok(());
        }
        let _ = self.rq.push_back(wr);
        Ok(())
    }

    /// Returns the next send-side completion.
    pub fn poll_send_completion(&mut self) -> Option<WorkCompletion> {
        self.send_cq.pop_front()
    }
    /// Returns the next receive-side completion.
    pub fn poll_recv_completion(&mut self) -> Option<WorkCompletion> {
        self.recv_cq.pop_front()
    }
    /// Returns the next asynchronous event.
    pub fn poll_event(&mut self) -> Option<QpEvent> {
        self.events.pop_front()
    }

    // ---- input ----

    /// Processes a packet addressed to this QP (the caller demultiplexed it by destination QP).
    ///
    /// The packet's ICRC is either verified already ([`RoceV2Packet::new_checked`] with
    /// `Checks::icrc`), or left to the QP: then in-order RC WRITE MIDDLE/LAST packets and READ
    /// responses are placed in memory while the ICRC is computed (cut-through, one pass over the
    /// data), every other packet is checked before use, and a packet with a bad ICRC is dropped
    /// without effect on the QP and counted in `icrc_err`.
    pub fn handle_packet<M: Memory + ?Sized>(
        &mut self,
        now: Instant,
        pkt: &RoceV2Packet<'_>,
        mem: &mut M,
    ) {
        self.handle_packet_inner(now, pkt, mem, None);
    }

    /// Like [`handle_packet`](Self::handle_packet) for a QP created with
    /// [`QpConfig::srq`]: receive requests come from `srq` (see [`crate::srq`]).
    pub fn handle_packet_srq<M: Memory + ?Sized, const S: usize>(
        &mut self,
        now: Instant,
        pkt: &RoceV2Packet<'_>,
        mem: &mut M,
        srq: &mut crate::Srq<S>,
    ) {
        self.handle_packet_inner(now, pkt, mem, Some(srq));
    }

    fn handle_packet_inner<M: Memory + ?Sized>(
        &mut self,
        now: Instant,
        pkt: &RoceV2Packet<'_>,
        mem: &mut M,
        srq: Option<&mut dyn crate::srq::RecvSource>,
    ) {
        let roce = pkt.roce();
        let bth = roce.bth();
        if bth.dest_qp() != self.cfg.qpn {
            return;
        }
        // Only RTR and later process packets (IBTA 10.3.1); ERR drops everything.
        let responder_on = matches!(self.state, QpState::Rtr | QpState::Rts | QpState::Sqd);
        if !responder_on || self.resp.error_pending {
            return;
        }
        let info = roce.info();
        let transport = match self.cfg.qp_type {
            QpType::Uc => rxe_wire::Transport::Uc,
            QpType::Ud => rxe_wire::Transport::Ud,
            QpType::Rc => rxe_wire::Transport::Rc,
        };
        if info.transport != transport {
            return;
        }
        if self.cfg.qp_type == QpType::Ud {
            // Datagrams come from anyone; the Q_Key decides.
            if bth.pkey() == self.attrs.pkey {
                let Some(pkt) = self.verified(pkt) else {
                    return;
                };
                self.counters.rcvd_pkts += 1;
                self.handle_datagram(&pkt, mem, srq);
            }
            return;
        }
        if !self.is_from_peer(pkt) {
            return;
        }
        if bth.pkey() != self.attrs.pkey {
            return;
        }
        let requester_on = matches!(self.state, QpState::Rts | QpState::Sqd);
        if !info.is_request && !requester_on {
            return;
        }
        // The ICRC: verified by the host already, or here. In-order RC continuations are placed
        // while it is computed (cut_through.rs); everything else is checked before use.
        let mut placed = false;
        let checked;
        let pkt = if pkt.icrc_checked() {
            pkt
        } else {
            match self.cut_through(pkt, mem) {
                CutThrough::Placed => {
                    placed = true;
                    pkt
                }
                CutThrough::BadIcrc => {
                    self.counters.icrc_err += 1;
                    return;
                }
                CutThrough::NotApplicable => {
                    let Some(p) = self.verified(pkt) else { return };
                    checked = p;
                    &checked
                }
            }
        };
        self.counters.rcvd_pkts += 1;
        if info.is_request {
            self.handle_request(pkt, mem, placed, srq);
        } else {
            self.handle_response(now, pkt, mem, placed);
        }
    }

    /// The packet with its ICRC verified, or `None` (counted) if it is bad.
    fn verified<'a>(&mut self, pkt: &RoceV2Packet<'a>) -> Option<RoceV2Packet<'a>> {
        let p = pkt.check_icrc();
        if p.is_none() {
            self.counters.icrc_err += 1;
        }
        p
    }

    /// Runs the timers that expired by `now`. Extra calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        let fired = self.timers.expire(now);
        if fired[Timer::RnrNak as usize] {
            self.on_rnr_timer();
        }
        if fired[Timer::Retransmit as usize] {
            self.on_retransmit_timeout(now);
        }
    }

    // ---- output ----

    /// Writes the next packet to send into `buf` (an IP packet: IPv4 or IPv6 header, UDP, BTH,
    /// extension headers, payload, pad, ICRC) and returns its length, or `Ok(None)` when there
    /// is nothing to send now. `buf` must hold [`max_packet_len`](Self::max_packet_len) bytes.
    #[must_use = "a packet written must be sent"]
    pub fn poll_transmit<M: Memory + ?Sized>(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        mem: &mut M,
    ) -> Result<Option<usize>, BufferTooSmall> {
        let required = self.max_packet_len();
        if buf.len() < required {
            return Err(BufferTooSmall { required });
        }
        let n = match self.state {
            QpState::Rtr | QpState::Rts | QpState::Sqd => {
                let n = self.poll_response(buf, mem);
                if n.is_none() && matches!(self.state, QpState::Rts | QpState::Sqd) {
                    self.poll_request(now, buf, mem)
                } else {
                    n
                }
            }
            _ => None,
        };
        if n.is_some() {
            self.counters.sent_pkts += 1;
        }
        Ok(n)
    }

    /// The earliest time `handle_timeout` should be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }

    // ---- shared helpers ----

    fn is_from_peer(&self, pkt: &RoceV2Packet<'_>) -> bool {
        let Some(av) = self.attrs.av else {
            return false;
        };
        match (pkt.ip(), av.dgid, av.sgid) {
            (IpRepr::V4(h), IpAddr::V4(d), IpAddr::V4(s)) => h.src == d && h.dst == s,
            (IpRepr::V6(h), IpAddr::V6(d), IpAddr::V6(s)) => h.src == d && h.dst == s,
            _ => false,
        }
    }

    /// Writes one packet to the peer; `fill` writes `payload_len` bytes of payload.
    fn emit(
        &mut self,
        buf: &mut [u8],
        bth: bth::Repr,
        ext: ExtHeaders,
        payload_len: usize,
        fill: impl FnOnce(&mut PayloadSink<'_>),
    ) -> Option<usize> {
        emit_to(
            &self.attrs,
            &self.cfg,
            &mut self.ident,
            &mut self.template,
            buf,
            bth,
            ext,
            payload_len,
            fill,
        )
    }

    fn bth(&self, opcode: Opcode, psn: Psn, ack_req: bool, solicited: bool) -> bth::Repr {
        bth::Repr {
            opcode,
            solicited,
            mig_req: false,
            pad_count: 0,
            pkey: self.attrs.pkey,
            fecn: false,
            becn: false,
            dest_qp: self.attrs.dest_qp,
            ack_req,
            psn,
        }
    }

    fn recv_wc(&self, wr_id: u64, status: WcStatus, opcode: WcOpcode) -> WorkCompletion {
        WorkCompletion {
            wr_id,
            status,
            opcode,
            byte_len: 0,
            imm_data: None,
            invalidated_rkey: None,
            qp_num: self.cfg.qpn.value(),
            src_qp: self.attrs.dest_qp.value(),
            wc_flags: WcFlags::empty(),
        }
    }

    fn flush_wc(&self, wr: &SendWr, status: WcStatus) -> WorkCompletion {
        WorkCompletion {
            wr_id: wr.wr_id,
            status,
            opcode: wr.opcode.wc_opcode(),
            byte_len: 0,
            imm_data: None,
            invalidated_rkey: None,
            qp_num: self.cfg.qpn.value(),
            src_qp: 0,
            wc_flags: WcFlags::empty(),
        }
    }

    /// Moves to ERR: the front send request gets `front_status` (if any), everything else
    /// `WR_FLUSH_ERR`; every receive request is flushed.
    fn flush(&mut self, front_status: Option<WcStatus>) {
        self.set_state(QpState::Err);
        self.timers.clear();
        let mut first = true;
        while let Some(wqe) = self.sq.pop_front() {
            let status = match (first, front_status) {
                (true, Some(s)) => s,
                _ => WcStatus::WrFlushErr,
            };
            first = false;
            let wc = self.flush_wc(&wqe.wr, status);
            let _ = self.send_cq.push_back(wc);
        }
        while let Some(r) = self.rq.pop_front() {
            let wc = self.recv_wc(r.wr_id, WcStatus::WrFlushErr, WcOpcode::Recv);
            let _ = self.recv_cq.push_back(wc);
        }
        self.resp.clear();
        self.req.clear();
    }

    /// Fails the front send request with `status` and moves the QP to ERR.
    fn fatal(&mut self, status: WcStatus) {
        if self.state != QpState::Err {
            let _ = self.events.push_back(QpEvent::Fatal(status));
        }
        self.flush(Some(status));
    }

    fn check_sq_drained(&mut self) {
        if self.state == QpState::Sqd
            && self.sqd_notify_pending
            && self.req.in_flight(&self.sq) == 0
        {
            self.sqd_notify_pending = false;
            let _ = self.events.push_back(QpEvent::SqDrained);
        }
    }
}

fn validate_values(a: &QpAttr) -> Result<(), ModifyQpError> {
    let bad = |ok: bool, bit: AttrMask| {
        if ok {
            Ok(())
        } else {
            Err(ModifyQpError::InvalidValue(bit))
        }
    };
    bad(a.port.is_none_or(|p| p == 1), AttrMask::PORT)?;
    bad(a.pkey_index.is_none_or(|p| p == 0), AttrMask::PKEY_INDEX)?;
    bad(a.timeout.is_none_or(|v| v <= 31), AttrMask::TIMEOUT)?;
    bad(a.retry_cnt.is_none_or(|v| v <= 7), AttrMask::RETRY_CNT)?;
    bad(a.rnr_retry.is_none_or(|v| v <= 7), AttrMask::RNR_RETRY)?;
    bad(
        a.min_rnr_timer.is_none_or(|v| v <= 31),
        AttrMask::MIN_RNR_TIMER,
    )?;
    bad(
        a.max_rd_atomic.is_none_or(|v| v <= MAX_RD_ATOMIC),
        AttrMask::MAX_QP_RD_ATOMIC,
    )?;
    bad(
        a.max_dest_rd_atomic.is_none_or(|v| v <= MAX_RD_ATOMIC),
        AttrMask::MAX_DEST_RD_ATOMIC,
    )?;
    if let Some(av) = a.av {
        let same_family = av.sgid.is_ipv4() == av.dgid.is_ipv4();
        bad(same_family && av.flow_label <= 0xf_ffff, AttrMask::AV)?;
    }
    Ok(())
}

/// Writes one packet to the peer of a QP with `attrs` (so callers can keep other fields of the
/// QP borrowed); `fill` writes `payload_len` bytes of payload through the sink, which runs the
/// ICRC over them on the way.
#[allow(clippy::too_many_arguments)]
pub(crate) fn emit_to(
    attrs: &Attrs,
    cfg: &QpConfig,
    ident: &mut u16,
    template: &mut Option<PacketTemplate>,
    buf: &mut [u8],
    bth: bth::Repr,
    ext: ExtHeaders,
    payload_len: usize,
    fill: impl FnOnce(&mut PayloadSink<'_>),
) -> Option<usize> {
    let av = attrs.av?;
    // The IPv4 Identification advances per packet; both ends are of one family or nothing goes.
    let id = *ident;
    match (av.sgid, av.dgid) {
        (IpAddr::V4(_), IpAddr::V4(_)) => *ident = id.wrapping_add(cfg.ipv4_ident_step),
        (IpAddr::V6(_), IpAddr::V6(_)) => {}
        _ => return None,
    }
    // Connected QPs send through their rendered headers; UD addresses each request.
    if cfg.qp_type != QpType::Ud {
        if template.is_none() {
            let (ip, udp) = headers(attrs, &av, cfg, id)?;
            *template = PacketTemplate::new(&ip, &udp).ok();
        }
        if let Some(t) = template {
            return t
                .emit_with_sink(buf, id, &bth, &ext, payload_len, fill)
                .ok();
        }
    }
    let (ip, udp) = headers(attrs, &av, cfg, id)?;
    let mut bth = bth;
    bth.pad_count = rxe_wire::pad_for(payload_len);
    let repr = RoceV2Repr {
        ip,
        udp,
        roce: RoceRepr {
            bth,
            ext,
            payload: &[],
        },
    };
    repr.emit_with_sink(buf, payload_len, fill).ok()
}

/// The IP and UDP headers toward `av` (IPv4 Identification `ident`).
fn headers(
    attrs: &Attrs,
    av: &AddressVector,
    cfg: &QpConfig,
    ident: u16,
) -> Option<(IpRepr, udp::Repr)> {
    let ip = match (av.sgid, av.dgid) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => IpRepr::V4(ipv4::Repr {
            src,
            dst,
            tos: av.traffic_class,
            ident,
            dont_frag: true,
            ttl: av.hop_limit,
        }),
        (IpAddr::V6(src), IpAddr::V6(dst)) => IpRepr::V6(ipv6::Repr {
            src,
            dst,
            traffic_class: av.traffic_class,
            flow_label: av.flow_label & 0xf_ffff,
            hop_limit: av.hop_limit,
        }),
        _ => return None,
    };
    let sport = cfg
        .udp_sport
        .or(av.udp_sport)
        .unwrap_or_else(|| udp_sport(av.flow_label, cfg.qpn, attrs.dest_qp));
    let udp = udp::Repr {
        src_port: sport,
        dst_port: udp::ROCE_PORT,
        checksum: false,
    };
    Some((ip, udp))
}

/// The completion status a NAK gives the request it answers (and the event of the responder
/// that sent it).
pub(crate) fn nak_status(code: rxe_wire::aeth::NakCode) -> WcStatus {
    use rxe_wire::aeth::NakCode;
    match code {
        NakCode::InvalidRequest => WcStatus::RemInvReqErr,
        NakCode::RemoteAccessError => WcStatus::RemAccessErr,
        NakCode::RemoteOperationalError => WcStatus::RemOpErr,
        NakCode::InvalidRdRequest => WcStatus::RemInvRdReqErr,
        NakCode::PsnSequenceError | NakCode::Reserved(_) => WcStatus::BadRespErr,
    }
}

pub(crate) fn is_signaled(wr: &SendWr) -> bool {
    wr.flags.contains(SendFlags::SIGNALED)
}

pub(crate) fn wr_is_read_or_atomic(wr: &SendWr) -> bool {
    wr.opcode.is_read_or_atomic()
}

pub(crate) fn is_local_op(wr: &SendWr) -> bool {
    matches!(
        wr.opcode,
        WrOpcode::LocalInv(_) | WrOpcode::BindMw(_) | WrOpcode::RegMr { .. }
    )
}
