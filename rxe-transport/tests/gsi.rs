//! The connection manager over QP1: CM MADs carried as UD SEND_ONLY between two GSI QPs (QPN 1,
//! Q_Key 0x80010000), a connection set up end to end, and our REQ frame equal to Linux's from
//! the rping capture but for the IP identification and checksum, the IDs and the ICRC.

mod common;

use core::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use common::*;
use pcap_file::pcap::PcapReader;
use rxe_transport::cm::{AcceptParams, Cm, CmConfig, CmEvent, ConnectParams};
use rxe_transport::{
    Access, AddressVector, Instant, Pd, QpAttr, QpConfig, QpState, RecvWr, SendFlags, SendWr, Sge,
    UdDest, WcStatus, WrOpcode, GRH_LEN,
};
use rxe_wire::mad::{GSI_QKEY, GSI_QPN, MAD_LEN};
use rxe_wire::{Checks, Psn, QKey, Qpn, RoceV2Packet};

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 12);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 11);
const BUF: u64 = 0x10_0000;
const RECVS: u64 = 8;

struct Gsi {
    ip: Ipv4Addr,
    qp: TestQp,
    mem: TestMemory,
    key: u32,
    cm: Cm<4>,
    events: Vec<CmEvent>,
    sends: u64,
}

impl Gsi {
    fn new(ip: Ipv4Addr, guid: u64) -> Gsi {
        let mut qp = TestQp::new(QpConfig::ud(Qpn::new(GSI_QPN), Pd(1))).expect("qp1");
        qp.modify(&QpAttr {
            state: Some(QpState::Init),
            pkey_index: Some(0),
            port: Some(1),
            qkey: Some(QKey(GSI_QKEY)),
            ..Default::default()
        })
        .unwrap();
        qp.modify(&QpAttr {
            state: Some(QpState::Rtr),
            ..Default::default()
        })
        .unwrap();
        qp.modify(&QpAttr {
            state: Some(QpState::Rts),
            sq_psn: Some(Psn::new(0)),
            ..Default::default()
        })
        .unwrap();
        let mut mem = TestMemory::default();
        let key = mem.register(Pd(1), BUF, 64 * 1024, Access::LOCAL_WRITE, 0);
        for i in 0..RECVS {
            qp.post_recv(recv(i, key)).unwrap();
        }
        let cm = Cm::new(CmConfig::new(IpAddr::V4(ip), guid, u64::from(guid as u8)));
        Gsi {
            ip,
            qp,
            mem,
            key,
            cm,
            events: Vec::new(),
            sends: 0,
        }
    }

    /// Posts every MAD the CM has as a UD SEND to the peer's QP1; returns the frames sent.
    fn transmit(&mut self, now: Instant) -> Vec<Vec<u8>> {
        while let Some(o) = self.cm.poll_transmit() {
            // Send buffers follow the receive slots.
            let at = BUF + (RECVS + self.sends % 8) * 1024;
            self.sends += 1;
            let off = (at - BUF) as usize;
            self.mem.regions[0].data[off..off + MAD_LEN].copy_from_slice(&o.mad);
            let mut wr = SendWr::new(
                self.sends,
                WrOpcode::Send,
                Some(Sge {
                    addr: at,
                    length: MAD_LEN as u32,
                    lkey: self.key,
                }),
                SendFlags::SIGNALED,
            );
            wr.ud = Some(UdDest {
                ah: AddressVector {
                    sgid: IpAddr::V4(self.ip),
                    dgid: o.dst,
                    hop_limit: 64,
                    traffic_class: 0,
                    flow_label: 0,
                    udp_sport: None,
                },
                remote_qpn: Qpn::new(GSI_QPN),
                // The GSI Q_Key goes out whatever the request says.
                remote_qkey: QKey(0),
            });
            self.qp.post_send(wr, &self.mem).expect("post MAD");
        }
        let mut out = Vec::new();
        let mut buf = vec![0u8; 1024];
        while let Some(n) = self.qp.poll_transmit(now, &mut buf, &mut self.mem).unwrap() {
            out.push(buf[..n].to_vec());
        }
        while let Some(wc) = self.qp.poll_send_completion() {
            assert_eq!(wc.status, WcStatus::Success);
        }
        out
    }

    /// Hands a frame to QP1, and what it received to the CM.
    fn receive(&mut self, now: Instant, frame: &[u8]) {
        let p = RoceV2Packet::new_checked(frame, &Checks::ALL).expect("valid");
        self.qp.handle_packet(now, &p, &mut self.mem);
        while let Some(wc) = self.qp.poll_recv_completion() {
            assert_eq!(wc.byte_len as usize, GRH_LEN + MAD_LEN);
            let slot = BUF + wc.wr_id * 1024;
            let grh = self.mem.bytes(self.key, slot, GRH_LEN).to_vec();
            // The GRH area holds the IPv4 header from byte 20: the source is at 20 + 12.
            let src = IpAddr::V4(Ipv4Addr::new(grh[32], grh[33], grh[34], grh[35]));
            let mad = self
                .mem
                .bytes(self.key, slot + GRH_LEN as u64, MAD_LEN)
                .to_vec();
            self.cm.handle_mad(now, src, &mad);
            self.qp.post_recv(recv(wc.wr_id, self.key)).unwrap();
        }
        while let Some(e) = self.cm.poll_event() {
            self.events.push(e);
        }
    }
}

fn recv(i: u64, key: u32) -> RecvWr {
    RecvWr::new(
        i,
        Sge {
            addr: BUF + i * 1024,
            length: 1024,
            lkey: key,
        },
    )
}

fn linux_req_frame() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rxe-wire/tests/data/rping.pcap");
    let mut r = PcapReader::new(std::fs::File::open(&path).expect("capture")).expect("pcap");
    let first = r.next_packet().expect("a frame").expect("record");
    first.data[14..].to_vec()
}

#[test]
fn a_connection_over_qp1_and_a_req_frame_like_linux() {
    let now = Instant::from_nanos(1);
    let mut client = Gsi::new(CLIENT, 0x5054_00ff_fe77_0002);
    let mut server = Gsi::new(SERVER, 0x5054_00ff_fe77_0001);
    server.cm.listen(7174).unwrap();
    let id = client
        .cm
        .connect(
            now,
            &ConnectParams {
                dst: IpAddr::V4(SERVER),
                dst_port: 7174,
                src_port: 39498,
                qpn: Qpn::new(0x14),
                psn: Psn::new(0x54e9f2),
                responder_resources: 1,
                initiator_depth: 1,
                retry_count: 7,
                rnr_retry_count: 7,
                private_data: &[],
            },
        )
        .unwrap();
    let req = client.transmit(now);
    assert_eq!(req.len(), 1);

    // Against Linux: everything but the IP identification and checksum (bytes 4-5, 10-11), the
    // MAD's transaction ID and comm ID, and the ICRC.
    let linux = linux_req_frame();
    assert_eq!(req[0].len(), linux.len());
    let mad_at = 20 + 8 + 12 + 8;
    let may_differ = |i: usize| {
        matches!(i, 4 | 5 | 10 | 11)
            || (mad_at + 8..mad_at + 16).contains(&i)
            || (mad_at + 24..mad_at + 28).contains(&i)
            || i >= linux.len() - 4
    };
    let differing: Vec<usize> = (0..linux.len())
        .filter(|&i| req[0][i] != linux[i])
        .collect();
    assert!(
        differing.iter().all(|&i| may_differ(i)),
        "REQ frame differs at {differing:?}"
    );

    server.receive(now, &req[0]);
    let Some(CmEvent::ConnectRequest { id: sid, .. }) = server.events.pop() else {
        panic!("{:?}", server.events)
    };
    server
        .cm
        .accept(
            now,
            sid,
            &AcceptParams {
                qpn: Qpn::new(0x14),
                psn: Psn::new(0x3baddb),
                responder_resources: 1,
                initiator_depth: 1,
                rnr_retry_count: 7,
                private_data: &[],
            },
        )
        .unwrap();
    for f in server.transmit(now) {
        client.receive(now, &f);
    }
    assert!(matches!(
        client.events.pop(),
        Some(CmEvent::ConnectReply { .. })
    ));
    client.cm.rtu(id).unwrap();
    for f in client.transmit(now) {
        server.receive(now, &f);
    }
    assert_eq!(server.events.pop(), Some(CmEvent::Established { id: sid }));
    // Frames of the exchange: UD SEND_ONLY to QP1, Q_Key 0x80010000, source QP 1, UDP source
    // port 0xc000 + hash_32(1, 14) as Linux's QP1 uses.
    let p = RoceV2Packet::new_checked(&req[0], &Checks::ALL).unwrap();
    let deth = p.roce().deth().unwrap();
    assert_eq!((deth.qkey().0, deth.src_qp().value()), (GSI_QKEY, 1));
    assert_eq!(p.roce().bth().dest_qp().value(), 1);
    assert_eq!(p.udp().src_port, 55410);
    // A MAD with another Q_Key is not for QP1.
    let mut bad = req[0].clone();
    let deth_at = 20 + 8 + 12;
    bad[deth_at] ^= 0x01;
    let before = server.cm.counters().received;
    let icrc = rxe_wire::icrc::compute(&bad[..20], &bad[20..28], &bad[28..bad.len() - 4]).unwrap();
    let n = bad.len();
    bad[n - 4..].copy_from_slice(&icrc.to_le_bytes());
    server.receive(now, &bad);
    assert_eq!(server.cm.counters().received, before);
}
