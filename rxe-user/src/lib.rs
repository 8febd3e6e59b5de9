//! # rxe-user
//!
//! A userspace Soft-RoCE device: the device core of `rxe-transport` (QPs, memory, CQs, QP1 and
//! the rdma_cm-compatible connection manager) on a UDP socket, port 4791 by default, so real
//! RoCEv2 peers reach it, or any port so several devices share a host.
//!
//! ## The IPv4 Identification
//!
//! The ICRC covers the whole IPv4 header, Identification included, which a UDP socket neither
//! sets nor shows:
//!
//! - Sending: the socket is set to `IP_PMTUDISC_DO`, for which Linux sends DF datagrams with
//!   Identification 0 from an unconnected socket, and the device computes every ICRC with 0.
//! - Receiving: the device solves the one Identification that makes the received ICRC right
//!   (`rxe_wire::icrc::ipv4_ident`): a 16-bit check instead of 32 on IPv4 (IPv6 keeps all 32).
//!
//! Every packet also leaves from the socket's port, which the ICRC covers too, so the device
//! sends with that UDP source port instead of Linux's per-QP entropy ports. Devices on a port
//! other than 4791 (several on one host) build and check their packets as if addressed to 4791.
//!
//! ## IPv6
//!
//! A device bound to an IPv6 address has that address as its GID. Linux rxe sends its IPv6
//! datagrams with a zero UDP checksum (the ICRC protects the packet), which the kernel hands only
//! to sockets that accept them, so the device's socket sets `UDP_NO_CHECK6_RX`; ours go out with
//! a real checksum, which Linux accepts too. A link-local address (`fe80::/10`, the first GID
//! Linux gives every RoCE port) belongs to one interface: bound with scope 0, the device takes the
//! scope of the interface holding the address, and link-local peers are reached through it.
//!
//! ## Progress
//!
//! Busy polling: the caller's thread calls [`UdpDevice::progress`] (lowest latency; what the
//! `rxe` tools do). Background: [`Engine`] runs the device on its own thread, which sleeps in
//! `poll(2)` when idle; the application posts with [`Engine::with`] and blocks in
//! [`Engine::wait_cq`] with a timeout.
//!
//! ## Batching
//!
//! Everything one transmit turn produces leaves in one `sendmmsg`: runs of equal-sized
//! datagrams to one loopback peer as UDP GSO messages (`UdpDeviceConfig::gso`), everything else
//! as single datagrams, the turn's ACKs last (never behind a CM message, which could tear down
//! what they acknowledge). The socket takes GRO-coalesced datagrams on receive; on this kind of
//! machine that is what takes a 64 KiB RDMA WRITE past the plain-UDP ceiling. Receives are
//! `recvmsg` calls (GRO already gathers a flow's datagrams; `recvmmsg` is not used).
//!
//! When a received packet completes work, [`UdpDevice::progress`] returns at once: the
//! application answers, and its answer leaves with the ACKs still held, in one `sendmmsg` on the
//! next turn (or when the device is dropped). A READ response or atomic result leaves right
//! away. Poll the CQ before calling `progress` again to profit from it.
//!
//! ## Caller memory and completion channels
//!
//! [`UdpDevice::reg_user_mr`] registers the caller's own buffer (`unsafe`: the caller keeps it
//! alive and leaves it alone while the device may touch it). [`Engine::req_notify_cq`],
//! [`Engine::completion_fd`] (an eventfd for epoll) and [`Engine::get_cq_event`] are verbs'
//! completion channel.
//!
//! ## Fault injection
//!
//! [`Faults`] (or `RXE_USER_FAULTS=loss=1,dup=1,reorder=5`) drops, duplicates and reorders the
//! device's own datagrams, so a peer sees a faulty link where the network itself can't be made
//! one (no `netem`); the interop suite runs rping and ib_write_bw against Linux rxe this way.
//!
//! ## pcap tap
//!
//! `UdpDevice::tap(path)` records every packet the device sends and receives in a pcap, as the IP
//! packet its ICRC covers (received ones with their headers rebuilt and the Identification as
//! solved), in an Ethernet frame, so Wireshark and `rxe dump` decode it.
//!
//! ```no_run
//! use rxe_user::{UdpDevice, UdpDeviceConfig};
//!
//! let mut dev = UdpDevice::open(UdpDeviceConfig::new("127.0.0.1:4791".parse().unwrap())).unwrap();
//! let pd = dev.core().alloc_pd().expect("pd");
//! // ... register memory, create QPs, connect; then call dev.progress() to run the protocol.
//! # let _ = pd;
//! ```

mod batch_io;
mod engine;
mod faults;
pub mod netdev;
mod pcap_tap;
mod udp_device;
mod user_memory;

pub use engine::Engine;
pub use faults::Faults;
pub use pcap_tap::PcapTap;
pub use udp_device::{UdpDevice, UdpDeviceConfig, UdpDeviceCounters};
