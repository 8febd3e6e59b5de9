//! # rxe-transport
//!
//! The RoCEv2 reliable-connection transport of Soft-RoCE, sans-IO and `no_std`.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    clippy::std_instead_of_core,
    clippy::alloc_instead_of_core
)]

pub mod counters;
pub mod memory;
pub mod qp;
pub mod time;
pub mod verbs;

pub use counters::Counters;
pub use memory::{AccessError, AtomicOp, Memory, MrInfo, Pd};
pub use qp::state::{AttrMask, QpState, QpType};
pub use qp::{
    AddressVector, Attrs, BufferTooSmall, CreateQpError, ModifyQpError, Mtu, PostRecvError,
    PostSendError, Qp, QpAttr, QpConfig, QpEvent,
};
pub use time::Instant;
pub use verbs::{
    Access, RecvWr, Remote, SendFlags, SendWr, SgList, Sge, WcFlags, WcOpcode, WcStatus,
    WorkCompletion, WrOpcode,
};
