//! The device's object pools besides regions and QPs: protection domains, completion queues,
//! shared receive queues and address handles, each with its limit from [`DeviceConfig`], and the
//! limits reported together as [`DeviceAttr`] (`ibv_query_device`).

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};

use super::{Cq, CqId, Device, DeviceConfig, DeviceError, QP_DEPTH};
use crate::memory::Pd;
use crate::qp::{AddressVector, MAX_RD_ATOMIC};
use crate::srq::Srq;
use crate::verbs::{RecvWr, MAX_INLINE, MAX_SGE};

/// A shared receive queue handle (`ibv_srq`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SrqId(pub u32);

/// An address handle (`ibv_ah`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AhId(pub u32);

/// An SRQ of the device: its PD and its queue.
#[derive(Debug)]
pub(super) struct DeviceSrq {
    pub(super) pd: Pd,
    pub(super) srq: Box<Srq<QP_DEPTH>>,
}

/// An address handle of the device.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ah {
    pd: Pd,
    av: AddressVector,
}

/// The device's limits (`ibv_query_device`), from its [`DeviceConfig`] and the QPs' fixed
/// capacities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceAttr {
    /// Most QPs (besides QP1).
    pub max_qp: usize,
    /// Most outstanding work requests per send or receive queue.
    pub max_qp_wr: usize,
    /// Most scatter/gather entries per work request.
    pub max_sge: usize,
    /// Most inline bytes per send work request.
    pub max_inline_data: usize,
    /// Most completion queues.
    pub max_cq: usize,
    /// Most memory regions and windows.
    pub max_mr: usize,
    /// Most protection domains.
    pub max_pd: usize,
    /// Most shared receive queues.
    pub max_srq: usize,
    /// Most receive requests queued in one SRQ.
    pub max_srq_wr: usize,
    /// Most address handles.
    pub max_ah: usize,
    /// Most outstanding READ/atomic requests per QP, each way (`max_qp_rd_atom`).
    pub max_qp_rd_atom: u8,
    /// CA GUID.
    pub node_guid: u64,
}

/// The first number from `cursor` on that is not 0 and not in `map` (wrapping); the cursor moves
/// past it. The caller has checked the map is below its limit, so one is free.
fn next_free<V>(cursor: &mut u32, map: &BTreeMap<u32, V>) -> u32 {
    let mut n = *cursor;
    while n == 0 || map.contains_key(&n) {
        n = n.wrapping_add(1);
    }
    *cursor = n.wrapping_add(1);
    n
}

impl Device {
    /// The device's limits.
    pub fn attr(&self) -> DeviceAttr {
        let c: &DeviceConfig = &self.cfg;
        DeviceAttr {
            max_qp: c.max_qp,
            max_qp_wr: QP_DEPTH,
            max_sge: MAX_SGE,
            max_inline_data: MAX_INLINE,
            max_cq: c.max_cq,
            max_mr: c.max_mr,
            max_pd: c.max_pd,
            max_srq: c.max_srq,
            max_srq_wr: QP_DEPTH,
            max_ah: c.max_ah,
            max_qp_rd_atom: MAX_RD_ATOMIC,
            node_guid: c.ca_guid,
        }
    }

    pub(super) fn check_pd(&self, pd: Pd) -> Result<(), DeviceError> {
        if self.pds.contains_key(&pd.0) {
            Ok(())
        } else {
            Err(DeviceError::UnknownPd(pd))
        }
    }

    /// Allocates a protection domain (`ibv_alloc_pd`).
    pub fn alloc_pd(&mut self) -> Result<Pd, DeviceError> {
        if self.pds.len() >= self.cfg.max_pd {
            return Err(DeviceError::NoResources);
        }
        // PD 0 is QP1's.
        let n = next_free(&mut self.next_pd, &self.pds);
        self.pds.insert(n, ());
        Ok(Pd(n))
    }

    /// Frees a protection domain (`ibv_dealloc_pd`); refused while regions, windows, QPs, SRQs
    /// or address handles belong to it.
    pub fn dealloc_pd(&mut self, pd: Pd) -> Result<(), DeviceError> {
        self.check_pd(pd)?;
        let used = self.mem.uses_pd(pd)
            || self.qps.values().any(|e| e.qp.pd() == pd)
            || self.srqs.values().any(|s| s.pd == pd)
            || self.ahs.values().any(|a| a.pd == pd);
        if used {
            return Err(DeviceError::Busy);
        }
        self.pds.remove(&pd.0);
        Ok(())
    }

    /// Creates a completion queue of `cap` entries (`ibv_create_cq`).
    pub fn create_cq(&mut self, cap: usize) -> Result<CqId, DeviceError> {
        if cap == 0 {
            return Err(DeviceError::InvalidLength);
        }
        if self.cqs.len() >= self.cfg.max_cq {
            return Err(DeviceError::NoResources);
        }
        let id = next_free(&mut self.next_cq, &self.cqs);
        self.cqs.insert(
            id,
            Cq {
                q: VecDeque::with_capacity(cap.min(4096)),
                cap,
                notify: None,
            },
        );
        Ok(CqId(id))
    }

    /// Whether completion queue `cq` exists.
    pub fn cq_exists(&self, cq: CqId) -> bool {
        self.cqs.contains_key(&cq.0)
    }

    /// Destroys a completion queue (`ibv_destroy_cq`); refused while a QP uses it. Completions
    /// still in it are dropped.
    pub fn destroy_cq(&mut self, cq: CqId) -> Result<(), DeviceError> {
        if !self.cqs.contains_key(&cq.0) {
            return Err(DeviceError::UnknownCq(cq));
        }
        if self
            .qps
            .values()
            .any(|e| e.send_cq == cq || e.recv_cq == cq)
        {
            return Err(DeviceError::Busy);
        }
        self.cqs.remove(&cq.0);
        self.cq_events.retain(|&c| c != cq);
        Ok(())
    }

    /// Creates a shared receive queue in `pd` (`ibv_create_srq`); it holds up to
    /// [`DeviceAttr::max_srq_wr`] requests.
    pub fn create_srq(&mut self, pd: Pd) -> Result<SrqId, DeviceError> {
        self.check_pd(pd)?;
        if self.srqs.len() >= self.cfg.max_srq {
            return Err(DeviceError::NoResources);
        }
        let id = next_free(&mut self.next_srq, &self.srqs);
        self.srqs.insert(
            id,
            DeviceSrq {
                pd,
                srq: Box::new(Srq::new()),
            },
        );
        Ok(SrqId(id))
    }

    fn srq_mut(&mut self, srq: SrqId) -> Result<&mut DeviceSrq, DeviceError> {
        self.srqs
            .get_mut(&srq.0)
            .ok_or(DeviceError::UnknownSrq(srq))
    }

    /// Posts a receive request to a shared receive queue (`ibv_post_srq_recv`).
    pub fn post_srq_recv(&mut self, srq: SrqId, wr: RecvWr) -> Result<(), DeviceError> {
        // Checked again when a message lands; refused early as rxe's post_srq_recv does.
        if let Some(s) = wr.sg_list.iter().find(|s| self.mem.get(s.lkey).is_none()) {
            return Err(DeviceError::UnknownKey(s.lkey));
        }
        self.srq_mut(srq)?
            .srq
            .post_recv(wr)
            .map_err(DeviceError::PostRecv)
    }

    /// Arms an SRQ's limit (`ibv_modify_srq` with `IBV_SRQ_LIMIT`; 0 disarms): when a QP takes
    /// a request and fewer than `limit` remain, [`DeviceEvent::SrqLimitReached`](super::DeviceEvent::SrqLimitReached) is raised once.
    pub fn arm_srq_limit(&mut self, srq: SrqId, limit: u32) -> Result<(), DeviceError> {
        self.srq_mut(srq)?
            .srq
            .arm_limit(limit)
            .map_err(|_| DeviceError::InvalidLength)
    }

    /// Requests queued in an SRQ, and its armed limit (`ibv_query_srq`).
    pub fn srq_len(&self, srq: SrqId) -> Result<(usize, u32), DeviceError> {
        self.srqs
            .get(&srq.0)
            .map(|s| (s.srq.len(), s.srq.limit()))
            .ok_or(DeviceError::UnknownSrq(srq))
    }

    /// Destroys a shared receive queue (`ibv_destroy_srq`); refused while a QP uses it.
    pub fn destroy_srq(&mut self, srq: SrqId) -> Result<(), DeviceError> {
        if !self.srqs.contains_key(&srq.0) {
            return Err(DeviceError::UnknownSrq(srq));
        }
        if self.qps.values().any(|e| e.srq == Some(srq)) {
            return Err(DeviceError::Busy);
        }
        self.srqs.remove(&srq.0);
        Ok(())
    }

    /// Creates an address handle in `pd` (`ibv_create_ah`) for UD sends.
    pub fn create_ah(&mut self, pd: Pd, av: AddressVector) -> Result<AhId, DeviceError> {
        self.check_pd(pd)?;
        if self.ahs.len() >= self.cfg.max_ah {
            return Err(DeviceError::NoResources);
        }
        let id = next_free(&mut self.next_ah, &self.ahs);
        self.ahs.insert(id, Ah { pd, av });
        Ok(AhId(id))
    }

    /// The address vector of an address handle.
    pub fn ah(&self, ah: AhId) -> Result<AddressVector, DeviceError> {
        self.ahs
            .get(&ah.0)
            .map(|a| a.av)
            .ok_or(DeviceError::UnknownAh(ah))
    }

    /// Destroys an address handle (`ibv_destroy_ah`). Sends already posted with it keep their
    /// copy of its address.
    pub fn destroy_ah(&mut self, ah: AhId) -> Result<(), DeviceError> {
        self.ahs
            .remove(&ah.0)
            .map(|_| ())
            .ok_or(DeviceError::UnknownAh(ah))
    }
}
