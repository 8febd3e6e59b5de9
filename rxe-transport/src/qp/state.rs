//! QP states and `modify_qp`: which transitions exist and which attributes each one requires or
//! allows (IBTA 11.2.4.2 "Modify Queue Pair", table 91; the same table as Linux's
//! `ib_modify_qp_is_ok`).

use core::fmt;

use bitflags::bitflags;

/// The states of a queue pair (IBTA 10.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QpState {
    /// Just created or reset: nothing is processed.
    Reset,
    /// Initialized: receive requests may be posted, nothing is processed.
    Init,
    /// Ready to receive: the responder runs.
    Rtr,
    /// Ready to send: requester and responder run.
    Rts,
    /// Send queue drain: no new send requests are started.
    Sqd,
    /// Send queue error (UC/UD only).
    Sqe,
    /// Error: every request completes with `WR_FLUSH_ERR`.
    Err,
}

impl fmt::Display for QpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            QpState::Reset => "RESET",
            QpState::Init => "INIT",
            QpState::Rtr => "RTR",
            QpState::Rts => "RTS",
            QpState::Sqd => "SQD",
            QpState::Sqe => "SQE",
            QpState::Err => "ERR",
        })
    }
}

/// Transport service of a QP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QpType {
    /// Reliable connection.
    Rc,
    /// Unreliable connection.
    Uc,
    /// Unreliable datagram.
    Ud,
}

bitflags! {
    /// Which attributes a `modify_qp` call sets (`IBV_QP_*`, same bits).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct AttrMask: u32 {
        /// `state`.
        const STATE = 1;
        /// `cur_state`.
        const CUR_STATE = 1 << 1;
        /// `en_sqd_async_notify`.
        const EN_SQD_ASYNC_NOTIFY = 1 << 2;
        /// `access`.
        const ACCESS_FLAGS = 1 << 3;
        /// `pkey_index`.
        const PKEY_INDEX = 1 << 4;
        /// `port`.
        const PORT = 1 << 5;
        /// `qkey`.
        const QKEY = 1 << 6;
        /// `av`.
        const AV = 1 << 7;
        /// `path_mtu`.
        const PATH_MTU = 1 << 8;
        /// `timeout`.
        const TIMEOUT = 1 << 9;
        /// `retry_cnt`.
        const RETRY_CNT = 1 << 10;
        /// `rnr_retry`.
        const RNR_RETRY = 1 << 11;
        /// `rq_psn`.
        const RQ_PSN = 1 << 12;
        /// `max_rd_atomic`.
        const MAX_QP_RD_ATOMIC = 1 << 13;
        /// Alternate path (not supported; never allowed).
        const ALT_PATH = 1 << 14;
        /// `min_rnr_timer`.
        const MIN_RNR_TIMER = 1 << 15;
        /// `sq_psn`.
        const SQ_PSN = 1 << 16;
        /// `max_dest_rd_atomic`.
        const MAX_DEST_RD_ATOMIC = 1 << 17;
        /// Path migration state (not supported; never allowed).
        const PATH_MIG_STATE = 1 << 18;
        /// `dest_qp`.
        const DEST_QPN = 1 << 20;
    }
}

/// Attributes a transition requires and allows, or `None` if it does not exist.
pub(crate) fn transition(ty: QpType, cur: QpState, next: QpState) -> Option<(AttrMask, AttrMask)> {
    use QpState::*;
    const NONE: AttrMask = AttrMask::empty();
    let m = |a: AttrMask, b: AttrMask| Some((a, b));
    // Every state may go to RESET or ERR with no attributes.
    if matches!(next, Reset | Err) {
        return m(NONE, NONE);
    }
    let rc = ty == QpType::Rc;
    let ud = ty == QpType::Ud;
    let init_attrs = if ud {
        AttrMask::PKEY_INDEX | AttrMask::PORT | AttrMask::QKEY
    } else {
        AttrMask::PKEY_INDEX | AttrMask::PORT | AttrMask::ACCESS_FLAGS
    };
    let rts_opt = if ud {
        AttrMask::CUR_STATE | AttrMask::QKEY
    } else if rc {
        AttrMask::CUR_STATE | AttrMask::ACCESS_FLAGS | AttrMask::MIN_RNR_TIMER
    } else {
        AttrMask::CUR_STATE | AttrMask::ACCESS_FLAGS
    };
    match (cur, next) {
        (Reset, Init) => m(init_attrs, NONE),
        (Init, Init) => m(NONE, init_attrs),
        (Init, Rtr) => {
            if ud {
                m(NONE, AttrMask::PKEY_INDEX | AttrMask::QKEY)
            } else {
                let base =
                    AttrMask::AV | AttrMask::PATH_MTU | AttrMask::DEST_QPN | AttrMask::RQ_PSN;
                let req = if rc {
                    base | AttrMask::MAX_DEST_RD_ATOMIC | AttrMask::MIN_RNR_TIMER
                } else {
                    base
                };
                m(req, AttrMask::ACCESS_FLAGS | AttrMask::PKEY_INDEX)
            }
        }
        (Rtr, Rts) => {
            if rc {
                let req = AttrMask::SQ_PSN
                    | AttrMask::TIMEOUT
                    | AttrMask::RETRY_CNT
                    | AttrMask::RNR_RETRY
                    | AttrMask::MAX_QP_RD_ATOMIC;
                m(req, rts_opt)
            } else {
                m(AttrMask::SQ_PSN, rts_opt)
            }
        }
        (Rts, Rts) | (Sqd, Rts) => m(NONE, rts_opt),
        (Rts, Sqd) => m(NONE, AttrMask::EN_SQD_ASYNC_NOTIFY),
        (Sqd, Sqd) => {
            let opt = if ud {
                AttrMask::PKEY_INDEX | AttrMask::QKEY
            } else if rc {
                AttrMask::PORT
                    | AttrMask::AV
                    | AttrMask::ACCESS_FLAGS
                    | AttrMask::PKEY_INDEX
                    | AttrMask::MIN_RNR_TIMER
                    | AttrMask::TIMEOUT
                    | AttrMask::RETRY_CNT
                    | AttrMask::RNR_RETRY
                    | AttrMask::MAX_QP_RD_ATOMIC
                    | AttrMask::MAX_DEST_RD_ATOMIC
            } else {
                AttrMask::AV | AttrMask::ACCESS_FLAGS | AttrMask::PKEY_INDEX
            };
            m(NONE, opt)
        }
        (Sqe, Rts) if !rc => m(
            NONE,
            if ud {
                AttrMask::CUR_STATE | AttrMask::QKEY
            } else {
                AttrMask::CUR_STATE | AttrMask::ACCESS_FLAGS
            },
        ),
        _ => None,
    }
}
