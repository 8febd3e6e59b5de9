//! The attributes `modify_qp` sets, the address vector, and the path MTU.

use core::net::IpAddr;

use rxe_wire::{PKey, Psn, QKey, Qpn};

use super::state::{AttrMask, QpState};
use crate::verbs::Access;

/// Path MTU (`enum ibv_mtu`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mtu {
    /// 256 bytes (`IBV_MTU_256` = 1).
    M256 = 1,
    /// 512 bytes.
    M512 = 2,
    /// 1024 bytes.
    M1024 = 3,
    /// 2048 bytes.
    M2048 = 4,
    /// 4096 bytes.
    M4096 = 5,
}

impl Mtu {
    /// The MTU in bytes.
    pub const fn bytes(self) -> u32 {
        256 << (self as u32 - 1)
    }
    /// The largest IB MTU that fits an Ethernet MTU, as Linux `rxe_set_mtu` picks it (the netdev
    /// MTU less 80 bytes of headers; 1500 gives 1024).
    pub const fn for_netdev_mtu(netdev_mtu: u32) -> Mtu {
        let room = netdev_mtu.saturating_sub(80);
        if room >= 4096 {
            Mtu::M4096
        } else if room >= 2048 {
            Mtu::M2048
        } else if room >= 1024 {
            Mtu::M1024
        } else if room >= 512 {
            Mtu::M512
        } else {
            Mtu::M256
        }
    }
}

/// Where the QP's packets go: the RoCEv2 address vector (GIDs as IP addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressVector {
    /// Our GID (source address). Must be the same IP version as `dgid`.
    pub sgid: IpAddr,
    /// The peer's GID.
    pub dgid: IpAddr,
    /// IPv4 TTL / IPv6 hop limit.
    pub hop_limit: u8,
    /// IPv4 TOS / IPv6 traffic class.
    pub traffic_class: u8,
    /// IPv6 flow label (20 bits); also seeds the UDP source port.
    pub flow_label: u32,
    /// UDP source port; `None` derives it as Linux does (`rdma_get_udp_sport`).
    pub udp_sport: Option<u16>,
}

/// The UDP source port Linux derives for a connected QP (`rdma_get_udp_sport`): from the flow
/// label, or, when that is 0, from a hash of the two QP numbers.
pub fn udp_sport(flow_label: u32, lqpn: Qpn, rqpn: Qpn) -> u16 {
    let mut fl = flow_label & 0x000f_ffff;
    if fl == 0 {
        let v = u64::from(lqpn.value()) * u64::from(rqpn.value());
        let v = v ^ (v >> 20) ^ (v >> 40);
        fl = (v & 0x000f_ffff) as u32;
    }
    (((fl & 0x3fff) ^ ((fl & 0xf_c000) >> 14)) | 0xc000) as u16
}

/// Attributes for [`Qp::modify`](super::Qp::modify): set fields are the `attr_mask` of verbs.
///
/// `Default` sets nothing; set `state` and what the transition needs (see IBTA table 91), e.g.
/// INIT→RTR for RC: `av`, `path_mtu`, `dest_qp`, `rq_psn`, `max_dest_rd_atomic`, `min_rnr_timer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct QpAttr {
    /// The state to move to.
    pub state: Option<QpState>,
    /// The state the caller believes the QP is in.
    pub cur_state: Option<QpState>,
    /// Partition key index (only 0, the default P_Key 0xffff, exists).
    pub pkey_index: Option<u16>,
    /// Port number (only 1 exists).
    pub port: Option<u8>,
    /// Remote access the responder allows (REMOTE_WRITE, REMOTE_READ, REMOTE_ATOMIC).
    pub access: Option<Access>,
    /// Q_Key (UD).
    pub qkey: Option<QKey>,
    /// Address vector of the peer.
    pub av: Option<AddressVector>,
    /// Path MTU.
    pub path_mtu: Option<Mtu>,
    /// Local ACK timeout exponent (0-31; 0 = no timer).
    pub timeout: Option<u8>,
    /// Transport retries (0-7).
    pub retry_cnt: Option<u8>,
    /// RNR retries (0-7; 7 = infinite).
    pub rnr_retry: Option<u8>,
    /// First PSN the responder expects.
    pub rq_psn: Option<Psn>,
    /// Outstanding READ/atomic requests this QP may issue (1-16).
    pub max_rd_atomic: Option<u8>,
    /// RNR NAK timer code this QP's responder sends (0-31).
    pub min_rnr_timer: Option<u8>,
    /// First PSN the requester sends.
    pub sq_psn: Option<Psn>,
    /// Outstanding READ/atomic requests this QP accepts (1-16).
    pub max_dest_rd_atomic: Option<u8>,
    /// Raise an event when the SQ has drained (SQD).
    pub en_sqd_async_notify: Option<bool>,
    /// Destination QP number.
    pub dest_qp: Option<Qpn>,
}

impl QpAttr {
    /// The verbs attribute mask of the fields that are set.
    pub fn mask(&self) -> AttrMask {
        let mut m = AttrMask::empty();
        let mut set = |on: bool, bit: AttrMask| m.set(bit, on);
        set(self.state.is_some(), AttrMask::STATE);
        set(self.cur_state.is_some(), AttrMask::CUR_STATE);
        set(self.pkey_index.is_some(), AttrMask::PKEY_INDEX);
        set(self.port.is_some(), AttrMask::PORT);
        set(self.access.is_some(), AttrMask::ACCESS_FLAGS);
        set(self.qkey.is_some(), AttrMask::QKEY);
        set(self.av.is_some(), AttrMask::AV);
        set(self.path_mtu.is_some(), AttrMask::PATH_MTU);
        set(self.timeout.is_some(), AttrMask::TIMEOUT);
        set(self.retry_cnt.is_some(), AttrMask::RETRY_CNT);
        set(self.rnr_retry.is_some(), AttrMask::RNR_RETRY);
        set(self.rq_psn.is_some(), AttrMask::RQ_PSN);
        set(self.max_rd_atomic.is_some(), AttrMask::MAX_QP_RD_ATOMIC);
        set(self.min_rnr_timer.is_some(), AttrMask::MIN_RNR_TIMER);
        set(self.sq_psn.is_some(), AttrMask::SQ_PSN);
        set(
            self.max_dest_rd_atomic.is_some(),
            AttrMask::MAX_DEST_RD_ATOMIC,
        );
        set(
            self.en_sqd_async_notify.is_some(),
            AttrMask::EN_SQD_ASYNC_NOTIFY,
        );
        set(self.dest_qp.is_some(), AttrMask::DEST_QPN);
        m
    }
}

/// The attributes in force (what `query_qp` reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Attrs {
    /// P_Key in use.
    pub pkey: PKey,
    /// Remote access allowed.
    pub access: Access,
    /// Q_Key (UD).
    pub qkey: QKey,
    /// Peer address.
    pub av: Option<AddressVector>,
    /// Path MTU.
    pub path_mtu: Mtu,
    /// Local ACK timeout exponent.
    pub timeout: u8,
    /// Transport retries.
    pub retry_cnt: u8,
    /// RNR retries.
    pub rnr_retry: u8,
    /// RNR NAK timer code.
    pub min_rnr_timer: u8,
    /// Outstanding READ/atomic requests issued.
    pub max_rd_atomic: u8,
    /// Outstanding READ/atomic requests accepted.
    pub max_dest_rd_atomic: u8,
    /// Destination QP.
    pub dest_qp: Qpn,
    /// Raise an event when the SQ drains.
    pub en_sqd_async_notify: bool,
}

impl Default for Attrs {
    fn default() -> Attrs {
        Attrs {
            pkey: PKey::DEFAULT,
            access: Access::empty(),
            qkey: QKey(0),
            av: None,
            // Linux: a QP's path MTU is 256 until modify_qp sets it.
            path_mtu: Mtu::M256,
            timeout: 0,
            retry_cnt: 0,
            rnr_retry: 0,
            min_rnr_timer: 0,
            max_rd_atomic: 0,
            max_dest_rd_atomic: 0,
            dest_qp: Qpn::new(0),
            en_sqd_async_notify: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtu_follows_rxe_set_mtu() {
        assert_eq!(Mtu::for_netdev_mtu(1500), Mtu::M1024);
        assert_eq!(Mtu::for_netdev_mtu(9000), Mtu::M4096);
        assert_eq!(Mtu::for_netdev_mtu(576), Mtu::M256);
        assert_eq!(Mtu::M4096.bytes(), 4096);
        assert_eq!(Mtu::M256.bytes(), 256);
    }

    #[test]
    fn udp_sport_matches_linux_captures() {
        // From the captures: ibv_rc_pingpong between QPs 0x11 and 0x11 uses port 49441.
        assert_eq!(udp_sport(0, Qpn::new(0x11), Qpn::new(0x11)), 49441);
        // A flow label decides on its own.
        assert_eq!(
            udp_sport(0x12345, Qpn::new(1), Qpn::new(2)),
            0xc000 | (0x2345 ^ 0x4)
        );
    }
}
