//! Arbitrary Ethernet frames into an rxe-kernel port whose RC QP is in RTS (receives posted, a
//! WRITE outstanding): the receive classification (Ethernet, IPv4/IPv6, UDP 4791) and then the
//! device core. The input is a list of frames (2-byte length, then the bytes); a mode byte per
//! frame can aim it at the port (our MAC and IP written in) and fix its ICRC, so the fuzzer gets
//! past the checks into the transport. Nothing may panic, and every frame is counted exactly
//! once: delivered to the core or dropped for one reason.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use rxe_kernel::netdev::{MacAddr, Neighbour, NetDev, TxError};
use rxe_kernel::port::{Port, RxCounters};
use rxe_transport::device::{QpInit, RcConnect};
use rxe_transport::{Access, Instant, RecvWr, Remote, SendFlags, SendWr, Sge, WrOpcode};
use rxe_wire::{icrc, Psn, Rkey};

const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const IP: [u8; 4] = [10, 0, 0, 1];

struct Nic {
    sent: u64,
}

impl NetDev for Nic {
    fn transmit(&mut self, _frame: &[u8]) -> Result<(), TxError> {
        self.sent += 1;
        if self.sent % 7 == 0 {
            return Err(TxError::QueueFull);
        }
        Ok(())
    }
    fn mtu(&self) -> u32 {
        1500
    }
    fn mac(&self) -> MacAddr {
        MacAddr(MAC)
    }
    fn addresses(&self) -> Vec<IpAddr> {
        vec![IpAddr::V4(Ipv4Addr::from(IP))]
    }
    fn resolve(&mut self, _ip: IpAddr) -> Neighbour {
        Neighbour::Known(MacAddr([2, 0, 0, 0, 0, 2]))
    }
    fn link_up(&self) -> bool {
        true
    }
    fn frames_taken(&self) -> u64 {
        self.sent
    }
}

fn total(c: &RxCounters) -> u64 {
    c.delivered
        + c.truncated
        + c.not_ip
        + c.other_mac
        + c.other_ip
        + c.ip_unsupported
        + c.not_udp
        + c.other_port
}

/// Writes our MAC and IPv4 address into an IPv4 frame and, if asked, recomputes its ICRC.
fn aim(f: &mut [u8], fix_icrc: bool) {
    if f.len() < 14 + 20 + 8 + 12 + 4 || f[12] != 0x08 || f[13] != 0x00 {
        return;
    }
    f[..6].copy_from_slice(&MAC);
    f[14 + 16..14 + 20].copy_from_slice(&IP);
    if fix_icrc {
        let ihl = usize::from(f[14] & 0x0f) * 4;
        if ihl != 20 {
            return;
        }
        let (ip, rest) = f[14..].split_at_mut(20);
        let (udp, payload) = rest.split_at_mut(8);
        let n = payload.len() - 4;
        if let Ok(crc) = icrc::compute(ip, udp, &payload[..n]) {
            payload[n..].copy_from_slice(&crc.to_le_bytes());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut port = Port::new("rxe0", Nic { sent: 0 }, 7).expect("port");
    let c = port.core();
    let pd = c.alloc_pd().expect("pd");
    let access = Access::LOCAL_WRITE | Access::REMOTE_WRITE | Access::REMOTE_READ | Access::REMOTE_ATOMIC;
    let mr = c.reg_mr(pd, 0x1000, 65536, access).expect("mr");
    let cq = c.create_cq(64).expect("cq");
    let qp = c.create_qp(&QpInit::rc(pd, cq)).expect("qp");
    let me = IpAddr::V4(Ipv4Addr::from(IP));
    let peer = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    c.connect_rc(qp, &RcConnect::new(me, peer, rxe_wire::Qpn::new(0x11), Psn::new(0), Psn::new(0)))
        .expect("connect");
    for i in 0..8 {
        let sge = Sge { addr: 0x1000 + i * 4096, length: 4096, lkey: mr.lkey };
        let _ = c.post_recv(qp, RecvWr::new(i, sge));
    }
    let wr = SendWr::new(
        99,
        WrOpcode::RdmaWrite(Remote { addr: 0x9000, rkey: Rkey(0x1234) }),
        Some(Sge { addr: 0x1000, length: 3000, lkey: mr.lkey }),
        SendFlags::SIGNALED,
    );
    let _ = c.post_send(qp, wr);
    let mut now = 1_000u64;
    port.poll(Instant::from_nanos(now));

    let mut frames = 0u64;
    let mut rest = data;
    while rest.len() >= 3 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 3);
        let mode = rest[2];
        let mut f = rest[3..3 + len].to_vec();
        rest = &rest[3 + len..];
        if mode & 1 != 0 {
            aim(&mut f, mode & 2 != 0);
        }
        let before = total(&port.rx_counters());
        port.receive(Instant::from_nanos(now), &f);
        frames += 1;
        assert_eq!(total(&port.rx_counters()), before + 1, "each frame counted once");
        now += u64::from(mode >> 2) * 1_000_000;
        port.poll(Instant::from_nanos(now));
        while port.core().poll_cq(cq).is_some() {}
    }
    assert_eq!(total(&port.rx_counters()), frames);
    let _ = port.attr();
    let _ = port.gids();
});
