//! # rxe-transport
//!
//! The RoCEv2 reliable-connection transport of Soft-RoCE, sans-IO and `no_std`: the QP state
//! machine, requester, responder and completer, with the semantics a Linux rxe peer or a hardware
//! RNIC expects. On the wire it replays Linux rxe's own captures byte for byte.
//!
//! Sans-IO in quinn-proto's shape: a [`Qp`] takes verbs calls, received packets
//! ([`Qp::handle_packet`]) and the time; it gives packets to send ([`Qp::poll_transmit`]),
//! completions and the next timer deadline ([`Qp::poll_timeout`]). It never reads a clock, opens
//! a socket, allocates or draws a random number, so a host can run it anywhere: a userspace
//! process, a kernel-style driver, NIC firmware, or a simulated network in a test. Memory is
//! reached through the [`Memory`] trait the host implements; key lookup, protection domain,
//! access and bounds are checked in one place, [`memory::check`].
//!
//! Capacities are fixed when the QP is created (`Qp<SQ, RQ>`); nothing grows at run time.
//!
//! Beside the QPs: shared receive queues ([`Srq`]), memory windows and fast registration
//! ([`memory::bind_mw`], [`memory::reg_mr`]), the connection manager ([`cm::Cm`], rdma_cm on
//! the wire), and, with the `alloc` feature, the device core ([`device::Device`]) that hosts
//! (`rxe-user`, `rxe-kernel`) wrap: object tables, keys, QPNs, QP1, demux and scheduling.
//!
//! ## Example: a SEND between two QPs, in memory
//!
//! ```
//! use std::net::{IpAddr, Ipv4Addr};
//! use rxe_transport::*;
//! use rxe_wire::{Checks, Psn, Qpn, RoceV2Packet};
//!
//! /// One registered region (key 1) per side.
//! struct Buf(Vec<u8>);
//! impl Memory for Buf {
//!     fn lookup(&self, key: u32) -> Option<MrInfo> {
//!         (key == 1).then(|| MrInfo::region(Pd(1), 0, self.0.len() as u64, Access::LOCAL_WRITE))
//!     }
//!     fn read(&self, _: u32, addr: u64, out: &mut [u8]) {
//!         out.copy_from_slice(&self.0[addr as usize..addr as usize + out.len()]);
//!     }
//!     fn write(&mut self, _: u32, addr: u64, data: &[u8]) {
//!         self.0[addr as usize..addr as usize + data.len()].copy_from_slice(data);
//!     }
//!     fn atomic(&mut self, _: u32, _: u64, _: AtomicOp) -> u64 { 0 }
//!     fn invalidate(&mut self, _: u32, _: Pd) -> Result<(), AccessError> { Ok(()) }
//! }
//!
//! let ips = [Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)];
//! let mut qps: Vec<Qp<16, 16>> = Vec::new();
//! for i in 0..2 {
//!     let mut qp = Qp::new(QpConfig::rc(Qpn::new(0x11 + i as u32), Pd(1))).unwrap();
//!     qp.modify(&QpAttr { state: Some(QpState::Init), pkey_index: Some(0), port: Some(1),
//!                         access: Some(Access::empty()), ..Default::default() })?;
//!     let av = AddressVector { sgid: IpAddr::V4(ips[i]), dgid: IpAddr::V4(ips[1 - i]), hop_limit: 64,
//!                              traffic_class: 0, flow_label: 0, udp_sport: None };
//!     qp.modify(&QpAttr { state: Some(QpState::Rtr), av: Some(av), path_mtu: Some(Mtu::M1024),
//!                         dest_qp: Some(Qpn::new(0x12 - i as u32)), rq_psn: Some(Psn::new(100)),
//!                         max_dest_rd_atomic: Some(1), min_rnr_timer: Some(12), ..Default::default() })?;
//!     qp.modify(&QpAttr { state: Some(QpState::Rts), sq_psn: Some(Psn::new(100)), timeout: Some(14),
//!                         retry_cnt: Some(7), rnr_retry: Some(7), max_rd_atomic: Some(1),
//!                         ..Default::default() })?;
//!     qps.push(qp);
//! }
//! let (mut a_mem, mut b_mem) = (Buf(b"hello, rxe".to_vec()), Buf(vec![0; 64]));
//! let (a, b) = qps.split_at_mut(1);
//! let (a, b) = (&mut a[0], &mut b[0]);
//! b.post_recv(RecvWr::new(7, Sge { addr: 0, length: 64, lkey: 1 })).unwrap();
//! let send = SendWr::new(1, WrOpcode::Send, Some(Sge { addr: 0, length: 10, lkey: 1 }), SendFlags::SIGNALED);
//! a.post_send(send, &a_mem).unwrap();
//!
//! // The host's job: move packets (here in memory) and keep time.
//! let now = Instant::from_nanos(0);
//! let mut buf = vec![0u8; a.max_packet_len()];
//! while let Some(n) = a.poll_transmit(now, &mut buf, &mut a_mem).unwrap() {
//!     let pkt = RoceV2Packet::new_checked(&buf[..n], &Checks::ALL).unwrap(); // ICRC verified
//!     b.handle_packet(now, &pkt, &mut b_mem);
//! }
//! while let Some(n) = b.poll_transmit(now, &mut buf, &mut b_mem).unwrap() {
//!     let ack = RoceV2Packet::new_checked(&buf[..n], &Checks::ALL).unwrap();
//!     a.handle_packet(now, &ack, &mut a_mem);
//! }
//! assert_eq!(&b_mem.0[..10], b"hello, rxe");
//! assert_eq!(b.poll_recv_completion().unwrap().byte_len, 10);
//! assert_eq!(a.poll_send_completion().unwrap().status, WcStatus::Success);
//! # Ok::<(), ModifyQpError>(())
//! ```
//!
//! ## What is implemented (RC)
//!
//! SEND (with immediate, with invalidate), RDMA WRITE (with immediate), RDMA READ, COMPARE & SWAP,
//! FETCH & ADD, ATOMIC WRITE, FLUSH, LOCAL_INV; scatter/gather lists, inline data, signaled and
//! unsignaled requests, fences, solicited events; segmentation to the path MTU; AckReq on the
//! last packet and on a middle packet after 65 without one (as Linux); at most 128 unacknowledged PSNs and `max_rd_atomic` READ/atomic
//! requests outstanding; go-back-N on timeout or PSN-sequence NAK with `retry_cnt` (7 retries
//! forever, as Linux, unless [`QpConfig::retry_cnt_7_is_infinite`] is false); RNR NAK with the
//! IBTA timer table and `rnr_retry` (7 = forever); responder duplicate handling (re-ACK, READ
//! replay from the requested PSN, atomic and FLUSH results replayed, never re-executed); error
//! completions with the verbs statuses and flush to `WR_FLUSH_ERR`; counters named as Linux rxe's.
//!
//! ## UC
//!
//! SEND and RDMA WRITE (with immediate data) over unreliable connections: no AckReq, no ACKs,
//! no timers; a request completes when its last packet is sent. The responder drops the rest of
//! a message after a PSN gap or any error (no NAKs; the receive request is reused) and starts
//! over at the next FIRST or ONLY packet, as Linux does.
//!
//! ## UD
//!
//! SEND (with immediate) of up to one port MTU to an address handle, remote QPN and Q_Key given
//! per request ([`UdDest`]; a Q_Key with bit 31 set sends the QP's own). Datagrams with another
//! Q_Key, or with no receive posted, are dropped; a received datagram lands after the 40-byte
//! GRH area, which holds the IPv4 header in its last 20 bytes (or the whole IPv6 header), as
//! verbs shows it. SRQ, memory windows and QP1/CM come next.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    clippy::std_instead_of_core,
    clippy::alloc_instead_of_core
)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod cm;
pub mod counters;
#[cfg(feature = "alloc")]
pub mod device;
pub mod memory;
pub mod qp;
pub mod srq;
pub mod time;
pub mod verbs;

pub use counters::Counters;
pub use memory::{
    AccessError, AtomicOp, KeyKind, Memory, MrInfo, MwBind, MwBinding, MwInfo, MwType, Pd,
};
pub use qp::state::{AttrMask, QpState, QpType};
pub use qp::{
    AddressVector, Attrs, BufferTooSmall, CreateQpError, ModifyQpError, Mtu, PostRecvError,
    PostSendError, Qp, QpAttr, QpConfig, QpEvent, GRH_LEN,
};
pub use srq::{Srq, SrqEvent};
pub use time::Instant;
pub use verbs::{
    Access, RecvWr, Remote, SendFlags, SendWr, SgList, Sge, UdDest, WcFlags, WcOpcode, WcStatus,
    WorkCompletion, WrOpcode,
};
