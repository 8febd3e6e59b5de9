//! Memory windows (type 1 and 2B), BIND_MW, LOCAL_INV, SEND with Invalidate and REG_MR: remote
//! access goes through a window's range and rights to the region it is bound to, and stops once
//! the window (or region) is invalidated.

mod common;

use common::*;
use rxe_transport::{
    memory, Access, AccessError, MwBind, MwType, Pd, QpState, RecvWr, Remote, SendFlags, SendWr,
    Sge, WcFlags, WcOpcode, WcStatus, WrOpcode,
};
use rxe_wire::{Qpn, Rkey};

const A_BUF: u64 = 0x10_0000;
const B_BUF: u64 = 0x80_0000;

/// A connected pair; b has a region (LOCAL_WRITE | MW_BIND, no remote rights of its own) and
/// a window of `mw_type`.
fn setup(mw_type: MwType) -> (Pair, u32, u32, u32) {
    let mut p = Pair::new();
    p.connect(ConnParams::default());
    let ak =
        p.a.mem
            .register(Pd(1), A_BUF, 64 * 1024, Access::LOCAL_WRITE, 0);
    let bk = p.b.mem.register(
        Pd(1),
        B_BUF,
        64 * 1024,
        Access::LOCAL_WRITE | Access::MW_BIND,
        0,
    );
    p.a.mem.fill_pattern(ak, 7);
    p.b.mem.fill_pattern(bk, 3);
    let mw = p.b.mem.alloc_mw(Pd(1), mw_type);
    (p, ak, bk, mw)
}

fn bind(mw: u32, new_key_byte: u8, bk: u32, off: u64, len: u64, access: Access) -> MwBind {
    MwBind {
        mw,
        new_rkey: (mw & !0xff) | u32::from(new_key_byte),
        mr_lkey: bk,
        addr: B_BUF + off,
        length: len,
        access,
    }
}

/// b posts a local work request and runs it; returns its completion.
fn b_local(p: &mut Pair, op: WrOpcode) -> (WcStatus, WcOpcode) {
    p.b.qp
        .post_send(SendWr::new(77, op, None, SendFlags::SIGNALED), &p.b.mem)
        .expect("post");
    p.drive();
    let wc = p.b.send_wcs.pop().expect("completion");
    (wc.status, wc.opcode)
}

/// a WRITEs `len` bytes to `addr` through `rkey`; returns the status.
fn write(p: &mut Pair, rkey: u32, addr: u64, len: u32) -> WcStatus {
    let wr = SendWr::new(
        1,
        WrOpcode::RdmaWrite(Remote {
            addr,
            rkey: Rkey(rkey),
        }),
        Some(Sge {
            addr: A_BUF,
            length: len,
            lkey: 0x117,
        }),
        SendFlags::SIGNALED,
    );
    p.a.qp.post_send(wr, &p.a.mem).expect("post");
    p.drive();
    p.a.send_wcs.pop().expect("completion").status
}

#[test]
fn a_type_2_window_gives_its_range_and_rights_and_nothing_more() {
    let (mut p, ak, bk, mw) = setup(MwType::Type2);
    let req = bind(
        mw,
        0x42,
        bk,
        0x1000,
        0x2000,
        Access::REMOTE_WRITE | Access::REMOTE_READ,
    );
    assert_eq!(
        b_local(&mut p, WrOpcode::BindMw(req)),
        (WcStatus::Success, WcOpcode::BindMw)
    );
    let rkey = req.new_rkey;
    // WRITE through the window lands in the region.
    assert_eq!(write(&mut p, rkey, B_BUF + 0x1800, 1024), WcStatus::Success);
    assert_same(
        "through the window",
        p.b.mem.bytes(bk, B_BUF + 0x1800, 1024),
        p.a.mem.bytes(ak, A_BUF, 1024),
    );
    // READ through it too.
    let rd = SendWr::new(
        2,
        WrOpcode::RdmaRead(Remote {
            addr: B_BUF + 0x1000,
            rkey: Rkey(rkey),
        }),
        Some(Sge {
            addr: A_BUF + 0x8000,
            length: 0x2000,
            lkey: ak,
        }),
        SendFlags::SIGNALED,
    );
    p.a.qp.post_send(rd, &p.a.mem).unwrap();
    p.drive();
    assert_eq!(p.a.send_wcs.pop().unwrap().status, WcStatus::Success);
    assert_same(
        "read through the window",
        p.a.mem.bytes(ak, A_BUF + 0x8000, 0x2000),
        p.b.mem.bytes(bk, B_BUF + 0x1000, 0x2000),
    );
    // One byte past the window (inside the region): refused, and the QPs fail.
    assert_eq!(
        write(&mut p, rkey, B_BUF + 0x2fff, 2),
        WcStatus::RemAccessErr
    );
    assert_eq!(p.b.qp.state(), QpState::Err);
}

#[test]
fn a_window_without_write_rights_or_under_its_old_key_is_refused() {
    for (access, use_old_key) in [(Access::REMOTE_READ, false), (Access::REMOTE_WRITE, true)] {
        let (mut p, _, bk, mw) = setup(MwType::Type2);
        let req = bind(mw, 0x43, bk, 0, 0x1000, access);
        assert_eq!(b_local(&mut p, WrOpcode::BindMw(req)).0, WcStatus::Success);
        let key = if use_old_key { mw } else { req.new_rkey };
        assert_eq!(write(&mut p, key, B_BUF, 16), WcStatus::RemAccessErr);
    }
}

#[test]
fn send_with_invalidate_and_local_inv_end_a_type_2_window() {
    let (mut p, _, bk, mw) = setup(MwType::Type2);
    let req = bind(mw, 0x44, bk, 0, 0x1000, Access::REMOTE_WRITE);
    assert_eq!(b_local(&mut p, WrOpcode::BindMw(req)).0, WcStatus::Success);
    let rkey = req.new_rkey;
    assert_eq!(write(&mut p, rkey, B_BUF, 8), WcStatus::Success);
    // a sends with invalidate: b's completion says so, and the window is free.
    p.b.qp
        .post_recv(RecvWr::new(
            9,
            Sge {
                addr: B_BUF + 0x8000,
                length: 64,
                lkey: bk,
            },
        ))
        .unwrap();
    let inv = SendWr::new(
        3,
        WrOpcode::SendWithInv(Rkey(rkey)),
        Some(Sge {
            addr: A_BUF,
            length: 16,
            lkey: 0x117,
        }),
        SendFlags::SIGNALED,
    );
    p.a.qp.post_send(inv, &p.a.mem).unwrap();
    p.drive();
    let wc = p.b.recv_wcs.pop().expect("receive");
    assert_eq!(wc.status, WcStatus::Success);
    assert!(wc.wc_flags.contains(WcFlags::WITH_INV));
    assert_eq!(wc.invalidated_rkey, Some(Rkey(rkey)));
    assert_eq!(write(&mut p, rkey, B_BUF, 8), WcStatus::RemAccessErr);

    // LOCAL_INV, then bind again: a type 2 window must be free to be bound.
    let (mut p, _, bk, mw) = setup(MwType::Type2);
    let first = bind(mw, 0x45, bk, 0, 0x1000, Access::REMOTE_WRITE);
    assert_eq!(
        b_local(&mut p, WrOpcode::BindMw(first)).0,
        WcStatus::Success
    );
    let again = bind(first.new_rkey, 0x46, bk, 0, 0x1000, Access::REMOTE_WRITE);
    assert_eq!(
        memory::bind_mw(&mut p.b.mem, Pd(1), p.b.qp.qpn(), &again),
        Err(AccessError::WindowState)
    );
    assert_eq!(
        b_local(&mut p, WrOpcode::LocalInv(Rkey(first.new_rkey))),
        (WcStatus::Success, WcOpcode::LocalInv)
    );
    assert_eq!(
        b_local(&mut p, WrOpcode::BindMw(again)).0,
        WcStatus::Success
    );
    assert_eq!(write(&mut p, again.new_rkey, B_BUF, 8), WcStatus::Success);
}

#[test]
fn a_type_2_window_works_only_through_the_qp_it_was_bound_through() {
    let (mut p, _, bk, mw) = setup(MwType::Type2);
    let req = bind(mw, 0x47, bk, 0, 0x1000, Access::REMOTE_WRITE);
    // Bound through another QP of the same PD.
    memory::bind_mw(&mut p.b.mem, Pd(1), Qpn::new(0x99), &req).unwrap();
    assert_eq!(
        write(&mut p, req.new_rkey, B_BUF, 8),
        WcStatus::RemAccessErr
    );
}

#[test]
fn a_type_1_window_rebinds_unbinds_and_cannot_be_invalidated() {
    let (mut p, _, bk, mw) = setup(MwType::Type1);
    let qpn = p.b.qp.qpn();
    let r1 = bind(mw, 0x01, bk, 0, 0x100, Access::REMOTE_WRITE);
    memory::bind_mw(&mut p.b.mem, Pd(1), qpn, &r1).unwrap();
    // Rebound elsewhere without invalidation.
    let r2 = bind(r1.new_rkey, 0x02, bk, 0x4000, 0x100, Access::REMOTE_WRITE);
    memory::bind_mw(&mut p.b.mem, Pd(1), qpn, &r2).unwrap();
    assert_eq!(
        write(&mut p, r2.new_rkey, B_BUF + 0x4000, 8),
        WcStatus::Success
    );
    assert_eq!(
        memory::invalidate(&mut p.b.mem, r2.new_rkey, Pd(1), qpn),
        Err(AccessError::WindowState)
    );
    // Length 0 unbinds.
    let r3 = MwBind {
        length: 0,
        ..bind(r2.new_rkey, 0x03, bk, 0, 0, Access::empty())
    };
    memory::bind_mw(&mut p.b.mem, Pd(1), qpn, &r3).unwrap();
    assert_eq!(write(&mut p, r3.new_rkey, B_BUF, 8), WcStatus::RemAccessErr);
}

#[test]
fn bad_binds_fail_with_mw_bind_err() {
    // A region without MW_BIND.
    let (mut p, _, _, mw) = setup(MwType::Type2);
    let plain =
        p.b.mem
            .register(Pd(1), 0x90_0000, 4096, Access::LOCAL_WRITE, 0);
    let req = bind(mw, 0x50, plain, 0, 16, Access::REMOTE_READ);
    let req = MwBind {
        addr: 0x90_0000,
        ..req
    };
    assert_eq!(
        memory::bind_mw(&mut p.b.mem, Pd(1), p.b.qp.qpn(), &req),
        Err(AccessError::NoAccess(Access::MW_BIND))
    );
    assert_eq!(
        b_local(&mut p, WrOpcode::BindMw(req)).0,
        WcStatus::MwBindErr
    );
    assert_eq!(p.b.qp.state(), QpState::Err);
    // A new key with another index; a range past the region; remote write on a region without
    // local write.
    let (mut p, _, bk, mw) = setup(MwType::Type2);
    let qpn = p.b.qp.qpn();
    let mut wrong = bind(mw, 0x51, bk, 0, 16, Access::REMOTE_READ);
    wrong.new_rkey ^= 0x100;
    assert_eq!(
        memory::bind_mw(&mut p.b.mem, Pd(1), qpn, &wrong),
        Err(AccessError::KeyIndex)
    );
    let past = bind(mw, 0x52, bk, 0xff00, 0x200, Access::REMOTE_READ);
    assert_eq!(
        memory::bind_mw(&mut p.b.mem, Pd(1), qpn, &past),
        Err(AccessError::OutOfBounds)
    );
    let ro = p.b.mem.register(Pd(1), 0xa0_0000, 4096, Access::MW_BIND, 0);
    let w = MwBind {
        addr: 0xa0_0000,
        ..bind(mw, 0x53, ro, 0, 16, Access::REMOTE_WRITE)
    };
    assert_eq!(
        memory::bind_mw(&mut p.b.mem, Pd(1), qpn, &w),
        Err(AccessError::NoAccess(Access::LOCAL_WRITE))
    );
    // A window key is no lkey.
    assert_eq!(
        memory::check(&p.b.mem, mw, Pd(1), 0, 0, Access::empty()),
        Err(AccessError::WrongKeyKind)
    );
}

#[test]
fn reg_mr_revives_an_invalidated_region_under_a_new_key() {
    let mut p = Pair::new();
    p.connect(ConnParams::default());
    p.a.mem.register(Pd(1), A_BUF, 4096, Access::LOCAL_WRITE, 0);
    let bk = p.b.mem.register(
        Pd(1),
        B_BUF,
        4096,
        Access::LOCAL_WRITE | Access::REMOTE_WRITE,
        0,
    );
    // Not free yet: refused.
    let new_key = (bk & !0xff) | 0x99;
    let reg = WrOpcode::RegMr {
        mr: bk,
        new_key,
        access: Access::LOCAL_WRITE | Access::REMOTE_WRITE,
    };
    assert_eq!(
        memory::reg_mr(&mut p.b.mem, Pd(1), bk, new_key, Access::LOCAL_WRITE),
        Err(AccessError::WindowState)
    );
    assert_eq!(
        b_local(&mut p, WrOpcode::LocalInv(Rkey(bk))),
        (WcStatus::Success, WcOpcode::LocalInv)
    );
    assert_eq!(b_local(&mut p, reg), (WcStatus::Success, WcOpcode::RegMr));
    assert_eq!(write(&mut p, new_key, B_BUF, 64), WcStatus::Success);
    assert_eq!(write(&mut p, bk, B_BUF, 64), WcStatus::RemAccessErr);
}
