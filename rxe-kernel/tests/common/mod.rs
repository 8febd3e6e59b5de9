//! A simulated network device for the tests: a bounded transmit queue sent at line rate in
//! simulated time, a neighbour table that answers "pending" the first time.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};

use rxe_kernel::netdev::{MacAddr, Neighbour, NetDev, TxError};

/// A NIC: a queue of `cap` frames sent at `rate` bits per second; a static neighbour table
/// that answers "pending" the first time it is asked.
#[derive(Debug)]
pub(crate) struct SimNic {
    pub(crate) mac: MacAddr,
    pub(crate) ips: Vec<IpAddr>,
    pub(crate) ip: IpAddr,
    pub(crate) mtu: u32,
    pub(crate) cap: usize,
    pub(crate) rate: u64,
    pub(crate) queue: VecDeque<Vec<u8>>,
    pub(crate) busy_until: u64,
    pub(crate) taken: u64,
    pub(crate) neighbours: Vec<(IpAddr, MacAddr)>,
    pub(crate) asked: Vec<IpAddr>,
    pub(crate) up: bool,
}

impl SimNic {
    pub(crate) fn new(last: u8, cap: usize) -> SimNic {
        SimNic {
            mac: MacAddr([2, 0, 0, 0, 0, last]),
            ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)),
            ips: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))],
            mtu: 1500,
            cap,
            rate: 1_000_000_000,
            queue: VecDeque::new(),
            busy_until: 0,
            taken: 0,
            neighbours: Vec::new(),
            asked: Vec::new(),
            up: true,
        }
    }

    /// The frames the line has finished sending by `now`.
    pub(crate) fn run(&mut self, now: u64) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(f) = self.queue.front() {
            let done = self.busy_until + (f.len() as u64 * 8 * 1_000_000_000).div_ceil(self.rate);
            if done > now {
                break;
            }
            self.busy_until = done;
            self.taken += 1;
            out.extend(self.queue.pop_front());
        }
        if self.queue.is_empty() {
            self.busy_until = self.busy_until.max(now);
        }
        out
    }
}

impl NetDev for SimNic {
    fn transmit(&mut self, frame: &[u8]) -> Result<(), TxError> {
        if !self.up {
            return Err(TxError::LinkDown);
        }
        if self.queue.len() >= self.cap {
            return Err(TxError::QueueFull);
        }
        self.queue.push_back(frame.to_vec());
        Ok(())
    }
    fn mtu(&self) -> u32 {
        self.mtu
    }
    fn mac(&self) -> MacAddr {
        self.mac
    }
    fn addresses(&self) -> Vec<IpAddr> {
        self.ips.clone()
    }
    fn resolve(&mut self, ip: IpAddr) -> Neighbour {
        if !self.asked.contains(&ip) {
            self.asked.push(ip);
            return Neighbour::Pending;
        }
        match self.neighbours.iter().find(|(a, _)| *a == ip) {
            Some((_, m)) => Neighbour::Known(*m),
            None => Neighbour::Pending,
        }
    }
    fn link_up(&self) -> bool {
        self.up
    }
    fn frames_taken(&self) -> u64 {
        self.taken
    }
}
