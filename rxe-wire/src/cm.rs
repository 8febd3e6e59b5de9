//! Communication-manager messages (IBTA vol. 1, chapter 12): REQ, MRA, REJ, REP, RTU, DREQ and
//! DREP, each field at its IBTA byte and bit position (MSB first, offsets counted from the end
//! of the 24-byte MAD header, as in Linux's `ibta_vol1_c12.h`).
//!
//! Reserved bits are ignored on parse and written as zero. LAP/APR (path migration) and
//! SIDR are not handled: rxe peers and `rdma_cm` over RoCE never send them
//! (`Error::BadMad(BadMad::Attribute(..))`).
//!
//! ```
//! use rxe_wire::cm::{Message, Rtu};
//! use rxe_wire::mad::MAD_LEN;
//!
//! let rtu = Message::Rtu(Rtu { local_comm_id: 7, remote_comm_id: 9, private_data: b"hi" });
//! let mut mad = [0u8; MAD_LEN];
//! rtu.emit(0x1234, &mut mad).unwrap();
//! let (hdr, parsed) = Message::parse(&mad).unwrap();
//! assert_eq!(hdr.tid, 0x1234);
//! let Message::Rtu(r) = parsed else { panic!() };
//! assert_eq!((r.local_comm_id, &r.private_data[..2]), (7, &b"hi"[..]));
//! ```

use core::fmt;
use core::net::Ipv6Addr;

use crate::error::{check_len, BadMad, Error, Result};
use crate::mad::{self, DATA_LEN, HEADER_LEN, MAD_LEN};
use crate::types::{PKey, Psn, Qpn};

/// CM attribute IDs.
pub mod attr {
    /// Connection request.
    pub const REQ: u16 = 0x0010;
    /// Message receipt acknowledgement.
    pub const MRA: u16 = 0x0011;
    /// Reject.
    pub const REJ: u16 = 0x0012;
    /// Reply to a REQ.
    pub const REP: u16 = 0x0013;
    /// Ready to use.
    pub const RTU: u16 = 0x0014;
    /// Disconnection request.
    pub const DREQ: u16 = 0x0015;
    /// Reply to a DREQ.
    pub const DREP: u16 = 0x0016;
}

/// Bytes of private data each message carries.
pub mod private_data_len {
    /// REQ.
    pub const REQ: usize = 92;
    /// MRA.
    pub const MRA: usize = 222;
    /// REJ.
    pub const REJ: usize = 148;
    /// REP.
    pub const REP: usize = 196;
    /// RTU.
    pub const RTU: usize = 224;
    /// DREQ.
    pub const DREQ: usize = 220;
    /// DREP.
    pub const DREP: usize = 224;
}

/// Length of the Additional Rejection Information of a REJ.
pub const ARI_LEN: usize = 72;

/// Reads `width` bits starting `bit` bits (from the MSB) into byte `byte` of the CM data.
fn get(d: &[u8], byte: usize, bit: u32, width: u32) -> u64 {
    let nbytes = (bit + width).div_ceil(8) as usize;
    let mut acc = 0u64;
    for &b in &d[byte..byte + nbytes] {
        acc = (acc << 8) | u64::from(b);
    }
    let shift = nbytes as u32 * 8 - bit - width;
    (acc >> shift) & ((1u64 << width) - 1)
}

/// Writes `width` bits of `v` at the same position [`get`] reads (other bits untouched).
fn set(d: &mut [u8], byte: usize, bit: u32, width: u32, v: u64) {
    let nbytes = (bit + width).div_ceil(8) as usize;
    let shift = nbytes as u32 * 8 - bit - width;
    let mask = ((1u64 << width) - 1) << shift;
    let mut acc = 0u64;
    for &b in &d[byte..byte + nbytes] {
        acc = (acc << 8) | u64::from(b);
    }
    acc = (acc & !mask) | ((v << shift) & mask);
    for (i, b) in d[byte..byte + nbytes].iter_mut().enumerate() {
        *b = (acc >> ((nbytes - 1 - i) * 8)) as u8;
    }
}

fn get64(d: &[u8], byte: usize) -> u64 {
    (get(d, byte, 0, 32) << 32) | get(d, byte + 4, 0, 32)
}

fn set64(d: &mut [u8], byte: usize, v: u64) {
    set(d, byte, 0, 32, v >> 32);
    set(d, byte + 4, 0, 32, v & 0xffff_ffff);
}

fn gid(d: &[u8], byte: usize) -> Ipv6Addr {
    let mut g = [0u8; 16];
    g.copy_from_slice(&d[byte..byte + 16]);
    Ipv6Addr::from(g)
}

fn put_private(d: &mut [u8], byte: usize, max: usize, data: &[u8]) -> Result<()> {
    if data.len() > max {
        return Err(Error::PrivateDataTooLong {
            max,
            got: data.len(),
        });
    }
    d[byte..byte + data.len()].copy_from_slice(data);
    d[byte + data.len()..byte + max].fill(0);
    Ok(())
}

/// One path of a REQ (primary or alternate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Path {
    /// Local port LID (0xFFFF, the permissive LID, on routed RoCE).
    pub local_lid: u16,
    /// Remote port LID.
    pub remote_lid: u16,
    /// Local port GID (RoCEv2 IPv4: `::ffff:a.b.c.d`).
    pub local_gid: Ipv6Addr,
    /// Remote port GID.
    pub remote_gid: Ipv6Addr,
    /// Flow label (20 bits).
    pub flow_label: u32,
    /// Packet rate (6 bits).
    pub packet_rate: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Hop limit.
    pub hop_limit: u8,
    /// Service level (4 bits).
    pub sl: u8,
    /// Subnet local.
    pub subnet_local: bool,
    /// Local ACK timeout (5 bits; 4.096 µs × 2^value).
    pub local_ack_timeout: u8,
}

impl Path {
    /// An all-zero path (the alternate path of every rdma_cm REQ).
    pub const NONE: Path = Path {
        local_lid: 0,
        remote_lid: 0,
        local_gid: Ipv6Addr::UNSPECIFIED,
        remote_gid: Ipv6Addr::UNSPECIFIED,
        flow_label: 0,
        packet_rate: 0,
        traffic_class: 0,
        hop_limit: 0,
        sl: 0,
        subnet_local: false,
        local_ack_timeout: 0,
    };

    /// Reads a path whose LIDs start at `at` (52 primary, 96 alternate).
    fn parse(d: &[u8], at: usize) -> Path {
        Path {
            local_lid: get(d, at, 0, 16) as u16,
            remote_lid: get(d, at + 2, 0, 16) as u16,
            local_gid: gid(d, at + 4),
            remote_gid: gid(d, at + 20),
            flow_label: get(d, at + 36, 0, 20) as u32,
            packet_rate: get(d, at + 39, 2, 6) as u8,
            traffic_class: get(d, at + 40, 0, 8) as u8,
            hop_limit: get(d, at + 41, 0, 8) as u8,
            sl: get(d, at + 42, 0, 4) as u8,
            subnet_local: get(d, at + 42, 4, 1) != 0,
            local_ack_timeout: get(d, at + 43, 0, 5) as u8,
        }
    }

    fn emit(&self, d: &mut [u8], at: usize) {
        set(d, at, 0, 16, self.local_lid.into());
        set(d, at + 2, 0, 16, self.remote_lid.into());
        d[at + 4..at + 20].copy_from_slice(&self.local_gid.octets());
        d[at + 20..at + 36].copy_from_slice(&self.remote_gid.octets());
        set(d, at + 36, 0, 20, self.flow_label.into());
        set(d, at + 39, 2, 6, self.packet_rate.into());
        set(d, at + 40, 0, 8, self.traffic_class.into());
        set(d, at + 41, 0, 8, self.hop_limit.into());
        set(d, at + 42, 0, 4, self.sl.into());
        set(d, at + 42, 4, 1, self.subnet_local.into());
        set(d, at + 43, 0, 5, self.local_ack_timeout.into());
    }
}

/// REQ: the active side asks to connect (IBTA table 106).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Req<'a> {
    /// The sender's communication ID.
    pub local_comm_id: u32,
    /// Service ID (rdma_cm: port space << 16 | port, see [`crate::cma::service_id`]).
    pub service_id: u64,
    /// The sender's CA GUID.
    pub local_ca_guid: u64,
    /// Q_Key (UD/RD only; 0 for RC).
    pub local_qkey: u32,
    /// The sender's QP number.
    pub local_qpn: Qpn,
    /// RDMA READ/atomic requests the sender accepts at once (its max_dest_rd_atomic).
    pub responder_resources: u8,
    /// Local EE context (RD only).
    pub local_eecn: u32,
    /// RDMA READ/atomic requests the sender issues at once (its max_rd_atomic).
    pub initiator_depth: u8,
    /// Remote EE context (RD only).
    pub remote_eecn: u32,
    /// How long the passive side may take to answer (5 bits; 4.096 µs × 2^value).
    pub remote_cm_response_timeout: u8,
    /// Transport service type (2 bits: 0 RC, 1 UC, 3 extended).
    pub transport_type: u8,
    /// End-to-end flow control.
    pub end_to_end_flow_control: bool,
    /// The sender's first PSN (its SQ PSN: the passive side's RQ PSN).
    pub starting_psn: Psn,
    /// How long the sender takes to answer (5 bits).
    pub local_cm_response_timeout: u8,
    /// Transport retry count (3 bits).
    pub retry_count: u8,
    /// Partition key.
    pub pkey: PKey,
    /// Path MTU (4 bits, IB encoding: 1 = 256 ... 5 = 4096).
    pub path_mtu: u8,
    /// RD channel exists.
    pub rdc_exists: bool,
    /// RNR retry count (3 bits; 7 = infinite).
    pub rnr_retry_count: u8,
    /// CM retries the sender will make (4 bits).
    pub max_cm_retries: u8,
    /// The sender uses an SRQ.
    pub srq: bool,
    /// Extended transport type (3 bits).
    pub extended_transport_type: u8,
    /// Primary path.
    pub primary: Path,
    /// Alternate path (all zero when there is none).
    pub alternate: Path,
    /// SAP supported.
    pub sap_supported: bool,
    /// Private data (up to 92 bytes; rdma_cm puts its 36-byte header first).
    pub private_data: &'a [u8],
}

/// MRA: "your message arrived, the answer will take longer" (IBTA table 107).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mra<'a> {
    /// The sender's communication ID.
    pub local_comm_id: u32,
    /// The receiver's communication ID (0 when MRAing a REQ).
    pub remote_comm_id: u32,
    /// Which message this acknowledges (2 bits: 0 REQ, 1 REP, 2 LAP).
    pub message_mraed: u8,
    /// How long the answer may take (5 bits; 4.096 µs × 2^value).
    pub service_timeout: u8,
    /// Private data (up to 222 bytes).
    pub private_data: &'a [u8],
}

/// REJ: the connection is refused (IBTA table 108).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rej<'a> {
    /// The sender's communication ID.
    pub local_comm_id: u32,
    /// The receiver's communication ID (0 when rejecting a REQ before assigning one).
    pub remote_comm_id: u32,
    /// Which message is rejected (2 bits: 0 REQ, 1 REP, 2 other).
    pub message_rejected: u8,
    /// Bytes of `ari` that mean something (7 bits).
    pub rejected_info_length: u8,
    /// Why (see [`RejReason`]).
    pub reason: RejReason,
    /// Additional rejection information (up to 72 bytes).
    pub ari: &'a [u8],
    /// Private data (up to 148 bytes).
    pub private_data: &'a [u8],
}

/// REP: the passive side accepts (IBTA table 110).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rep<'a> {
    /// The sender's communication ID.
    pub local_comm_id: u32,
    /// The REQ sender's communication ID.
    pub remote_comm_id: u32,
    /// Q_Key (UD/RD only).
    pub local_qkey: u32,
    /// The sender's QP number.
    pub local_qpn: Qpn,
    /// Local EE context (RD only).
    pub local_eecn: u32,
    /// The sender's first PSN.
    pub starting_psn: Psn,
    /// RDMA READ/atomic requests the sender accepts at once.
    pub responder_resources: u8,
    /// RDMA READ/atomic requests the sender issues at once.
    pub initiator_depth: u8,
    /// Target ACK delay (5 bits).
    pub target_ack_delay: u8,
    /// Failover accepted (2 bits).
    pub failover_accepted: u8,
    /// End-to-end flow control.
    pub end_to_end_flow_control: bool,
    /// RNR retry count (3 bits).
    pub rnr_retry_count: u8,
    /// The sender uses an SRQ.
    pub srq: bool,
    /// The sender's CA GUID.
    pub local_ca_guid: u64,
    /// Private data (up to 196 bytes).
    pub private_data: &'a [u8],
}

/// RTU: the active side is ready (IBTA table 111).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rtu<'a> {
    /// The sender's communication ID.
    pub local_comm_id: u32,
    /// The receiver's communication ID.
    pub remote_comm_id: u32,
    /// Private data (up to 224 bytes).
    pub private_data: &'a [u8],
}

/// DREQ: either side asks to disconnect (IBTA table 112).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Dreq<'a> {
    /// The sender's communication ID.
    pub local_comm_id: u32,
    /// The receiver's communication ID.
    pub remote_comm_id: u32,
    /// The receiver's QP number.
    pub remote_qpn: Qpn,
    /// Private data (up to 220 bytes).
    pub private_data: &'a [u8],
}

/// DREP: the answer to a DREQ (IBTA table 113).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Drep<'a> {
    /// The sender's communication ID.
    pub local_comm_id: u32,
    /// The receiver's communication ID.
    pub remote_comm_id: u32,
    /// Private data (up to 224 bytes).
    pub private_data: &'a [u8],
}

/// A REJ reason (IBTA table 109, numbered as Linux's `enum ib_cm_rej_reason`); unknown values
/// are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RejReason(pub u16);

impl RejReason {
    /// No QP available.
    pub const NO_QP: RejReason = RejReason(1);
    /// No EE context available.
    pub const NO_EEC: RejReason = RejReason(2);
    /// No resources.
    pub const NO_RESOURCES: RejReason = RejReason(3);
    /// Timeout: the REQ or REP was retried out (ARI holds the sender's CA GUID).
    pub const TIMEOUT: RejReason = RejReason(4);
    /// Unsupported request.
    pub const UNSUPPORTED: RejReason = RejReason(5);
    /// Invalid communication ID.
    pub const INVALID_COMM_ID: RejReason = RejReason(6);
    /// Invalid communication instance.
    pub const INVALID_COMM_INSTANCE: RejReason = RejReason(7);
    /// Invalid service ID: nobody listens (what Linux sends when no listener matches).
    pub const INVALID_SERVICE_ID: RejReason = RejReason(8);
    /// Invalid transport service type.
    pub const INVALID_TRANSPORT_TYPE: RejReason = RejReason(9);
    /// Stale connection: the QP or comm ID is still in use.
    pub const STALE_CONN: RejReason = RejReason(10);
    /// Invalid GID.
    pub const INVALID_GID: RejReason = RejReason(12);
    /// Invalid MTU.
    pub const INVALID_MTU: RejReason = RejReason(26);
    /// Insufficient responder resources.
    pub const INSUFFICIENT_RESP_RESOURCES: RejReason = RejReason(27);
    /// Consumer reject: the application refused (rdma_reject).
    pub const CONSUMER_DEFINED: RejReason = RejReason(28);
    /// Invalid RNR retry count.
    pub const INVALID_RNR_RETRY: RejReason = RejReason(29);
    /// Duplicate local comm ID.
    pub const DUPLICATE_LOCAL_COMM_ID: RejReason = RejReason(30);
    /// Invalid class version.
    pub const INVALID_CLASS_VERSION: RejReason = RejReason(31);
}

impl fmt::Display for RejReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            RejReason::NO_QP => "no QP",
            RejReason::NO_EEC => "no EEC",
            RejReason::NO_RESOURCES => "no resources",
            RejReason::TIMEOUT => "timeout",
            RejReason::UNSUPPORTED => "unsupported",
            RejReason::INVALID_COMM_ID => "invalid comm ID",
            RejReason::INVALID_COMM_INSTANCE => "invalid comm instance",
            RejReason::INVALID_SERVICE_ID => "invalid service ID",
            RejReason::INVALID_TRANSPORT_TYPE => "invalid transport type",
            RejReason::STALE_CONN => "stale connection",
            RejReason::INVALID_GID => "invalid GID",
            RejReason::INVALID_MTU => "invalid MTU",
            RejReason::INSUFFICIENT_RESP_RESOURCES => "insufficient responder resources",
            RejReason::CONSUMER_DEFINED => "consumer defined",
            RejReason::INVALID_RNR_RETRY => "invalid RNR retry count",
            RejReason::DUPLICATE_LOCAL_COMM_ID => "duplicate local comm ID",
            RejReason::INVALID_CLASS_VERSION => "invalid class version",
            RejReason(n) => return write!(f, "reason {n}"),
        };
        f.write_str(name)
    }
}

/// A CM message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Message<'a> {
    /// Connection request.
    Req(Req<'a>),
    /// Message receipt acknowledgement.
    Mra(Mra<'a>),
    /// Reject.
    Rej(Rej<'a>),
    /// Reply.
    Rep(Rep<'a>),
    /// Ready to use.
    Rtu(Rtu<'a>),
    /// Disconnection request.
    Dreq(Dreq<'a>),
    /// Disconnection reply.
    Drep(Drep<'a>),
}

impl<'a> Message<'a> {
    /// The attribute ID of this message.
    pub const fn attr_id(&self) -> u16 {
        match self {
            Message::Req(_) => attr::REQ,
            Message::Mra(_) => attr::MRA,
            Message::Rej(_) => attr::REJ,
            Message::Rep(_) => attr::REP,
            Message::Rtu(_) => attr::RTU,
            Message::Dreq(_) => attr::DREQ,
            Message::Drep(_) => attr::DREP,
        }
    }

    /// The message's name as the IBTA writes it.
    pub const fn name(&self) -> &'static str {
        match self {
            Message::Req(_) => "REQ",
            Message::Mra(_) => "MRA",
            Message::Rej(_) => "REJ",
            Message::Rep(_) => "REP",
            Message::Rtu(_) => "RTU",
            Message::Dreq(_) => "DREQ",
            Message::Drep(_) => "DREP",
        }
    }

    /// The sender's communication ID.
    pub const fn local_comm_id(&self) -> u32 {
        match self {
            Message::Req(m) => m.local_comm_id,
            Message::Mra(m) => m.local_comm_id,
            Message::Rej(m) => m.local_comm_id,
            Message::Rep(m) => m.local_comm_id,
            Message::Rtu(m) => m.local_comm_id,
            Message::Dreq(m) => m.local_comm_id,
            Message::Drep(m) => m.local_comm_id,
        }
    }

    /// The receiver's communication ID (0 in a REQ).
    pub const fn remote_comm_id(&self) -> u32 {
        match self {
            Message::Req(_) => 0,
            Message::Mra(m) => m.remote_comm_id,
            Message::Rej(m) => m.remote_comm_id,
            Message::Rep(m) => m.remote_comm_id,
            Message::Rtu(m) => m.remote_comm_id,
            Message::Dreq(m) => m.remote_comm_id,
            Message::Drep(m) => m.remote_comm_id,
        }
    }

    /// The private data (the whole fixed-size field of a parsed message).
    pub const fn private_data(&self) -> &'a [u8] {
        match self {
            Message::Req(m) => m.private_data,
            Message::Mra(m) => m.private_data,
            Message::Rej(m) => m.private_data,
            Message::Rep(m) => m.private_data,
            Message::Rtu(m) => m.private_data,
            Message::Dreq(m) => m.private_data,
            Message::Drep(m) => m.private_data,
        }
    }

    /// Parses a 256-byte CM MAD: checks the common header (base version 1, class CM, class
    /// version 2, method Send) and decodes the message its attribute ID names.
    pub fn parse(mad: &'a [u8]) -> Result<(mad::Repr, Message<'a>)> {
        check_len(mad, MAD_LEN)?;
        let hdr = mad::Repr::parse(&mad::Packet::new_unchecked(mad))?;
        if hdr.mgmt_class != mad::CLASS_CM {
            return Err(Error::BadMad(BadMad::Class(hdr.mgmt_class)));
        }
        if hdr.class_version != mad::CM_CLASS_VERSION {
            return Err(Error::BadMad(BadMad::ClassVersion(hdr.class_version)));
        }
        if hdr.method != mad::method::SEND {
            return Err(Error::BadMad(BadMad::Method(hdr.method)));
        }
        let d = &mad[HEADER_LEN..MAD_LEN];
        let id = |at| get(d, at, 0, 32) as u32;
        let msg = match hdr.attr_id {
            attr::REQ => Message::Req(Req {
                local_comm_id: id(0),
                service_id: get64(d, 8),
                local_ca_guid: get64(d, 16),
                local_qkey: id(28),
                local_qpn: Qpn::new(get(d, 32, 0, 24) as u32),
                responder_resources: d[35],
                local_eecn: get(d, 36, 0, 24) as u32,
                initiator_depth: d[39],
                remote_eecn: get(d, 40, 0, 24) as u32,
                remote_cm_response_timeout: get(d, 43, 0, 5) as u8,
                transport_type: get(d, 43, 5, 2) as u8,
                end_to_end_flow_control: get(d, 43, 7, 1) != 0,
                starting_psn: Psn::new(get(d, 44, 0, 24) as u32),
                local_cm_response_timeout: get(d, 47, 0, 5) as u8,
                retry_count: get(d, 47, 5, 3) as u8,
                pkey: PKey(get(d, 48, 0, 16) as u16),
                path_mtu: get(d, 50, 0, 4) as u8,
                rdc_exists: get(d, 50, 4, 1) != 0,
                rnr_retry_count: get(d, 50, 5, 3) as u8,
                max_cm_retries: get(d, 51, 0, 4) as u8,
                srq: get(d, 51, 4, 1) != 0,
                extended_transport_type: get(d, 51, 5, 3) as u8,
                primary: Path::parse(d, 52),
                alternate: Path::parse(d, 96),
                sap_supported: get(d, 139, 5, 1) != 0,
                private_data: &d[140..140 + private_data_len::REQ],
            }),
            attr::MRA => Message::Mra(Mra {
                local_comm_id: id(0),
                remote_comm_id: id(4),
                message_mraed: get(d, 8, 0, 2) as u8,
                service_timeout: get(d, 9, 0, 5) as u8,
                private_data: &d[10..10 + private_data_len::MRA],
            }),
            attr::REJ => Message::Rej(Rej {
                local_comm_id: id(0),
                remote_comm_id: id(4),
                message_rejected: get(d, 8, 0, 2) as u8,
                rejected_info_length: get(d, 9, 0, 7) as u8,
                reason: RejReason(get(d, 10, 0, 16) as u16),
                ari: &d[12..12 + ARI_LEN],
                private_data: &d[84..84 + private_data_len::REJ],
            }),
            attr::REP => Message::Rep(Rep {
                local_comm_id: id(0),
                remote_comm_id: id(4),
                local_qkey: id(8),
                local_qpn: Qpn::new(get(d, 12, 0, 24) as u32),
                local_eecn: get(d, 16, 0, 24) as u32,
                starting_psn: Psn::new(get(d, 20, 0, 24) as u32),
                responder_resources: d[24],
                initiator_depth: d[25],
                target_ack_delay: get(d, 26, 0, 5) as u8,
                failover_accepted: get(d, 26, 5, 2) as u8,
                end_to_end_flow_control: get(d, 26, 7, 1) != 0,
                rnr_retry_count: get(d, 27, 0, 3) as u8,
                srq: get(d, 27, 3, 1) != 0,
                local_ca_guid: get64(d, 28),
                private_data: &d[36..36 + private_data_len::REP],
            }),
            attr::RTU => Message::Rtu(Rtu {
                local_comm_id: id(0),
                remote_comm_id: id(4),
                private_data: &d[8..8 + private_data_len::RTU],
            }),
            attr::DREQ => Message::Dreq(Dreq {
                local_comm_id: id(0),
                remote_comm_id: id(4),
                remote_qpn: Qpn::new(get(d, 8, 0, 24) as u32),
                private_data: &d[12..12 + private_data_len::DREQ],
            }),
            attr::DREP => Message::Drep(Drep {
                local_comm_id: id(0),
                remote_comm_id: id(4),
                private_data: &d[8..8 + private_data_len::DREP],
            }),
            other => return Err(Error::BadMad(BadMad::Attribute(other))),
        };
        Ok((hdr, msg))
    }

    /// Writes the 256-byte MAD (CM Send with transaction ID `tid`) into `buf`; returns
    /// [`MAD_LEN`]. Reserved fields and unused private data are zero; nothing is written on
    /// error.
    pub fn emit(&self, tid: u64, buf: &mut [u8]) -> Result<usize> {
        check_len(buf, MAD_LEN)?;
        let mut d = [0u8; DATA_LEN];
        self.emit_data(&mut d)?;
        mad::Repr::cm(tid, self.attr_id()).emit(buf)?;
        buf[HEADER_LEN..MAD_LEN].copy_from_slice(&d);
        Ok(MAD_LEN)
    }

    fn emit_data(&self, d: &mut [u8]) -> Result<()> {
        let id = |d: &mut [u8], at, v: u32| set(d, at, 0, 32, v.into());
        match self {
            Message::Req(m) => {
                if m.local_qpn.value() > 0xff_ffff {
                    return Err(Error::FieldOverflow);
                }
                put_private(d, 140, private_data_len::REQ, m.private_data)?;
                id(d, 0, m.local_comm_id);
                set64(d, 8, m.service_id);
                set64(d, 16, m.local_ca_guid);
                id(d, 28, m.local_qkey);
                set(d, 32, 0, 24, m.local_qpn.value().into());
                d[35] = m.responder_resources;
                set(d, 36, 0, 24, m.local_eecn.into());
                d[39] = m.initiator_depth;
                set(d, 40, 0, 24, m.remote_eecn.into());
                set(d, 43, 0, 5, m.remote_cm_response_timeout.into());
                set(d, 43, 5, 2, m.transport_type.into());
                set(d, 43, 7, 1, m.end_to_end_flow_control.into());
                set(d, 44, 0, 24, m.starting_psn.value().into());
                set(d, 47, 0, 5, m.local_cm_response_timeout.into());
                set(d, 47, 5, 3, m.retry_count.into());
                set(d, 48, 0, 16, m.pkey.0.into());
                set(d, 50, 0, 4, m.path_mtu.into());
                set(d, 50, 4, 1, m.rdc_exists.into());
                set(d, 50, 5, 3, m.rnr_retry_count.into());
                set(d, 51, 0, 4, m.max_cm_retries.into());
                set(d, 51, 4, 1, m.srq.into());
                set(d, 51, 5, 3, m.extended_transport_type.into());
                m.primary.emit(d, 52);
                m.alternate.emit(d, 96);
                set(d, 139, 5, 1, m.sap_supported.into());
            }
            Message::Mra(m) => {
                put_private(d, 10, private_data_len::MRA, m.private_data)?;
                id(d, 0, m.local_comm_id);
                id(d, 4, m.remote_comm_id);
                set(d, 8, 0, 2, m.message_mraed.into());
                set(d, 9, 0, 5, m.service_timeout.into());
            }
            Message::Rej(m) => {
                put_private(d, 84, private_data_len::REJ, m.private_data)?;
                put_private(d, 12, ARI_LEN, m.ari)?;
                id(d, 0, m.local_comm_id);
                id(d, 4, m.remote_comm_id);
                set(d, 8, 0, 2, m.message_rejected.into());
                set(d, 9, 0, 7, m.rejected_info_length.into());
                set(d, 10, 0, 16, m.reason.0.into());
            }
            Message::Rep(m) => {
                if m.local_qpn.value() > 0xff_ffff {
                    return Err(Error::FieldOverflow);
                }
                put_private(d, 36, private_data_len::REP, m.private_data)?;
                id(d, 0, m.local_comm_id);
                id(d, 4, m.remote_comm_id);
                id(d, 8, m.local_qkey);
                set(d, 12, 0, 24, m.local_qpn.value().into());
                set(d, 16, 0, 24, m.local_eecn.into());
                set(d, 20, 0, 24, m.starting_psn.value().into());
                d[24] = m.responder_resources;
                d[25] = m.initiator_depth;
                set(d, 26, 0, 5, m.target_ack_delay.into());
                set(d, 26, 5, 2, m.failover_accepted.into());
                set(d, 26, 7, 1, m.end_to_end_flow_control.into());
                set(d, 27, 0, 3, m.rnr_retry_count.into());
                set(d, 27, 3, 1, m.srq.into());
                set64(d, 28, m.local_ca_guid);
            }
            Message::Rtu(m) => {
                put_private(d, 8, private_data_len::RTU, m.private_data)?;
                id(d, 0, m.local_comm_id);
                id(d, 4, m.remote_comm_id);
            }
            Message::Dreq(m) => {
                put_private(d, 12, private_data_len::DREQ, m.private_data)?;
                id(d, 0, m.local_comm_id);
                id(d, 4, m.remote_comm_id);
                set(d, 8, 0, 24, m.remote_qpn.value().into());
            }
            Message::Drep(m) => {
                put_private(d, 8, private_data_len::DREP, m.private_data)?;
                id(d, 0, m.local_comm_id);
                id(d, 4, m.remote_comm_id);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_fields_are_msb_first_from_their_byte() {
        let mut d = [0u8; 8];
        set(&mut d, 1, 5, 2, 0b11);
        assert_eq!(d[1], 0b0000_0110);
        set(&mut d, 2, 0, 24, 0x12_3456);
        assert_eq!(&d[2..5], &[0x12, 0x34, 0x56]);
        set(&mut d, 5, 0, 20, 0xabcde);
        assert_eq!(&d[5..8], &[0xab, 0xcd, 0xe0]);
        assert_eq!(get(&d, 5, 0, 20), 0xabcde);
        assert_eq!(get(&d, 1, 5, 2), 3);
        // Neighbouring bits are untouched.
        let mut e = [0xffu8; 2];
        set(&mut e, 0, 3, 2, 0);
        assert_eq!(e, [0b1110_0111, 0xff]);
    }

    #[test]
    fn private_data_too_long_writes_nothing() {
        let m = Message::Rtu(Rtu {
            local_comm_id: 1,
            remote_comm_id: 2,
            private_data: &[1; 225],
        });
        let mut buf = [0xaau8; MAD_LEN];
        assert_eq!(
            m.emit(1, &mut buf),
            Err(Error::PrivateDataTooLong { max: 224, got: 225 })
        );
        assert!(buf.iter().all(|&b| b == 0xaa));
    }

    #[test]
    fn other_classes_methods_and_attributes_are_typed_errors() {
        let mut mad = [0u8; MAD_LEN];
        Message::Drep(Drep {
            local_comm_id: 1,
            remote_comm_id: 2,
            private_data: &[],
        })
        .emit(5, &mut mad)
        .unwrap();
        let mut m = mad;
        m[1] = 0x81;
        assert_eq!(
            Message::parse(&m).unwrap_err(),
            Error::BadMad(BadMad::Class(0x81))
        );
        let mut m = mad;
        m[3] = 0x81;
        assert_eq!(
            Message::parse(&m).unwrap_err(),
            Error::BadMad(BadMad::Method(0x81))
        );
        let mut m = mad;
        m[17] = 0x19; // LAP
        assert_eq!(
            Message::parse(&m).unwrap_err(),
            Error::BadMad(BadMad::Attribute(0x19))
        );
        assert!(Message::parse(&mad[..255]).is_err());
    }
}
