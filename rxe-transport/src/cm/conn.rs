//! One connection's state in the communication manager (IBTA 12.9, the states Linux `cm.c`
//! names `IB_CM_*`).

use core::net::IpAddr;

use rxe_wire::{Psn, Qpn};

use crate::qp::Mtu;
use crate::time::Instant;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnState {
    /// Active: REQ sent, waiting for REP (or REJ, or MRA).
    ReqSent,
    /// Active: the passive side sent an MRA for our REQ; waiting longer.
    MraReqRcvd,
    /// Active: REP received, waiting for the host to move its QP and send the RTU.
    RepRcvd,
    /// Passive: REQ received, waiting for the host to accept or reject.
    ReqRcvd,
    /// Passive: we sent an MRA for a REQ (the host takes long to answer).
    MraReqSent,
    /// Passive: REP sent, waiting for the RTU.
    RepSent,
    /// Connected.
    Established,
    /// We sent a DREQ, waiting for the DREP.
    DreqSent,
    /// Disconnected; waiting for stray packets of the old connection to die out.
    Timewait,
}

/// The values a connection negotiated (what its QP's RTR and RTS attributes come from).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Negotiated {
    pub(crate) local_qpn: Qpn,
    pub(crate) remote_qpn: Qpn,
    /// The PSN we put in our REQ or REP: the first our responder expects (our RQ PSN). This
    /// is how Linux rdma_cm uses the field (`rdma_init_qp_attr` sets `rq_psn` to its own
    /// `seq_num`), as the rping capture shows: each side sends from the peer's value.
    pub(crate) local_psn: Psn,
    /// The PSN in the peer's REQ or REP: our requester's first (our SQ PSN).
    pub(crate) remote_psn: Psn,
    pub(crate) mtu: Mtu,
    /// READ/atomic requests we accept at once (max_dest_rd_atomic).
    pub(crate) responder_resources: u8,
    /// READ/atomic requests we issue at once (max_rd_atomic).
    pub(crate) initiator_depth: u8,
    /// Transport retries of our requester.
    pub(crate) retry_count: u8,
    /// RNR retries of our requester (what the peer asked for).
    pub(crate) rnr_retry: u8,
    /// Local ACK timeout exponent of our requester.
    pub(crate) ack_timeout: u8,
    pub(crate) hop_limit: u8,
    pub(crate) traffic_class: u8,
    pub(crate) flow_label: u32,
}

/// One connection.
#[derive(Debug, Clone)]
pub(crate) struct Conn {
    pub(crate) id: u32,
    pub(crate) state: ConnState,
    pub(crate) active: bool,
    pub(crate) local_comm_id: u32,
    pub(crate) remote_comm_id: u32,
    pub(crate) remote_ca_guid: u64,
    pub(crate) local_ip: IpAddr,
    pub(crate) remote_ip: IpAddr,
    /// The rdma_cm port (service ID) of the connection.
    pub(crate) port: u16,
    /// Transaction ID of the connection's MADs.
    pub(crate) tid: u64,
    pub(crate) neg: Negotiated,
    /// The last message we sent that is answered (REQ, REP, DREQ), for retransmission, with its
    /// length: a MAD.
    pub(crate) last_sent: Option<[u8; rxe_wire::mad::MAD_LEN]>,
    /// The last message we sent that is not answered (RTU, DREP, MRA, REJ), resent when the
    /// peer repeats the message it answers.
    pub(crate) last_reply: Option<[u8; rxe_wire::mad::MAD_LEN]>,
    /// When to retransmit or leave timewait.
    pub(crate) deadline: Option<Instant>,
    /// How long to wait for an answer before resending.
    pub(crate) response_timeout: core::time::Duration,
    pub(crate) retries_left: u8,
    /// Retries allowed for the current exchange.
    pub(crate) max_retries: u8,
}
