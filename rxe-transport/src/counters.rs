//! Per-QP counters, named like Linux rxe's hw_counters (`rxe_hw_counters.c`).

use core::fmt;

/// Counters of one QP (a device sums them). Field names are Linux rxe's counter names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Counters {
    /// Packets transmitted.
    pub sent_pkts: u64,
    /// Packets received and accepted by the QP.
    pub rcvd_pkts: u64,
    /// Duplicate requests received (responder).
    pub duplicate_request: u64,
    /// Requests received ahead of the expected PSN that drew a PSN-sequence NAK (responder; the
    /// rest of such a burst is dropped silently and not counted, as Linux `check_psn`).
    pub out_of_seq_request: u64,
    /// RNR NAKs received (requester).
    pub rcvd_rnr_err: u64,
    /// RNR NAKs sent (responder).
    pub send_rnr_err: u64,
    /// PSN sequence error NAKs received (requester).
    pub rcvd_seq_err: u64,
    /// SEND/WRITE packets executed without an immediate ACK because they did not set AckReq
    /// (responder). Linux's counter of this name counts completer reschedules instead.
    pub ack_deferred: u64,
    /// Work requests failed with RETRY_EXC_ERR.
    pub retry_exceeded_err: u64,
    /// Work requests failed with RNR_RETRY_EXC_ERR.
    pub retry_rnr_exceeded_err: u64,
    /// Retransmissions started by the completer (timeouts and NAKs).
    pub completer_retry_err: u64,
    /// Errors while building a packet (local protection/length errors).
    pub send_err: u64,
    /// RDMA sends (SEND messages completed by the requester).
    pub rdma_sends: u64,
    /// RDMA receives (SEND messages delivered by the responder).
    pub rdma_recvs: u64,
    /// Packets dropped for a bad ICRC when the QP checks it (the host passed the packet
    /// unverified). Not a Linux counter: rxe drops such packets before they reach a QP.
    pub icrc_err: u64,
}

impl Counters {
    /// `(name, value)` pairs in Linux's order, for printing like `rdma statistic`.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            ("sent_pkts", self.sent_pkts),
            ("rcvd_pkts", self.rcvd_pkts),
            ("duplicate_request", self.duplicate_request),
            ("out_of_seq_request", self.out_of_seq_request),
            ("rcvd_rnr_err", self.rcvd_rnr_err),
            ("send_rnr_err", self.send_rnr_err),
            ("rcvd_seq_err", self.rcvd_seq_err),
            ("ack_deferred", self.ack_deferred),
            ("retry_exceeded_err", self.retry_exceeded_err),
            ("retry_rnr_exceeded_err", self.retry_rnr_exceeded_err),
            ("completer_retry_err", self.completer_retry_err),
            ("send_err", self.send_err),
            ("rdma_sends", self.rdma_sends),
            ("rdma_recvs", self.rdma_recvs),
            ("icrc_err", self.icrc_err),
        ]
        .into_iter()
    }
    /// Adds another QP's counters (for device totals).
    pub fn add(&mut self, o: &Counters) {
        self.sent_pkts += o.sent_pkts;
        self.rcvd_pkts += o.rcvd_pkts;
        self.duplicate_request += o.duplicate_request;
        self.out_of_seq_request += o.out_of_seq_request;
        self.rcvd_rnr_err += o.rcvd_rnr_err;
        self.send_rnr_err += o.send_rnr_err;
        self.rcvd_seq_err += o.rcvd_seq_err;
        self.ack_deferred += o.ack_deferred;
        self.retry_exceeded_err += o.retry_exceeded_err;
        self.retry_rnr_exceeded_err += o.retry_rnr_exceeded_err;
        self.completer_retry_err += o.completer_retry_err;
        self.send_err += o.send_err;
        self.rdma_sends += o.rdma_sends;
        self.rdma_recvs += o.rdma_recvs;
        self.icrc_err += o.icrc_err;
    }
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, v)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{name} {v}")?;
        }
        Ok(())
    }
}
