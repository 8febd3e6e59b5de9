//! What several tests set up the same way: an RC QP in INIT and its move to RTS towards a peer.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};

use rxe_transport::device::{CqId, Device, QpInit, RcConnect};
use rxe_transport::{Access, Mtu, Pd, QpAttr, QpState};
use rxe_wire::{Psn, Qpn};

/// 127.0.0.`last`.
pub(crate) fn lo(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// An RC QP on `cq` in INIT that allows remote READ and WRITE.
pub(crate) fn rc_qp(c: &mut Device, pd: Pd, cq: CqId) -> Qpn {
    let q = c.create_qp(&QpInit::rc(pd, cq)).unwrap();
    c.modify_qp(
        q,
        &QpAttr {
            state: Some(QpState::Init),
            pkey_index: Some(0),
            port: Some(1),
            access: Some(Access::REMOTE_WRITE | Access::REMOTE_READ),
            ..QpAttr::default()
        },
    )
    .unwrap();
    q
}

/// A 1 MiB region at `buf` (local write, remote read and write), a 256-entry CQ and an RC QP in
/// INIT on it: `(qpn, cq, lkey)`.
pub(crate) fn rc_endpoint(c: &mut Device, buf: u64) -> (Qpn, CqId, u32) {
    let pd = c.alloc_pd().expect("pd");
    let mr = c
        .reg_mr(
            pd,
            buf,
            1 << 20,
            Access::LOCAL_WRITE | Access::REMOTE_WRITE | Access::REMOTE_READ,
        )
        .unwrap();
    let cq = c.create_cq(256).expect("cq");
    (rc_qp(c, pd, cq), cq, mr.lkey)
}

/// How [`connect`] sets a QP up.
pub(crate) struct Path {
    /// This side's address and the peer's.
    pub(crate) me: IpAddr,
    pub(crate) peer: IpAddr,
    /// The peer's QP.
    pub(crate) dest: Qpn,
    /// The PSN each side starts from (the peer's start is this side's expected PSN).
    pub(crate) my_psn: u32,
    pub(crate) peer_psn: u32,
    pub(crate) mtu: Mtu,
    /// Local ACK timeout exponent.
    pub(crate) timeout: u8,
}

/// INIT → RTR → RTS towards `p.dest` (retry_cnt and rnr_retry 7, 4 READs outstanding).
pub(crate) fn connect(c: &mut Device, q: Qpn, p: &Path) {
    let mut rc = RcConnect::new(
        p.me,
        p.peer,
        p.dest,
        Psn::new(p.my_psn),
        Psn::new(p.peer_psn),
    );
    rc.mtu = p.mtu;
    rc.timeout = p.timeout;
    c.connect_rc(q, &rc).unwrap();
}
