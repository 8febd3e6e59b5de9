//! The device core (feature `alloc`): one Soft-RoCE device, sans-IO, that `rxe-user` (UDP
//! sockets) and `rxe-kernel` (a netdev) host as thin frontends.
//!
//! It owns protection domains, memory regions and windows (key allocation as Linux rxe: a 24-bit
//! index and an 8-bit key part), completion queues, QPs (QPN allocation from 0x11, as rxe's
//! first QP), QP1 (the GSI) with the connection manager on it, and the demultiplexing of
//! received packets by destination QP. The host gives it IP packets ([`Device::handle_packet`])
//! and time ([`Device::handle_timeout`]), and takes IP packets ([`Device::poll_transmit`], QPs
//! served round-robin) and events ([`Device::poll_event`]).
//!
//! Connections are made the rdma_cm way: [`Device::connect`] and [`Device::accept`] take a QP
//! and the device moves it through INIT, RTR and RTS with the negotiated attributes, and to ERR
//! on disconnection.
//!
//! ```
//! use core::net::{IpAddr, Ipv4Addr};
//! use rxe_transport::device::{Device, DeviceConfig, QpInit};
//! use rxe_transport::{Access, QpType};
//!
//! let mut dev = Device::new(DeviceConfig::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 1)).unwrap();
//! let pd = dev.alloc_pd().expect("pd");
//! let mr = dev.reg_mr(pd, 0x1000, 4096, Access::LOCAL_WRITE | Access::REMOTE_WRITE).unwrap();
//! let cq = dev.create_cq(64).expect("cq");
//! let qpn = dev.create_qp(&QpInit { qp_type: QpType::Rc, pd, send_cq: cq, recv_cq: cq, srq: None }).unwrap();
//! assert_eq!(qpn.value(), 0x11);
//! assert_eq!(dev.mr_bytes(mr.lkey).unwrap().len(), 4096);
//! ```

mod memory_table;
mod objects;

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use core::fmt;
use core::net::IpAddr;

use rxe_wire::mad::{GSI_QKEY, GSI_QPN, MAD_LEN};
use rxe_wire::{Checks, Psn, QKey, Qpn, RoceV2Packet};

pub use self::memory_table::RegionMemory;
use self::memory_table::{Backing, Entry, MemTable};
use self::objects::{Ah, DeviceSrq};
pub use self::objects::{AhId, DeviceAttr, SrqId};
use crate::cm::{AcceptParams, Cm, CmConfig, CmError, CmEvent, ConnId, ConnectParams};
use crate::counters::Counters;
use crate::memory::{MwType, Pd};
use crate::qp::state::{QpState, QpType};
use crate::qp::{
    AddressVector, ModifyQpError, Mtu, PostRecvError, PostSendError, Qp, QpAttr, QpConfig,
};
use crate::time::Instant;
use crate::verbs::{
    Access, RecvWr, SendFlags, SendWr, Sge, UdDest, WcFlags, WcStatus, WorkCompletion, WrOpcode,
};
use crate::GRH_LEN;

/// Send and receive queue depth of the device's QPs.
pub const QP_DEPTH: usize = 256;
/// A QP of the device.
pub type DeviceQp = Qp<QP_DEPTH, QP_DEPTH>;
/// Connections the CM tracks at once.
pub const MAX_CONNECTIONS: usize = 64;

/// Receive slots of QP1 (each holds a GRH area and a MAD).
const GSI_SLOTS: u64 = 32;
const GSI_SLOT: u64 = 512;
/// The iova of QP1's buffer (receive slots, then send slots).
const GSI_IOVA: u64 = 0x7000_0000_0000;

/// Settings of a [`Device`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceConfig {
    /// The device's GID, as an IP address.
    pub gid: IpAddr,
    /// CA GUID (Linux rxe derives it from the MAC).
    pub ca_guid: u64,
    /// Active MTU of the port.
    pub port_mtu: Mtu,
    /// Seeds key bytes, PSNs the caller leaves to the device, CM IDs.
    pub seed: u64,
    /// Every packet's UDP source port (a UDP-socket host's bound port), or `None` for Linux's
    /// per-QP entropy ports.
    pub udp_sport: Option<u16>,
    /// IPv4 Identification step (1 like Linux; 0 for a UDP-socket host whose kernel sends 0).
    pub ipv4_ident_step: u16,
    /// Most QPs.
    pub max_qp: usize,
    /// Most memory regions and windows.
    pub max_mr: usize,
    /// Most protection domains.
    pub max_pd: usize,
    /// Most completion queues.
    pub max_cq: usize,
    /// Most shared receive queues.
    pub max_srq: usize,
    /// Most address handles.
    pub max_ah: usize,
    /// Whether a QP's `retry_cnt` of 7 retries forever, as Linux rxe (`true`, the default), or
    /// seven times, as the IBTA (`false`: a vanished peer ends in `RETRY_EXC_ERR`).
    pub retry_cnt_7_is_infinite: bool,
}

impl DeviceConfig {
    /// Defaults for `gid`: MTU 1024, Linux-like ports and Identification, 1024 QPs, MRs, PDs,
    /// CQs, SRQs and AHs.
    pub fn new(gid: IpAddr, seed: u64) -> DeviceConfig {
        DeviceConfig {
            gid,
            ca_guid: 0x0200_00ff_fe00_0000 | (seed & 0xff_ffff),
            port_mtu: Mtu::M1024,
            seed,
            udp_sport: None,
            ipv4_ident_step: 1,
            max_qp: 1024,
            max_mr: 1024,
            max_pd: 1024,
            max_cq: 1024,
            max_srq: 1024,
            max_ah: 1024,
            retry_cnt_7_is_infinite: true,
        }
    }
}

/// A completion queue handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CqId(pub u32);

/// What a new QP is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QpInit {
    /// RC, UC or UD.
    pub qp_type: QpType,
    /// Protection domain.
    pub pd: Pd,
    /// Where send completions go.
    pub send_cq: CqId,
    /// Where receive completions go.
    pub recv_cq: CqId,
    /// The shared receive queue the QP takes receive requests from (its own `post_recv` is
    /// then refused), or `None` for its own receive queue.
    pub srq: Option<SrqId>,
}

impl QpInit {
    /// An RC QP in `pd` whose send and receive completions both go to `cq`.
    pub fn rc(pd: Pd, cq: CqId) -> QpInit {
        QpInit {
            qp_type: QpType::Rc,
            pd,
            send_cq: cq,
            recv_cq: cq,
            srq: None,
        }
    }
}

/// How an RC QP connects when the host exchanged the parameters itself (as ibv_rc_pingpong and
/// perftest do over TCP, or a firmware over its own channel) instead of through the CM: see
/// [`Device::connect_rc`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RcConnect {
    /// Our GID (the address we send from).
    pub sgid: IpAddr,
    /// The peer's GID.
    pub dgid: IpAddr,
    /// The peer's QP.
    pub dest_qp: Qpn,
    /// The PSN our requests start from.
    pub sq_psn: Psn,
    /// The PSN the peer's requests start from.
    pub rq_psn: Psn,
    /// Path MTU.
    pub mtu: Mtu,
    /// IPv4 TTL / IPv6 hop limit of our packets.
    pub hop_limit: u8,
    /// Local ACK timeout exponent (4.096 µs × 2^timeout).
    pub timeout: u8,
    /// Transport retries.
    pub retry_cnt: u8,
    /// RNR retries (7: forever).
    pub rnr_retry: u8,
    /// RNR NAK timer code we send.
    pub min_rnr_timer: u8,
    /// READs/atomics we may have outstanding.
    pub max_rd_atomic: u8,
    /// READs/atomics we take from the peer at once.
    pub max_dest_rd_atomic: u8,
    /// What the peer may do to our memory (set at INIT, if the QP is still in RESET).
    pub access: Access,
}

impl RcConnect {
    /// perftest's and rdma_cm's usual values: MTU 1024, hop limit 64, timeout 14, retry and
    /// RNR retry 7, RNR timer 12, 4 READs each way, remote READ, WRITE and atomics allowed.
    pub fn new(sgid: IpAddr, dgid: IpAddr, dest_qp: Qpn, sq_psn: Psn, rq_psn: Psn) -> RcConnect {
        RcConnect {
            sgid,
            dgid,
            dest_qp,
            sq_psn,
            rq_psn,
            mtu: Mtu::M1024,
            hop_limit: 64,
            timeout: 14,
            retry_cnt: 7,
            rnr_retry: 7,
            min_rnr_timer: 12,
            max_rd_atomic: 4,
            max_dest_rd_atomic: 4,
            access: Access::REMOTE_WRITE | Access::REMOTE_READ | Access::REMOTE_ATOMIC,
        }
    }
}

/// A registered region's keys and address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MrKeys {
    /// Local key.
    pub lkey: u32,
    /// Remote key (the same value, as rxe).
    pub rkey: u32,
    /// Address of the first byte.
    pub addr: u64,
    /// Length.
    pub length: u64,
}

/// Why a device call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceError {
    /// No such QP.
    UnknownQp(Qpn),
    /// No such CQ.
    UnknownCq(CqId),
    /// No such memory key.
    UnknownKey(u32),
    /// No such protection domain.
    UnknownPd(Pd),
    /// No such shared receive queue.
    UnknownSrq(SrqId),
    /// No such address handle.
    UnknownAh(AhId),
    /// The object is still in use (a PD with regions, QPs, SRQs or AHs; a CQ or SRQ with QPs).
    Busy,
    /// The device's limit for this object is reached.
    NoResources,
    /// A length of 0 or too large.
    InvalidLength,
    /// Refused by the QP.
    ModifyQp(ModifyQpError),
    /// Refused by the QP.
    PostSend(PostSendError),
    /// Refused by the QP.
    PostRecv(PostRecvError),
    /// Refused by the connection manager.
    Cm(CmError),
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceError::UnknownQp(q) => write!(f, "no QP {q}"),
            DeviceError::UnknownCq(c) => write!(f, "no CQ {}", c.0),
            DeviceError::UnknownKey(k) => write!(f, "no memory key {k:#x}"),
            DeviceError::UnknownPd(p) => write!(f, "no protection domain {}", p.0),
            DeviceError::UnknownSrq(s) => write!(f, "no SRQ {}", s.0),
            DeviceError::UnknownAh(a) => write!(f, "no address handle {}", a.0),
            DeviceError::Busy => f.write_str("still in use"),
            DeviceError::NoResources => f.write_str("device limit reached"),
            DeviceError::InvalidLength => f.write_str("invalid length"),
            DeviceError::ModifyQp(e) => write!(f, "modify QP: {e:?}"),
            DeviceError::PostSend(e) => write!(f, "post send: {e:?}"),
            DeviceError::PostRecv(e) => write!(f, "post recv: {e:?}"),
            DeviceError::Cm(e) => write!(f, "connection manager: {e}"),
        }
    }
}

impl core::error::Error for DeviceError {}

/// An asynchronous event of the device.
#[derive(Debug, Clone, PartialEq, Eq)]
// Events are rare and polled one at a time; boxing the CM's would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum DeviceEvent {
    /// A connection-manager event (the QP of the connection has been moved already).
    Cm(CmEvent),
    /// A QP went to ERR.
    QpFatal(Qpn),
    /// Fewer receive requests than the armed limit remain in an SRQ
    /// (`IBV_EVENT_SRQ_LIMIT_REACHED`); the limit is disarmed.
    SrqLimitReached(SrqId),
}

/// Device-level counters (the QPs' own are summed by [`Device::counters`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceCounters {
    /// Packets that were not RoCEv2 or failed the structure checks.
    pub malformed: u64,
    /// Packets for a QP that does not exist.
    pub unknown_qp: u64,
    /// Completions dropped because their CQ was full.
    pub cq_overflow: u64,
    /// Completions added to CQs: when it moves, the application has something to act on (a
    /// host may let it run before sending what is queued, so its answer leaves with the ACKs).
    pub completions: u64,
}

#[derive(Debug)]
struct Cq {
    q: VecDeque<WorkCompletion>,
    cap: usize,
    /// Armed by [`Device::req_notify_cq`]: `Some(solicited_only)`.
    notify: Option<bool>,
}

#[derive(Debug)]
struct QpEntry {
    qp: Box<DeviceQp>,
    send_cq: CqId,
    recv_cq: CqId,
    srq: Option<SrqId>,
    fatal_seen: bool,
}

/// One Soft-RoCE device, sans-IO. See the [module documentation](self).
#[derive(Debug)]
pub struct Device {
    cfg: DeviceConfig,
    rng: u64,
    next_pd: u32,
    pds: BTreeMap<u32, ()>,
    mem: MemTable,
    srqs: BTreeMap<u32, DeviceSrq>,
    next_srq: u32,
    ahs: BTreeMap<u32, Ah>,
    next_ah: u32,
    cqs: BTreeMap<u32, Cq>,
    next_cq: u32,
    qps: BTreeMap<u32, QpEntry>,
    next_qpn: u32,
    /// Round-robin cursor: the QPN served last.
    rr: u32,
    gsi: Box<DeviceQp>,
    gsi_key: u32,
    gsi_sends: u64,
    cm: Box<Cm<MAX_CONNECTIONS>>,
    /// Which QP each connection uses.
    conn_qp: BTreeMap<u32, Qpn>,
    events: VecDeque<DeviceEvent>,
    /// CQs whose armed notification fired, oldest first (the completion channel's events).
    cq_events: VecDeque<CqId>,
    counters: DeviceCounters,
}

impl Device {
    /// A device with QP1 and its connection manager ready.
    pub fn new(cfg: DeviceConfig) -> Result<Device, DeviceError> {
        let mut mem = MemTable::default();
        let gsi_pd = Pd(0);
        let gsi_len = (2 * GSI_SLOTS * GSI_SLOT) as usize;
        let gsi_key = mem.insert(
            Entry {
                key: 0,
                pd: gsi_pd,
                iova: GSI_IOVA,
                data: Backing::Owned(alloc::vec![0; gsi_len]),
                access: Access::LOCAL_WRITE,
                valid: true,
                window: None,
                window_len: 0,
            },
            0,
        );
        let mut gsi = Box::new(
            DeviceQp::new(QpConfig {
                port_mtu: cfg.port_mtu,
                ipv4_ident: u16::from(cfg.ipv4_ident_step != 0),
                ipv4_ident_step: cfg.ipv4_ident_step,
                udp_sport: cfg.udp_sport,
                ..QpConfig::ud(Qpn::new(GSI_QPN), gsi_pd)
            })
            .map_err(|_| DeviceError::NoResources)?,
        );
        for (state, qkey) in [
            (QpState::Init, Some(QKey(GSI_QKEY))),
            (QpState::Rtr, None),
            (QpState::Rts, None),
        ] {
            let attr = QpAttr {
                state: Some(state),
                pkey_index: (state == QpState::Init).then_some(0),
                port: (state == QpState::Init).then_some(1),
                qkey,
                sq_psn: (state == QpState::Rts).then(|| Psn::new(0)),
                ..QpAttr::default()
            };
            let _ = gsi.modify(&attr);
        }
        for i in 0..GSI_SLOTS {
            let _ = gsi.post_recv(gsi_recv(i, gsi_key));
        }
        let mut cm_cfg = CmConfig::new(cfg.gid, cfg.ca_guid, cfg.seed ^ 0x5eed);
        cm_cfg.port_mtu = cfg.port_mtu;
        Ok(Device {
            cfg,
            rng: cfg.seed | 1,
            next_pd: 1,
            pds: BTreeMap::new(),
            mem,
            srqs: BTreeMap::new(),
            next_srq: 1,
            ahs: BTreeMap::new(),
            next_ah: 1,
            cqs: BTreeMap::new(),
            next_cq: 1,
            qps: BTreeMap::new(),
            next_qpn: 0x11,
            rr: 0,
            gsi,
            gsi_key,
            gsi_sends: 0,
            cm: Box::new(Cm::new(cm_cfg)),
            conn_qp: BTreeMap::new(),
            events: VecDeque::new(),
            cq_events: VecDeque::new(),
            counters: DeviceCounters::default(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &DeviceConfig {
        &self.cfg
    }

    fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// A fresh 24-bit PSN.
    pub fn random_psn(&mut self) -> Psn {
        Psn::new((self.random() as u32) & 0xff_ffff)
    }

    // ---- objects ----

    /// Registers `length` bytes (zeroed, owned by the device) at address `addr` with `access`.
    pub fn reg_mr(
        &mut self,
        pd: Pd,
        addr: u64,
        length: usize,
        access: Access,
    ) -> Result<MrKeys, DeviceError> {
        self.check_pd(pd)?;
        if length == 0 || addr.checked_add(length as u64).is_none() {
            return Err(DeviceError::InvalidLength);
        }
        if self.mem.len() >= self.cfg.max_mr {
            return Err(DeviceError::NoResources);
        }
        self.insert_region(pd, addr, Backing::Owned(alloc::vec![0; length]), access)
    }

    /// Registers memory the host lends (all of `mem.bytes()`) at address `addr` with `access`;
    /// the device gives it back (drops the box) when the region is deregistered or the device
    /// dropped. This is how a frontend registers caller memory (`ibv_reg_mr` on a buffer).
    pub fn reg_mr_with(
        &mut self,
        pd: Pd,
        addr: u64,
        mem: Box<dyn RegionMemory>,
        access: Access,
    ) -> Result<MrKeys, DeviceError> {
        self.check_pd(pd)?;
        let length = mem.bytes().len();
        if length == 0 || addr.checked_add(length as u64).is_none() {
            return Err(DeviceError::InvalidLength);
        }
        if self.mem.len() >= self.cfg.max_mr {
            return Err(DeviceError::NoResources);
        }
        self.insert_region(pd, addr, Backing::Lent(mem), access)
    }

    fn insert_region(
        &mut self,
        pd: Pd,
        addr: u64,
        data: Backing,
        access: Access,
    ) -> Result<MrKeys, DeviceError> {
        let length = data.as_slice().len() as u64;
        let variant = self.random() as u8;
        let key = self.mem.insert(
            Entry {
                key: 0,
                pd,
                iova: addr,
                data,
                access,
                valid: true,
                window: None,
                window_len: 0,
            },
            variant,
        );
        Ok(MrKeys {
            lkey: key,
            rkey: key,
            addr,
            length,
        })
    }

    /// Allocates an unbound memory window; returns its rkey.
    pub fn alloc_mw(&mut self, pd: Pd, mw_type: MwType) -> Result<u32, DeviceError> {
        self.check_pd(pd)?;
        if self.mem.len() >= self.cfg.max_mr {
            return Err(DeviceError::NoResources);
        }
        let variant = self.random() as u8;
        Ok(self.mem.insert(memory_table::window(pd, mw_type), variant))
    }

    /// Deregisters a region or deallocates a window.
    pub fn dereg_mr(&mut self, key: u32) -> Result<(), DeviceError> {
        self.mem
            .remove(key)
            .map(|_| ())
            .ok_or(DeviceError::UnknownKey(key))
    }

    /// The bytes of region `key`.
    pub fn mr_bytes(&self, key: u32) -> Option<&[u8]> {
        self.mem
            .get(key)
            .filter(|e| e.window.is_none())
            .map(|e| e.data.as_slice())
    }

    /// The bytes of region `key`, writable.
    pub fn mr_bytes_mut(&mut self, key: u32) -> Option<&mut [u8]> {
        self.mem
            .get_mut(key)
            .filter(|e| e.window.is_none())
            .map(|e| e.data.as_mut_slice())
    }

    /// Takes the oldest completion of `cq`.
    pub fn poll_cq(&mut self, cq: CqId) -> Option<WorkCompletion> {
        self.cqs.get_mut(&cq.0)?.q.pop_front()
    }

    /// Completions waiting in `cq`.
    pub fn cq_len(&self, cq: CqId) -> usize {
        self.cqs.get(&cq.0).map_or(0, |c| c.q.len())
    }

    /// Creates a QP (in RESET).
    pub fn create_qp(&mut self, init: &QpInit) -> Result<Qpn, DeviceError> {
        self.check_pd(init.pd)?;
        for cq in [init.send_cq, init.recv_cq] {
            if !self.cqs.contains_key(&cq.0) {
                return Err(DeviceError::UnknownCq(cq));
            }
        }
        if let Some(srq) = init.srq {
            if !self.srqs.contains_key(&srq.0) {
                return Err(DeviceError::UnknownSrq(srq));
            }
        }
        if self.qps.len() >= self.cfg.max_qp {
            return Err(DeviceError::NoResources);
        }
        // Next free QPN from the cursor, skipping 0 and 1 and wrapping within 24 bits.
        let mut qpn = self.next_qpn;
        while self.qps.contains_key(&qpn) || qpn < 2 {
            qpn = (qpn + 1) & 0xff_ffff;
        }
        self.next_qpn = (qpn + 1) & 0xff_ffff;
        let ident = self.random() as u16;
        let cfg = QpConfig {
            qp_type: init.qp_type,
            port_mtu: self.cfg.port_mtu,
            ipv4_ident: if self.cfg.ipv4_ident_step == 0 {
                0
            } else {
                ident
            },
            ipv4_ident_step: self.cfg.ipv4_ident_step,
            udp_sport: self.cfg.udp_sport,
            retry_cnt_7_is_infinite: self.cfg.retry_cnt_7_is_infinite,
            srq: init.srq.is_some(),
            ..QpConfig::rc(Qpn::new(qpn), init.pd)
        };
        let qp = DeviceQp::new(cfg).map_err(|_| DeviceError::NoResources)?;
        self.qps.insert(
            qpn,
            QpEntry {
                qp: Box::new(qp),
                send_cq: init.send_cq,
                recv_cq: init.recv_cq,
                srq: init.srq,
                fatal_seen: false,
            },
        );
        Ok(Qpn::new(qpn))
    }

    /// Destroys a QP; its pending completions are dropped.
    pub fn destroy_qp(&mut self, qpn: Qpn) -> Result<(), DeviceError> {
        self.qps
            .remove(&qpn.value())
            .map(|_| ())
            .ok_or(DeviceError::UnknownQp(qpn))
    }

    fn entry(&mut self, qpn: Qpn) -> Result<&mut QpEntry, DeviceError> {
        self.qps
            .get_mut(&qpn.value())
            .ok_or(DeviceError::UnknownQp(qpn))
    }

    /// A QP, to read its state and counters.
    pub fn qp(&self, qpn: Qpn) -> Option<&DeviceQp> {
        self.qps.get(&qpn.value()).map(|e| &*e.qp)
    }

    /// Moves RC QP `qpn` from RESET (or INIT) through INIT and RTR to RTS towards `c.dest_qp`:
    /// the three `modify_qp` calls a host makes after exchanging QPNs and PSNs itself.
    pub fn connect_rc(&mut self, qpn: Qpn, c: &RcConnect) -> Result<(), DeviceError> {
        if self.qp(qpn).ok_or(DeviceError::UnknownQp(qpn))?.state() == QpState::Reset {
            self.modify_qp(
                qpn,
                &QpAttr {
                    state: Some(QpState::Init),
                    pkey_index: Some(0),
                    port: Some(1),
                    access: Some(c.access),
                    ..QpAttr::default()
                },
            )?;
        }
        self.modify_qp(
            qpn,
            &QpAttr {
                state: Some(QpState::Rtr),
                av: Some(AddressVector {
                    sgid: c.sgid,
                    dgid: c.dgid,
                    hop_limit: c.hop_limit,
                    traffic_class: 0,
                    flow_label: 0,
                    udp_sport: None,
                }),
                path_mtu: Some(c.mtu),
                dest_qp: Some(c.dest_qp),
                rq_psn: Some(c.rq_psn),
                max_dest_rd_atomic: Some(c.max_dest_rd_atomic),
                min_rnr_timer: Some(c.min_rnr_timer),
                ..QpAttr::default()
            },
        )?;
        self.modify_qp(
            qpn,
            &QpAttr {
                state: Some(QpState::Rts),
                timeout: Some(c.timeout),
                retry_cnt: Some(c.retry_cnt),
                rnr_retry: Some(c.rnr_retry),
                sq_psn: Some(c.sq_psn),
                max_rd_atomic: Some(c.max_rd_atomic),
                ..QpAttr::default()
            },
        )
    }

    /// Modifies a QP (`ibv_modify_qp`).
    pub fn modify_qp(&mut self, qpn: Qpn, attr: &QpAttr) -> Result<(), DeviceError> {
        let e = self.entry(qpn)?;
        e.qp.modify(attr).map_err(DeviceError::ModifyQp)?;
        self.drain(qpn);
        Ok(())
    }

    /// Posts a send work request.
    pub fn post_send(&mut self, qpn: Qpn, wr: SendWr) -> Result<(), DeviceError> {
        let e = self
            .qps
            .get_mut(&qpn.value())
            .ok_or(DeviceError::UnknownQp(qpn))?;
        e.qp.post_send(wr, &self.mem)
            .map_err(DeviceError::PostSend)?;
        Ok(())
    }

    /// Posts a receive work request.
    pub fn post_recv(&mut self, qpn: Qpn, wr: RecvWr) -> Result<(), DeviceError> {
        let e = self.entry(qpn)?;
        e.qp.post_recv(wr).map_err(DeviceError::PostRecv)?;
        self.drain(qpn);
        Ok(())
    }

    /// Moves a QP's completions to its CQs and notes a fatal error.
    fn drain(&mut self, qpn: Qpn) {
        let Some(e) = self.qps.get_mut(&qpn.value()) else {
            return;
        };
        for (cq, send) in [(e.send_cq, true), (e.recv_cq, false)] {
            loop {
                let wc = if send {
                    e.qp.poll_send_completion()
                } else {
                    e.qp.poll_recv_completion()
                };
                let Some(wc) = wc else { break };
                match self.cqs.get_mut(&cq.0) {
                    Some(c) if c.q.len() < c.cap => {
                        // An armed CQ fires once: on any completion, or (solicited only) on a
                        // solicited receive or any error, as verbs' ibv_req_notify_cq.
                        if let Some(solicited_only) = c.notify {
                            if !solicited_only
                                || wc.wc_flags.contains(WcFlags::SOLICITED)
                                || wc.status != WcStatus::Success
                            {
                                c.notify = None;
                                self.cq_events.push_back(cq);
                            }
                        }
                        c.q.push_back(wc);
                        self.counters.completions += 1;
                    }
                    _ => self.counters.cq_overflow += 1,
                }
            }
        }
        while e.qp.poll_event().is_some() {}
        if e.qp.state() == QpState::Err && !e.fatal_seen {
            e.fatal_seen = true;
            self.events.push_back(DeviceEvent::QpFatal(qpn));
        }
    }

    /// The device's own counters (cheap: no sum over the QPs).
    pub fn device_counters(&self) -> DeviceCounters {
        self.counters
    }

    /// Device and QP counters, summed (the device's drops first).
    pub fn counters(&self) -> (DeviceCounters, Counters) {
        let mut c = Counters::default();
        c.add(self.gsi.counters());
        for e in self.qps.values() {
            c.add(e.qp.counters());
        }
        (self.counters, c)
    }

    // ---- connections ----

    /// Listens for connections on rdma_cm `port`.
    pub fn listen(&mut self, port: u16) -> Result<(), DeviceError> {
        self.cm.listen(port).map_err(DeviceError::Cm)
    }

    /// Connects `qpn` (an RC QP in RESET) to `dst:dst_port`; the QP moves to INIT now and to
    /// RTR and RTS when the peer accepts ([`CmEvent::Established`]).
    #[allow(clippy::too_many_arguments)]
    pub fn connect(
        &mut self,
        now: Instant,
        qpn: Qpn,
        dst: IpAddr,
        dst_port: u16,
        src_port: u16,
        responder_resources: u8,
        initiator_depth: u8,
        private_data: &[u8],
    ) -> Result<ConnId, DeviceError> {
        self.entry(qpn)?;
        let psn = self.random_psn();
        let id = self
            .cm
            .connect(
                now,
                &ConnectParams {
                    dst,
                    dst_port,
                    src_port,
                    qpn,
                    psn,
                    responder_resources,
                    initiator_depth,
                    retry_count: 7,
                    rnr_retry_count: 7,
                    private_data,
                },
            )
            .map_err(DeviceError::Cm)?;
        self.conn_qp.insert(id.0, qpn);
        self.move_qp(id, qpn, &[QpState::Init]);
        self.pump_cm(now);
        Ok(id)
    }

    /// Accepts a [`CmEvent::ConnectRequest`] with `qpn` (an RC QP in RESET), which moves to
    /// INIT and RTR now and to RTS when the RTU arrives.
    pub fn accept(
        &mut self,
        now: Instant,
        id: ConnId,
        qpn: Qpn,
        responder_resources: u8,
        initiator_depth: u8,
        private_data: &[u8],
    ) -> Result<(), DeviceError> {
        self.entry(qpn)?;
        let psn = self.random_psn();
        // The CM fixes the negotiated values first; the QP reaches RTR before the REP leaves
        // (pump_cm below sends it).
        self.cm
            .accept(
                now,
                id,
                &AcceptParams {
                    qpn,
                    psn,
                    responder_resources,
                    initiator_depth,
                    rnr_retry_count: 7,
                    private_data,
                },
            )
            .map_err(DeviceError::Cm)?;
        self.conn_qp.insert(id.0, qpn);
        self.move_qp(id, qpn, &[QpState::Init, QpState::Rtr]);
        self.pump_cm(now);
        Ok(())
    }

    /// Rejects a [`CmEvent::ConnectRequest`].
    pub fn reject(
        &mut self,
        now: Instant,
        id: ConnId,
        private_data: &[u8],
    ) -> Result<(), DeviceError> {
        self.cm.reject(id, private_data).map_err(DeviceError::Cm)?;
        self.pump_cm(now);
        Ok(())
    }

    /// Disconnects; the QP moves to ERR when [`CmEvent::Disconnected`] comes.
    pub fn disconnect(&mut self, now: Instant, id: ConnId) -> Result<(), DeviceError> {
        self.cm.disconnect(now, id, &[]).map_err(DeviceError::Cm)?;
        self.pump_cm(now);
        Ok(())
    }

    fn move_qp(&mut self, id: ConnId, qpn: Qpn, states: &[QpState]) {
        for &s in states {
            let Ok(attr) = self.cm.qp_attr(id, s) else {
                return;
            };
            if let Some(e) = self.qps.get_mut(&qpn.value()) {
                let _ = e.qp.modify(&attr);
            }
        }
        self.drain(qpn);
    }

    /// Moves MADs between the CM and QP1, and acts on CM events.
    fn pump_cm(&mut self, now: Instant) {
        loop {
            let mut progress = false;
            while let Some(out) = self.cm.poll_transmit() {
                progress = true;
                self.send_mad(out.dst, &out.mad);
            }
            while let Some(ev) = self.cm.poll_event() {
                progress = true;
                match &ev {
                    CmEvent::ConnectReply { id, .. } => {
                        // Reported too (the REP's private data is the application's), after
                        // the QP has reached RTS and the RTU is on its way.
                        if let Some(&qpn) = self.conn_qp.get(&id.0) {
                            self.move_qp(*id, qpn, &[QpState::Rtr, QpState::Rts]);
                            let _ = self.cm.rtu(*id);
                        }
                    }
                    CmEvent::Established { id } => {
                        if let Some(&qpn) = self.conn_qp.get(&id.0) {
                            if self.qp(qpn).is_some_and(|q| q.state() == QpState::Rtr) {
                                self.move_qp(*id, qpn, &[QpState::Rts]);
                            }
                        }
                    }
                    CmEvent::Disconnected { id }
                    | CmEvent::Rejected { id, .. }
                    | CmEvent::Unreachable { id } => {
                        if let Some(&qpn) = self.conn_qp.get(&id.0) {
                            if let Some(e) = self.qps.get_mut(&qpn.value()) {
                                let _ = e.qp.modify(&QpAttr {
                                    state: Some(QpState::Err),
                                    ..QpAttr::default()
                                });
                            }
                            self.drain(qpn);
                        }
                    }
                    CmEvent::TimewaitExit { id } => {
                        self.conn_qp.remove(&id.0);
                    }
                    CmEvent::ConnectRequest { .. } => {}
                }
                self.events.push_back(DeviceEvent::Cm(ev));
            }
            if !progress {
                break;
            }
        }
        let _ = now;
    }

    fn send_mad(&mut self, dst: IpAddr, mad: &[u8; MAD_LEN]) {
        let slot = GSI_SLOTS + self.gsi_sends % GSI_SLOTS;
        self.gsi_sends += 1;
        let at = GSI_IOVA + slot * GSI_SLOT;
        let off = (slot * GSI_SLOT) as usize;
        if let Some(e) = self.mem.get_mut(self.gsi_key) {
            e.data.as_mut_slice()[off..off + MAD_LEN].copy_from_slice(mad);
        }
        let mut wr = SendWr::new(
            0,
            WrOpcode::Send,
            Some(Sge {
                addr: at,
                length: MAD_LEN as u32,
                lkey: self.gsi_key,
            }),
            SendFlags::empty(),
        );
        wr.ud = Some(UdDest {
            ah: AddressVector {
                sgid: self.cfg.gid,
                dgid: dst,
                hop_limit: 64,
                traffic_class: 0,
                flow_label: 0,
                udp_sport: None,
            },
            remote_qpn: Qpn::new(GSI_QPN),
            remote_qkey: QKey(GSI_QKEY),
        });
        // A full QP1 send queue drops the MAD like a lost packet; the CM resends.
        let _ = self.gsi.post_send(wr, &self.mem);
    }

    /// Hands QP1's received MADs to the CM.
    fn gsi_receive(&mut self, now: Instant) {
        while let Some(wc) = self.gsi.poll_recv_completion() {
            let slot = wc.wr_id;
            let off = (slot * GSI_SLOT) as usize;
            if wc.status == crate::WcStatus::Success && wc.byte_len as usize == GRH_LEN + MAD_LEN {
                if let Some(e) = self.mem.get(self.gsi_key) {
                    let grh = &e.data.as_slice()[off..off + GRH_LEN];
                    let src = if self.cfg.gid.is_ipv4() {
                        IpAddr::V4(core::net::Ipv4Addr::new(grh[32], grh[33], grh[34], grh[35]))
                    } else {
                        let mut a = [0u8; 16];
                        a.copy_from_slice(&grh[8..24]);
                        IpAddr::V6(core::net::Ipv6Addr::from(a))
                    };
                    let mut mad = [0u8; MAD_LEN];
                    mad.copy_from_slice(&e.data.as_slice()[off + GRH_LEN..off + GRH_LEN + MAD_LEN]);
                    self.cm.handle_mad(now, src, &mad);
                }
            }
            let _ = self.gsi.post_recv(gsi_recv(slot, self.gsi_key));
        }
        while self.gsi.poll_send_completion().is_some() {}
        self.pump_cm(now);
    }

    // ---- I/O ----

    /// Handles a received IP packet (IPv4 or IPv6 header, UDP, BTH ... ICRC). The ICRC is
    /// checked by the QP it is for (cut-through placement for in-order RC data).
    pub fn handle_packet(&mut self, now: Instant, ip_packet: &[u8]) {
        self.handle(now, ip_packet, false);
    }

    /// [`handle_packet`](Self::handle_packet) for a packet whose ICRC the host has verified
    /// already (a UDP host that solved the IPv4 Identification from it): not computed again.
    pub fn handle_verified_packet(&mut self, now: Instant, ip_packet: &[u8]) {
        self.handle(now, ip_packet, true);
    }

    fn handle(&mut self, now: Instant, ip_packet: &[u8], icrc_verified: bool) {
        let checks = Checks {
            icrc: false,
            ..Checks::ALL
        };
        let Ok(mut pkt) = RoceV2Packet::new_checked(ip_packet, &checks) else {
            self.counters.malformed += 1;
            return;
        };
        if icrc_verified {
            pkt = pkt.vouch_icrc();
        }
        let qpn = pkt.roce().bth().dest_qp();
        if qpn.value() == GSI_QPN {
            self.gsi.handle_packet(now, &pkt, &mut self.mem);
            self.gsi_receive(now);
            return;
        }
        match self.qps.get_mut(&qpn.value()) {
            Some(e) => {
                match e.srq.and_then(|s| self.srqs.get_mut(&s.0).map(|q| (s, q))) {
                    Some((id, srq)) => {
                        e.qp.handle_packet_srq(now, &pkt, &mut self.mem, &mut srq.srq);
                        if srq.srq.poll_event().is_some() {
                            self.events.push_back(DeviceEvent::SrqLimitReached(id));
                        }
                    }
                    None => e.qp.handle_packet(now, &pkt, &mut self.mem),
                }
                self.drain(qpn);
            }
            None => self.counters.unknown_qp += 1,
        }
    }

    /// Runs the timers due by `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.cm.handle_timeout(now);
        self.pump_cm(now);
        self.gsi.handle_timeout(now);
        let qpns: Vec<u32> = self
            .qps
            .iter()
            .filter(|(_, e)| e.qp.poll_timeout().is_some_and(|t| t <= now))
            .map(|(&q, _)| q)
            .collect();
        for q in qpns {
            if let Some(e) = self.qps.get_mut(&q) {
                e.qp.handle_timeout(now);
            }
            self.drain(Qpn::new(q));
        }
    }

    /// The earliest deadline of any QP or the CM.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.qps
            .values()
            .filter_map(|e| e.qp.poll_timeout())
            .chain(self.gsi.poll_timeout())
            .chain(self.cm.poll_timeout())
            .min()
    }

    /// Writes the next packet to send (an IP packet) into `buf`; QP1 first, then the QPs
    /// round-robin, one packet each. `buf` must hold [`Device::max_packet_len`] bytes.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        if let Ok(Some(n)) = self.gsi.poll_transmit(now, buf, &mut self.mem) {
            while self.gsi.poll_send_completion().is_some() {}
            return Some(n);
        }
        let start = self.rr;
        let order: Vec<u32> = self
            .qps
            .range(start + 1..)
            .chain(self.qps.range(..=start))
            .map(|(&q, _)| q)
            .collect();
        for q in order {
            let Some(e) = self.qps.get_mut(&q) else {
                continue;
            };
            if let Ok(Some(n)) = e.qp.poll_transmit(now, buf, &mut self.mem) {
                self.rr = q;
                self.drain(Qpn::new(q));
                return Some(n);
            }
            self.drain(Qpn::new(q));
        }
        None
    }

    /// The largest packet [`poll_transmit`](Self::poll_transmit) writes.
    pub fn max_packet_len(&self) -> usize {
        self.gsi.max_packet_len().max(4096 + 128)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<DeviceEvent> {
        self.events.pop_front()
    }

    /// Arms `cq` (`ibv_req_notify_cq`): the next completion added to it (with `solicited_only`,
    /// the next solicited receive completion or error completion) queues one notification for
    /// [`poll_cq_event`](Device::poll_cq_event); then the CQ is disarmed until armed again.
    /// Completions already in the CQ do not count.
    pub fn req_notify_cq(&mut self, cq: CqId, solicited_only: bool) -> Result<(), DeviceError> {
        let c = self.cqs.get_mut(&cq.0).ok_or(DeviceError::UnknownCq(cq))?;
        // An arm for every completion stays so until it fires (as Linux rxe).
        c.notify = Some(c.notify != Some(false) && solicited_only);
        Ok(())
    }

    /// The next CQ whose armed notification fired (`ibv_get_cq_event`): what a completion
    /// channel delivers.
    pub fn poll_cq_event(&mut self) -> Option<CqId> {
        self.cq_events.pop_front()
    }
}

fn gsi_recv(slot: u64, key: u32) -> RecvWr {
    RecvWr::new(
        slot,
        Sge {
            addr: GSI_IOVA + slot * GSI_SLOT,
            length: GSI_SLOT as u32,
            lkey: key,
        },
    )
}
