//! # rxe-kernel
//!
//! The Soft-RoCE device as a kernel module or NIC firmware hosts it: no sockets, no threads, no
//! clock of its own. The host has a network device, a timer and a C toolchain; this crate gives
//! it the whole device on top of `rxe-transport`'s device core (the same core `rxe-user`
//! runs on a UDP socket).
//!
//! What it has:
//! - [`netdev`]: the trait the host implements for its network device.
//! - [`tx_control`]: the transmission control of the original Soft-RoCE port, `none`,
//!   `watermark` and `bandwidth`, set per interface with its module-parameter strings
//!   (`control_method = "ni1 watermark"`, `control_value = "ni1 45000"`), and the gate that
//!   holds transmission back.
//! - [`port`]: one port on a netdev: frames in (Ethernet → IP → UDP 4791 → the core's parse,
//!   ICRC and demux, every drop counted by reason) and frames out (neighbour resolution,
//!   Ethernet, transmission control, the NIC; a frame the NIC refuses waits, it is never
//!   dropped), timers driven by the host's `poll(now)`.
//!
//! - [`link`]: ports added and removed with `rdma link add rxe0 type rxe netdev eth0` /
//!   `rdma link delete rxe0`, or the original module parameters (`add` = `eth0`, `remove` =
//!   `rxe0`).
//!
//! The device core (PD, MR, CQ, QP, SRQ and AH pools with their limits, QPN and key allocation,
//! demultiplexing, round-robin scheduling) is `rxe-transport`'s, the same `rxe-user` runs.
//! C hosts use all of this through `bindings/c` (`rxe.h`). A port sends from the first address
//! its netdev had when it was added (IPv4 first); addresses added later are GIDs it answers on.
//!
//! ```
//! use rxe_kernel::tx_control::{ControlMethod, TxControls};
//!
//! let mut c = TxControls::default();
//! c.set_method("ni1 watermark").unwrap();
//! c.set_value("ni1 45000").unwrap();
//! assert_eq!(c.get("ni1").method, ControlMethod::Watermark);
//! assert_eq!(c.get("ni1").value, 45000);
//! // A bad string changes nothing and says why.
//! assert!(c.set_method("ni1 fastest").is_err());
//! assert_eq!(c.get("ni1").method, ControlMethod::Watermark);
//! ```
#![no_std]
#![warn(clippy::std_instead_of_core, clippy::alloc_instead_of_core)]

extern crate alloc;

pub mod link;
pub mod netdev;
pub mod port;
pub mod tx_control;
