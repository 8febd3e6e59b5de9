//! The C API's data path: two hosts made and driven only through the `extern "C"` functions of
//! `rxe.h` (netdev callbacks, `rxe_device_rx`, `rxe_device_poll`, `rxe_post_send`,
//! `rxe_poll_cq`), joined by an in-memory wire, 64 KiB RDMA WRITEs at path MTU 4096 into memory
//! registered with `rxe_reg_mr`. Printed beside a baseline measured in the same run: `memcpy` of
//! the message plus one CRC-32 of it, the baseline of the `rxe-transport` and `rxe-kernel`
//! benches, so the three read side by side (what the C layer costs over `rxe-kernel`).
//!
//! `cargo bench -p rxe-capi --bench capi`; `-- --test` for a quick smoke run.

use core::ffi::{c_int, c_void};
use core::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use rxe::*;

const LEN: u32 = 65536;
const COUNT: u32 = 8;

/// One side's NIC: frames the device transmitted, waiting to be handed to the peer.
#[derive(Default)]
struct Wire {
    out: Vec<Vec<u8>>,
    spare: Vec<Vec<u8>>,
    taken: u64,
    peer_mac: [u8; 6],
}

unsafe extern "C" fn transmit(ctx: *mut c_void, frame: *const u8, len: usize) -> c_int {
    // SAFETY: ctx is the Wire registered with this netdev; frame is valid for len bytes.
    let (w, f) = unsafe {
        (
            &mut *ctx.cast::<Wire>(),
            std::slice::from_raw_parts(frame, len),
        )
    };
    let mut b = w.spare.pop().unwrap_or_default();
    b.clear();
    b.extend_from_slice(f);
    w.out.push(b);
    w.taken += 1;
    RXE_TX_OK
}

unsafe extern "C" fn resolve(ctx: *mut c_void, _gid: *const rxe_gid, mac: *mut u8) -> c_int {
    // SAFETY: ctx is the Wire; mac has room for 6 bytes.
    unsafe {
        let w = &*ctx.cast::<Wire>();
        std::ptr::copy_nonoverlapping(w.peer_mac.as_ptr(), mac, 6);
    }
    RXE_NEIGH_KNOWN
}

unsafe extern "C" fn frames_taken(ctx: *mut c_void) -> u64 {
    // SAFETY: ctx is the Wire.
    unsafe { (*ctx.cast::<Wire>()).taken }
}

struct Side {
    host: *mut rxe_host,
    dev: *mut rxe_device,
    wire: Box<Wire>,
    buf: Vec<u8>,
    mr: rxe_mr,
    cq: rxe_cq,
    qp: rxe_qp,
}

fn ok(rc: c_int) {
    assert!(rc >= 0, "rxe call failed: {rc}");
}

impl Side {
    fn new(last: u8, peer: u8) -> Side {
        let mut wire = Box::new(Wire {
            peer_mac: [2, 0, 0, 0, 0, peer],
            ..Wire::default()
        });
        let ops = rxe_netdev_ops {
            transmit: Some(transmit),
            resolve: Some(resolve),
            frames_taken: Some(frames_taken),
        };
        let mac = [2u8, 0, 0, 0, 0, last];
        let addr = std::ffi::CString::new(format!("10.0.0.{last}")).expect("addr");
        let mut buf = vec![7u8; (LEN * COUNT) as usize];
        // SAFETY: every pointer passed is valid for the call; the wire and buffer outlive the
        // host (freed in Drop, host first).
        unsafe {
            let host = rxe_host_new(u64::from(last));
            let ctx: *mut Wire = &mut *wire;
            ok(rxe_netdev_register(
                host,
                c"eth0".as_ptr(),
                &ops,
                ctx.cast(),
                mac.as_ptr(),
                9000,
            ));
            ok(rxe_netdev_add_addr(host, c"eth0".as_ptr(), addr.as_ptr()));
            ok(rxe_link_command(
                host,
                c"rdma link add rxe0 type rxe netdev eth0".as_ptr(),
            ));
            let dev = rxe_device_get(host, c"rxe0".as_ptr());
            assert!(!dev.is_null());
            let (mut pd, mut mr, mut cq, mut qp) = Default::default();
            ok(rxe_alloc_pd(dev, &mut pd));
            let access = RXE_ACCESS_LOCAL_WRITE | RXE_ACCESS_REMOTE_WRITE;
            ok(rxe_reg_mr(
                dev,
                pd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                access,
                &mut mr,
            ));
            ok(rxe_create_cq(dev, 64, &mut cq));
            let init = rxe_qp_init_attr {
                qp_type: RXE_QPT_RC,
                pd,
                send_cq: cq,
                recv_cq: cq,
                srq: rxe_srq::default(),
            };
            ok(rxe_create_qp(dev, &init, &mut qp));
            Side {
                host,
                dev,
                wire,
                buf,
                mr,
                cq,
                qp,
            }
        }
    }

    fn connect(&mut self, peer: u8, dest: rxe_qp, sq: u32, rq: u32) {
        let mut c = rxe_rc_connect::default();
        // SAFETY: valid pointers for the calls.
        unsafe {
            ok(rxe_rc_connect_init(&mut c));
            c.dgid.raw[10] = 0xff;
            c.dgid.raw[11] = 0xff;
            c.dgid.raw[12..16].copy_from_slice(&[10, 0, 0, peer]);
            c.dest_qp_num = dest.qp_num;
            c.sq_psn = sq;
            c.rq_psn = rq;
            c.path_mtu = RXE_MTU_4096;
            ok(rxe_connect_rc(self.dev, self.qp, &c));
        }
    }
}

impl Drop for Side {
    fn drop(&mut self) {
        // SAFETY: the host came from rxe_host_new and is freed once, before the buffer.
        unsafe { rxe_host_free(self.host) };
    }
}

struct Rig {
    a: Side,
    b: Side,
    now: u64,
}

impl Rig {
    fn new() -> Rig {
        let (mut a, mut b) = (Side::new(1, 2), Side::new(2, 1));
        let (qa, qb) = (a.qp, b.qp);
        a.connect(2, qb, 1, 2);
        b.connect(1, qa, 2, 1);
        Rig { a, b, now: 1_000 }
    }

    /// Hands one side's transmitted frames to the other.
    fn deliver(now: u64, from: &mut Side, to: &Side) {
        let frames = std::mem::take(&mut from.wire.out);
        for f in &frames {
            // SAFETY: a live device; the frame is valid for the call.
            ok(unsafe { rxe_device_rx(to.dev, now, f.as_ptr(), f.len()) });
        }
        from.wire.spare.extend(frames);
    }

    /// `COUNT` WRITEs of `LEN` bytes, the last signaled; until its completion.
    fn run(&mut self) {
        for i in 0..COUNT {
            let off = u64::from(i * LEN);
            let sge = rxe_sge {
                addr: self.a.mr.addr + off,
                length: LEN,
                lkey: self.a.mr.lkey,
            };
            let wr = rxe_send_wr {
                wr_id: u64::from(i),
                opcode: RXE_WR_RDMA_WRITE,
                send_flags: if i + 1 == COUNT { RXE_SEND_SIGNALED } else { 0 },
                sg_list: &sge,
                num_sge: 1,
                imm_data: 0,
                remote_addr: self.b.mr.addr + off,
                rkey: self.b.mr.rkey,
                invalidate_rkey: 0,
                compare_add: 0,
                swap: 0,
                ah: rxe_ah::default(),
                remote_qpn: 0,
                remote_qkey: 0,
                bind: rxe_bind_info::default(),
                flush_len: 0,
                flush_type: 0,
                flush_level: 0,
            };
            // SAFETY: live device; wr and its SGE are valid for the call.
            ok(unsafe { rxe_post_send(self.a.dev, self.a.qp, &wr) });
        }
        let mut wc = rxe_wc::default();
        loop {
            self.now += 1_000;
            // SAFETY: live devices; out-pointers valid.
            unsafe {
                ok(rxe_device_poll(self.a.dev, self.now, std::ptr::null_mut()));
                Rig::deliver(self.now, &mut self.a, &self.b);
                ok(rxe_device_poll(self.b.dev, self.now, std::ptr::null_mut()));
                Rig::deliver(self.now, &mut self.b, &self.a);
                if rxe_poll_cq(self.a.dev, self.a.cq, 1, &mut wc) == 1 {
                    assert_eq!(wc.status, 0);
                    return;
                }
            }
        }
    }
}

fn baseline(src: &[u8], dst: &mut [u8]) {
    dst.copy_from_slice(src);
    let mut h = crc32fast::Hasher::new();
    h.update(dst);
    black_box(h.finalize());
}

/// Bytes per second of `f`, which moves `bytes`, best of a few rounds within `budget`.
fn rate(budget: Duration, bytes: u64, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut best = f64::MAX;
    while start.elapsed() < budget || best == f64::MAX {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    bytes as f64 / best.max(1e-9)
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    {
        let mut g = c.benchmark_group("capi");
        let mut rig = Rig::new();
        g.throughput(Throughput::Bytes(u64::from(LEN * COUNT)));
        g.bench_function("write_64k_x8", |b| b.iter(|| rig.run()));
        g.finish();
    }
    c.final_summary();
    let quick = std::env::args().any(|a| a == "--test");
    let budget = Duration::from_millis(if quick { 20 } else { 800 });
    let mut rig = Rig::new();
    rig.a
        .buf
        .iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = i as u8);
    let ours = rate(budget, u64::from(LEN * COUNT), || rig.run());
    assert!(rig.a.buf == rig.b.buf, "the data made it");
    let src = vec![7u8; LEN as usize];
    let mut dst = vec![0u8; LEN as usize];
    let base = rate(budget, u64::from(LEN), || baseline(&src, &mut dst));
    println!();
    println!(
        "== rxe-capi summary: two hosts through the C API, in-memory wire, ICRC on every packet =="
    );
    println!(
        "RDMA WRITE 64 KiB x{COUNT}: {:.2} GB/s; memcpy+CRC of 64 KiB: {:.2} GB/s; ratio {:.0}%",
        ours / 1e9,
        base / 1e9,
        100.0 * ours / base
    );
}
