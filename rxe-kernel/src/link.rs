//! The host's Soft-RoCE links: ports added to and removed from network devices, by either of
//! the commands people type for it:
//! - the modern one, `rdma link add rxe0 type rxe netdev eth0` / `rdma link delete rxe0`
//!   (iproute2's `rdma` tool; the leading `rdma` may be left out);
//! - the original module parameters: writing `eth0` to `add` makes the next free `rxe<N>`,
//!   writing `rxe0` to `remove` removes it.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use alloc::boxed::Box;

use rxe_transport::device::{DeviceConfig, DeviceError};

use crate::netdev::NetDev;
use crate::port::Port;

/// Why a link command was refused (and nothing changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkError {
    /// Not `rdma link add NAME type rxe netdev IFNAME` / `rdma link delete NAME`.
    Syntax,
    /// A link type other than `rxe`.
    Type,
    /// A name that is empty, longer than 63 bytes, or has whitespace or `/`.
    Name,
    /// A link of that name exists.
    Exists,
    /// The network device has a Soft-RoCE link already.
    NetdevBusy,
    /// No link of that name.
    NoSuchLink,
    /// The network device has no IP address to make a GID from, or the device core refused.
    Device,
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LinkError::Syntax => {
                "expected \"rdma link add NAME type rxe netdev IFNAME\" or \"rdma link delete NAME\""
            }
            LinkError::Type => "only links of type rxe are made here",
            LinkError::Name => "names are 1 to 63 bytes, without whitespace or '/'",
            LinkError::Exists => "a link of that name exists",
            LinkError::NetdevBusy => "that network device has a Soft-RoCE link already",
            LinkError::NoSuchLink => "no link of that name",
            LinkError::Device => "the network device has no IP address (no GID), or no resources",
        })
    }
}

/// A parsed `rdma link` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkCommand {
    /// `rdma link add NAME type rxe netdev IFNAME`.
    Add {
        /// The RDMA device name (`rxe0`).
        name: String,
        /// The network device (`eth0`).
        netdev: String,
    },
    /// `rdma link delete NAME` (or `del`).
    Delete {
        /// The RDMA device name.
        name: String,
    },
}

fn valid(name: &str) -> Result<(), LinkError> {
    if name.is_empty() || name.len() > 63 || name.contains('/') {
        return Err(LinkError::Name);
    }
    Ok(())
}

impl LinkCommand {
    /// Parses an `rdma link` command line.
    pub fn parse(cmd: &str) -> Result<LinkCommand, LinkError> {
        let mut w: Vec<&str> = cmd.split_ascii_whitespace().collect();
        if w.first() == Some(&"rdma") {
            w.remove(0);
        }
        match w.as_slice() {
            ["link", "add", name, "type", ty, "netdev", netdev] => {
                if *ty != "rxe" {
                    return Err(LinkError::Type);
                }
                valid(name)?;
                valid(netdev)?;
                Ok(LinkCommand::Add {
                    name: name.to_string(),
                    netdev: netdev.to_string(),
                })
            }
            ["link", "delete" | "del", name] => {
                valid(name)?;
                Ok(LinkCommand::Delete {
                    name: name.to_string(),
                })
            }
            _ => Err(LinkError::Syntax),
        }
    }
}

/// The ports of a host, each on one network device. Each port is boxed: its address stays the
/// same while it exists (a C host holds it as a handle).
#[derive(Debug)]
pub struct Links<N: NetDev> {
    links: Vec<(String, Box<Port<N>>)>,
    seed: u64,
    template: Option<DeviceConfig>,
}

impl<N: NetDev> Links<N> {
    /// No links yet; `seed` seeds each port's keys and PSNs (mixed with its name).
    pub fn new(seed: u64) -> Links<N> {
        Links {
            links: Vec::new(),
            seed,
            template: None,
        }
    }

    /// Settings for ports added from now on ([`Port::with_config`]: the GID, MTU and CA GUID
    /// still come from the netdev, the seed is mixed with the port's name).
    pub fn set_template(&mut self, cfg: DeviceConfig) {
        self.template = Some(cfg);
    }

    /// Adds port `name` on `netdev`, which the host calls `ifname`.
    pub fn add(&mut self, name: &str, ifname: &str, netdev: N) -> Result<&mut Port<N>, LinkError> {
        valid(name)?;
        valid(ifname)?;
        if self.links.iter().any(|(_, p)| p.name() == name) {
            return Err(LinkError::Exists);
        }
        if self.links.iter().any(|(i, _)| i == ifname) {
            return Err(LinkError::NetdevBusy);
        }
        let seed = name
            .bytes()
            .fold(self.seed, |h, b| h.rotate_left(5) ^ u64::from(b));
        let port = match self.template {
            Some(t) => Port::with_config(name, netdev, DeviceConfig { seed, ..t }),
            None => Port::new(name, netdev, seed),
        }
        .map_err(|_: DeviceError| LinkError::Device)?;
        self.links.push((ifname.to_string(), Box::new(port)));
        let last = self.links.len() - 1;
        Ok(&mut self.links[last].1)
    }

    /// Runs an `rdma link` command; `netdev_of` gives the host's network device of a name
    /// (`None`: no such device). Returns the port's name.
    pub fn command(
        &mut self,
        cmd: &str,
        netdev_of: impl FnOnce(&str) -> Option<N>,
    ) -> Result<String, LinkError> {
        match LinkCommand::parse(cmd)? {
            LinkCommand::Add { name, netdev } => {
                let dev = netdev_of(&netdev).ok_or(LinkError::Device)?;
                self.add(&name, &netdev, dev)?;
                Ok(name)
            }
            LinkCommand::Delete { name } => {
                self.delete(&name)?;
                Ok(name)
            }
        }
    }

    /// The original module parameter `add`: writing an interface name makes the next free
    /// `rxe<N>` on it. Returns the new port's name.
    pub fn param_add(&mut self, value: &str, netdev: N) -> Result<String, LinkError> {
        let ifname = value.trim();
        let name = (0..)
            .map(|i| format!("rxe{i}"))
            .find(|n| !self.links.iter().any(|(_, p)| p.name() == n))
            .unwrap_or_default();
        self.add(&name, ifname, netdev)?;
        Ok(name)
    }

    /// The original module parameter `remove`: writing a port's name removes it.
    pub fn param_remove(&mut self, value: &str) -> Result<N, LinkError> {
        self.delete(value.trim())
    }

    /// Removes port `name`; gives its network device back.
    pub fn delete(&mut self, name: &str) -> Result<N, LinkError> {
        let i = self
            .links
            .iter()
            .position(|(_, p)| p.name() == name)
            .ok_or(LinkError::NoSuchLink)?;
        Ok(self.links.remove(i).1.into_netdev())
    }

    /// Port `name`.
    pub fn get(&mut self, name: &str) -> Option<&mut Port<N>> {
        self.links
            .iter_mut()
            .find(|(_, p)| p.name() == name)
            .map(|(_, p)| &mut **p)
    }

    /// The port on the network device the host calls `ifname`.
    pub fn on_netdev(&mut self, ifname: &str) -> Option<&mut Port<N>> {
        self.links
            .iter_mut()
            .find(|(i, _)| i == ifname)
            .map(|(_, p)| &mut **p)
    }

    /// `(port, interface)` names, in the order they were added.
    pub fn list(&self) -> Vec<(String, String)> {
        self.links
            .iter()
            .map(|(i, p)| (p.name().to_string(), i.clone()))
            .collect()
    }
}
