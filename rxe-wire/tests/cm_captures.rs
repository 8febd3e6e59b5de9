//! Golden vectors for the connection manager: every CM MAD Linux sent in the captures (rping,
//! iSER login) parses, re-emits byte for byte, and carries the values the rest of the capture
//! proves (QPNs and PSNs the RC traffic then uses, GIDs of the two hosts, rdma_cm's header).

mod common;

use core::net::{IpAddr, Ipv4Addr};

use rxe_wire::cm::{self, Message, RejReason};
use rxe_wire::cma::{self, CmaHeader};
use rxe_wire::mad::{self, GSI_QKEY, MAD_LEN};
use rxe_wire::{FrameRepr, Opcode};

/// (capture name, frame index, MAD bytes) of every UD SEND to QP1 with the GSI Q_Key.
fn cm_mads() -> Vec<(String, usize, Vec<u8>)> {
    let mut out = Vec::new();
    for path in common::captures() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for (i, frame) in common::frames(&path).iter().enumerate() {
            let Ok(f) = FrameRepr::parse(frame) else {
                continue;
            };
            let r = f.packet.roce;
            if r.bth.opcode == Opcode::UD_SEND_ONLY && r.bth.dest_qp.value() == mad::GSI_QPN {
                let deth = r.ext.deth.expect("UD SEND has a DETH");
                assert_eq!(deth.qkey.0, GSI_QKEY, "{name} frame {}", i + 1);
                assert_eq!(deth.src_qp.value(), 1, "{name} frame {}", i + 1);
                out.push((name.clone(), i + 1, r.payload.to_vec()));
            }
        }
    }
    out
}

#[test]
fn every_captured_cm_mad_parses_and_re_emits_identically() {
    let mads = cm_mads();
    let mut seen = std::collections::BTreeMap::new();
    for (name, i, mad) in &mads {
        assert_eq!(mad.len(), MAD_LEN, "{name} frame {i}");
        let (hdr, msg) = Message::parse(mad).unwrap_or_else(|e| panic!("{name} frame {i}: {e}"));
        *seen.entry(msg.name()).or_insert(0) += 1;
        let mut out = vec![0xa5u8; MAD_LEN];
        assert_eq!(msg.emit(hdr.tid, &mut out), Ok(MAD_LEN));
        assert_eq!(&out, mad, "{name} frame {i}: emit(parse(mad)) differs");
    }
    // Each connection: REQ, REP, RTU, DREQ, DREP.
    for m in ["REQ", "REP", "RTU", "DREQ", "DREP"] {
        assert!(seen.get(m).copied().unwrap_or(0) >= 3, "{m}: {seen:?}");
    }
}

#[test]
fn the_rping_connection_carries_what_the_rc_traffic_then_uses() {
    let mads: Vec<_> = cm_mads()
        .into_iter()
        .filter(|(n, _, _)| n == "rping.pcap")
        .collect();
    let msgs: Vec<_> = mads
        .iter()
        .map(|(_, _, m)| Message::parse(m).expect("parses"))
        .collect();
    let names: Vec<_> = msgs.iter().map(|(_, m)| m.name()).collect();
    assert_eq!(names, ["REQ", "REP", "RTU", "DREQ", "DREP"]);
    // One transaction ID per exchange (Linux keeps the REQ's for REP and RTU).
    let Message::Req(req) = msgs[0].1 else {
        panic!()
    };
    let Message::Rep(rep) = msgs[1].1 else {
        panic!()
    };
    let client = Ipv4Addr::new(10, 77, 0, 12);
    let server = Ipv4Addr::new(10, 77, 0, 11);
    // rping's defaults, Linux's rdma_cm parameters.
    assert_eq!(req.service_id, cma::service_id(cma::PS_TCP, 7174));
    assert_eq!(req.local_qpn.value(), 0x14);
    assert_eq!(req.starting_psn.value(), 0x54e9f2); // the client's first READ request PSN
    assert_eq!((req.responder_resources, req.initiator_depth), (1, 1));
    assert_eq!((req.retry_count, req.rnr_retry_count), (7, 7));
    assert_eq!(
        (
            req.remote_cm_response_timeout,
            req.local_cm_response_timeout
        ),
        (20, 20)
    );
    assert_eq!(req.max_cm_retries, 15);
    assert_eq!(req.path_mtu, 3); // 1024
    assert_eq!(req.pkey.0, 0xffff);
    assert_eq!(req.transport_type, 0); // RC
    assert_eq!(
        (req.primary.local_lid, req.primary.remote_lid),
        (0xffff, 0xffff)
    );
    assert_eq!(req.primary.local_gid, client.to_ipv6_mapped());
    assert_eq!(req.primary.remote_gid, server.to_ipv6_mapped());
    assert_eq!(req.primary.hop_limit, 64);
    assert_eq!(req.primary.local_ack_timeout, 19);
    assert_eq!(req.alternate, cm::Path::NONE);
    let cma = CmaHeader::parse(req.private_data).expect("rdma_cm header");
    assert_eq!(cma.src, IpAddr::V4(client));
    assert_eq!(cma.dst, IpAddr::V4(server));
    assert!(req.private_data[cma::HEADER_LEN..].iter().all(|&b| b == 0));

    assert_eq!(rep.remote_comm_id, req.local_comm_id);
    assert_eq!(rep.local_qpn.value(), 0x14);
    assert_eq!(rep.starting_psn.value(), 0x3baddb); // the server's first SEND PSN
    assert_eq!((rep.responder_resources, rep.initiator_depth), (1, 1));
    assert_eq!(rep.rnr_retry_count, 7);
    assert_eq!(rep.target_ack_delay, 15);
    assert_eq!(msgs[1].0.tid, msgs[0].0.tid);
    assert_eq!(msgs[2].0.tid, msgs[0].0.tid);

    let Message::Rtu(rtu) = msgs[2].1 else {
        panic!()
    };
    assert_eq!(
        (rtu.local_comm_id, rtu.remote_comm_id),
        (req.local_comm_id, rep.local_comm_id)
    );
    let Message::Dreq(dreq) = msgs[3].1 else {
        panic!()
    };
    assert_eq!(dreq.remote_qpn.value(), 0x14);
    let Message::Drep(drep) = msgs[4].1 else {
        panic!()
    };
    assert_eq!(drep.remote_comm_id, dreq.local_comm_id);
}

#[test]
fn a_req_built_from_parameters_matches_the_captured_one_except_ids_psns_and_addresses() {
    let (_, _, mad) = cm_mads()
        .into_iter()
        .find(|(n, _, m)| n == "rping.pcap" && Message::parse(m).unwrap().1.name() == "REQ")
        .expect("REQ");
    let (hdr, Message::Req(captured)) = Message::parse(&mad).unwrap() else {
        panic!()
    };
    assert_eq!(captured.primary.flow_label, 0x2cafc);
    // What an rdma_cm-compatible active side fills in for rping's connect.
    let client = Ipv4Addr::new(10, 77, 0, 12);
    let server = Ipv4Addr::new(10, 77, 0, 11);
    let mut pd = [0u8; 56 + cma::HEADER_LEN];
    CmaHeader {
        port: 39498,
        src: IpAddr::V4(client),
        dst: IpAddr::V4(server),
    }
    .emit(&mut pd)
    .unwrap();
    let ours = cm::Req {
        local_comm_id: 0x1111_2222,
        service_id: cma::service_id(cma::PS_TCP, 7174),
        local_ca_guid: 0x5054_00ff_fe77_0002,
        local_qkey: 0,
        local_qpn: rxe_wire::Qpn::new(0x14),
        responder_resources: 1,
        local_eecn: 0,
        initiator_depth: 1,
        remote_eecn: 0,
        remote_cm_response_timeout: 20,
        transport_type: 0,
        end_to_end_flow_control: false,
        starting_psn: rxe_wire::Psn::new(0x123456),
        local_cm_response_timeout: 20,
        retry_count: 7,
        pkey: rxe_wire::PKey(0xffff),
        path_mtu: 3,
        rdc_exists: false,
        rnr_retry_count: 7,
        max_cm_retries: 15,
        srq: false,
        extended_transport_type: 0,
        primary: cm::Path {
            local_lid: 0xffff,
            remote_lid: 0xffff,
            local_gid: client.to_ipv6_mapped(),
            remote_gid: server.to_ipv6_mapped(),
            flow_label: cma::flow_label(39498, 7174),
            packet_rate: 0,
            traffic_class: 0,
            hop_limit: 64,
            sl: 0,
            subnet_local: false,
            local_ack_timeout: 19,
        },
        alternate: cm::Path::NONE,
        sap_supported: false,
        private_data: &pd,
    };
    let mut out = [0u8; MAD_LEN];
    Message::Req(ours).emit(hdr.tid, &mut out).unwrap();
    // Only the comm ID (bytes 24..28) and the PSN (68..71) differ.
    let differing: Vec<usize> = (0..MAD_LEN).filter(|&i| out[i] != mad[i]).collect();
    assert!(
        differing
            .iter()
            .all(|&i| (24..28).contains(&i) || (68..71).contains(&i)),
        "{differing:?}"
    );
}

#[test]
fn rej_for_nobody_listening_round_trips() {
    let rej = Message::Rej(cm::Rej {
        local_comm_id: 0,
        remote_comm_id: 0xae49_af36,
        message_rejected: 0,
        rejected_info_length: 0,
        reason: RejReason::INVALID_SERVICE_ID,
        ari: &[],
        private_data: &[],
    });
    let mut out = [0u8; MAD_LEN];
    rej.emit(9, &mut out).unwrap();
    assert_eq!(&out[16..18], &cm::attr::REJ.to_be_bytes());
    assert_eq!(&out[24 + 10..24 + 12], &[0, 8]);
    let (_, back) = Message::parse(&out).unwrap();
    let Message::Rej(r) = back else { panic!() };
    assert_eq!(r.reason, RejReason::INVALID_SERVICE_ID);
    assert_eq!(r.reason.to_string(), "invalid service ID");
}
