//! `rxe dump`: one line per RoCEv2 frame of a capture, in the spirit of tshark's RoCE summary.
//!
//! ```text
//!     1 10.77.0.12:49441 > 10.77.0.11:4791 RC_RDMA_WRITE_FIRST qp=0x000011 psn=0x6e5f2a ack=0 reth=[va=0x000055d1c4a2b000 rkey=0x000004b7 dlen=4096] len=1024 icrc=ok
//! ```
//!
//! The last line counts: `N frames, N roce, N icrc-ok, N icrc-bad, N malformed`.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::IpAddr;

use rxe_wire::cm::Message;
use rxe_wire::cma::{self, CmaHeader};
use rxe_wire::{ethernet, mad, Checks, Error, FrameRepr, IpRepr, RoceV2Repr};

use crate::capture::{Frame, LinkType};

/// What a dump found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Frames in the capture.
    pub frames: usize,
    /// Frames that were RoCEv2 (UDP to port 4791), well-formed or not.
    pub roce: usize,
    /// RoCE frames whose ICRC verified.
    pub icrc_ok: usize,
    /// RoCE frames whose ICRC did not verify.
    pub icrc_bad: usize,
    /// RoCE frames that could not be parsed, were cut short by the capture, or failed an IP/UDP
    /// checksum.
    pub malformed: usize,
}

impl Summary {
    /// Whether every RoCE frame parsed and verified.
    pub fn is_clean(&self) -> bool {
        self.icrc_bad == 0 && self.malformed == 0
    }
}

/// Why a dump could not run at all.
#[derive(Debug)]
pub enum DumpError {
    /// Writing the output failed.
    Io(io::Error),
    /// A frame of a link type the dump cannot decode.
    LinkType(u32),
}

impl std::fmt::Display for DumpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DumpError::Io(e) => write!(f, "{e}"),
            DumpError::LinkType(l) => write!(
                f,
                "capture link type {l} is not supported (Ethernet, raw IP and Linux cooked are)"
            ),
        }
    }
}

impl std::error::Error for DumpError {}

impl From<io::Error> for DumpError {
    fn from(e: io::Error) -> DumpError {
        DumpError::Io(e)
    }
}

/// The IP packet of a frame, with the Ethernet header it came in (if any).
struct IpView<'a> {
    eth: Option<ethernet::Repr>,
    ip: &'a [u8],
}

/// Finds the IP packet in a frame, or `None` if the frame does not carry IP.
fn ip_packet(frame: &Frame) -> Result<Option<IpView<'_>>, DumpError> {
    let d = &frame.data[..];
    match frame.link {
        LinkType::Ethernet => match ethernet::Repr::parse(d) {
            Ok((eth, off)) => Ok(Some(IpView {
                eth: Some(eth),
                ip: &d[off..],
            })),
            Err(_) => Ok(None),
        },
        LinkType::RawIp => Ok(Some(IpView { eth: None, ip: d })),
        LinkType::LinuxSll => {
            const SLL_LEN: usize = 16;
            if d.len() < SLL_LEN {
                return Ok(None);
            }
            match u16::from_be_bytes([d[14], d[15]]) {
                ethernet::ETHERTYPE_IPV4 | ethernet::ETHERTYPE_IPV6 => Ok(Some(IpView {
                    eth: None,
                    ip: &d[SLL_LEN..],
                })),
                _ => Ok(None),
            }
        }
        LinkType::Other(l) => Err(DumpError::LinkType(l)),
    }
}

fn endpoint(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// Formats one parsed packet as a dump line (without the frame number and ICRC verdict).
pub fn describe(p: &RoceV2Repr<'_>) -> String {
    let (src, dst) = match p.ip {
        IpRepr::V4(r) => (IpAddr::V4(r.src), IpAddr::V4(r.dst)),
        IpRepr::V6(r) => (IpAddr::V6(r.src), IpAddr::V6(r.dst)),
    };
    let b = &p.roce.bth;
    let mut s = format!(
        "{} > {} {} qp={} psn={} ack={}",
        endpoint(src, p.udp.src_port),
        endpoint(dst, p.udp.dst_port),
        b.opcode,
        b.dest_qp,
        b.psn,
        u8::from(b.ack_req)
    );
    for (set, name) in [
        (b.solicited, "se"),
        (b.mig_req, "migreq"),
        (b.fecn, "fecn"),
        (b.becn, "becn"),
    ] {
        if set {
            s.push(' ');
            s.push_str(name);
        }
    }
    let e = &p.roce.ext;
    // Writing to a String cannot fail.
    if let Some(h) = e.deth {
        let _ = write!(s, " deth=[qkey={} srcqp={}]", h.qkey, h.src_qp);
    }
    if let Some(h) = e.feth {
        let _ = write!(s, " feth=[plt={} sel={}]", h.placement_type, h.selectivity);
    }
    if let Some(h) = e.reth {
        let _ = write!(
            s,
            " reth=[va={:#018x} rkey={} dlen={}]",
            h.va, h.rkey, h.dma_len
        );
    }
    if let Some(h) = e.aeth {
        let _ = write!(s, " aeth=[{} msn={}]", h.syndrome, h.msn);
    }
    if let Some(h) = e.atomic_eth {
        let _ = write!(
            s,
            " atomiceth=[va={:#018x} rkey={} swap_add={:#x} cmp={:#x}]",
            h.va, h.rkey, h.swap_add, h.compare
        );
    }
    if let Some(h) = e.atomic_ack_eth {
        let _ = write!(s, " atomicacketh=[orig={:#x}]", h.orig);
    }
    if let Some(h) = e.immdt {
        let _ = write!(s, " imm={:#010x}", h.as_be_u32());
    }
    if let Some(h) = e.ieth {
        let _ = write!(s, " ieth=[rkey={}]", h.rkey);
    }
    let _ = write!(s, " len={}", p.roce.payload.len());
    if b.pad_count != 0 {
        let _ = write!(s, " pad={}", b.pad_count);
    }
    let gsi = e.deth.is_some_and(|d| d.qkey.0 == mad::GSI_QKEY);
    if b.dest_qp.value() == mad::GSI_QPN && gsi {
        s.push(' ');
        s.push_str(&describe_cm(p.roce.payload));
    }
    s
}

/// Formats a MAD sent to QP1: `cm_req=[...]` and so on with the message's key fields, or
/// `mad=[...]` with the reason it is not a CM message this crate decodes.
pub fn describe_cm(mad_bytes: &[u8]) -> String {
    let (hdr, msg) = match Message::parse(mad_bytes) {
        Ok(m) => m,
        Err(e) => {
            let class = mad_bytes.get(1).copied().unwrap_or(0);
            return format!("mad=[class={class:#04x} error=\"{e}\"]");
        }
    };
    let mut s = format!(
        "cm_{}=[tid={:#x} comm={:#010x}",
        msg.name().to_lowercase(),
        hdr.tid,
        msg.local_comm_id()
    );
    if !matches!(msg, Message::Req(_)) {
        let _ = write!(s, " remote={:#010x}", msg.remote_comm_id());
    }
    match msg {
        Message::Req(r) => {
            let _ = write!(
                s,
                " sid={:#x} qpn={} psn={} mtu={} rr={} id={} retry={} rnr={} timeout={} sgid={} dgid={}",
                r.service_id,
                r.local_qpn,
                r.starting_psn,
                256u32 << r.path_mtu.saturating_sub(1).min(4),
                r.responder_resources,
                r.initiator_depth,
                r.retry_count,
                r.rnr_retry_count,
                r.primary.local_ack_timeout,
                r.primary.local_gid,
                r.primary.remote_gid
            );
            if let Some((_, port)) = cma::port_of(r.service_id) {
                let _ = write!(s, " port={port}");
                if let Ok(h) = CmaHeader::parse(r.private_data) {
                    let _ = write!(
                        s,
                        " cma_src={} cma_sport={} cma_dst={}",
                        h.src, h.port, h.dst
                    );
                }
            }
        }
        Message::Rep(r) => {
            let _ = write!(
                s,
                " qpn={} psn={} rr={} id={} rnr={}",
                r.local_qpn,
                r.starting_psn,
                r.responder_resources,
                r.initiator_depth,
                r.rnr_retry_count
            );
        }
        Message::Rej(r) => {
            let _ = write!(s, " reason={} msg={}", r.reason.0, r.message_rejected);
        }
        Message::Mra(r) => {
            let _ = write!(s, " msg={} timeout={}", r.message_mraed, r.service_timeout);
        }
        Message::Dreq(r) => {
            let _ = write!(s, " qpn={}", r.remote_qpn);
        }
        Message::Rtu(_) | Message::Drep(_) => {}
    }
    s.push(']');
    s
}

/// Dumps `frames` to `out`, one line per RoCE frame and a summary line; returns the counts.
pub fn dump(frames: &[Frame], out: &mut impl Write) -> Result<Summary, DumpError> {
    let mut sum = Summary {
        frames: frames.len(),
        ..Summary::default()
    };
    for (i, frame) in frames.iter().enumerate() {
        let n = i + 1;
        let Some(IpView { eth, ip }) = ip_packet(frame)? else {
            continue;
        };
        let structure = match eth {
            Some(_) => {
                FrameRepr::parse_with(&frame.data, &Checks::STRUCTURE_ONLY).map(|f| f.packet)
            }
            None => RoceV2Repr::parse_with(ip, &Checks::STRUCTURE_ONLY),
        };
        let packet = match structure {
            Ok(p) => p,
            Err(e) if e.is_not_roce() => continue,
            Err(e) => {
                sum.roce += 1;
                sum.malformed += 1;
                writeln!(out, "{n:>5} malformed: {e}")?;
                continue;
            }
        };
        sum.roce += 1;
        let mut line = format!("{n:>5} {}", describe(&packet));
        if let Some(v) = eth.and_then(|e| e.vlan) {
            let _ = write!(line, " vlan={}", v.vid);
        }
        if (frame.orig_len as usize) > frame.data.len() {
            sum.malformed += 1;
            writeln!(
                out,
                "{line} icrc=? (frame cut to {} of {} bytes by the capture)",
                frame.data.len(),
                frame.orig_len
            )?;
            continue;
        }
        let icrc_only = Checks {
            ip_checksum: false,
            udp_checksum: false,
            ..Checks::ALL
        };
        let icrc_ok = match RoceV2Repr::parse_with(ip, &icrc_only) {
            Ok(_) => true,
            Err(Error::IcrcMismatch { .. }) => false,
            Err(e) => {
                // Structure parsed, so only the ICRC can fail here; report anything else plainly.
                sum.malformed += 1;
                writeln!(out, "{line} malformed: {e}")?;
                continue;
            }
        };
        if icrc_ok {
            sum.icrc_ok += 1;
            line.push_str(" icrc=ok");
        } else {
            sum.icrc_bad += 1;
            line.push_str(" icrc=BAD");
        }
        let checksums = Checks {
            icrc: false,
            ..Checks::ALL
        };
        if let Err(e) = RoceV2Repr::parse_with(ip, &checksums) {
            sum.malformed += 1;
            let _ = write!(line, " ({e})");
        }
        writeln!(out, "{line}")?;
    }
    writeln!(
        out,
        "{} frames, {} roce, {} icrc-ok, {} icrc-bad, {} malformed",
        sum.frames, sum.roce, sum.icrc_ok, sum.icrc_bad, sum.malformed
    )?;
    Ok(sum)
}
