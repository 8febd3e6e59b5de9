//! Basic RC operations between two QPs on a clean link.

mod common;

use common::*;
use rxe_transport::{
    Access, Pd, RecvWr, Remote, SendFlags, SendWr, Sge, WcOpcode, WcStatus, WrOpcode,
};
use rxe_wire::Rkey;

fn setup() -> (Pair, u32, u32) {
    let mut p = Pair::new();
    p.connect(ConnParams::default());
    let a_key = p.a.mem.register(
        Pd(1),
        0x10000,
        256 * 1024,
        Access::LOCAL_WRITE | Access::REMOTE_READ | Access::REMOTE_WRITE | Access::REMOTE_ATOMIC,
        0,
    );
    let b_key = p.b.mem.register(
        Pd(1),
        0x20000,
        256 * 1024,
        Access::LOCAL_WRITE | Access::REMOTE_READ | Access::REMOTE_WRITE | Access::REMOTE_ATOMIC,
        0,
    );
    (p, a_key, b_key)
}

#[test]
fn send_of_4_kib_arrives_in_the_receive_buffer() {
    let (mut p, ak, bk) = setup();
    p.a.mem.fill_pattern(ak, 7);
    p.b.qp
        .post_recv(RecvWr::new(
            9,
            Sge {
                addr: 0x20000,
                length: 8192,
                lkey: bk,
            },
        ))
        .unwrap();
    let wr = SendWr::new(
        1,
        WrOpcode::Send,
        Some(Sge {
            addr: 0x10000,
            length: 4096,
            lkey: ak,
        }),
        SendFlags::SIGNALED,
    );
    p.a.qp.post_send(wr, &p.a.mem).unwrap();
    p.drive();
    assert_eq!(p.a.send_wcs.len(), 1, "{:?}", p.a.send_wcs);
    assert_eq!(p.a.send_wcs[0].status, WcStatus::Success);
    assert_eq!(p.b.recv_wcs.len(), 1);
    assert_eq!(p.b.recv_wcs[0].byte_len, 4096);
    assert_eq!(p.b.recv_wcs[0].opcode, WcOpcode::Recv);
    assert_same(
        "received data",
        p.b.mem.bytes(bk, 0x20000, 4096),
        p.a.mem.bytes(ak, 0x10000, 4096),
    );
    let w = wire_summary(&p);
    let ops: Vec<_> = w.iter().map(|x| x.1).collect();
    use rxe_wire::Opcode as O;
    assert_eq!(
        ops,
        vec![
            O::RC_SEND_FIRST,
            O::RC_SEND_MIDDLE,
            O::RC_SEND_MIDDLE,
            O::RC_SEND_LAST,
            O::RC_ACKNOWLEDGE
        ]
    );
}

#[test]
fn write_read_and_atomics_work() {
    let (mut p, ak, bk) = setup();
    p.a.mem.fill_pattern(ak, 3);
    let remote = Remote {
        addr: 0x20000,
        rkey: Rkey(bk),
    };
    let write = SendWr::new(
        1,
        WrOpcode::RdmaWrite(remote),
        Some(Sge {
            addr: 0x10000,
            length: 65536,
            lkey: ak,
        }),
        SendFlags::SIGNALED,
    );
    p.a.qp.post_send(write, &p.a.mem).unwrap();
    let read = SendWr::new(
        2,
        WrOpcode::RdmaRead(remote),
        Some(Sge {
            addr: 0x30000,
            length: 65536,
            lkey: ak,
        }),
        SendFlags::SIGNALED,
    );
    p.a.qp.post_send(read, &p.a.mem).unwrap();
    let cas = SendWr::new(
        3,
        WrOpcode::AtomicCmpSwp {
            remote: Remote {
                addr: 0x40000,
                rkey: Rkey(bk),
            },
            compare: 0,
            swap: 42,
        },
        Some(Sge {
            addr: 0x48000,
            length: 8,
            lkey: ak,
        }),
        SendFlags::SIGNALED,
    );
    p.a.qp.post_send(cas, &p.a.mem).unwrap();
    let faa = SendWr::new(
        4,
        WrOpcode::AtomicFetchAdd {
            remote: Remote {
                addr: 0x40000,
                rkey: Rkey(bk),
            },
            add: 8,
        },
        Some(Sge {
            addr: 0x48008,
            length: 8,
            lkey: ak,
        }),
        SendFlags::SIGNALED,
    );
    p.a.qp.post_send(faa, &p.a.mem).unwrap();
    p.drive();
    let st: Vec<_> = p.a.send_wcs.iter().map(|w| (w.wr_id, w.status)).collect();
    assert_eq!(
        st,
        vec![
            (1, WcStatus::Success),
            (2, WcStatus::Success),
            (3, WcStatus::Success),
            (4, WcStatus::Success)
        ]
    );
    assert_same(
        "written",
        p.b.mem.bytes(bk, 0x20000, 65536),
        p.a.mem.bytes(ak, 0x10000, 65536),
    );
    assert_same(
        "read back",
        p.a.mem.bytes(ak, 0x30000, 65536),
        p.a.mem.bytes(ak, 0x10000, 65536),
    );
    assert_eq!(p.a.mem.bytes(ak, 0x48000, 8), &0u64.to_ne_bytes());
    assert_eq!(p.a.mem.bytes(ak, 0x48008, 8), &42u64.to_ne_bytes());
    assert_eq!(p.b.mem.bytes(bk, 0x40000, 8), &50u64.to_ne_bytes());
    assert_eq!(p.a.send_wcs[1].byte_len, 65536);
}

#[test]
fn sender_completion_of_send_with_imm_carries_with_imm() {
    let (mut p, ak, bk) = setup();
    p.b.qp
        .post_recv(RecvWr::new(
            9,
            Sge {
                addr: 0x20000,
                length: 64,
                lkey: bk,
            },
        ))
        .unwrap();
    let imm = rxe_wire::ImmDt::from_be_u32(0x1122_3344);
    let wr = SendWr::new(
        1,
        WrOpcode::SendWithImm(imm),
        Some(Sge {
            addr: 0x10000,
            length: 16,
            lkey: ak,
        }),
        SendFlags::SIGNALED,
    );
    p.a.qp.post_send(wr, &p.a.mem).unwrap();
    p.drive();
    assert_eq!(p.a.send_wcs[0].status, WcStatus::Success);
    assert!(p.a.send_wcs[0]
        .wc_flags
        .contains(rxe_transport::WcFlags::WITH_IMM));
    assert_eq!(p.b.recv_wcs[0].imm_data, Some(imm));
}
