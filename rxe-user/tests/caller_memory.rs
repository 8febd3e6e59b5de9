//! Caller memory (`UdpDevice::reg_user_mr`): the application's own buffer is the region. A peer
//! WRITEs into it and READs from it, and the device WRITEs from it and READs into it; the data
//! is checked in the caller's `Vec`, with no copy through the device.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{connect, lo, rc_qp, Path};
use rxe_transport::device::CqId;
use rxe_transport::{Access, Mtu, Remote, SendFlags, SendWr, Sge, WcStatus, WrOpcode};
use rxe_user::{UdpDevice, UdpDeviceConfig};
use rxe_wire::Rkey;

const LEN: usize = 64 * 1024;
const BUF_B: u64 = 0x40_0000;

fn run_until(a: &mut UdpDevice, b: &mut UdpDevice, cq: CqId, who_a: bool) -> WcStatus {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        a.progress().unwrap();
        b.progress().unwrap();
        let d = if who_a { &mut *a } else { &mut *b };
        if let Some(wc) = d.core().poll_cq(cq) {
            return wc.status;
        }
    }
    panic!("no completion");
}

#[test]
#[allow(unsafe_code)]
fn a_callers_buffer_is_the_region_both_ways() {
    let port = 30000 + (std::process::id() % 20000) as u16 + 7;
    let mut a = UdpDevice::open(UdpDeviceConfig::new(SocketAddr::new(lo(1), port))).unwrap();
    let mut b = UdpDevice::open(UdpDeviceConfig::new(SocketAddr::new(lo(2), port))).unwrap();
    let access = Access::LOCAL_WRITE | Access::REMOTE_WRITE | Access::REMOTE_READ;

    // The caller's buffer: first half a pattern, second half zero.
    let mut buf: Vec<u8> = (0..LEN).map(|i| (i % 241) as u8).collect();
    buf[LEN / 2..].fill(0);
    let pda = a.core().alloc_pd().expect("pd");
    // SAFETY: `buf` outlives the registration (deregistered below) and is not touched while
    // work is in flight.
    let mr = unsafe { a.reg_user_mr(pda, buf.as_mut_ptr(), LEN, access) }.unwrap();
    assert_eq!(
        mr.addr,
        buf.as_ptr() as u64,
        "the iova is the virtual address"
    );
    assert_eq!(mr.length, LEN as u64);
    let cqa = a.core().create_cq(16).expect("cq");
    let qa = rc_qp(a.core(), pda, cqa);

    let pdb = b.core().alloc_pd().expect("pd");
    let mb = b.core().reg_mr(pdb, BUF_B, LEN, access).unwrap();
    for (i, x) in b
        .core()
        .mr_bytes_mut(mb.lkey)
        .unwrap()
        .iter_mut()
        .enumerate()
    {
        *x = (i % 13) as u8 ^ 0x5a;
    }
    let cqb = b.core().create_cq(16).expect("cq");
    let qb = rc_qp(b.core(), pdb, cqb);
    let path = |me, peer, dest| Path {
        me: lo(me),
        peer: lo(peer),
        dest,
        my_psn: 100,
        peer_psn: 100,
        mtu: Mtu::M1024,
        timeout: 14,
    };
    connect(a.core(), qa, &path(1, 2, qb));
    connect(b.core(), qb, &path(2, 1, qa));

    let post = |d: &mut UdpDevice, q, op, addr, lkey, len| {
        let sge = Sge {
            addr,
            length: len,
            lkey,
        };
        let wr = SendWr::new(1, op, Some(sge), SendFlags::SIGNALED);
        d.core().post_send(q, wr).unwrap();
    };
    let base = mr.addr;
    let quarter = (LEN / 4) as u32;
    // A WRITEs its first quarter (caller memory) to B, and READs B's first quarter into its
    // third quarter.
    let to_b = Remote {
        addr: BUF_B,
        rkey: Rkey(mb.rkey),
    };
    post(
        &mut a,
        qa,
        WrOpcode::RdmaWrite(Remote {
            addr: BUF_B + u64::from(quarter),
            ..to_b
        }),
        base,
        mr.lkey,
        quarter,
    );
    assert_eq!(run_until(&mut a, &mut b, cqa, true), WcStatus::Success);
    post(
        &mut a,
        qa,
        WrOpcode::RdmaRead(to_b),
        base + 2 * u64::from(quarter),
        mr.lkey,
        quarter,
    );
    assert_eq!(run_until(&mut a, &mut b, cqa, true), WcStatus::Success);
    // B WRITEs its second quarter (A's bytes, by now) into the caller's last quarter through
    // the rkey.
    let to_a = Remote {
        addr: base + 3 * u64::from(quarter),
        rkey: Rkey(mr.rkey),
    };
    post(
        &mut b,
        qb,
        WrOpcode::RdmaWrite(to_a),
        BUF_B + u64::from(quarter),
        mb.lkey,
        quarter,
    );
    assert_eq!(run_until(&mut a, &mut b, cqb, false), WcStatus::Success);
    // A READ past the end of the caller's region is refused by the bounds check.
    let past = Remote {
        addr: base + LEN as u64 - 8,
        rkey: Rkey(mr.rkey),
    };
    post(&mut b, qb, WrOpcode::RdmaRead(past), BUF_B, mb.lkey, 64);
    assert_eq!(
        run_until(&mut a, &mut b, cqb, false),
        WcStatus::RemAccessErr
    );

    a.core().dereg_mr(mr.lkey).unwrap();
    let q = LEN / 4;
    let bm = b.core().mr_bytes(mb.lkey).unwrap().to_vec();
    let pattern: Vec<u8> = (0..q).map(|i| (i % 241) as u8).collect();
    // (Compared with assert! so a failure does not print 16 KiB arrays.)
    assert!(
        buf[..q] == pattern[..],
        "the caller's source bytes are untouched"
    );
    assert!(bm[q..2 * q] == pattern[..], "B got the caller's bytes");
    let b_first: Vec<u8> = (0..q).map(|i| (i % 13) as u8 ^ 0x5a).collect();
    assert!(
        buf[2 * q..3 * q] == b_first[..],
        "the READ landed in the caller's buffer"
    );
    // B's second quarter holds what A wrote there: it made the round trip into the last one.
    assert!(
        buf[3 * q..] == pattern[..],
        "B's WRITE landed in the caller's buffer"
    );
    // A null pointer is refused.
    // SAFETY: nothing is registered.
    assert!(unsafe { a.reg_user_mr(pda, std::ptr::null_mut(), 16, access) }.is_err());
}
