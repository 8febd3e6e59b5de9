//! The network device the host lends the Soft-RoCE device: what the host implements.

use alloc::vec::Vec;
use core::net::IpAddr;

pub use rxe_wire::ethernet::MacAddr;

/// Why the network device did not take a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxError {
    /// Its transmit queue is full (Linux rxe counts these as enqueue errors and drops the
    /// frame; this device keeps it and tries again).
    QueueFull,
    /// The link is down.
    LinkDown,
}

impl core::fmt::Display for TxError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            TxError::QueueFull => "transmit queue full",
            TxError::LinkDown => "link down",
        })
    }
}

/// What neighbour resolution (ARP / neighbour discovery) knows of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Neighbour {
    /// Its MAC address.
    Known(MacAddr),
    /// Resolution is under way: ask again later.
    Pending,
}

/// A network device as the host's kernel or firmware drives it.
pub trait NetDev {
    /// Queues `frame` (an Ethernet frame, no FCS) for transmission.
    fn transmit(&mut self, frame: &[u8]) -> Result<(), TxError>;
    /// The device's MTU (IP packet bytes).
    fn mtu(&self) -> u32;
    /// The device's MAC address.
    fn mac(&self) -> MacAddr;
    /// The device's IP addresses (each a RoCEv2 GID).
    fn addresses(&self) -> Vec<IpAddr>;
    /// Whether `ip` is one of the device's addresses. Asked for every received frame: a host
    /// that can answer without building the list (a hash, a fixed address) should.
    fn has_address(&self, ip: IpAddr) -> bool {
        self.addresses().contains(&ip)
    }
    /// The MAC address for `ip`, or [`Neighbour::Pending`] while it is being resolved.
    fn resolve(&mut self, ip: IpAddr) -> Neighbour;
    /// Whether the link is up.
    fn link_up(&self) -> bool;
    /// How many frames the device has taken off its queue (sent) since it was created: the
    /// watermark control compares it with the frames handed to it.
    fn frames_taken(&self) -> u64;
}
