//! Many QPs at once: 64 RC QP pairs between two devices on loopback, each WRITing its own 16 KiB
//! and then READing it back at the same time; every byte lands where its QP put it and every
//! QP completes (demultiplexing by QPN, fair transmit across QPs).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{connect, lo, rc_qp, Path};
use rxe_transport::device::CqId;
use rxe_transport::{Access, Mtu, Remote, SendFlags, SendWr, Sge, WcOpcode, WcStatus, WrOpcode};
use rxe_user::{UdpDevice, UdpDeviceConfig};
use rxe_wire::{Qpn, Rkey};

const QPS: usize = 64;
const CHUNK: u64 = 16 * 1024;
const BUF: u64 = 0x100_0000;

fn open(last: u8, port: u16) -> (UdpDevice, CqId, u32, rxe_transport::Pd) {
    let mut d = UdpDevice::open(UdpDeviceConfig::new(SocketAddr::new(lo(last), port))).unwrap();
    let c = d.core();
    let pd = c.alloc_pd().expect("pd");
    let mr = c
        .reg_mr(
            pd,
            BUF,
            (2 * QPS as u64 * CHUNK) as usize,
            Access::LOCAL_WRITE | Access::REMOTE_WRITE | Access::REMOTE_READ,
        )
        .unwrap();
    let cq = c.create_cq(4 * QPS).expect("cq");
    (d, cq, mr.lkey, pd)
}

#[test]
fn sixty_four_qps_write_and_read_at_once() {
    let port = 30000 + (std::process::id() % 20000) as u16;
    let (mut a, cqa, ka, pda) = open(1, port);
    let (mut b, cqb, kb, pdb) = open(2, port);
    let qa: Vec<Qpn> = (0..QPS).map(|_| rc_qp(a.core(), pda, cqa)).collect();
    let qb: Vec<Qpn> = (0..QPS).map(|_| rc_qp(b.core(), pdb, cqb)).collect();
    for i in 0..QPS {
        let path = |me, peer, dest: Qpn, mine: Qpn| Path {
            me: lo(me),
            peer: lo(peer),
            dest,
            my_psn: mine.value() * 1000,
            peer_psn: dest.value() * 1000,
            mtu: Mtu::M1024,
            timeout: 14,
        };
        connect(a.core(), qa[i], &path(1, 2, qb[i], qa[i]));
        connect(b.core(), qb[i], &path(2, 1, qa[i], qb[i]));
    }
    // Each QP's chunk carries its index in every byte (plus the offset, so order matters).
    for (j, x) in a.core().mr_bytes_mut(ka).unwrap()[..QPS * CHUNK as usize]
        .iter_mut()
        .enumerate()
    {
        *x = ((j as u64 / CHUNK) as u8).wrapping_mul(31) ^ (j as u8);
    }
    let post_all = |a: &mut UdpDevice, read: bool| {
        for (i, &q) in qa.iter().enumerate() {
            let off = i as u64 * CHUNK;
            let remote = Remote {
                addr: BUF + off,
                rkey: Rkey(kb),
            };
            let (op, local) = if read {
                (WrOpcode::RdmaRead(remote), BUF + QPS as u64 * CHUNK + off)
            } else {
                (WrOpcode::RdmaWrite(remote), BUF + off)
            };
            let wr = SendWr::new(
                i as u64,
                op,
                Some(Sge {
                    addr: local,
                    length: CHUNK as u32,
                    lkey: ka,
                }),
                SendFlags::SIGNALED,
            );
            a.core().post_send(q, wr).unwrap();
        }
    };
    for read in [false, true] {
        post_all(&mut a, read);
        let mut done = vec![false; QPS];
        let end = Instant::now() + Duration::from_secs(20);
        while done.iter().any(|d| !d) {
            a.progress().unwrap();
            b.progress().unwrap();
            while let Some(wc) = a.core().poll_cq(cqa) {
                assert_eq!(wc.status, WcStatus::Success, "{wc:?}");
                let want = if read {
                    WcOpcode::RdmaRead
                } else {
                    WcOpcode::RdmaWrite
                };
                assert_eq!(wc.opcode, want);
                assert!(
                    !done[wc.wr_id as usize],
                    "two completions for QP {}",
                    wc.wr_id
                );
                done[wc.wr_id as usize] = true;
            }
            assert!(Instant::now() < end, "stalled: {done:?}");
        }
        assert!(
            b.core().poll_cq(cqb).is_none(),
            "the responder side completes nothing"
        );
    }
    let n = QPS * CHUNK as usize;
    let am = a.core().mr_bytes(ka).unwrap().to_vec();
    let bm = b.core().mr_bytes(kb).unwrap();
    assert_eq!(&bm[..n], &am[..n], "WRITEs");
    assert_eq!(&am[n..2 * n], &am[..n], "READs");
    let (_, counters) = a.core().counters();
    assert_eq!(counters.icrc_err, 0);
}
