//! The host's network devices: callbacks for what only the host can do (put a frame on the
//! wire, resolve a neighbour, count frames the NIC took) and state the host reports as it
//! changes (MTU, addresses, link), as a kernel's netdev notifiers do.

use alloc::ffi::CString;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::net::{IpAddr, Ipv6Addr};

use core::ffi::{c_int, c_void};

use rxe_kernel::netdev::{MacAddr, Neighbour, NetDev, TxError};

/// The netdev took the frame.
pub const RXE_TX_OK: c_int = 0;
/// The netdev's transmit queue is full: the device keeps the frame and tries again on a later
/// `rxe_device_poll` (Linux rxe would drop it and count an enqueue error).
pub const RXE_TX_QUEUE_FULL: c_int = 1;
/// The link is down: the frame waits as for a full queue.
pub const RXE_TX_LINK_DOWN: c_int = 2;

/// The neighbour's MAC address was written.
pub const RXE_NEIGH_KNOWN: c_int = 0;
/// Resolution is under way: the frame waits; the device asks again on a later poll.
pub const RXE_NEIGH_PENDING: c_int = 1;

/// A GID: an IPv6 address, or an IPv4 one mapped into `::ffff:0:0/96` (RoCEv2), in network
/// byte order (`union ibv_gid`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct rxe_gid {
    /// The 16 bytes.
    pub raw: [u8; 16],
}

impl rxe_gid {
    pub(crate) fn from_ip(ip: IpAddr) -> rxe_gid {
        let v6 = match ip {
            IpAddr::V4(v) => v.to_ipv6_mapped(),
            IpAddr::V6(v) => v,
        };
        rxe_gid { raw: v6.octets() }
    }
    pub(crate) fn to_ip(self) -> IpAddr {
        let v6 = Ipv6Addr::from(self.raw);
        match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }
    }
}

/// The callbacks of a network device. Each receives the `ctx` given to `rxe_netdev_register`.
/// They run inside `rxe_device_poll` and must not call into the library for the same host.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rxe_netdev_ops {
    /// Queues an Ethernet frame (no FCS) of `len` bytes for transmission; the bytes are only
    /// valid during the call. Returns `RXE_TX_OK`, `RXE_TX_QUEUE_FULL` or `RXE_TX_LINK_DOWN`.
    pub transmit:
        Option<unsafe extern "C" fn(ctx: *mut c_void, frame: *const u8, len: usize) -> c_int>,
    /// Resolves `gid` (the destination IP address, as a GID) to a MAC address written to
    /// `mac[0..6]`: returns `RXE_NEIGH_KNOWN`, or `RXE_NEIGH_PENDING` while it is resolving.
    pub resolve:
        Option<unsafe extern "C" fn(ctx: *mut c_void, gid: *const rxe_gid, mac: *mut u8) -> c_int>,
    /// How many frames the NIC has taken off its queue (sent) since it was registered: the
    /// `watermark` transmission control compares it with the frames handed to it.
    pub frames_taken: Option<unsafe extern "C" fn(ctx: *mut c_void) -> u64>,
}

/// What the host reported about a netdev, and its callbacks.
#[derive(Debug)]
pub(crate) struct NetdevState {
    pub(crate) ops: rxe_netdev_ops,
    pub(crate) ctx: *mut c_void,
    pub(crate) mac: MacAddr,
    pub(crate) mtu: u32,
    pub(crate) addrs: Vec<IpAddr>,
    pub(crate) link_up: bool,
    /// Set while a callback runs: calls into the library meanwhile are refused.
    pub(crate) in_callback: bool,
    /// The detail of the last refused call on a device of this netdev.
    pub(crate) last_error: CString,
}

/// A registered netdev as a port sees it; the host's registry holds the same state.
#[derive(Debug, Clone)]
pub(crate) struct CNetDev {
    pub(crate) state: Rc<RefCell<NetdevState>>,
}

impl CNetDev {
    /// Runs callback `f` with the in-callback mark set.
    fn call<T>(&self, f: impl FnOnce(&rxe_netdev_ops, *mut c_void) -> T) -> T {
        let (ops, ctx) = {
            let mut s = self.state.borrow_mut();
            s.in_callback = true;
            (s.ops, s.ctx)
        };
        let r = f(&ops, ctx);
        self.state.borrow_mut().in_callback = false;
        r
    }
}

impl NetDev for CNetDev {
    fn transmit(&mut self, frame: &[u8]) -> Result<(), TxError> {
        let rc = self.call(|ops, ctx| match ops.transmit {
            // SAFETY: the host registered this callback for `ctx`; the frame is valid for the
            // call.
            Some(f) => unsafe { f(ctx, frame.as_ptr(), frame.len()) },
            None => RXE_TX_LINK_DOWN,
        });
        match rc {
            RXE_TX_OK => Ok(()),
            RXE_TX_QUEUE_FULL => Err(TxError::QueueFull),
            _ => Err(TxError::LinkDown),
        }
    }
    fn mtu(&self) -> u32 {
        self.state.borrow().mtu
    }
    fn mac(&self) -> MacAddr {
        self.state.borrow().mac
    }
    fn addresses(&self) -> Vec<IpAddr> {
        self.state.borrow().addrs.clone()
    }
    fn has_address(&self, ip: IpAddr) -> bool {
        self.state.borrow().addrs.contains(&ip)
    }
    fn resolve(&mut self, ip: IpAddr) -> Neighbour {
        let gid = rxe_gid::from_ip(ip);
        let mut mac = [0u8; 6];
        let rc = self.call(|ops, ctx| match ops.resolve {
            // SAFETY: the host registered this callback; both pointers are valid for the call.
            Some(f) => unsafe { f(ctx, &gid, mac.as_mut_ptr()) },
            None => RXE_NEIGH_PENDING,
        });
        if rc == RXE_NEIGH_KNOWN {
            Neighbour::Known(MacAddr(mac))
        } else {
            Neighbour::Pending
        }
    }
    fn link_up(&self) -> bool {
        self.state.borrow().link_up
    }
    fn frames_taken(&self) -> u64 {
        self.call(|ops, ctx| match ops.frames_taken {
            // SAFETY: the host registered this callback for `ctx`.
            Some(f) => unsafe { f(ctx) },
            None => 0,
        })
    }
}
