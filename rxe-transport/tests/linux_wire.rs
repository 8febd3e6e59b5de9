//! Behaves like Linux rxe on the wire: replay the exchanges of two real captures
//! (`ib_write_bw -x 1 -s 4096 -n 20` and `ibv_rc_pingpong -g 1 -s 4096 -n 5`) with our QPs given
//! the same QPNs, PSNs, addresses, keys and payloads, and require every packet to be
//! byte-identical to the kernel's once the IPv4 Identification is the same (Linux draws it per
//! packet; everything else, ICRC included, must match).

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use pcap_file::pcap::PcapReader;
use rxe_transport::{
    Access, AccessError, AddressVector, AtomicOp, Instant, KeyKind, Memory, MrInfo, Mtu, Pd, Qp,
    QpAttr, QpConfig, QpState, RecvWr, Remote, SendFlags, SendWr, Sge, WrOpcode,
};
use rxe_wire::{Checks, FrameRepr, IpRepr, Psn, Qpn, Rkey, RoceV2Packet, RoceV2Repr};

type LinuxQp = Qp<128, 128>;

/// One flat region per node, key 1, at the capture's virtual address.
struct Flat {
    addr: u64,
    data: Vec<u8>,
}

impl Memory for Flat {
    fn lookup(&self, key: u32) -> Option<MrInfo> {
        (key == 1).then_some(MrInfo {
            pd: Pd(1),
            addr: self.addr,
            length: self.data.len() as u64,
            access: Access::LOCAL_WRITE
                | Access::REMOTE_WRITE
                | Access::REMOTE_READ
                | Access::REMOTE_ATOMIC,
            kind: KeyKind::Mr,
        })
    }
    fn read(&self, _: u32, addr: u64, out: &mut [u8]) {
        let o = (addr - self.addr) as usize;
        out.copy_from_slice(&self.data[o..o + out.len()]);
    }
    fn write(&mut self, _: u32, addr: u64, d: &[u8]) {
        let o = (addr - self.addr) as usize;
        self.data[o..o + d.len()].copy_from_slice(d);
    }
    fn atomic(&mut self, _: u32, addr: u64, op: AtomicOp) -> u64 {
        let o = (addr - self.addr) as usize;
        let old = u64::from_ne_bytes(self.data[o..o + 8].try_into().expect("8 bytes"));
        let new = match op {
            AtomicOp::FetchAdd(v) => old.wrapping_add(v),
            AtomicOp::CmpSwp { compare, swap } => {
                if old == compare {
                    swap
                } else {
                    old
                }
            }
        };
        self.data[o..o + 8].copy_from_slice(&new.to_ne_bytes());
        old
    }
    fn invalidate(&mut self, _: u32, _: Pd) -> Result<(), AccessError> {
        Ok(())
    }
}

fn capture(name: &str) -> Vec<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../rxe-wire/tests/data")
        .join(name);
    let mut r = PcapReader::new(std::fs::File::open(&path).expect("capture")).expect("pcap");
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        out.push(p.expect("record").data.into_owned());
    }
    out
}

fn ip_of(frame: &[u8]) -> &[u8] {
    &frame[14..]
}

fn src_of(frame: &[u8]) -> Ipv4Addr {
    match FrameRepr::parse(frame).expect("linux frame").packet.ip {
        IpRepr::V4(h) => h.src,
        IpRepr::V6(_) => panic!("IPv4 capture"),
    }
}

fn connect(
    qp: &mut LinuxQp,
    local: Ipv4Addr,
    remote: Ipv4Addr,
    dest: Qpn,
    rq_psn: Psn,
    sq_psn: Psn,
) {
    let access = Access::REMOTE_WRITE | Access::REMOTE_READ | Access::REMOTE_ATOMIC;
    let init = QpAttr {
        state: Some(QpState::Init),
        pkey_index: Some(0),
        port: Some(1),
        access: Some(access),
        ..Default::default()
    };
    qp.modify(&init).expect("INIT");
    // ibv_rc_pingpong / perftest: timeout 14, retry 7, RNR retry 7, min_rnr_timer 12, MTU 1024.
    let av = AddressVector {
        sgid: IpAddr::V4(local),
        dgid: IpAddr::V4(remote),
        hop_limit: 64,
        traffic_class: 0,
        flow_label: 0,
        udp_sport: None,
    };
    let rtr = QpAttr {
        state: Some(QpState::Rtr),
        av: Some(av),
        path_mtu: Some(Mtu::M1024),
        dest_qp: Some(dest),
        rq_psn: Some(rq_psn),
        max_dest_rd_atomic: Some(1),
        min_rnr_timer: Some(12),
        ..Default::default()
    };
    qp.modify(&rtr).expect("RTR");
    let rts = QpAttr {
        state: Some(QpState::Rts),
        sq_psn: Some(sq_psn),
        timeout: Some(14),
        retry_cnt: Some(7),
        rnr_retry: Some(7),
        max_rd_atomic: Some(1),
        ..Default::default()
    };
    qp.modify(&rts).expect("RTS");
}

/// Moves packets one at a time (client packet, then everything the server answers, and back)
/// until both sides are idle; returns what each side sent, in order.
fn lockstep(
    a: &mut LinuxQp,
    am: &mut Flat,
    b: &mut LinuxQp,
    bm: &mut Flat,
    a_out: &mut Vec<Vec<u8>>,
    b_out: &mut Vec<Vec<u8>>,
) {
    let now = Instant::from_nanos(1);
    loop {
        let mut progress = false;
        for side in 0..2 {
            let (tx, txm, rx, rxm, out) = if side == 0 {
                (&mut *a, &mut *am, &mut *b, &mut *bm, &mut *a_out)
            } else {
                (&mut *b, &mut *bm, &mut *a, &mut *am, &mut *b_out)
            };
            let mut buf = vec![0u8; 8192];
            if let Some(n) = tx.poll_transmit(now, &mut buf, txm).expect("buffer") {
                let pkt = &buf[..n];
                let view = RoceV2Packet::new_checked(pkt, &Checks::ALL).expect("valid");
                rx.handle_packet(now, &view, rxm);
                out.push(pkt.to_vec());
                progress = true;
            }
        }
        if !progress {
            return;
        }
    }
}

/// Compares our IP packets with Linux's: identical bytes once our IPv4 ident is set to Linux's.
fn assert_identical(ours: &[Vec<u8>], linux: &[&[u8]], who: &str) {
    assert_eq!(ours.len(), linux.len(), "{who}: packet count");
    for (i, (o, l)) in ours.iter().zip(linux).enumerate() {
        let mut repr = RoceV2Repr::parse(o).expect("ours parses");
        let theirs = RoceV2Repr::parse(l).expect("linux parses");
        if let (IpRepr::V4(ours_ip), IpRepr::V4(linux_ip)) = (&mut repr.ip, theirs.ip) {
            ours_ip.ident = linux_ip.ident;
        }
        let mut patched = vec![0u8; repr.buffer_len()];
        repr.emit(&mut patched).expect("emit");
        if patched != *l {
            panic!(
                "{who} packet {i} differs from Linux rxe:\n ours  {:?}\n linux {:?}",
                RoceV2Repr::parse(&patched).map(|r| (r.roce.bth, r.roce.ext, r.udp)),
                (theirs.roce.bth, theirs.roce.ext, theirs.udp)
            );
        }
    }
}

#[test]
fn ib_write_bw_exchange_is_byte_identical_to_linux() {
    let frames = capture("ib_write_bw.pcap");
    let client_ip = Ipv4Addr::new(10, 77, 0, 12);
    let server_ip = Ipv4Addr::new(10, 77, 0, 11);
    let linux_client: Vec<&[u8]> = frames
        .iter()
        .filter(|f| src_of(f) == client_ip)
        .map(|f| ip_of(f))
        .collect();
    let linux_server: Vec<&[u8]> = frames
        .iter()
        .filter(|f| src_of(f) == server_ip)
        .map(|f| ip_of(f))
        .collect();
    let first = RoceV2Repr::parse(linux_client[0]).expect("first");
    let reth = first.roce.ext.reth.expect("WRITE FIRST has a RETH");
    let qpn = first.roce.bth.dest_qp; // 0x15 on both guests
    let start = first.roce.bth.psn;

    // The client's source buffer holds what its WRITEs carried (the same 4 KiB each time).
    let mut payload = Vec::new();
    for f in &linux_client[..4] {
        payload.extend_from_slice(RoceV2Repr::parse(f).expect("data").roce.payload);
    }
    for msg in linux_client.chunks(4) {
        let mut p = Vec::new();
        for f in msg {
            p.extend_from_slice(RoceV2Repr::parse(f).expect("data").roce.payload);
        }
        assert_eq!(p, payload, "every WRITE carries the same buffer");
    }
    let mut am = Flat {
        addr: 0x7f00_0000_0000,
        data: payload,
    };
    let mut bm = Flat {
        addr: reth.va,
        data: vec![0; 4096],
    };
    let cfg = |qpn| QpConfig::rc(qpn, Pd(1));
    let mut a = LinuxQp::new(cfg(qpn)).expect("qp");
    let mut b = LinuxQp::new(cfg(qpn)).expect("qp");
    connect(&mut a, client_ip, server_ip, qpn, Psn::new(0), start);
    connect(&mut b, server_ip, client_ip, qpn, start, Psn::new(0));
    // The kernel checks the rkey against its own table; ours names the server's one region.
    let remote = Remote {
        addr: reth.va,
        rkey: Rkey(1),
    };
    for i in 0..20u64 {
        let wr = SendWr::new(
            i,
            WrOpcode::RdmaWrite(remote),
            Some(Sge {
                addr: 0x7f00_0000_0000,
                length: 4096,
                lkey: 1,
            }),
            SendFlags::SIGNALED,
        );
        a.post_send(wr, &am).expect("post");
    }
    let (mut a_out, mut b_out) = (Vec::new(), Vec::new());
    lockstep(&mut a, &mut am, &mut b, &mut bm, &mut a_out, &mut b_out);
    with_rkey(&mut a_out, reth.rkey);
    assert_identical(&a_out, &linux_client, "client");
    assert_identical(&b_out, &linux_server, "server");
    assert_eq!(bm.data, am.data);
    let wcs = std::iter::from_fn(|| a.poll_send_completion()).count();
    assert_eq!(wcs, 20);
}

#[test]
fn rc_pingpong_exchange_is_byte_identical_to_linux() {
    let frames = capture("rc_pingpong_send.pcap");
    let client_ip = Ipv4Addr::new(10, 77, 0, 12);
    let server_ip = Ipv4Addr::new(10, 77, 0, 11);
    let linux_client: Vec<&[u8]> = frames
        .iter()
        .filter(|f| src_of(f) == client_ip)
        .map(|f| ip_of(f))
        .collect();
    let linux_server: Vec<&[u8]> = frames
        .iter()
        .filter(|f| src_of(f) == server_ip)
        .map(|f| ip_of(f))
        .collect();
    let data_of = |pkts: &[&[u8]]| -> Vec<Vec<u8>> {
        // Payloads of each side's SEND messages, in order.
        let mut msgs = Vec::new();
        let mut cur = Vec::new();
        for p in pkts {
            let r = RoceV2Repr::parse(p).expect("linux");
            let info = r.roce.bth.opcode.info().expect("known");
            if info.operation == rxe_wire::Operation::Send {
                cur.extend_from_slice(r.roce.payload);
                if info.is_end() {
                    msgs.push(std::mem::take(&mut cur));
                }
            }
        }
        msgs
    };
    let client_msgs = data_of(&linux_client);
    let server_msgs = data_of(&linux_server);
    assert_eq!((client_msgs.len(), server_msgs.len()), (5, 5));
    let c0 = RoceV2Repr::parse(linux_client[0]).expect("c");
    let s0 = linux_server
        .iter()
        .map(|p| RoceV2Repr::parse(p).expect("s"))
        .find(|r| r.roce.ext.aeth.is_none())
        .expect("server data");
    let qpn = c0.roce.bth.dest_qp;
    let (cpsn, spsn) = (c0.roce.bth.psn, s0.roce.bth.psn);
    let mut a = LinuxQp::new(QpConfig::rc(qpn, Pd(1))).expect("qp");
    let mut b = LinuxQp::new(QpConfig::rc(qpn, Pd(1))).expect("qp");
    connect(&mut a, client_ip, server_ip, qpn, spsn, cpsn);
    connect(&mut b, server_ip, client_ip, qpn, cpsn, spsn);
    // Like ibv_rc_pingpong: one 4 KiB buffer per side, used to send and to receive.
    let mut am = Flat {
        addr: 0x1000,
        data: vec![0; 4096],
    };
    let mut bm = Flat {
        addr: 0x1000,
        data: vec![0; 4096],
    };
    let sge = Sge {
        addr: 0x1000,
        length: 4096,
        lkey: 1,
    };
    let (mut a_out, mut b_out) = (Vec::new(), Vec::new());
    for i in 0..5 {
        a.post_recv(RecvWr::new(i, sge)).expect("recv");
        b.post_recv(RecvWr::new(i, sge)).expect("recv");
    }
    for i in 0..5 {
        am.data.copy_from_slice(&client_msgs[i]);
        a.post_send(
            SendWr::new(i as u64, WrOpcode::Send, Some(sge), SendFlags::SIGNALED),
            &am,
        )
        .expect("send");
        lockstep(&mut a, &mut am, &mut b, &mut bm, &mut a_out, &mut b_out);
        assert_eq!(bm.data, client_msgs[i], "server received message {i}");
        bm.data.copy_from_slice(&server_msgs[i]);
        b.post_send(
            SendWr::new(i as u64, WrOpcode::Send, Some(sge), SendFlags::SIGNALED),
            &bm,
        )
        .expect("send");
        lockstep(&mut a, &mut am, &mut b, &mut bm, &mut a_out, &mut b_out);
        assert_eq!(am.data, server_msgs[i], "client received message {i}");
    }
    assert_identical(&a_out, &linux_client, "client");
    assert_identical(&b_out, &linux_server, "server");
}

/// Splits a capture into (client, server) IP packets; the client is 10.77.0.12.
fn sides(frames: &[Vec<u8>]) -> (Vec<&[u8]>, Vec<&[u8]>) {
    let client_ip = Ipv4Addr::new(10, 77, 0, 12);
    let c = frames
        .iter()
        .filter(|f| src_of(f) == client_ip)
        .map(|f| ip_of(f))
        .collect();
    let s = frames
        .iter()
        .filter(|f| src_of(f) != client_ip)
        .map(|f| ip_of(f))
        .collect();
    (c, s)
}

/// Puts our rkey (1) where Linux had its own, so the comparison can see everything else.
fn with_rkey(out: &mut [Vec<u8>], rkey: Rkey) {
    for p in out {
        let mut r = RoceV2Repr::parse(p).expect("ours");
        if let Some(h) = r.roce.ext.reth.as_mut() {
            h.rkey = rkey;
        }
        if let Some(h) = r.roce.ext.atomic_eth.as_mut() {
            h.rkey = rkey;
        }
        let mut v = vec![0u8; r.buffer_len()];
        r.emit(&mut v).expect("emit");
        *p = v;
    }
}

#[test]
fn ib_read_bw_exchange_is_byte_identical_to_linux() {
    let frames = capture("ib_read_bw.pcap");
    let (linux_client, linux_server) = sides(&frames);
    let first = RoceV2Repr::parse(linux_client[0]).expect("READ request");
    let reth = first.roce.ext.reth.expect("RETH");
    let qpn = first.roce.bth.dest_qp;
    // The server's buffer is what its first four responses carried.
    let mut data = Vec::new();
    for p in &linux_server[..4] {
        data.extend_from_slice(RoceV2Repr::parse(p).expect("resp").roce.payload);
    }
    let mut am = Flat {
        addr: 0x1000,
        data: vec![0; 4096],
    };
    let mut bm = Flat {
        addr: reth.va,
        data: data.clone(),
    };
    let mut a = LinuxQp::new(QpConfig::rc(qpn, Pd(1))).expect("qp");
    let mut b = LinuxQp::new(QpConfig::rc(qpn, Pd(1))).expect("qp");
    let (client_ip, server_ip) = (Ipv4Addr::new(10, 77, 0, 12), Ipv4Addr::new(10, 77, 0, 11));
    connect(
        &mut a,
        client_ip,
        server_ip,
        qpn,
        Psn::new(0),
        first.roce.bth.psn,
    );
    connect(
        &mut b,
        server_ip,
        client_ip,
        qpn,
        first.roce.bth.psn,
        Psn::new(0),
    );
    let remote = Remote {
        addr: reth.va,
        rkey: Rkey(1),
    };
    for i in 0..20u64 {
        let wr = SendWr::new(
            i,
            WrOpcode::RdmaRead(remote),
            Some(Sge {
                addr: 0x1000,
                length: 4096,
                lkey: 1,
            }),
            SendFlags::SIGNALED,
        );
        a.post_send(wr, &am).expect("post");
    }
    let (mut a_out, mut b_out) = (Vec::new(), Vec::new());
    lockstep(&mut a, &mut am, &mut b, &mut bm, &mut a_out, &mut b_out);
    with_rkey(&mut a_out, reth.rkey);
    assert_identical(&a_out, &linux_client, "client");
    assert_identical(&b_out, &linux_server, "server");
    assert_eq!(am.data, data);
}

#[test]
fn ib_atomic_fetch_add_exchange_is_byte_identical_to_linux() {
    let frames = capture("ib_atomic_fetch_add.pcap");
    let (linux_client, linux_server) = sides(&frames);
    let reqs: Vec<RoceV2Repr<'_>> = linux_client
        .iter()
        .map(|p| RoceV2Repr::parse(p).expect("req"))
        .collect();
    let acks: Vec<RoceV2Repr<'_>> = linux_server
        .iter()
        .map(|p| RoceV2Repr::parse(p).expect("ack"))
        .collect();
    let first = reqs[0];
    let base = first.roce.ext.atomic_eth.expect("AtomicETH").va;
    let qpn = first.roce.bth.dest_qp;
    // The server's memory held, at each target, the original value its ACK reported.
    let mut bm = Flat {
        addr: base,
        data: vec![0; 4096],
    };
    for (r, k) in reqs.iter().zip(&acks) {
        let va = r.roce.ext.atomic_eth.expect("AtomicETH").va;
        let orig = k.roce.ext.atomic_ack_eth.expect("AtomicAckETH").orig;
        let o = (va - base) as usize;
        bm.data[o..o + 8].copy_from_slice(&orig.to_ne_bytes());
    }
    let mut am = Flat {
        addr: 0x1000,
        data: vec![0; 4096],
    };
    let mut a = LinuxQp::new(QpConfig::rc(qpn, Pd(1))).expect("qp");
    let mut b = LinuxQp::new(QpConfig::rc(qpn, Pd(1))).expect("qp");
    let (client_ip, server_ip) = (Ipv4Addr::new(10, 77, 0, 12), Ipv4Addr::new(10, 77, 0, 11));
    connect(
        &mut a,
        client_ip,
        server_ip,
        qpn,
        Psn::new(0),
        first.roce.bth.psn,
    );
    connect(
        &mut b,
        server_ip,
        client_ip,
        qpn,
        first.roce.bth.psn,
        Psn::new(0),
    );
    for (i, r) in reqs.iter().enumerate() {
        let e = r.roce.ext.atomic_eth.expect("AtomicETH");
        let remote = Remote {
            addr: e.va,
            rkey: Rkey(1),
        };
        let sge = Sge {
            addr: 0x1000 + 8 * i as u64,
            length: 8,
            lkey: 1,
        };
        let wr = SendWr::new(
            i as u64,
            WrOpcode::AtomicFetchAdd {
                remote,
                add: e.swap_add,
            },
            Some(sge),
            SendFlags::SIGNALED,
        );
        a.post_send(wr, &am).expect("post");
    }
    let (mut a_out, mut b_out) = (Vec::new(), Vec::new());
    lockstep(&mut a, &mut am, &mut b, &mut bm, &mut a_out, &mut b_out);
    with_rkey(
        &mut a_out,
        first.roce.ext.atomic_eth.expect("AtomicETH").rkey,
    );
    assert_identical(&a_out, &linux_client, "client");
    assert_identical(&b_out, &linux_server, "server");
    for (i, k) in acks.iter().enumerate() {
        let orig = k.roce.ext.atomic_ack_eth.expect("AtomicAckETH").orig;
        assert_eq!(am.data[8 * i..8 * i + 8], orig.to_ne_bytes(), "result {i}");
    }
}

fn connect_uc(
    qp: &mut LinuxQp,
    local: Ipv4Addr,
    remote: Ipv4Addr,
    dest: Qpn,
    rq_psn: Psn,
    sq_psn: Psn,
) {
    let access = Some(Access::REMOTE_WRITE);
    let init = QpAttr {
        state: Some(QpState::Init),
        pkey_index: Some(0),
        port: Some(1),
        access,
        ..Default::default()
    };
    qp.modify(&init).expect("INIT");
    let av = AddressVector {
        sgid: IpAddr::V4(local),
        dgid: IpAddr::V4(remote),
        hop_limit: 64,
        traffic_class: 0,
        flow_label: 0,
        udp_sport: None,
    };
    let rtr = QpAttr {
        state: Some(QpState::Rtr),
        av: Some(av),
        path_mtu: Some(Mtu::M1024),
        dest_qp: Some(dest),
        rq_psn: Some(rq_psn),
        ..Default::default()
    };
    qp.modify(&rtr).expect("RTR");
    qp.modify(&QpAttr {
        state: Some(QpState::Rts),
        sq_psn: Some(sq_psn),
        ..Default::default()
    })
    .expect("RTS");
}

/// One captured UC message: is it a WRITE, its immediate data, its RETH, its payload.
type UcMessage = (
    bool,
    Option<rxe_wire::ImmDt>,
    Option<rxe_wire::reth::Repr>,
    Vec<u8>,
);

/// Replays a UC capture: the client's messages are rebuilt as work requests (SEND or WRITE, with
/// immediate data where Linux had it, the same payload bytes and remote addresses) and every
/// packet we send must equal Linux's.
fn replay_uc(name: &str) {
    let frames = capture(name);
    let (linux_client, linux_server) = sides(&frames);
    assert!(linux_server.is_empty(), "UC is never acknowledged");
    let reprs: Vec<RoceV2Repr<'_>> = linux_client
        .iter()
        .map(|p| RoceV2Repr::parse(p).expect("uc"))
        .collect();
    let first = reprs[0];
    let qpn = first.roce.bth.dest_qp;
    // Group packets into messages and rebuild each as a work request.
    let mut msgs: Vec<UcMessage> = Vec::new();
    let mut cur: Option<UcMessage> = None;
    for r in &reprs {
        let info = r.roce.bth.opcode.info().expect("known");
        let m = cur.get_or_insert((
            info.operation == rxe_wire::Operation::Write,
            None,
            r.roce.ext.reth,
            Vec::new(),
        ));
        m.3.extend_from_slice(r.roce.payload);
        if r.roce.ext.immdt.is_some() {
            m.1 = r.roce.ext.immdt;
        }
        if info.is_end() {
            msgs.push(cur.take().expect("message"));
        }
    }
    let base = msgs
        .iter()
        .filter_map(|m| m.2.map(|h| h.va))
        .min()
        .unwrap_or(0x1000);
    let span = msgs
        .iter()
        .filter_map(|m| m.2.map(|h| h.va - base + u64::from(h.dma_len)))
        .max()
        .unwrap_or(4096);
    let mut am = Flat {
        addr: 0x1_0000,
        data: vec![0; 64 * 1024],
    };
    let mut bm = Flat {
        addr: base,
        data: vec![0; span.max(64 * 1024) as usize],
    };
    let mut a = LinuxQp::new(QpConfig::uc(qpn, Pd(1))).expect("qp");
    let mut b = LinuxQp::new(QpConfig::uc(qpn, Pd(1))).expect("qp");
    let (client_ip, server_ip) = (Ipv4Addr::new(10, 77, 0, 12), Ipv4Addr::new(10, 77, 0, 11));
    connect_uc(
        &mut a,
        client_ip,
        server_ip,
        qpn,
        Psn::new(0),
        first.roce.bth.psn,
    );
    connect_uc(
        &mut b,
        server_ip,
        client_ip,
        qpn,
        first.roce.bth.psn,
        Psn::new(0),
    );
    let mut off = 0u64;
    for (i, (write, imm, reth, data)) in msgs.iter().enumerate() {
        let at = 0x1_0000 + off;
        am.data[off as usize..off as usize + data.len()].copy_from_slice(data);
        off += data.len() as u64;
        let sge = Sge {
            addr: at,
            length: data.len() as u32,
            lkey: 1,
        };
        let op = match (write, imm, reth) {
            (true, None, Some(h)) => WrOpcode::RdmaWrite(Remote {
                addr: h.va,
                rkey: Rkey(1),
            }),
            (true, Some(i), Some(h)) => WrOpcode::RdmaWriteWithImm(
                Remote {
                    addr: h.va,
                    rkey: Rkey(1),
                },
                *i,
            ),
            (false, None, _) => WrOpcode::Send,
            (false, Some(i), _) => WrOpcode::SendWithImm(*i),
            _ => panic!("WRITE without RETH"),
        };
        b.post_recv(RecvWr::new(
            i as u64,
            Sge {
                addr: base,
                length: 4096,
                lkey: 1,
            },
        ))
        .expect("recv");
        a.post_send(
            SendWr::new(i as u64, op, Some(sge), SendFlags::SIGNALED),
            &am,
        )
        .expect("post");
    }
    let (mut a_out, mut b_out) = (Vec::new(), Vec::new());
    lockstep(&mut a, &mut am, &mut b, &mut bm, &mut a_out, &mut b_out);
    if let Some(h) = first
        .roce
        .ext
        .reth
        .or_else(|| reprs.iter().find_map(|r| r.roce.ext.reth))
    {
        with_rkey(&mut a_out, h.rkey);
    }
    assert_identical(&a_out, &linux_client, "client");
    assert!(b_out.is_empty(), "a UC responder sends nothing");
    // Every request completed when its last packet went out.
    let wcs: Vec<_> = std::iter::from_fn(|| a.poll_send_completion()).collect();
    assert_eq!(wcs.len(), msgs.len());
    assert!(wcs
        .iter()
        .all(|w| w.status == rxe_transport::WcStatus::Success));
}

#[test]
fn uc_send_exchange_is_byte_identical_to_linux() {
    replay_uc("ib_send_bw_uc.pcap");
}

#[test]
fn uc_write_exchange_is_byte_identical_to_linux() {
    replay_uc("ib_write_bw_uc.pcap");
}

#[test]
fn uc_immediate_data_exchange_is_byte_identical_to_linux() {
    replay_uc("pyverbs_uc_imm_inv.pcap");
}

fn ud_qp(qpn: Qpn, qkey: u32, sq_psn: Psn) -> LinuxQp {
    let mut qp = LinuxQp::new(QpConfig::ud(qpn, Pd(1))).expect("qp");
    let init = QpAttr {
        state: Some(QpState::Init),
        pkey_index: Some(0),
        port: Some(1),
        qkey: Some(rxe_wire::QKey(qkey)),
        ..Default::default()
    };
    qp.modify(&init).expect("INIT");
    qp.modify(&QpAttr {
        state: Some(QpState::Rtr),
        ..Default::default()
    })
    .expect("RTR");
    qp.modify(&QpAttr {
        state: Some(QpState::Rts),
        sq_psn: Some(sq_psn),
        ..Default::default()
    })
    .expect("RTS");
    qp
}

/// Replays a UD capture: each datagram is posted with the payload Linux sent, to the same QPN and
/// Q_Key, from a QP with the same number and starting PSN; both directions must be identical.
fn replay_ud(name: &str, ping_pong: bool) {
    let frames = capture(name);
    let (linux_client, linux_server) = sides(&frames);
    let c: Vec<RoceV2Repr<'_>> = linux_client
        .iter()
        .map(|p| RoceV2Repr::parse(p).expect("ud"))
        .collect();
    let s: Vec<RoceV2Repr<'_>> = linux_server
        .iter()
        .map(|p| RoceV2Repr::parse(p).expect("ud"))
        .collect();
    let deth = c[0].roce.ext.deth.expect("DETH");
    let qkey = deth.qkey.0;
    let (client_ip, server_ip) = (Ipv4Addr::new(10, 77, 0, 12), Ipv4Addr::new(10, 77, 0, 11));
    let mut a = ud_qp(deth.src_qp, qkey, c[0].roce.bth.psn);
    let server_qpn = c[0].roce.bth.dest_qp;
    let server_psn = s.first().map_or(Psn::new(0), |r| r.roce.bth.psn);
    let mut b = ud_qp(server_qpn, qkey, server_psn);
    let mut am = Flat {
        addr: 0x1000,
        data: vec![0; 8192],
    };
    let mut bm = Flat {
        addr: 0x1000,
        data: vec![0; 8192],
    };
    let ah = |src, dst| AddressVector {
        sgid: IpAddr::V4(src),
        dgid: IpAddr::V4(dst),
        hop_limit: 64,
        traffic_class: 0,
        flow_label: 0,
        udp_sport: None,
    };
    let post = |qp: &mut LinuxQp, mem: &mut Flat, r: &RoceV2Repr<'_>, src, dst, id: u64| {
        let d = r.roce.ext.deth.expect("DETH");
        mem.data[..r.roce.payload.len()].copy_from_slice(r.roce.payload);
        let mut wr = SendWr::new(
            id,
            WrOpcode::Send,
            Some(Sge {
                addr: 0x1000,
                length: r.roce.payload.len() as u32,
                lkey: 1,
            }),
            SendFlags::SIGNALED,
        );
        wr.ud = Some(rxe_transport::UdDest {
            ah: ah(src, dst),
            remote_qpn: r.roce.bth.dest_qp,
            remote_qkey: d.qkey,
        });
        qp.post_send(wr, &*mem).expect("post UD send");
    };
    let (mut a_out, mut b_out) = (Vec::new(), Vec::new());
    for i in 0..c.len() {
        // Receives with room for the 40-byte GRH, as ibv_ud_pingpong posts them.
        b.post_recv(RecvWr::new(
            i as u64,
            Sge {
                addr: 0x1000,
                length: 4096 + 40,
                lkey: 1,
            },
        ))
        .expect("recv");
        a.post_recv(RecvWr::new(
            i as u64,
            Sge {
                addr: 0x1000,
                length: 4096 + 40,
                lkey: 1,
            },
        ))
        .expect("recv");
        post(&mut a, &mut am, &c[i], client_ip, server_ip, i as u64);
        lockstep(&mut a, &mut am, &mut b, &mut bm, &mut a_out, &mut b_out);
        let got = b.poll_recv_completion().expect("server received");
        assert_eq!(
            (got.byte_len as usize, got.src_qp),
            (40 + c[i].roce.payload.len(), deth.src_qp.value())
        );
        assert_eq!(
            &bm.data[40..40 + c[i].roce.payload.len()],
            c[i].roce.payload
        );
        if ping_pong {
            post(&mut b, &mut bm, &s[i], server_ip, client_ip, i as u64);
            lockstep(&mut a, &mut am, &mut b, &mut bm, &mut a_out, &mut b_out);
            assert!(
                a.poll_recv_completion().is_some(),
                "client received reply {i}"
            );
        }
    }
    assert_identical(&a_out, &linux_client, "client");
    assert_identical(&b_out, &linux_server, "server");
}

#[test]
fn ud_pingpong_exchange_is_byte_identical_to_linux() {
    replay_ud("ud_pingpong.pcap", true);
}

#[test]
fn ud_send_bw_exchange_is_byte_identical_to_linux() {
    replay_ud("ib_send_bw_ud.pcap", false);
}
