//! Shared receive queues: receive requests that several RC, UC or UD QPs draw from, with the
//! limit event (`IBV_EVENT_SRQ_LIMIT_REACHED`).
//!
//! A QP created with [`QpConfig::srq`](crate::QpConfig::srq) refuses its own `post_recv`; the
//! host passes the SRQ to [`Qp::handle_packet_srq`](crate::Qp::handle_packet_srq). The QP takes
//! a request when a message that consumes one starts (SEND FIRST/ONLY, WRITE with immediate, a
//! datagram), after its PSN has been checked, as Linux rxe does (`get_srq_wqe`); a request taken
//! stays with that QP (and is flushed with it if it fails). With the SRQ empty, RC answers with
//! an RNR NAK, UC and UD drop the message.

use heapless::Deque;

use crate::qp::PostRecvError;
use crate::verbs::RecvWr;

/// An asynchronous event of an SRQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrqEvent {
    /// Fewer requests than the armed limit are queued (the limit is now disarmed).
    LimitReached,
}

/// Where a QP's responder takes receive requests from when it has an SRQ.
pub(crate) trait RecvSource {
    /// Takes the next request.
    fn take_recv(&mut self) -> Option<RecvWr>;
}

/// A shared receive queue of up to `N` requests.
#[derive(Debug, Clone)]
pub struct Srq<const N: usize> {
    queue: Deque<RecvWr, N>,
    limit: u32,
    events: Deque<SrqEvent, 4>,
}

impl<const N: usize> Default for Srq<N> {
    fn default() -> Srq<N> {
        Srq::new()
    }
}

impl<const N: usize> Srq<N> {
    /// An empty SRQ with the limit disarmed.
    pub const fn new() -> Srq<N> {
        Srq {
            queue: Deque::new(),
            limit: 0,
            events: Deque::new(),
        }
    }
    /// Queues a receive request.
    pub fn post_recv(&mut self, wr: RecvWr) -> Result<(), PostRecvError> {
        self.queue
            .push_back(wr)
            .map_err(|_| PostRecvError::QueueFull)
    }
    /// Requests queued.
    pub fn len(&self) -> usize {
        self.queue.len()
    }
    /// Whether no request is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
    /// The armed limit (0: disarmed).
    pub fn limit(&self) -> u32 {
        self.limit
    }
    /// Arms the limit (`ibv_modify_srq` with `IBV_SRQ_LIMIT`): when a QP takes a request and
    /// fewer than `limit` remain, [`SrqEvent::LimitReached`] is raised once and the limit
    /// disarms. 0 disarms it.
    pub fn arm_limit(&mut self, limit: u32) -> Result<(), PostRecvError> {
        if limit as usize > N {
            return Err(PostRecvError::QueueFull);
        }
        self.limit = limit;
        Ok(())
    }
    /// The next event.
    pub fn poll_event(&mut self) -> Option<SrqEvent> {
        self.events.pop_front()
    }
}

impl<const N: usize> RecvSource for Srq<N> {
    fn take_recv(&mut self) -> Option<RecvWr> {
        let wr = self.queue.pop_front()?;
        if self.limit != 0 && (self.queue.len() as u32) < self.limit {
            self.limit = 0;
            let _ = self.events.push_back(SrqEvent::LimitReached);
        }
        Some(wr)
    }
}
