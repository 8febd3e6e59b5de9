//! The CM state machine: two CMs exchange real MADs while the input injects forged and mutated
//! MADs, drops and duplicates, API calls in any order and timer jumps. Nothing panics, the
//! connection table stays within its capacity, and every connection ends in a valid state.
#![no_main]

use core::net::{IpAddr, Ipv4Addr};
use core::time::Duration;

use libfuzzer_sys::fuzz_target;
use rxe_transport::cm::{AcceptParams, Cm, CmConfig, CmEvent, ConnId, ConnectParams};
use rxe_transport::Instant;
use rxe_wire::mad::MAD_LEN;
use rxe_wire::{Psn, Qpn};

const N: usize = 4;

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let ips = [IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))];
    let mut cms: [Cm<N>; 2] = [
        Cm::new(CmConfig::new(ips[0], 0x11, 1)),
        Cm::new(CmConfig::new(ips[1], 0x22, 2)),
    ];
    let _ = cms[1].listen(7174);
    let _ = cms[0].listen(7175);
    let mut inp = Input(data);
    let mut now = Instant::from_nanos(1);
    let mut last: Option<[u8; MAD_LEN]> = None;
    let mut ids: Vec<(usize, ConnId)> = Vec::new();
    for _ in 0..200 {
        if inp.0.is_empty() {
            break;
        }
        let op = inp.u8();
        let side = usize::from(op & 1);
        match (op >> 1) % 8 {
            0 => {
                let port = 7174 + u16::from(inp.u8() % 3);
                let p = ConnectParams {
                    dst: ips[1 - side],
                    dst_port: port,
                    src_port: 40000 + u16::from(inp.u8()),
                    qpn: Qpn::new(u32::from(inp.u8()) + 0x10),
                    psn: Psn::new(u32::from(inp.u8()) << 8),
                    responder_resources: inp.u8() % 20,
                    initiator_depth: inp.u8() % 20,
                    retry_count: inp.u8(),
                    rnr_retry_count: inp.u8(),
                    private_data: &[7; 8],
                };
                if let Ok(id) = cms[side].connect(now, &p) {
                    ids.push((side, id));
                }
            }
            1 => {
                // Deliver what both sides have to send, dropping or duplicating some.
                let mode = inp.u8();
                for from in 0..2 {
                    while let Some(o) = cms[from].poll_transmit() {
                        last = Some(o.mad);
                        if mode & 1 != 0 && o.mad[17] == inp.u8() % 8 + 0x10 {
                            continue;
                        }
                        cms[1 - from].handle_mad(now, ips[from], &o.mad);
                        if mode & 2 != 0 {
                            cms[1 - from].handle_mad(now, ips[from], &o.mad);
                        }
                    }
                }
            }
            2 => {
                // A forged MAD: the last real one with a few bytes changed.
                if let Some(mut m) = last {
                    for _ in 0..inp.u8() % 4 {
                        let at = usize::from(inp.u8());
                        m[at] = inp.u8();
                    }
                    cms[side].handle_mad(now, ips[1 - side], &m);
                }
            }
            3 => {
                // Raw bytes as a MAD.
                let n = usize::from(inp.u8());
                let take = n.min(inp.0.len());
                let (raw, rest) = inp.0.split_at(take);
                inp.0 = rest;
                cms[side].handle_mad(now, ips[1 - side], raw);
            }
            4 => {
                now = now + Duration::from_millis(u64::from(inp.u8()) * 100);
                cms[0].handle_timeout(now);
                cms[1].handle_timeout(now);
            }
            5 => {
                if let Some(&(s, id)) = ids.get(usize::from(inp.u8()) % ids.len().max(1)) {
                    let p = AcceptParams {
                        qpn: Qpn::new(0x40),
                        psn: Psn::new(9),
                        responder_resources: inp.u8() % 20,
                        initiator_depth: inp.u8() % 20,
                        rnr_retry_count: 7,
                        private_data: &[],
                    };
                    match inp.u8() % 4 {
                        0 => drop(cms[s].accept(now, id, &p)),
                        1 => drop(cms[s].reject(id, &[1, 2])),
                        2 => drop(cms[s].rtu(id)),
                        _ => drop(cms[s].disconnect(now, id, &[])),
                    }
                    for st in [
                        rxe_transport::QpState::Init,
                        rxe_transport::QpState::Rtr,
                        rxe_transport::QpState::Rts,
                    ] {
                        let _ = cms[s].qp_attr(id, st);
                    }
                }
            }
            6 => {
                let _ = cms[side].notify_established(ConnId(u32::from(inp.u8()) % 8));
            }
            _ => {}
        }
        for (s, cm) in cms.iter_mut().enumerate() {
            while let Some(e) = cm.poll_event() {
                if let CmEvent::ConnectRequest { id, .. } = e {
                    ids.push((s, id));
                }
            }
            assert!(cm.connections().count() <= N);
        }
        ids.retain(|(s, id)| cms[*s].state(*id).is_some());
    }
});
