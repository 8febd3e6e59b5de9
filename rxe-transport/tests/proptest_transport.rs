//! Property tests of the RC transport on the simulated link of `tests/common`.
//!
//! - `random_operation_mixes_complete_exactly_once_in_order`: random mixes of SEND, WRITE (with
//!   and without immediate data), READ, FETCH_ADD and CMP_SWAP in both directions, with random
//!   scatter/gather lists, inline data, fences, signaling, receive requests posted late (RNR
//!   NAKs) and random loss, duplication, reordering and corruption, complete exactly once and in
//!   order, deliver the receive completions the SENDs call for, and leave both nodes' memory as
//!   a sequential model predicts (`retry_cnt` = `rnr_retry` = 7 retry forever, as in Linux).
//! - `random_faults_with_finite_retries`: with `retry_cnt` 0-2 (and sometimes a finite
//!   `rnr_retry`), each side's requests all succeed, or a prefix succeeds, one fails with
//!   RETRY_EXC_ERR (or RNR_RETRY_EXC_ERR) and every later one with WR_FLUSH_ERR.
//! - `arbitrary_packets_never_panic_a_responder_or_requester`: random bytes, mutated packets and
//!   mutated-then-re-emitted (ICRC-valid) packets fed to both QPs among normal traffic never panic
//!   them, and leave them in RTS or ERR with their queues consistent.
//!
//! Throughout, the queues stay within their capacities, every posted request is accounted for,
//! and the link never holds more than a bounded number of packets. Runs are deterministic (a fixed
//! seed); `PROPTEST_CASES` and `PROPTEST_RNG_SEED` make a longer or different hunt.

mod common;

use core::net::Ipv4Addr;
use core::time::Duration;
use std::collections::VecDeque;
use std::sync::OnceLock;

use common::*;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{RngSeed, TestCaseError};
use rxe_transport::qp::MAX_RD_ATOMIC;
use rxe_transport::{
    Access, Instant, Memory, Mtu, Pd, QpState, RecvWr, Remote, SendFlags, SendWr, SgList, Sge,
    WcOpcode, WcStatus, WorkCompletion, WrOpcode,
};
use rxe_wire::{
    aeth, atmack, atmeth, bth, deth, feth, ieth, reth, Checks, ExtHeaders, HeaderSet, ImmDt,
    IpRepr, Msn, Opcode, PKey, PayloadRule, Psn, QKey, Qpn, Rkey, RoceRepr, RoceV2Packet,
    RoceV2Repr, Syndrome,
};

// ---------------------------------------------------------------------------------------------
// Memory layout. Each node registers four regions, in this order, so both nodes have the same
// keys: SRC (gather source of its own requests, never written), DST (where its READs and atomic
// results land), TGT (what the peer's WRITE, READ and atomics target) and RCV (receive buffers
// for the peer's SENDs, one SLOT per receive request). A's operations touch A.SRC, A.DST, B.TGT
// and B.RCV; B's touch the other four: the two directions never race.
// ---------------------------------------------------------------------------------------------

const SRC: u64 = 0x0010_0000;
const DST: u64 = 0x0020_0000;
const TGT: u64 = 0x0030_0000;
const RCV: u64 = 0x0040_0000;
const REGION: u32 = 128 * 1024;
const SLOT: u32 = 72 * 1024;
const MAX_MSG: u32 = 64 * 1024;
const MAX_OPS: usize = 40;
/// Receive requests' `wr_id`s start here (send requests count from 1).
const RECV_ID: u64 = 100_000;

/// The longest a packet can stay on the simulated link: latency 5 µs, reordering up to 20 µs more
/// and a duplicate 3 µs after that (see `Pair::transmit`), with a margin.
const LINK_WINDOW: Duration = Duration::from_micros(30);
/// Most packets that may be on the link at once. Go-back-N over a reordering link is costly:
/// every gap restarts the stream, and a resent READ request makes the responder replay its whole
/// remaining response (a 64 KiB READ at MTU 256 under 10% reordering puts ~4000 packets on the
/// wire and ~1700 within one link window). The most sent within one window in 2·10^4 cases is
/// about 4100; the bound leaves room for that and catches a storm that feeds on itself.
const INFLIGHT_BOUND: usize = 32 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Keys {
    src: u32,
    dst: u32,
    tgt: u32,
    rcv: u32,
}

fn fill_random(data: &mut [u8], seed: u64) {
    let mut rng = common::Rng::new(seed);
    for chunk in data.chunks_mut(8) {
        let v = rng.next_u64().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

fn setup_memory(node: &mut Node, seed: u64, recv_slots: usize) -> Keys {
    let pd = Pd(1);
    let remote =
        Access::LOCAL_WRITE | Access::REMOTE_WRITE | Access::REMOTE_READ | Access::REMOTE_ATOMIC;
    let src = node
        .mem
        .register(pd, SRC, REGION as usize, Access::empty(), 0);
    let dst = node
        .mem
        .register(pd, DST, REGION as usize, Access::LOCAL_WRITE, 0);
    let tgt = node.mem.register(pd, TGT, REGION as usize, remote, 0);
    let rcv = node.mem.register(
        pd,
        RCV,
        recv_slots.max(1) * SLOT as usize,
        Access::LOCAL_WRITE,
        0,
    );
    for (i, key) in [src, dst, tgt, rcv].into_iter().enumerate() {
        fill_random(
            &mut node.mem.region_mut(key).data,
            seed.wrapping_mul(8).wrapping_add(i as u64),
        );
    }
    Keys { src, dst, tgt, rcv }
}

// ---------------------------------------------------------------------------------------------
// Random operation mixes.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Kind {
    Send,
    SendImm(u32),
    Write,
    WriteImm(u32),
    Read,
    FetchAdd(u64),
    /// `hit`: compare with the value the location will hold (so the swap happens).
    CmpSwap {
        hit: bool,
        compare: u64,
        swap: u64,
    },
}

impl Kind {
    fn is_atomic(self) -> bool {
        matches!(self, Kind::FetchAdd(_) | Kind::CmpSwap { .. })
    }
    /// Whether the operation consumes a receive request at the responder.
    fn consumes_recv(self) -> bool {
        matches!(self, Kind::Send | Kind::SendImm(_) | Kind::WriteImm(_))
    }
}

/// One work request as generated. Offsets are raw numbers reduced modulo the room available, so
/// they shrink towards 0.
#[derive(Debug, Clone)]
struct Op {
    from_a: bool,
    kind: Kind,
    /// Message length (atomics: 8, whatever this says).
    len: u32,
    /// Chooses the remote offset (atomics: a hot cell among the first 8, or any aligned one).
    remote: u32,
    /// Chooses the local offsets.
    local: u32,
    /// Scatter/gather pieces (1-3) and where the message splits between them.
    pieces: u8,
    split: (u32, u32),
    /// Gaps between scatter pieces.
    gap: (u8, u8),
    /// Receive buffer: capacity beyond the message, and where it splits in two.
    recv_slack: u8,
    recv_split: u32,
    signaled: bool,
    fence: bool,
    inline: bool,
}

#[derive(Debug, Clone)]
struct Case {
    faults: Faults,
    seed: u64,
    conn: ConnParams,
    ops: Vec<Op>,
    /// Hold back some receive requests (how many: the first number modulo the count + 1) and
    /// post them after that many steps: the SENDs meet RNR NAKs meanwhile.
    late_recvs: Option<(u32, u32)>,
    /// Post one send request every this many steps instead of all of them up front.
    stagger: Option<u8>,
}

fn arb_prob(max: f64) -> impl Strategy<Value = f64> {
    prop_oneof![1 => Just(0.0), 3 => 0.0..=max]
}

fn arb_faults() -> impl Strategy<Value = Faults> {
    (
        arb_prob(0.10),
        arb_prob(0.10),
        arb_prob(0.10),
        arb_prob(0.05),
    )
        .prop_map(|(loss, duplicate, reorder, corrupt)| Faults {
            loss,
            duplicate,
            reorder,
            corrupt,
        })
}

fn arb_mtu() -> impl Strategy<Value = Mtu> {
    prop::sample::select(vec![
        Mtu::M256,
        Mtu::M512,
        Mtu::M1024,
        Mtu::M2048,
        Mtu::M4096,
    ])
}

fn arb_psn() -> impl Strategy<Value = u32> {
    // Near the 24-bit wrap half of the time.
    prop_oneof![(0xff_ff00u32..=0xff_ffff), (0u32..1 << 24)]
}

/// `timeout` is mostly 8-14 (1 ms to 67 ms: the timer fires only when packets are lost), and
/// sometimes 3-7 (32 µs to 0.5 ms: it may fire while responses are still on their way).
fn arb_conn(
    retry_cnt: impl Strategy<Value = u8>,
    rnr_retry: impl Strategy<Value = u8>,
) -> impl Strategy<Value = ConnParams> {
    (
        arb_mtu(),
        prop_oneof![4 => 8u8..=14, 1 => 3u8..=7],
        (retry_cnt, rnr_retry),
        1u8..=MAX_RD_ATOMIC,
        prop::sample::select(vec![1u8, 4, 8, 12, 14]),
        arb_psn(),
        arb_psn(),
    )
        .prop_map(
            |(mtu, timeout, (retry_cnt, rnr_retry), max_rd_atomic, min_rnr_timer, a_psn, b_psn)| {
                ConnParams {
                    mtu,
                    timeout,
                    retry_cnt,
                    rnr_retry,
                    min_rnr_timer,
                    max_rd_atomic,
                    a_psn,
                    b_psn,
                    ..ConnParams::default()
                }
            },
        )
}

fn arb_kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        3 => Just(Kind::Send),
        2 => any::<u32>().prop_map(Kind::SendImm),
        3 => Just(Kind::Write),
        2 => any::<u32>().prop_map(Kind::WriteImm),
        3 => Just(Kind::Read),
        2 => prop_oneof![0u64..16, any::<u64>()].prop_map(Kind::FetchAdd),
        2 => (any::<bool>(), any::<u64>(), any::<u64>())
            .prop_map(|(hit, compare, swap)| Kind::CmpSwap { hit, compare, swap }),
    ]
}

fn arb_len() -> impl Strategy<Value = u32> {
    prop_oneof![
        1 => Just(0u32),
        5 => 1u32..=512,
        3 => 513u32..=8192,
        1 => 8193u32..=MAX_MSG,
    ]
}

fn arb_op() -> impl Strategy<Value = Op> {
    (
        any::<bool>(),
        arb_kind(),
        arb_len(),
        (any::<u32>(), any::<u32>()),
        (1u8..=3, (any::<u32>(), any::<u32>()), (0u8..=64, 0u8..=64)),
        (0u8..=64, any::<u32>()),
        (
            prop::bool::weighted(0.7),
            prop::bool::weighted(0.1),
            prop::bool::weighted(0.3),
        ),
    )
        .prop_map(
            |(
                from_a,
                kind,
                len,
                (remote, local),
                (pieces, split, gap),
                (recv_slack, recv_split),
                (signaled, fence, inline),
            )| Op {
                from_a,
                kind,
                len,
                remote,
                local,
                pieces,
                split,
                gap,
                recv_slack,
                recv_split,
                signaled,
                fence,
                inline,
            },
        )
}

fn arb_case(
    retry_cnt: impl Strategy<Value = u8>,
    rnr_retry: impl Strategy<Value = u8>,
) -> impl Strategy<Value = Case> {
    (
        arb_faults(),
        any::<u64>(),
        arb_conn(retry_cnt, rnr_retry),
        prop::collection::vec(arb_op(), 1..=MAX_OPS),
        prop::option::weighted(0.3, (any::<u32>(), 1u32..2000)),
        prop::option::weighted(0.2, 1u8..20),
    )
        .prop_map(|(faults, seed, conn, ops, late_recvs, stagger)| Case {
            faults,
            seed,
            conn,
            ops,
            late_recvs,
            stagger,
        })
}

/// What a send request must complete with.
#[derive(Debug, Clone, Copy)]
struct Expect {
    wr_id: u64,
    signaled: bool,
    opcode: WcOpcode,
    byte_len: u32,
}

/// What a receive request must complete with.
#[derive(Debug, Clone, Copy)]
struct ExpectRecv {
    wr_id: u64,
    opcode: WcOpcode,
    byte_len: u32,
    imm: Option<ImmDt>,
}

/// The work requests of both sides (index 0 = a, 1 = b), their expected completions, and the
/// memory both nodes must end with.
#[derive(Debug, Default)]
struct Plan {
    sends: [Vec<SendWr>; 2],
    expect: [Vec<Expect>; 2],
    recvs: [Vec<RecvWr>; 2],
    expect_recv: [Vec<ExpectRecv>; 2],
    model: [TestMemory; 2],
    /// (side, index in `sends[side]`) in posting order.
    order: Vec<(usize, usize)>,
}

fn both_mut<T>(v: &mut [T; 2], x: usize) -> (&mut T, &mut T) {
    let (l, r) = v.split_at_mut(1);
    if x == 0 {
        (&mut l[0], &mut r[0])
    } else {
        (&mut r[0], &mut l[0])
    }
}

fn mix(v: u32, j: usize) -> u32 {
    let h = (u64::from(v) ^ (j as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_mul(0xff51_afd7_ed55_8ccd);
    (h >> 32) as u32
}

/// Splits a message of `len` bytes into 1-3 non-empty pieces (none for an empty message with
/// more than one piece asked for, so empty scatter/gather lists occur too).
fn piece_lens(len: u32, pieces: u8, split: (u32, u32)) -> Vec<u32> {
    if len == 0 {
        return if pieces >= 2 { Vec::new() } else { vec![0] };
    }
    let mut cuts = [split.0 % (len + 1), split.1 % (len + 1)];
    cuts.sort_unstable();
    let all = match pieces {
        1 => vec![len],
        2 => vec![cuts[0], len - cuts[0]],
        _ => vec![cuts[0], cuts[1] - cuts[0], len - cuts[1]],
    };
    all.into_iter().filter(|&l| l > 0).collect()
}

fn sge(addr: u64, length: u32, lkey: u32) -> Sge {
    Sge { addr, length, lkey }
}

fn sg_of(pieces: impl IntoIterator<Item = Sge>) -> SgList {
    let mut sg = SgList::new();
    for s in pieces {
        sg.push(s).expect("at most 3 pieces");
    }
    sg
}

/// Gather list: each piece anywhere in SRC (pieces may overlap: they are only read).
fn gather_sg(op: &Op, key: u32, len: u32) -> SgList {
    sg_of(
        piece_lens(len, op.pieces, op.split)
            .into_iter()
            .enumerate()
            .map(|(j, l)| sge(SRC + u64::from(mix(op.local, j) % (REGION - l + 1)), l, key)),
    )
}

/// Scatter list for READ data: pieces in DST one after another, with gaps.
fn scatter_sg(op: &Op, key: u32, len: u32) -> SgList {
    let lens = piece_lens(len, op.pieces, op.split);
    let gaps = [u32::from(op.gap.0), u32::from(op.gap.1)];
    let used_gaps: u32 = gaps.iter().take(lens.len().saturating_sub(1)).sum();
    let mut at = DST + u64::from(op.local % (REGION - len - used_gaps + 1));
    let mut out = Vec::new();
    for (j, l) in lens.into_iter().enumerate() {
        out.push(sge(at, l, key));
        at += u64::from(l) + u64::from(gaps.get(j).copied().unwrap_or(0));
    }
    sg_of(out)
}

/// Receive buffer `k`: `len` + slack bytes in its slot, in one piece or two with a gap.
fn recv_sg(op: &Op, key: u32, k: usize, len: u32) -> SgList {
    let cap = len + u32::from(op.recv_slack);
    let base = RCV + k as u64 * u64::from(SLOT);
    let s = op.recv_split;
    if cap < 2 || s.is_multiple_of(3) {
        return sg_of([sge(base, cap, key)]);
    }
    let first = 1 + s % (cap - 1);
    let gap = u64::from((s >> 16) % 65);
    sg_of([
        sge(base, first, key),
        sge(base + u64::from(first) + gap, cap - first, key),
    ])
}

fn read_sg(m: &TestMemory, sg: &SgList) -> Vec<u8> {
    let mut out = Vec::new();
    for s in sg {
        out.extend_from_slice(m.bytes(s.lkey, s.addr, s.length as usize));
    }
    out
}

/// Writes `data` across the pieces of `sg`, in order (the last piece may have room to spare).
fn scatter(m: &mut TestMemory, sg: &SgList, data: &[u8]) {
    let mut at = 0;
    for s in sg {
        let n = (s.length as usize).min(data.len() - at);
        m.write(s.lkey, s.addr, &data[at..at + n]);
        at += n;
    }
    assert_eq!(at, data.len(), "scatter list too short for the model");
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.1 > 0 && b.1 > 0 && a.0 < b.0 + b.1 && b.0 < a.0 + a.1
}

/// Builds the work requests and runs them, in posting order, on a copy of both memories.
///
/// A READ's data is read from memory when the responder sends its response packets, so a later
/// WRITE or atomic to the same bytes may show in it (IBTA allows this; the requester's fence is
/// what orders them): such a request gets `FENCE`, which makes the model exact.
fn plan(case: &Case, mem: [&TestMemory; 2], keys: Keys) -> Plan {
    let mut pl = Plan {
        model: [mem[0].clone(), mem[1].clone()],
        ..Plan::default()
    };
    // READ ranges (offset in the peer's TGT, length) not yet behind a fence, per side.
    let mut reads: [Vec<(u64, u64)>; 2] = Default::default();
    for (i, op) in case.ops.iter().enumerate() {
        let x = usize::from(!op.from_a);
        let y = 1 - x;
        let wr_id = 1 + i as u64;
        let len = if op.kind.is_atomic() { 8 } else { op.len };
        let (mx, my) = both_mut(&mut pl.model, x);
        let mut fence = op.fence;
        let mut flags = SendFlags::empty();
        if op.signaled {
            flags |= SendFlags::SIGNALED;
        }
        let remote_off = u64::from(op.remote % (REGION - len + 1));
        let remote = Remote {
            addr: TGT + remote_off,
            rkey: Rkey(keys.tgt),
        };
        let (opcode, sg) = match op.kind {
            Kind::Send | Kind::SendImm(_) | Kind::Write | Kind::WriteImm(_) => {
                let sg = gather_sg(op, keys.src, len);
                let data = read_sg(mx, &sg);
                if op.inline && len as usize <= rxe_transport::verbs::MAX_INLINE {
                    flags |= SendFlags::INLINE;
                }
                let imm = match op.kind {
                    Kind::SendImm(v) | Kind::WriteImm(v) => Some(ImmDt::from_be_u32(v)),
                    _ => None,
                };
                if matches!(op.kind, Kind::Write | Kind::WriteImm(_)) {
                    my.write(keys.tgt, remote.addr, &data);
                    fence |= reads[x]
                        .iter()
                        .any(|&r| overlaps(r, (remote_off, u64::from(len))));
                }
                if op.kind.consumes_recv() {
                    let k = pl.recvs[y].len();
                    let rsg = recv_sg(op, keys.rcv, k, len);
                    let recv_opcode = if matches!(op.kind, Kind::WriteImm(_)) {
                        WcOpcode::RecvRdmaWithImm
                    } else {
                        scatter(my, &rsg, &data);
                        WcOpcode::Recv
                    };
                    pl.recvs[y].push(RecvWr {
                        wr_id: RECV_ID + k as u64,
                        sg_list: rsg,
                    });
                    pl.expect_recv[y].push(ExpectRecv {
                        wr_id: RECV_ID + k as u64,
                        opcode: recv_opcode,
                        byte_len: len,
                        imm,
                    });
                }
                let opcode = match (op.kind, imm) {
                    (Kind::Send, _) => WrOpcode::Send,
                    (Kind::SendImm(_), Some(i)) => WrOpcode::SendWithImm(i),
                    (Kind::Write, _) => WrOpcode::RdmaWrite(remote),
                    (_, Some(i)) => WrOpcode::RdmaWriteWithImm(remote, i),
                    _ => unreachable!(),
                };
                (opcode, sg)
            }
            Kind::Read => {
                let data = my.bytes(keys.tgt, remote.addr, len as usize).to_vec();
                let sg = scatter_sg(op, keys.dst, len);
                scatter(mx, &sg, &data);
                (WrOpcode::RdmaRead(remote), sg)
            }
            Kind::FetchAdd(_) | Kind::CmpSwap { .. } => {
                let off = if op.remote % 4 != 0 {
                    u64::from((op.remote >> 2) % 8) * 8
                } else {
                    u64::from((op.remote >> 2) % (REGION / 8)) * 8
                };
                let remote = Remote {
                    addr: TGT + off,
                    rkey: Rkey(keys.tgt),
                };
                fence |= reads[x].iter().any(|&r| overlaps(r, (off, 8)));
                let current = u64::from_ne_bytes(
                    my.bytes(keys.tgt, remote.addr, 8)
                        .try_into()
                        .expect("8 bytes"),
                );
                let (opcode, aop) = match op.kind {
                    Kind::FetchAdd(add) => (
                        WrOpcode::AtomicFetchAdd { remote, add },
                        rxe_transport::AtomicOp::FetchAdd(add),
                    ),
                    Kind::CmpSwap { hit, compare, swap } => {
                        let compare = if hit { current } else { compare };
                        (
                            WrOpcode::AtomicCmpSwp {
                                remote,
                                compare,
                                swap,
                            },
                            rxe_transport::AtomicOp::CmpSwp { compare, swap },
                        )
                    }
                    _ => unreachable!(),
                };
                let orig = my.atomic(keys.tgt, remote.addr, aop);
                let local = DST + u64::from(op.local % (REGION - 7));
                mx.write(keys.dst, local, &orig.to_ne_bytes());
                (opcode, sg_of([sge(local, 8, keys.dst)]))
            }
        };
        if fence {
            flags |= SendFlags::FENCE;
            reads[x].clear();
        }
        if matches!(op.kind, Kind::Read) {
            reads[x].push((remote_off, u64::from(len)));
        }
        pl.expect[x].push(Expect {
            wr_id,
            signaled: op.signaled,
            opcode: opcode.wc_opcode(),
            byte_len: len,
        });
        pl.order.push((x, pl.sends[x].len()));
        pl.sends[x].push(SendWr {
            wr_id,
            opcode,
            sg_list: sg,
            flags,
            ud: None,
        });
    }
    // The last request of each side is signaled.
    for x in 0..2 {
        if let (Some(w), Some(e)) = (pl.sends[x].last_mut(), pl.expect[x].last_mut()) {
            w.flags |= SendFlags::SIGNALED;
            e.signaled = true;
        }
    }
    pl
}

fn node(p: &Pair, x: usize) -> &Node {
    if x == 0 {
        &p.a
    } else {
        &p.b
    }
}

fn node_mut(p: &mut Pair, x: usize) -> &mut Node {
    if x == 0 {
        &mut p.a
    } else {
        &mut p.b
    }
}

/// Moves completions the last step left in the QPs (timers run after the Pair's own drain).
fn drain(p: &mut Pair) {
    for x in 0..2 {
        let n = node_mut(p, x);
        while let Some(wc) = n.qp.poll_send_completion() {
            n.send_wcs.push(wc);
        }
        while let Some(wc) = n.qp.poll_recv_completion() {
            n.recv_wcs.push(wc);
        }
    }
}

/// A short account of the run for failure messages: states, counters and the end of the wire.
fn diag(p: &Pair) -> String {
    let mut s = String::new();
    for (name, n) in [("a", &p.a), ("b", &p.b)] {
        s += &format!(
            "{name}: {} sq_psn={:#x} rq_psn={:#x} sq={} rq={} send_wcs={} recv_wcs={} rejected={}\n   {}\n",
            n.qp.state(),
            n.qp.sq_psn().value(),
            n.qp.rq_psn().value(),
            n.qp.send_queue_len(),
            n.qp.recv_queue_len(),
            n.send_wcs.len(),
            n.recv_wcs.len(),
            n.rejected,
            n.qp.counters(),
        );
    }
    let w = wire_summary(p);
    let from = w.len().saturating_sub(48);
    s += &format!(
        "now={} ns; wire: {} packets, the last {}:\n",
        p.now.as_nanos(),
        w.len(),
        w.len() - from
    );
    for (i, (a, op, psn, ack, syn, len)) in w.iter().enumerate().skip(from) {
        s += &format!(
            "  #{i} {} {op} psn={psn:#x}{} syn={syn:?} len={len}\n",
            if *a { "a->b" } else { "b->a" },
            if *ack { " A" } else { "" },
        );
    }
    s
}

/// Watches the run after every step: queue lengths against capacities and posted work, and the
/// packets the link can hold.
#[derive(Debug, Default)]
struct Watch {
    /// Packets sent (time, count) within the last `LINK_WINDOW`, and their sum.
    recent: VecDeque<(Instant, usize)>,
    in_window: usize,
    /// The largest `in_window` seen (for tuning `INFLIGHT_BOUND`).
    max_in_window: usize,
    posted_send: [usize; 2],
    posted_recv: [usize; 2],
    /// Whether to bound the packets on the link (not when packets are injected).
    check_link: bool,
}

impl Watch {
    fn after_step(&mut self, p: &Pair, sent_at: Instant, sent: usize) -> Result<(), TestCaseError> {
        if sent > 0 {
            self.recent.push_back((sent_at, sent));
            self.in_window += sent;
        }
        while let Some(&(t, n)) = self.recent.front() {
            if t + LINK_WINDOW >= p.now {
                break;
            }
            self.recent.pop_front();
            self.in_window -= n;
        }
        self.max_in_window = self.max_in_window.max(self.in_window);
        // Every packet sent within the window may still be on the link, duplicated.
        prop_assert!(
            !self.check_link || 2 * self.in_window <= INFLIGHT_BOUND,
            "{} packets sent within {LINK_WINDOW:?}: the link holds too many\n{}",
            self.in_window,
            diag(p)
        );
        for x in 0..2 {
            let n = node(p, x);
            let (sq, rq) = (n.qp.send_queue_len(), n.qp.recv_queue_len());
            prop_assert!(
                sq <= SQ && rq <= RQ,
                "queues over capacity: sq {sq} rq {rq}"
            );
            // Each posted send request is in the SQ, or completed (at most once), or vanished
            // after an unsignaled success.
            prop_assert!(
                sq + n.send_wcs.len() <= self.posted_send[x],
                "side {x}: {sq} in the SQ + {} completions > {} posted",
                n.send_wcs.len(),
                self.posted_send[x]
            );
            // Each posted receive request is in the RQ or completed exactly once.
            prop_assert_eq!(
                rq + n.recv_wcs.len(),
                self.posted_recv[x],
                "side {}: receive requests lost or completed twice",
                x
            );
            prop_assert!(
                matches!(n.qp.state(), QpState::Rts | QpState::Err),
                "side {x} in {}",
                n.qp.state()
            );
        }
        Ok(())
    }
}

/// Checks one side's send completions. Returns true if every request succeeded; otherwise
/// requires a successful prefix, one RETRY_EXC_ERR or RNR_RETRY_EXC_ERR and then WR_FLUSH_ERR for
/// every later request, with the QP in ERR.
fn check_send_side(p: &Pair, x: usize, expect: &[Expect]) -> Result<bool, TestCaseError> {
    let n = node(p, x);
    let wcs = &n.send_wcs;
    let side = if x == 0 { "a" } else { "b" };
    let failed_at = wcs.iter().position(|w| w.status != WcStatus::Success);
    // The requests before the failure (all of them if none failed).
    let fail_idx = match failed_at {
        None => expect.len(),
        Some(j) => match expect.iter().position(|e| e.wr_id == wcs[j].wr_id) {
            Some(i) => i,
            None => {
                return Err(TestCaseError::fail(format!(
                    "{side}: completion {:?} for no posted request\n{}",
                    wcs[j],
                    diag(p)
                )))
            }
        },
    };
    let ok_prefix: Vec<&Expect> = expect[..fail_idx].iter().filter(|e| e.signaled).collect();
    let got_prefix = &wcs[..failed_at.unwrap_or(wcs.len())];
    let ids = |v: &[WorkCompletion]| v.iter().map(|w| (w.wr_id, w.status)).collect::<Vec<_>>();
    prop_assert_eq!(
        got_prefix.iter().map(|w| w.wr_id).collect::<Vec<_>>(),
        ok_prefix.iter().map(|e| e.wr_id).collect::<Vec<_>>(),
        "{}: successful completions are not the signaled requests in posting order (got {:?})\n{}",
        side,
        ids(wcs),
        diag(p)
    );
    for (w, e) in got_prefix.iter().zip(&ok_prefix) {
        prop_assert_eq!(w.opcode, e.opcode, "{}: opcode of {:?}", side, w);
        prop_assert_eq!(w.byte_len, e.byte_len, "{}: byte_len of {:?}", side, w);
    }
    let Some(j) = failed_at else {
        prop_assert_eq!(
            n.qp.state(),
            QpState::Rts,
            "{}: every request succeeded but the QP is not in RTS\n{}",
            side,
            diag(p)
        );
        return Ok(true);
    };
    prop_assert!(
        matches!(
            wcs[j].status,
            WcStatus::RetryExcErr | WcStatus::RnrRetryExcErr
        ),
        "{side}: first failure {:?} is not a retry exhaustion; completions {:?}\n{}",
        wcs[j],
        ids(wcs),
        diag(p)
    );
    let flushed: Vec<u64> = expect[fail_idx + 1..].iter().map(|e| e.wr_id).collect();
    prop_assert_eq!(
        ids(&wcs[j + 1..]),
        flushed
            .iter()
            .map(|&id| (id, WcStatus::WrFlushErr))
            .collect::<Vec<_>>(),
        "{}: after the failure every later request must be flushed\n{}",
        side,
        diag(p)
    );
    prop_assert_eq!(
        n.qp.state(),
        QpState::Err,
        "{}: failed but not in ERR",
        side
    );
    Ok(false)
}

/// Receive completions: the expected ones in order; if `exact` all of them, else a prefix
/// followed by WR_FLUSH_ERR (when the QP went to ERR) or by nothing.
fn check_recv_side(
    p: &Pair,
    x: usize,
    expect: &[ExpectRecv],
    exact: bool,
) -> Result<(), TestCaseError> {
    let n = node(p, x);
    let side = if x == 0 { "a" } else { "b" };
    let ok = n
        .recv_wcs
        .iter()
        .take_while(|w| w.status == WcStatus::Success)
        .count();
    prop_assert!(
        ok <= expect.len(),
        "{side}: more receive completions than receives"
    );
    if exact {
        prop_assert_eq!(
            ok,
            expect.len(),
            "{}: receive completions {:?}\n{}",
            side,
            n.recv_wcs,
            diag(p)
        );
    }
    for (w, e) in n.recv_wcs.iter().zip(expect).take(ok) {
        let want = (e.wr_id, e.opcode, e.byte_len, e.imm, e.imm.is_some());
        let got = (
            w.wr_id,
            w.opcode,
            w.byte_len,
            w.imm_data,
            w.wc_flags.contains(rxe_transport::WcFlags::WITH_IMM),
        );
        prop_assert_eq!(got, want, "{}: receive completion", side);
        prop_assert_eq!(w.src_qp, node(p, 1 - x).qp.qpn().value());
    }
    for w in &n.recv_wcs[ok..] {
        prop_assert_eq!(
            w.status,
            WcStatus::WrFlushErr,
            "{}: receive completion {:?} after {} successes\n{}",
            side,
            w,
            ok,
            diag(p)
        );
    }
    Ok(())
}

fn check_memory(p: &Pair, pl: &Plan) -> Result<(), TestCaseError> {
    const NAMES: [&str; 4] = ["SRC", "DST", "TGT", "RCV"];
    for x in 0..2 {
        let got = &node(p, x).mem;
        let want = &pl.model[x];
        for (i, (g, w)) in got.regions.iter().zip(&want.regions).enumerate() {
            prop_assert!(g.valid, "region {} invalidated", NAMES[i]);
            if let Some(at) = g.data.iter().zip(&w.data).position(|(a, b)| a != b) {
                let end = (at + 16).min(g.data.len());
                return Err(TestCaseError::fail(format!(
                    "side {}: {} differs from the model at {:#x} (offset {at}): got {:02x?}, want {:02x?}\n{}",
                    if x == 0 { "a" } else { "b" },
                    NAMES[i],
                    g.addr + at as u64,
                    &g.data[at..end],
                    &w.data[at..end],
                    diag(p)
                )));
            }
        }
        // Atomics run exactly once each.
        prop_assert_eq!(
            got.atomics_run,
            want.atomics_run,
            "side {}: atomics executed",
            x
        );
    }
    Ok(())
}

/// The runner's configuration: `cases` cases and a fixed seed, so every run checks the same cases
/// (`PROPTEST_CASES` and `PROPTEST_RNG_SEED` override them for a longer or different hunt), and
/// no regression files.
fn config(cases: u32) -> ProptestConfig {
    // `default()` reads the PROPTEST_* environment variables.
    let env = ProptestConfig::default();
    ProptestConfig {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            env.cases
        } else {
            cases
        },
        rng_seed: match env.rng_seed {
            RngSeed::Random => RngSeed::Fixed(0x7278_6570_726f_7074),
            fixed => fixed,
        },
        failure_persistence: None,
        ..env
    }
}

/// Bounds on a run: steps, and virtual time (the largest runs take a few thousand steps and
/// under a second of virtual time).
const MAX_STEPS: usize = 200_000;
const MAX_VIRTUAL: Duration = Duration::from_secs(3600);
/// Packets a run may put on the wire (the harness keeps them all).
const MAX_WIRE: usize = 200_000;

fn post_recvs(p: &mut Pair, w: &mut Watch, x: usize, recvs: &[RecvWr]) {
    for r in recvs {
        node_mut(p, x).qp.post_recv(r.clone()).expect("post_recv");
        w.posted_recv[x] += 1;
    }
}

/// Runs a case to quiescence and checks it. `finite_retries`: requests may fail with retries
/// exhausted (and then their side must look as `check_send_side` says); otherwise everything
/// must succeed.
fn run_mix(case: &Case, finite_retries: bool) -> Result<(), TestCaseError> {
    let mut p = Pair::new();
    p.faults = case.faults;
    p.rng = common::Rng::new(case.seed);
    // Who checks the ICRC, and how memory is offered: the QP with fused copy+ICRC into slices
    // (cut-through placement), the QP through read/write, or the host before the QP.
    match case.seed % 3 {
        0 => {}
        1 => {
            p.a.mem.no_slices = true;
            p.b.mem.no_slices = true;
        }
        _ => p.host_checks = Checks::ALL,
    }
    p.connect(case.conn);
    let mut slots = [0usize; 2];
    for op in &case.ops {
        if op.kind.consumes_recv() {
            slots[usize::from(op.from_a)] += 1;
        }
    }
    let keys = setup_memory(&mut p.a, case.seed ^ 0xa, slots[0]);
    prop_assert_eq!(setup_memory(&mut p.b, case.seed ^ 0xb, slots[1]), keys);
    let pl = plan(case, [&p.a.mem, &p.b.mem], keys);

    let mut w = Watch {
        check_link: true,
        ..Watch::default()
    };
    // Receive requests: all up front, or some held back.
    let first_late = [0, 1].map(|x| {
        let n = pl.recvs[x].len();
        n - case.late_recvs.map_or(0, |(h, _)| h as usize % (n + 1))
    });
    for (x, &f) in first_late.iter().enumerate() {
        post_recvs(&mut p, &mut w, x, &pl.recvs[x][..f]);
    }
    let late_at = case.late_recvs.map_or(0, |(_, s)| s as usize);
    let mut late_done = first_late == [pl.recvs[0].len(), pl.recvs[1].len()];
    let mut next_op = 0;
    let stagger = case.stagger.map_or(0, usize::from);
    let deadline = p.now + MAX_VIRTUAL;
    let mut steps = 0usize;
    loop {
        if !late_done && steps >= late_at {
            for (x, &f) in first_late.iter().enumerate() {
                post_recvs(&mut p, &mut w, x, &pl.recvs[x][f..]);
            }
            late_done = true;
        }
        while next_op < pl.order.len() && (stagger == 0 || steps >= next_op * stagger) {
            let (x, i) = pl.order[next_op];
            let n = node_mut(&mut p, x);
            let res = n.qp.post_send(pl.sends[x][i].clone(), &n.mem);
            prop_assert!(res.is_ok(), "post_send {:?}: {:?}", pl.sends[x][i], res);
            w.posted_send[x] += 1;
            next_op += 1;
        }
        let (t0, n0) = (p.now, p.wire.len());
        let more = p.step();
        drain(&mut p);
        steps += 1;
        w.after_step(&p, t0, p.wire.len() - n0)?;
        if !more {
            if late_done && next_op == pl.order.len() {
                break;
            }
            // Nothing to do until the next post: skip ahead.
            steps = steps.max(late_at).max(next_op * stagger);
        }
        prop_assert!(
            steps < MAX_STEPS && p.now < deadline && p.wire.len() < MAX_WIRE,
            "not quiescent after {steps} steps, {} ns\n{}",
            p.now.as_nanos(),
            diag(&p)
        );
    }

    let ok = [
        check_send_side(&p, 0, &pl.expect[0])?,
        check_send_side(&p, 1, &pl.expect[1])?,
    ];
    if !finite_retries {
        prop_assert!(
            ok == [true, true],
            "with infinite retries every request must succeed\n{}",
            diag(&p)
        );
    }
    let all_ok = ok == [true, true];
    for x in 0..2 {
        check_recv_side(&p, x, &pl.expect_recv[x], all_ok)?;
    }
    if all_ok {
        check_memory(&p, &pl)?;
    }
    // Bad ICRCs are caught by whoever checks: the host (counted as rejected) or the QP.
    let qp_icrc_err = p.a.qp.counters().icrc_err + p.b.qp.counters().icrc_err;
    if case.faults.corrupt == 0.0 || p.host_checks.icrc {
        prop_assert_eq!(qp_icrc_err, 0);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn random_operation_mixes_complete_exactly_once_in_order(case in arb_case(Just(7u8), Just(7u8))) {
        run_mix(&case, false)?;
    }

    #[test]
    fn random_faults_with_finite_retries(
        case in arb_case(0u8..3, prop_oneof![Just(7u8), 0u8..7]),
    ) {
        run_mix(&case, true)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Arbitrary packets.
// ---------------------------------------------------------------------------------------------

/// Connection of the packet-injection runs: small MTU (many packets), short timeout.
fn fuzz_params() -> ConnParams {
    ConnParams {
        mtu: Mtu::M256,
        timeout: 8,
        min_rnr_timer: 1,
        max_rd_atomic: 4,
        ..ConnParams::default()
    }
}

/// Rounds of normal traffic in an injection run, one every `FUZZ_ROUND_STEPS` steps.
const FUZZ_ROUNDS: usize = 3;
const FUZZ_ROUND_STEPS: usize = 40;
/// Receive requests per side and round.
const FUZZ_RECVS: usize = 4;
const FUZZ_RECV_SLOTS: usize = FUZZ_ROUNDS * FUZZ_RECVS;
/// Region bases and lengths, in registration order, for picking addresses.
const REGIONS: [(u64, u64); 4] = [
    (SRC, REGION as u64),
    (DST, REGION as u64),
    (TGT, REGION as u64),
    (RCV, FUZZ_RECV_SLOTS as u64 * SLOT as u64),
];

fn fuzz_setup(p: &mut Pair) -> Keys {
    let keys = setup_memory(&mut p.a, 1, FUZZ_RECV_SLOTS);
    assert_eq!(setup_memory(&mut p.b, 2, FUZZ_RECV_SLOTS), keys);
    keys
}

/// One round of normal traffic for the injection runs: every operation kind both ways,
/// multi-packet messages included, and receive requests for the SENDs. Counts what it posts.
fn fuzz_round(p: &mut Pair, keys: Keys, round: usize, w: &mut Watch) {
    let id = |i: u64| round as u64 * 100 + i;
    for x in 0..2 {
        let n = node_mut(p, x);
        for k in round * FUZZ_RECVS..(round + 1) * FUZZ_RECVS {
            let base = RCV + k as u64 * u64::from(SLOT);
            n.qp.post_recv(RecvWr::new(RECV_ID + k as u64, sge(base, 4096, keys.rcv)))
                .expect("post_recv");
            w.posted_recv[x] += 1;
        }
        let remote = |off: u64| Remote {
            addr: TGT + off,
            rkey: Rkey(keys.tgt),
        };
        let src = |off: u64, len: u32| Some(sge(SRC + off, len, keys.src));
        let dst = |off: u64, len: u32| Some(sge(DST + off, len, keys.dst));
        let sig = SendFlags::SIGNALED;
        let wrs = [
            SendWr::new(id(1), WrOpcode::Send, src(0, 700), sig),
            SendWr::new(
                id(2),
                WrOpcode::SendWithImm(ImmDt::from_be_u32(7)),
                None,
                sig,
            ),
            SendWr::new(id(3), WrOpcode::RdmaWrite(remote(64)), src(100, 600), sig),
            SendWr::new(
                id(4),
                WrOpcode::RdmaWriteWithImm(remote(4096), ImmDt::from_be_u32(9)),
                src(0, 300),
                SendFlags::empty(),
            ),
            SendWr::new(id(5), WrOpcode::RdmaRead(remote(8192)), dst(0, 900), sig),
            SendWr::new(
                id(6),
                WrOpcode::AtomicFetchAdd {
                    remote: remote(0),
                    add: 5,
                },
                dst(2048, 8),
                sig,
            ),
            SendWr::new(
                id(7),
                WrOpcode::AtomicCmpSwp {
                    remote: remote(8),
                    compare: 0,
                    swap: 1,
                },
                dst(2056, 8),
                sig,
            ),
            SendWr::new(
                id(8),
                WrOpcode::RdmaWrite(remote(0)),
                None,
                SendFlags::empty(),
            ),
            SendWr::new(id(9), WrOpcode::Send, src(5, 1), sig),
        ];
        for wr in wrs {
            let n = node_mut(p, x);
            n.qp.post_send(wr, &n.mem).expect("post_send");
            w.posted_send[x] += 1;
        }
    }
}

/// Packets of a clean run of every [`fuzz_round`] (one packet dropped, for a NAK and a resend),
/// which the injected packets are made from: (sent by a, bytes).
fn donor_wire() -> &'static [(bool, Vec<u8>)] {
    static WIRE: OnceLock<Vec<(bool, Vec<u8>)>> = OnceLock::new();
    WIRE.get_or_init(|| {
        let mut p = Pair::new();
        p.connect(fuzz_params());
        p.drop_if = Some(Box::new(|w: &WirePacket| w.index == 3));
        let keys = fuzz_setup(&mut p);
        let mut w = Watch::default();
        for round in 0..FUZZ_ROUNDS {
            fuzz_round(&mut p, keys, round, &mut w);
            p.drive();
        }
        assert!(
            p.a.send_wcs
                .iter()
                .chain(&p.b.send_wcs)
                .all(|w| w.status == WcStatus::Success),
            "the donor run must succeed"
        );
        p.wire.clone()
    })
}

#[derive(Debug, Clone, Copy)]
enum PsnPick {
    /// The packet's own PSN plus this.
    Delta(i8),
    /// The target's expected PSN (its responder's) plus this.
    Expected(i8),
    /// The target's next send PSN (its requester's) plus this.
    Sent(i8),
    Raw(u32),
}

#[derive(Debug, Clone, Copy)]
enum KeyPick {
    Region(u8),
    Raw(u32),
}

#[derive(Debug, Clone, Copy)]
enum VaPick {
    Region { r: u8, off: u32 },
    End { r: u8, back: u16 },
    Raw(u64),
}

/// A change to one header field of a valid packet.
#[derive(Debug, Clone, Copy)]
enum FieldMut {
    Opcode(Opcode),
    Psn(PsnPick),
    AckReq(bool),
    Solicited(bool),
    Msn(u32),
    Syndrome(u8),
    Rkey(KeyPick),
    Va(VaPick),
    DmaLen(u32),
    PayloadLen(u16),
    Atomic { swap_add: u64, compare: u64 },
    Orig(u64),
    Imm(u32),
    Pad(u8),
    DestQp(u32),
    Pkey(u16),
}

#[derive(Debug, Clone)]
enum Mutation {
    /// Random bytes.
    Random(Vec<u8>),
    /// A donor packet with bytes replaced (or XORed) and perhaps cut short; sent to its receiver.
    Bytes {
        pkt: Index,
        edits: Vec<(Index, u8, bool)>,
        cut: Option<Index>,
    },
    /// A donor packet with a new PSN and header fields changed, emitted again with a valid ICRC.
    Fields {
        pkt: Index,
        psn: PsnPick,
        muts: Vec<FieldMut>,
    },
    /// Random transport bytes after a BTH with this opcode and PSN, behind valid IP and UDP
    /// headers, with a valid ICRC.
    Transport {
        opcode: Opcode,
        flags: u8,
        ack_req: bool,
        psn: PsnPick,
        body: Vec<u8>,
    },
}

#[derive(Debug, Clone)]
struct Inject {
    at_step: u16,
    to_a: bool,
    what: Mutation,
}

#[derive(Debug, Clone)]
struct FuzzCase {
    retry_cnt: u8,
    injects: Vec<Inject>,
}

fn arb_opcode() -> impl Strategy<Value = Opcode> {
    prop_oneof![
        8 => prop::sample::select(rxe_wire::opcode::ALL),
        1 => any::<u8>().prop_map(Opcode),
    ]
}

fn arb_delta() -> impl Strategy<Value = i8> {
    prop_oneof![4 => -3i8..=3, 1 => any::<i8>()]
}

/// Mostly PSNs the target acts on: its responder's expected PSN, or one its requester has
/// outstanding.
fn arb_psn_pick() -> impl Strategy<Value = PsnPick> {
    prop_oneof![
        2 => arb_delta().prop_map(PsnPick::Delta),
        4 => prop_oneof![4 => Just(0i8), 1 => arb_delta()].prop_map(PsnPick::Expected),
        3 => prop_oneof![4 => -3i8..=-1, 1 => arb_delta()].prop_map(PsnPick::Sent),
        1 => (0u32..1 << 24).prop_map(PsnPick::Raw),
    ]
}

fn arb_key() -> impl Strategy<Value = KeyPick> {
    prop_oneof![
        4 => (0u8..4).prop_map(KeyPick::Region),
        1 => any::<u32>().prop_map(KeyPick::Raw),
    ]
}

fn arb_va() -> impl Strategy<Value = VaPick> {
    prop_oneof![
        (0u8..4, any::<u32>()).prop_map(|(r, off)| VaPick::Region { r, off }),
        (0u8..4, 0u16..4200).prop_map(|(r, back)| VaPick::End { r, back }),
        prop_oneof![any::<u64>(), (u64::MAX - 8192)..=u64::MAX].prop_map(VaPick::Raw),
    ]
}

fn arb_field_mut() -> impl Strategy<Value = FieldMut> {
    prop_oneof![
        3 => arb_opcode().prop_map(FieldMut::Opcode),
        4 => arb_psn_pick().prop_map(FieldMut::Psn),
        1 => any::<bool>().prop_map(FieldMut::AckReq),
        1 => any::<bool>().prop_map(FieldMut::Solicited),
        1 => prop_oneof![0u32..64, 0u32..1 << 24].prop_map(FieldMut::Msn),
        2 => prop_oneof![
            Just(0x1fu8),
            (0x20u8..0x40),
            (0x60u8..0x65),
            any::<u8>()
        ]
        .prop_map(FieldMut::Syndrome),
        2 => arb_key().prop_map(FieldMut::Rkey),
        2 => arb_va().prop_map(FieldMut::Va),
        2 => prop_oneof![
            0u32..=8,
            0u32..=70_000,
            Just(u32::MAX),
            Just(1u32 << 31),
            any::<u32>()
        ]
        .prop_map(FieldMut::DmaLen),
        2 => prop_oneof![0u16..=8, 0u16..=4200].prop_map(FieldMut::PayloadLen),
        1 => (any::<u64>(), any::<u64>())
            .prop_map(|(swap_add, compare)| FieldMut::Atomic { swap_add, compare }),
        1 => any::<u64>().prop_map(FieldMut::Orig),
        1 => any::<u32>().prop_map(FieldMut::Imm),
        1 => (0u8..4).prop_map(FieldMut::Pad),
        1 => prop_oneof![0x10u32..0x14, 0u32..1 << 24].prop_map(FieldMut::DestQp),
        1 => any::<u16>().prop_map(FieldMut::Pkey),
    ]
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..200).prop_map(Mutation::Random),
        2 => (
            any::<Index>(),
            prop::collection::vec((any::<Index>(), any::<u8>(), any::<bool>()), 1..6),
            prop::option::weighted(0.2, any::<Index>()),
        )
            .prop_map(|(pkt, edits, cut)| Mutation::Bytes { pkt, edits, cut }),
        6 => (
            any::<Index>(),
            arb_psn_pick(),
            prop::collection::vec(arb_field_mut(), 0..5),
        )
            .prop_map(|(pkt, psn, muts)| Mutation::Fields { pkt, psn, muts }),
        2 => (
            arb_opcode(),
            any::<u8>(),
            any::<bool>(),
            arb_psn_pick(),
            prop::collection::vec(any::<u8>(), 0..80),
        )
            .prop_map(|(opcode, flags, ack_req, psn, body)| Mutation::Transport {
                opcode,
                flags,
                ack_req,
                psn,
                body,
            }),
    ]
}

fn arb_fuzz_case() -> impl Strategy<Value = FuzzCase> {
    (
        prop_oneof![Just(7u8), 0u8..7],
        prop::collection::vec(
            (0u16..130, any::<bool>(), arb_mutation()).prop_map(|(at_step, to_a, what)| Inject {
                at_step,
                to_a,
                what,
            }),
            1..16,
        ),
    )
        .prop_map(|(retry_cnt, injects)| FuzzCase { retry_cnt, injects })
}

fn add_signed(psn: Psn, d: i8) -> Psn {
    if d >= 0 {
        psn.add(d as u32)
    } else {
        psn.sub(u32::from(d.unsigned_abs()))
    }
}

fn pick_psn(pick: PsnPick, own: Psn, target: &Node) -> Psn {
    match pick {
        PsnPick::Delta(d) => add_signed(own, d),
        PsnPick::Expected(d) => add_signed(target.qp.rq_psn(), d),
        PsnPick::Sent(d) => add_signed(target.qp.sq_psn(), d),
        PsnPick::Raw(v) => Psn::new(v),
    }
}

fn pick_key(k: KeyPick) -> u32 {
    match k {
        KeyPick::Region(r) => 0x117 + u32::from(r % 4) * 0x100,
        KeyPick::Raw(v) => v,
    }
}

fn pick_va(v: VaPick) -> u64 {
    match v {
        VaPick::Region { r, off } => {
            let (base, len) = REGIONS[usize::from(r % 4)];
            base + u64::from(off) % len
        }
        VaPick::End { r, back } => {
            let (base, len) = REGIONS[usize::from(r % 4)];
            (base + len).wrapping_sub(u64::from(back))
        }
        VaPick::Raw(v) => v,
    }
}

/// Gives `ext` exactly the headers `set` needs, keeping the ones it has.
fn conform(ext: ExtHeaders, set: HeaderSet) -> ExtHeaders {
    let has = |h: HeaderSet| set.contains(h);
    ExtHeaders {
        deth: has(HeaderSet::DETH).then(|| {
            ext.deth.unwrap_or(deth::Repr {
                qkey: QKey(0x1111_1111),
                src_qp: Qpn::new(0x11),
            })
        }),
        feth: has(HeaderSet::FETH).then(|| {
            ext.feth.unwrap_or(feth::Repr {
                placement_type: 1,
                selectivity: 0,
            })
        }),
        reth: has(HeaderSet::RETH).then(|| {
            ext.reth.unwrap_or(reth::Repr {
                va: TGT,
                rkey: Rkey(0x317),
                dma_len: 256,
            })
        }),
        aeth: has(HeaderSet::AETH).then(|| {
            ext.aeth.unwrap_or(aeth::Repr {
                syndrome: Syndrome::Ack {
                    credits: Syndrome::UNLIMITED_CREDITS,
                },
                msn: Msn::new(1),
            })
        }),
        atomic_eth: has(HeaderSet::ATOMIC_ETH).then(|| {
            ext.atomic_eth.unwrap_or(atmeth::Repr {
                va: TGT,
                rkey: Rkey(0x317),
                swap_add: 1,
                compare: 0,
            })
        }),
        atomic_ack_eth: has(HeaderSet::ATOMIC_ACK_ETH)
            .then(|| ext.atomic_ack_eth.unwrap_or(atmack::Repr { orig: 0 })),
        immdt: has(HeaderSet::IMMDT).then(|| ext.immdt.unwrap_or_default()),
        ieth: has(HeaderSet::IETH).then(|| ext.ieth.unwrap_or(ieth::Repr { rkey: Rkey(0x317) })),
    }
}

/// Points a packet at `to_a`'s QP, from its peer.
fn readdress(ip: &mut IpRepr, bth: &mut bth::Repr, p: &Pair, to_a: bool) {
    let (src, dst, qpn): (Ipv4Addr, Ipv4Addr, Qpn) = if to_a {
        (p.b.ip, p.a.ip, p.a.qp.qpn())
    } else {
        (p.a.ip, p.b.ip, p.b.qp.qpn())
    };
    if let IpRepr::V4(r) = ip {
        r.src = src;
        r.dst = dst;
    }
    bth.dest_qp = qpn;
}

fn emit(
    ip: IpRepr,
    udp: rxe_wire::udp::Repr,
    bth: bth::Repr,
    ext: ExtHeaders,
    payload: &[u8],
) -> Option<Vec<u8>> {
    let repr = RoceV2Repr {
        ip,
        udp,
        roce: RoceRepr { bth, ext, payload },
    };
    let mut buf = vec![0u8; repr.buffer_len()];
    let n = repr.emit(&mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// Builds the bytes of an injected packet and the QP it goes to (`true`: a).
fn build_injection(inj: &Inject, p: &Pair, donor: &[(bool, Vec<u8>)]) -> Option<(bool, Vec<u8>)> {
    let target = if inj.to_a { &p.a } else { &p.b };
    match &inj.what {
        Mutation::Random(bytes) => Some((inj.to_a, bytes.clone())),
        Mutation::Bytes { pkt, edits, cut } => {
            let (from_a, bytes) = &donor[pkt.index(donor.len())];
            let mut b = bytes.clone();
            for (at, v, xor) in edits {
                let i = at.index(b.len());
                b[i] = if *xor { b[i] ^ v.max(&1) } else { *v };
            }
            if let Some(c) = cut {
                b.truncate(c.index(b.len()));
            }
            Some((!from_a, b))
        }
        Mutation::Fields { pkt, psn, muts } => {
            let (_, bytes) = &donor[pkt.index(donor.len())];
            let repr = RoceV2Packet::new_checked(bytes, &Checks::ALL)
                .ok()?
                .to_repr();
            let (mut ip, udp) = (repr.ip, repr.udp);
            let mut bth = repr.roce.bth;
            let mut ext = repr.roce.ext;
            let mut payload = repr.roce.payload.to_vec();
            let mut pad = None;
            readdress(&mut ip, &mut bth, p, inj.to_a);
            bth.psn = pick_psn(*psn, bth.psn, target);
            for m in muts {
                match *m {
                    FieldMut::Opcode(op) => {
                        bth.opcode = op;
                        if let Some(info) = op.info() {
                            ext = conform(ext, info.headers);
                        }
                    }
                    FieldMut::Psn(pick) => bth.psn = pick_psn(pick, bth.psn, target),
                    FieldMut::AckReq(v) => bth.ack_req = v,
                    FieldMut::Solicited(v) => bth.solicited = v,
                    FieldMut::Msn(v) => {
                        if let Some(a) = ext.aeth.as_mut() {
                            a.msn = Msn::new(v & 0xff_ffff);
                        }
                    }
                    FieldMut::Syndrome(v) => {
                        if let Some(a) = ext.aeth.as_mut() {
                            a.syndrome = Syndrome::from_byte(v);
                        }
                    }
                    FieldMut::Rkey(k) => {
                        let k = Rkey(pick_key(k));
                        if let Some(r) = ext.reth.as_mut() {
                            r.rkey = k;
                        }
                        if let Some(a) = ext.atomic_eth.as_mut() {
                            a.rkey = k;
                        }
                        if let Some(i) = ext.ieth.as_mut() {
                            i.rkey = k;
                        }
                    }
                    FieldMut::Va(v) => {
                        let v = pick_va(v);
                        if let Some(r) = ext.reth.as_mut() {
                            r.va = v;
                        }
                        if let Some(a) = ext.atomic_eth.as_mut() {
                            a.va = v;
                        }
                    }
                    FieldMut::DmaLen(v) => {
                        if let Some(r) = ext.reth.as_mut() {
                            r.dma_len = v;
                        }
                    }
                    FieldMut::PayloadLen(n) => payload.resize(usize::from(n), 0x5a),
                    FieldMut::Atomic { swap_add, compare } => {
                        if let Some(a) = ext.atomic_eth.as_mut() {
                            a.swap_add = swap_add;
                            a.compare = compare;
                        }
                    }
                    FieldMut::Orig(v) => {
                        if let Some(a) = ext.atomic_ack_eth.as_mut() {
                            a.orig = v;
                        }
                    }
                    FieldMut::Imm(v) => {
                        if let Some(i) = ext.immdt.as_mut() {
                            *i = ImmDt::from_be_u32(v);
                        }
                    }
                    FieldMut::Pad(v) => pad = Some(v),
                    FieldMut::DestQp(v) => bth.dest_qp = Qpn::new(v & 0xff_ffff),
                    FieldMut::Pkey(v) => bth.pkey = PKey(v),
                }
            }
            // The payload the opcode allows (a wrong length would not survive emit anyway).
            match bth.opcode.info().map(|i| i.payload) {
                Some(PayloadRule::None) => payload.clear(),
                Some(PayloadRule::Exactly(n)) => payload.resize(usize::from(n), 0x5a),
                _ => {}
            }
            bth.pad_count = pad.unwrap_or_else(|| rxe_wire::pad_for(payload.len()));
            Some((inj.to_a, emit(ip, udp, bth, ext, &payload)?))
        }
        Mutation::Transport {
            opcode,
            flags,
            ack_req,
            psn,
            body,
        } => {
            let (_, bytes) = &donor[0];
            let repr = RoceV2Packet::new_checked(bytes, &Checks::ALL)
                .ok()?
                .to_repr();
            let (mut ip, udp) = (repr.ip, repr.udp);
            let mut bth0 = repr.roce.bth;
            readdress(&mut ip, &mut bth0, p, inj.to_a);
            let psn = pick_psn(*psn, target.qp.rq_psn(), target);
            let q = bth0.dest_qp.value().to_be_bytes();
            let s = psn.value().to_be_bytes();
            let mut t = vec![
                opcode.0,
                flags & 0xf0,
                0xff,
                0xff,
                0,
                q[1],
                q[2],
                q[3],
                u8::from(*ack_req) << 7,
                s[1],
                s[2],
                s[3],
            ];
            t.extend_from_slice(body);
            t.extend_from_slice(&[0; 4]);
            let roce = RoceRepr::parse(&t).ok()?;
            Some((inj.to_a, emit(ip, udp, roce.bth, roce.ext, roce.payload)?))
        }
    }
}

/// Feeds one injected packet to its QP, if it passes the receive checks.
fn inject(p: &mut Pair, inj: &Inject, donor: &[(bool, Vec<u8>)]) {
    let Some((to_a, bytes)) = build_injection(inj, p, donor) else {
        return;
    };
    let now = p.now;
    let n = if to_a { &mut p.a } else { &mut p.b };
    if let Ok(pkt) = RoceV2Packet::new_checked(&bytes, &Checks::ALL) {
        n.qp.handle_packet(now, &pkt, &mut n.mem);
    }
}

/// Steps an injection run may take after its last injection (a QP whose peer went to ERR
/// retries forever with `retry_cnt` 7).
const FUZZ_STEPS: usize = 3000;

fn run_fuzz(case: &FuzzCase) -> Result<(), TestCaseError> {
    let donor = donor_wire();
    let mut p = Pair::new();
    p.connect(ConnParams {
        retry_cnt: case.retry_cnt,
        ..fuzz_params()
    });
    let keys = fuzz_setup(&mut p);
    let mut w = Watch::default();
    let mut injects = case.injects.clone();
    injects.sort_by_key(|i| i.at_step);
    let mut next = 0;
    let mut round = 0;
    let mut steps = 0usize;
    let last =
        usize::from(injects.last().map_or(0, |i| i.at_step)).max(FUZZ_ROUNDS * FUZZ_ROUND_STEPS);
    loop {
        if round < FUZZ_ROUNDS && steps >= round * FUZZ_ROUND_STEPS {
            fuzz_round(&mut p, keys, round, &mut w);
            round += 1;
        }
        while next < injects.len() && usize::from(injects[next].at_step) <= steps {
            inject(&mut p, &injects[next], donor);
            drain(&mut p);
            w.after_step(&p, p.now, 0)?;
            next += 1;
        }
        let (t0, n0) = (p.now, p.wire.len());
        let more = p.step();
        drain(&mut p);
        steps += 1;
        w.after_step(&p, t0, p.wire.len() - n0)?;
        if steps > last + FUZZ_STEPS || (!more && next == injects.len() && round == FUZZ_ROUNDS) {
            break;
        }
        if !more {
            // Idle: skip to the next round or injection.
            let next_round = if round < FUZZ_ROUNDS {
                round * FUZZ_ROUND_STEPS
            } else {
                usize::MAX
            };
            let next_inject = injects
                .get(next)
                .map_or(usize::MAX, |i| usize::from(i.at_step));
            steps = steps.max(next_round.min(next_inject));
        }
    }
    for x in 0..2 {
        let n = node(&p, x);
        let side = if x == 0 { "a" } else { "b" };
        let st = n.qp.state();
        prop_assert!(matches!(st, QpState::Rts | QpState::Err), "{side} in {st}");
        if st == QpState::Err {
            prop_assert!(
                n.qp.send_queue_len() == 0 && n.qp.recv_queue_len() == 0,
                "{side} in ERR with requests left: sq {} rq {}",
                n.qp.send_queue_len(),
                n.qp.recv_queue_len()
            );
        }
        // Once its SQ is empty, every signaled request (all but 4 and 8 of each round) has
        // completed; and every request completes at most once.
        if n.qp.send_queue_len() == 0 {
            for r in 0..FUZZ_ROUNDS as u64 {
                for id in [1, 2, 3, 5, 6, 7, 9].map(|i| r * 100 + i) {
                    prop_assert!(
                        n.send_wcs.iter().any(|w| w.wr_id == id),
                        "{side}: signaled request {id} never completed: {:?}",
                        n.send_wcs
                    );
                }
            }
        }
        for wcs in [&n.send_wcs, &n.recv_wcs] {
            let mut ids: Vec<u64> = wcs.iter().map(|w| w.wr_id).collect();
            ids.sort_unstable();
            let before = ids.len();
            ids.dedup();
            prop_assert_eq!(
                ids.len(),
                before,
                "{}: a request completed twice: {:?}",
                side,
                wcs
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn arbitrary_packets_never_panic_a_responder_or_requester(case in arb_fuzz_case()) {
        run_fuzz(&case)?;
    }
}
