//! Cut-through placement: in-order RC WRITE MIDDLE/LAST packets and READ responses reach memory
//! while their ICRC is computed; a bad packet is dropped without touching QP state, and its
//! bytes are overwritten by the good packet of the same PSN before anything completes.
//! Everything else has its ICRC checked before any byte is used.

mod common;

use common::*;
use rxe_transport::{Access, Pd, Remote, SendFlags, SendWr, Sge, WcStatus, WrOpcode};
use rxe_wire::{Checks, Opcode as O, Rkey, RoceV2Packet};

const A_BUF: u64 = 0x10_0000;
const B_BUF: u64 = 0x80_0000;
const LEN: usize = 8 * 1024;
const ALL: Access = Access::LOCAL_WRITE
    .union(Access::REMOTE_READ)
    .union(Access::REMOTE_WRITE);

fn setup(slices: bool) -> (Pair, u32, u32) {
    let mut p = Pair::new();
    p.connect(ConnParams::default()); // MTU 1024: 8 packets per 8 KiB message
    let ak = p.a.mem.register(Pd(1), A_BUF, 2 * LEN, ALL, 0);
    let bk = p.b.mem.register(Pd(1), B_BUF, LEN, ALL, 0);
    p.a.mem.fill_pattern(ak, 11);
    p.b.mem.fill_pattern(bk, 77);
    p.a.mem.no_slices = !slices;
    p.b.mem.no_slices = !slices;
    (p, ak, bk)
}

/// Every packet `node` has to send now.
fn pump(node: &mut Node, p_now: rxe_transport::Instant) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let mut buf = vec![0u8; 4096 + 200];
        match node.qp.poll_transmit(p_now, &mut buf, &mut node.mem) {
            Ok(Some(n)) => {
                buf.truncate(n);
                out.push(buf);
            }
            Ok(None) => return out,
            Err(e) => panic!("poll_transmit: {e}"),
        }
    }
}

/// Hands a packet over as a host that leaves the ICRC to the QP.
fn deliver(node: &mut Node, now: rxe_transport::Instant, bytes: &[u8]) {
    let checks = Checks {
        icrc: false,
        ..Checks::ALL
    };
    let pkt = RoceV2Packet::new_checked(bytes, &checks).expect("structure");
    node.qp.handle_packet(now, &pkt, &mut node.mem);
}

fn opcode(bytes: &[u8]) -> O {
    let pkt = RoceV2Packet::new_checked(bytes, &Checks::STRUCTURE_ONLY).expect("structure");
    pkt.roce().opcode()
}

/// Offset of the payload in a packet of this opcode (IPv4, UDP, BTH, extension headers).
fn payload_at(bytes: &[u8]) -> usize {
    let pkt = RoceV2Packet::new_checked(bytes, &Checks::STRUCTURE_ONLY).expect("structure");
    20 + 8 + pkt.roce().header_len()
}

fn write_wr(ak: u32, bk: u32) -> SendWr {
    SendWr::new(
        1,
        WrOpcode::RdmaWrite(Remote {
            addr: B_BUF,
            rkey: Rkey(bk),
        }),
        Some(Sge {
            addr: A_BUF,
            length: LEN as u32,
            lkey: ak,
        }),
        SendFlags::SIGNALED,
    )
}

fn corrupted_write_middle_is_placed_dropped_and_replaced(slices: bool) {
    let (mut p, ak, bk) = setup(slices);
    p.a.qp.post_send(write_wr(ak, bk), &p.a.mem).expect("post");
    let now = p.now;
    let pkts = pump(&mut p.a, now);
    assert_eq!(pkts.len(), 8);
    assert_eq!(opcode(&pkts[2]), O::RC_RDMA_WRITE_MIDDLE);
    for b in &pkts[..2] {
        deliver(&mut p.b, now, b);
    }
    // Packet 2 with one payload bit flipped.
    let mut bad = pkts[2].clone();
    let at = payload_at(&bad) + 100;
    bad[at] ^= 0x10;
    let expected_before = p.b.mem.bytes(bk, B_BUF + 2048, 1024).to_vec();
    deliver(&mut p.b, now, &bad);
    let c = p.b.qp.counters();
    assert_eq!((c.icrc_err, c.rcvd_pkts), (1, 2), "dropped, not received");
    let got = p.b.mem.bytes(bk, B_BUF + 2048, 1024);
    // Placed before the check (both memory paths place early): the bad byte is there.
    assert_eq!(got[100], bad[at]);
    assert_ne!(got, &expected_before[..]);
    assert!(
        pump(&mut p.b, now).is_empty(),
        "no ACK or NAK for a bad packet"
    );
    // The good packet of the same PSN is accepted and overwrites the range; the rest follows.
    for b in &pkts[2..] {
        deliver(&mut p.b, now, b);
    }
    assert_eq!(p.b.qp.counters().rcvd_pkts, 8);
    assert_same(
        "write",
        p.b.mem.bytes(bk, B_BUF, LEN),
        p.a.mem.bytes(ak, A_BUF, LEN),
    );
    let acks = pump(&mut p.b, now);
    assert_eq!(acks.len(), 1);
    deliver(&mut p.a, now, &acks[0]);
    let wc = p.a.qp.poll_send_completion().expect("completion");
    assert_eq!(wc.status, WcStatus::Success);
}

#[test]
fn a_corrupted_write_middle_is_placed_early_dropped_and_overwritten_by_the_good_one() {
    corrupted_write_middle_is_placed_dropped_and_replaced(true);
}

#[test]
fn the_same_without_memory_slices() {
    corrupted_write_middle_is_placed_dropped_and_replaced(false);
}

#[test]
fn a_corrupted_write_first_is_checked_before_anything_is_placed() {
    let (mut p, ak, bk) = setup(true);
    p.a.qp.post_send(write_wr(ak, bk), &p.a.mem).expect("post");
    let now = p.now;
    let pkts = pump(&mut p.a, now);
    assert_eq!(opcode(&pkts[0]), O::RC_RDMA_WRITE_FIRST);
    let before = p.b.mem.bytes(bk, B_BUF, LEN).to_vec();
    // A payload bit, and separately a RETH bit (the address): neither may reach memory.
    for at in [payload_at(&pkts[0]) + 5, 20 + 8 + 12 + 3] {
        let mut bad = pkts[0].clone();
        bad[at] ^= 0x01;
        deliver(&mut p.b, now, &bad);
        assert_eq!(p.b.mem.bytes(bk, B_BUF, LEN), &before[..]);
    }
    assert_eq!(p.b.qp.counters().icrc_err, 2);
    assert_eq!(p.b.qp.counters().rcvd_pkts, 0);
    assert!(pump(&mut p.b, now).is_empty());
}

#[test]
fn a_middle_packet_ahead_of_the_expected_psn_is_checked_first() {
    // Out of order: no early placement, so a corrupted one changes nothing and draws no NAK.
    let (mut p, ak, bk) = setup(true);
    p.a.qp.post_send(write_wr(ak, bk), &p.a.mem).expect("post");
    let now = p.now;
    let pkts = pump(&mut p.a, now);
    deliver(&mut p.b, now, &pkts[0]);
    let before = p.b.mem.bytes(bk, B_BUF, LEN).to_vec();
    let mut bad = pkts[3].clone();
    let at = payload_at(&bad);
    bad[at] ^= 0x80;
    deliver(&mut p.b, now, &bad);
    assert_eq!(p.b.mem.bytes(bk, B_BUF, LEN), &before[..]);
    assert_eq!(p.b.qp.counters().icrc_err, 1);
    assert_eq!(p.b.qp.counters().out_of_seq_request, 0);
    assert!(pump(&mut p.b, now).is_empty());
}

#[test]
fn a_corrupted_read_response_is_placed_dropped_and_recovered() {
    let (mut p, ak, bk) = setup(true);
    let wr = SendWr::new(
        7,
        WrOpcode::RdmaRead(Remote {
            addr: B_BUF,
            rkey: Rkey(bk),
        }),
        Some(Sge {
            addr: A_BUF + LEN as u64,
            length: LEN as u32,
            lkey: ak,
        }),
        SendFlags::SIGNALED,
    );
    p.a.qp.post_send(wr, &p.a.mem).expect("post");
    let now = p.now;
    let req = pump(&mut p.a, now);
    deliver(&mut p.b, now, &req[0]);
    let resp = pump(&mut p.b, now);
    assert_eq!(resp.len(), 8);
    assert_eq!(opcode(&resp[1]), O::RC_RDMA_READ_RESPONSE_MIDDLE);
    deliver(&mut p.a, now, &resp[0]);
    let mut bad = resp[1].clone();
    let at = payload_at(&bad) + 7;
    bad[at] ^= 0x04;
    deliver(&mut p.a, now, &bad);
    assert_eq!(p.a.qp.counters().icrc_err, 1);
    assert_eq!(
        p.a.mem.bytes(ak, A_BUF + LEN as u64 + 1024 + 7, 1)[0],
        bad[at],
        "placed early"
    );
    assert!(p.a.qp.poll_send_completion().is_none());
    for b in &resp[1..] {
        deliver(&mut p.a, now, b);
    }
    let wc = p.a.qp.poll_send_completion().expect("READ completes");
    assert_eq!(
        (wc.wr_id, wc.status, wc.byte_len),
        (7, WcStatus::Success, LEN as u32)
    );
    assert_same(
        "read",
        p.a.mem.bytes(ak, A_BUF + LEN as u64, LEN),
        p.b.mem.bytes(bk, B_BUF, LEN),
    );
}

#[test]
fn lossy_corrupting_link_still_delivers_exact_data_through_cut_through() {
    // Many WRITEs and READs over a link that corrupts 5% of packets, QPs checking the ICRC.
    let (mut p, ak, bk) = setup(true);
    p.faults = Faults {
        loss: 0.02,
        duplicate: 0.02,
        reorder: 0.02,
        corrupt: 0.05,
    };
    for i in 0..20u64 {
        let wr = if i % 2 == 0 {
            write_wr(ak, bk)
        } else {
            SendWr::new(
                i,
                WrOpcode::RdmaRead(Remote {
                    addr: B_BUF,
                    rkey: Rkey(bk),
                }),
                Some(Sge {
                    addr: A_BUF + LEN as u64,
                    length: LEN as u32,
                    lkey: ak,
                }),
                SendFlags::SIGNALED,
            )
        };
        p.a.qp.post_send(wr, &p.a.mem).expect("post");
        p.drive();
        let wc = p.a.send_wcs.pop().expect("completion");
        assert_eq!(wc.status, WcStatus::Success);
        assert_same(
            "memory",
            p.a.mem.bytes(ak, A_BUF, LEN),
            p.b.mem.bytes(bk, B_BUF, LEN),
        );
        if i % 2 == 1 {
            assert_same(
                "read back",
                p.a.mem.bytes(ak, A_BUF + LEN as u64, LEN),
                p.b.mem.bytes(bk, B_BUF, LEN),
            );
        }
    }
    let caught = p.a.qp.counters().icrc_err + p.b.qp.counters().icrc_err;
    assert!(caught > 0, "the link corrupted nothing?");
}
