//! What rxe sent to and received from the real Linux rdma_rxe and rping (captures in
//! tests/data, see README.txt there): every ICRC verifies, our frames carry IPv4 Identification
//! 0 and the socket's UDP port (which the ICRC covers), the connection and the ten pings are all
//! there, and Linux's frames (changing Identification values) pass our UDP-socket receive path.

use std::collections::HashMap;
use std::path::Path;

use rxe_examples::capture;
use rxe_wire::cm::Message;
use rxe_wire::icrc::ipv4_ident::IdentSolver;
use rxe_wire::{Checks, FrameRepr, IpRepr, Opcode};

const OURS: [u8; 4] = [10, 77, 0, 1];

fn check(name: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    let frames = capture::read_file(&path).expect("capture");
    let checks = Checks {
        // Our frames' UDP checksums were captured before the kernel completed them.
        udp_checksum: false,
        ..Checks::ALL
    };
    let mut ours = 0;
    let mut cm = Vec::new();
    let mut writes = 0;
    let mut reads = 0;
    let mut solvers: HashMap<usize, IdentSolver> = HashMap::new();
    for f in &frames {
        let r = FrameRepr::parse_with(&f.data, &checks).expect("every frame verifies");
        let IpRepr::V4(ip) = r.packet.ip else {
            panic!("IPv4 only")
        };
        if ip.src.octets() == OURS {
            ours += 1;
            assert_eq!(ip.ident, 0, "{name}: our Identification");
            assert_eq!(r.packet.udp.src_port, 4791, "{name}: our source port");
        } else {
            // Linux's: the Identification is solved from the ICRC as rxe-user receives.
            let udp_payload = &f.data[f.data.len() - r.packet.roce.buffer_len()..];
            let (t, icrc) = udp_payload.split_at(udp_payload.len() - 4);
            let icrc = u32::from_le_bytes(icrc.try_into().unwrap());
            let s = solvers
                .entry(t.len())
                .or_insert_with(|| IdentSolver::new(t.len()));
            let blind = rxe_wire::ipv4::Repr { ident: 0, ..ip };
            assert_eq!(s.solve(&blind, &r.packet.udp, t, icrc), Some(ip.ident));
        }
        let op = r.packet.roce.bth.opcode;
        if op == Opcode::UD_SEND_ONLY && r.packet.roce.bth.dest_qp.value() == 1 {
            cm.push(Message::parse(r.packet.roce.payload).expect("CM").1.name());
        }
        writes += usize::from(op == Opcode::RC_RDMA_WRITE_ONLY);
        reads += usize::from(op == Opcode::RC_RDMA_READ_REQUEST);
    }
    assert!(ours > 50, "{name}: {ours} frames of ours");
    assert_eq!(cm, ["REQ", "REP", "RTU", "DREQ", "DREP"], "{name}");
    assert_eq!((reads, writes), (10, 10), "{name}");
}

#[test]
fn linux_rping_client_against_our_server() {
    check("interop_linux_rping_client_rxe_server.pcap");
}

#[test]
fn our_rping_client_against_linux_server() {
    check("interop_rxe_rping_client_linux_server.pcap");
}
