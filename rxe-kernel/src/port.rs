//! One Soft-RoCE port on a host's network device: the device core of `rxe-transport` between
//! frames in (Ethernet → IPv4/IPv6 → UDP 4791 → the core's parse, ICRC and demux) and frames out
//! (the core's packets → neighbour resolution → Ethernet → transmission control → the NIC).
//!
//! Nothing is dropped for lack of room: a frame the NIC refuses (queue full), that transmission
//! control holds back, or whose next hop is still being resolved is kept and tried again on the
//! next [`Port::poll`]; the core's own window keeps what waits bounded.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::net::IpAddr;

use rxe_transport::device::{Device, DeviceConfig, DeviceError};
use rxe_transport::{Instant, Mtu};
use rxe_wire::ethernet::{self, IpVersion};
use rxe_wire::udp::ROCE_PORT;

use crate::netdev::{Neighbour, NetDev, TxError};
use crate::tx_control::{Admit, Control, TxGate};

/// Frames the port did not hand to the core, by reason; and what it did hand.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxCounters {
    /// Frames handed to the core (its own counters go on: malformed, unknown QP, ICRC).
    pub delivered: u64,
    /// Shorter than their headers say.
    pub truncated: u64,
    /// Neither IPv4 nor IPv6 (ARP and the like), or VLAN-stacked.
    pub not_ip: u64,
    /// For another MAC address (not ours, not broadcast or multicast).
    pub other_mac: u64,
    /// For an IP address this port does not have.
    pub other_ip: u64,
    /// IPv4 fragments and packets with options (RoCEv2 never sends them).
    pub ip_unsupported: u64,
    /// Not UDP.
    pub not_udp: u64,
    /// UDP, but not to port 4791.
    pub other_port: u64,
}

/// What happened to the frames the port sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxCounters {
    /// Frames the NIC took.
    pub frames: u64,
    /// Refusals because the NIC's queue was full (Linux rxe's "enqueue errors"; here the frame
    /// waits and goes later).
    pub queue_full: u64,
    /// Refusals because the link was down.
    pub link_down: u64,
    /// Times a frame waited for neighbour resolution.
    pub neighbour_pending: u64,
    /// Times transmission control held a frame back.
    pub held_by_control: u64,
}

/// A port's state, as `ibv_query_port` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortState {
    /// The link is up.
    Active,
    /// The link is down.
    Down,
}

/// A port's attributes (`ibv_query_port`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortAttr {
    /// Follows the netdev's link.
    pub state: PortState,
    /// The largest IB MTU that fits the netdev's MTU less 80 bytes of headers (`rxe_set_mtu`).
    pub active_mtu: Mtu,
    /// The largest the port supports: 4096.
    pub max_mtu: Mtu,
    /// Entries in the GID table.
    pub gid_tbl_len: usize,
}

/// Room for the Ethernet header before the IP packet.
const ETH: usize = ethernet::HEADER_LEN;

/// A Soft-RoCE port on `N`.
#[derive(Debug)]
pub struct Port<N: NetDev> {
    name: String,
    netdev: N,
    core: Device,
    gate: TxGate,
    /// The frame being sent: Ethernet header room, then the core's IP packet.
    frame: Vec<u8>,
    /// Length of the IP packet in `frame` not yet taken by the NIC.
    waiting: Option<usize>,
    rx: RxCounters,
    tx: TxCounters,
}

impl<N: NetDev> Port<N> {
    /// A port named `name` on `netdev`. Its GID is the netdev's first address (IPv4 first), its
    /// active MTU the largest IB MTU that fits the netdev's (`rxe_set_mtu`).
    pub fn new(name: &str, netdev: N, seed: u64) -> Result<Port<N>, DeviceError> {
        let any = IpAddr::V4(core::net::Ipv4Addr::UNSPECIFIED);
        Port::with_config(name, netdev, DeviceConfig::new(any, seed))
    }

    /// A port whose device core has the settings `cfg` (limits, UDP source port, IPv4
    /// Identification, seed), except what comes from the netdev: the GID (its first address,
    /// IPv4 first), the active MTU and the CA GUID (the MAC's EUI-64, as Linux).
    pub fn with_config(name: &str, netdev: N, cfg: DeviceConfig) -> Result<Port<N>, DeviceError> {
        let addrs = netdev.addresses();
        let gid = addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or(addrs.first())
            .copied()
            .ok_or(DeviceError::NoResources)?;
        let m = netdev.mac().0;
        let eui64 = [m[0] ^ 2, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]];
        let cfg = DeviceConfig {
            gid,
            port_mtu: Mtu::for_netdev_mtu(netdev.mtu()),
            ca_guid: u64::from_be_bytes(eui64),
            ..cfg
        };
        let core = Device::new(cfg)?;
        let frame = vec![0u8; ETH + core.max_packet_len()];
        Ok(Port {
            name: name.into(),
            netdev,
            core,
            gate: TxGate::new(Control::default()),
            frame,
            waiting: None,
            rx: RxCounters::default(),
            tx: TxCounters::default(),
        })
    }

    /// The port's name (`rxe0`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device core: PDs, MRs, CQs, QPs, the connection manager.
    pub fn core(&mut self) -> &mut Device {
        &mut self.core
    }

    /// The network device.
    pub fn netdev(&self) -> &N {
        &self.netdev
    }

    /// Ends the port; gives the network device back.
    pub fn into_netdev(self) -> N {
        self.netdev
    }

    /// The network device, mutably (the host's own bookkeeping).
    pub fn netdev_mut(&mut self) -> &mut N {
        &mut self.netdev
    }

    /// Applies a transmission-control setting.
    pub fn set_control(&mut self, control: Control) {
        self.gate.set(control);
    }

    /// The receive counters.
    pub fn rx_counters(&self) -> RxCounters {
        self.rx
    }

    /// The transmit counters.
    pub fn tx_counters(&self) -> TxCounters {
        self.tx
    }

    /// The port's attributes, from the netdev as it is now.
    pub fn attr(&self) -> PortAttr {
        PortAttr {
            state: if self.netdev.link_up() {
                PortState::Active
            } else {
                PortState::Down
            },
            active_mtu: Mtu::for_netdev_mtu(self.netdev.mtu()),
            max_mtu: Mtu::M4096,
            gid_tbl_len: self.gids().len(),
        }
    }

    /// The GID table, from the netdev's addresses as they are now (RoCEv2: an IPv6 address as
    /// it is, an IPv4 one mapped into `::ffff:0:0/96`), IPv6 link-local ones first as Linux
    /// lists them. The core sends from the address it was created with.
    pub fn gids(&self) -> Vec<core::net::Ipv6Addr> {
        let addrs = self.netdev.addresses();
        let link_local =
            |a: &IpAddr| matches!(a, IpAddr::V6(v) if v.segments()[0] & 0xffc0 == 0xfe80);
        addrs
            .iter()
            .filter(|a| link_local(a))
            .chain(addrs.iter().filter(|a| !link_local(a)))
            .map(|a| match a {
                IpAddr::V4(v) => v.to_ipv6_mapped(),
                IpAddr::V6(v) => *v,
            })
            .collect()
    }

    /// Frames handed to the NIC and not yet taken by it.
    pub fn in_flight(&self) -> u64 {
        self.gate
            .handed()
            .saturating_sub(self.netdev.frames_taken())
    }

    /// Handles a received Ethernet frame (no FCS).
    pub fn receive(&mut self, now: Instant, frame: &[u8]) {
        match self.classify(frame) {
            Ok(range) => {
                self.rx.delivered += 1;
                self.core.handle_packet(now, &frame[range]);
            }
            Err(count) => *count += 1,
        }
    }

    /// The IP packet of a RoCEv2 frame for this port, or the counter of why not.
    fn classify(&mut self, f: &[u8]) -> Result<core::ops::Range<usize>, &mut u64> {
        let (eth, at) = match ethernet::Repr::parse(f) {
            Ok(x) => x,
            Err(rxe_wire::Error::Truncated { .. }) => return Err(&mut self.rx.truncated),
            Err(_) => return Err(&mut self.rx.not_ip),
        };
        let dst = eth.dst.0;
        if eth.dst != self.netdev.mac() && dst[0] & 1 == 0 {
            return Err(&mut self.rx.other_mac);
        }
        let ip = &f[at..];
        let (dst_ip, proto, udp_at, total) = match eth.ip_version {
            IpVersion::V4 => {
                if ip.len() < 20 {
                    return Err(&mut self.rx.truncated);
                }
                let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
                let frag = u16::from_be_bytes([ip[6], ip[7]]);
                if ip[0] != 0x45 || frag & 0x3fff != 0 {
                    return Err(&mut self.rx.ip_unsupported);
                }
                let d = IpAddr::from([ip[16], ip[17], ip[18], ip[19]]);
                (d, ip[9], 20, total)
            }
            IpVersion::V6 => {
                if ip.len() < 40 {
                    return Err(&mut self.rx.truncated);
                }
                let total = 40 + usize::from(u16::from_be_bytes([ip[4], ip[5]]));
                let mut a = [0u8; 16];
                a.copy_from_slice(&ip[24..40]);
                (IpAddr::from(a), ip[6], 40, total)
            }
        };
        if total > ip.len() || total < udp_at + 8 {
            return Err(&mut self.rx.truncated);
        }
        if !self.netdev.has_address(dst_ip) {
            return Err(&mut self.rx.other_ip);
        }
        if proto != 17 {
            return Err(&mut self.rx.not_udp);
        }
        if u16::from_be_bytes([ip[udp_at + 2], ip[udp_at + 3]]) != ROCE_PORT {
            return Err(&mut self.rx.other_port);
        }
        Ok(at..at + total)
    }

    /// Runs the timers due by `now` and sends what the core has, as far as the NIC, the
    /// neighbours and transmission control let it. Returns the instant by which to call again
    /// (`None`: when a frame arrives, the NIC takes frames, a neighbour resolves, or the
    /// application posts work).
    pub fn poll(&mut self, now: Instant) -> Option<Instant> {
        if self.core.poll_timeout().is_some_and(|t| t <= now) {
            self.core.handle_timeout(now);
        }
        let mut wake = None;
        loop {
            let len = match self.waiting {
                Some(len) => len,
                None => match self.core.poll_transmit(now, &mut self.frame[ETH..]) {
                    Some(len) => len,
                    None => break,
                },
            };
            self.waiting = Some(len);
            match self.send_waiting(now, len) {
                Ok(()) => self.waiting = None,
                Err(at) => {
                    wake = at;
                    break;
                }
            }
        }
        match (wake, self.core.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Frames and sends the waiting packet; `Err(when to try again)` if it must wait.
    fn send_waiting(&mut self, now: Instant, len: usize) -> Result<(), Option<Instant>> {
        let ip = &self.frame[ETH..ETH + len];
        let (dst, version) = match ip[0] >> 4 {
            4 => (
                IpAddr::from([ip[16], ip[17], ip[18], ip[19]]),
                IpVersion::V4,
            ),
            _ => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&ip[24..40]);
                (IpAddr::from(a), IpVersion::V6)
            }
        };
        let mac = match self.netdev.resolve(dst) {
            Neighbour::Known(m) => m,
            Neighbour::Pending => {
                self.tx.neighbour_pending += 1;
                return Err(None);
            }
        };
        let frame_len = ETH + len;
        match self.gate.admit(now, frame_len, self.netdev.frames_taken()) {
            Admit::Now => {}
            Admit::At(t) => {
                self.tx.held_by_control += 1;
                return Err(Some(t));
            }
            Admit::WhenTaken => {
                self.tx.held_by_control += 1;
                return Err(None);
            }
        }
        let eth = ethernet::Repr {
            dst: mac,
            src: self.netdev.mac(),
            vlan: None,
            ip_version: version,
        };
        if eth.emit(&mut self.frame[..ETH]).is_err() {
            return Ok(()); // cannot happen: the room is there; drop rather than loop
        }
        match self.netdev.transmit(&self.frame[..frame_len]) {
            Ok(()) => {
                self.gate.handed_one(frame_len);
                self.tx.frames += 1;
                Ok(())
            }
            Err(TxError::QueueFull) => {
                self.tx.queue_full += 1;
                Err(None)
            }
            Err(TxError::LinkDown) => {
                self.tx.link_down += 1;
                Err(None)
            }
        }
    }
}
