//! A whole RoCEv2 packet from the IP header to the ICRC, and the same inside an Ethernet frame.

use crate::error::{Error, Result};
use crate::ethernet::{self, IpVersion};
use crate::icrc::{self, ICRC_LEN};
use crate::payload::{PayloadSink, PayloadSource};
use crate::roce::{RocePacket, RoceRepr};
use crate::{checksum, ipv4, ipv6, udp};

/// The IP header of a RoCEv2 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpRepr {
    /// RoCEv2 over IPv4 (IPv4-mapped GIDs).
    V4(ipv4::Repr),
    /// RoCEv2 over IPv6.
    V6(ipv6::Repr),
}

impl IpRepr {
    /// Length of the IP header.
    pub const fn header_len(&self) -> usize {
        match self {
            IpRepr::V4(_) => ipv4::HEADER_LEN,
            IpRepr::V6(_) => ipv6::HEADER_LEN,
        }
    }
    /// The IP version.
    pub const fn version(&self) -> IpVersion {
        match self {
            IpRepr::V4(_) => IpVersion::V4,
            IpRepr::V6(_) => IpVersion::V6,
        }
    }
    /// Computes the ICRC of a transport packet (`transport`: BTH up to, not including, the ICRC)
    /// sent with this IP header and `udp`, without needing the headers' bytes: for hosts that
    /// send through UDP sockets and never see the IP header (it is rebuilt here from the `Repr`,
    /// so for IPv4 the `ident` must be what the kernel put on the wire).
    pub fn icrc(&self, udp: &udp::Repr, transport: &[u8]) -> Result<u32> {
        let mut hdr = [0u8; ipv6::HEADER_LEN + udp::HEADER_LEN];
        let ip_len = self.header_len();
        let udp_len = udp::HEADER_LEN + transport.len() + ICRC_LEN;
        match self {
            IpRepr::V4(r) => r.emit(&mut hdr, udp_len)?,
            IpRepr::V6(r) => r.emit(&mut hdr, udp_len)?,
        }
        udp.emit(&mut hdr[ip_len..], udp_len - udp::HEADER_LEN)?;
        icrc::compute(
            &hdr[..ip_len],
            &hdr[ip_len..ip_len + udp::HEADER_LEN],
            transport,
        )
    }

    fn pseudo_header_sum(&self, udp_len: u16) -> u32 {
        match self {
            IpRepr::V4(r) => r.pseudo_header_sum(udp_len),
            IpRepr::V6(r) => r.pseudo_header_sum(udp_len),
        }
    }
}

/// Which checks [`RoceV2Repr::parse_with`] runs. [`Checks::ALL`] is what a receiver wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Checks {
    /// Verify the IPv4 header checksum.
    pub ip_checksum: bool,
    /// Verify the UDP checksum when it is non-zero.
    pub udp_checksum: bool,
    /// Verify the ICRC.
    pub icrc: bool,
    /// The UDP destination port that marks RoCEv2 (4791 unless a test moves it).
    pub udp_port: u16,
}

impl Checks {
    /// Every check, on port 4791.
    pub const ALL: Checks = Checks {
        ip_checksum: true,
        udp_checksum: true,
        icrc: true,
        udp_port: udp::ROCE_PORT,
    };
    /// Only structure: no checksum or ICRC verification (for tools showing broken frames).
    pub const STRUCTURE_ONLY: Checks = Checks {
        ip_checksum: false,
        udp_checksum: false,
        icrc: false,
        udp_port: udp::ROCE_PORT,
    };
}

impl Default for Checks {
    fn default() -> Checks {
        Checks::ALL
    }
}

/// A RoCEv2 packet: IP header, UDP header and the transport packet with its ICRC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoceV2Repr<'a> {
    /// IP header.
    pub ip: IpRepr,
    /// UDP header.
    pub udp: udp::Repr,
    /// BTH, extension headers and payload.
    pub roce: RoceRepr<'a>,
}

impl<'a> RoceV2Repr<'a> {
    /// Parses an IP packet with every check, the ICRC included.
    pub fn parse(ip_packet: &'a [u8]) -> Result<RoceV2Repr<'a>> {
        RoceV2Repr::parse_with(ip_packet, &Checks::ALL)
    }

    /// Parses an IP packet with the chosen checks.
    pub fn parse_with(ip_packet: &'a [u8], checks: &Checks) -> Result<RoceV2Repr<'a>> {
        Ok(RoceV2Packet::new_checked(ip_packet, checks)?.to_repr())
    }

    /// Length of the IP packet: IP and UDP headers, transport headers, payload, pad and ICRC.
    pub fn buffer_len(&self) -> usize {
        self.ip.header_len() + udp::HEADER_LEN + self.roce.buffer_len()
    }

    /// Writes the IP packet with its IPv4 checksum, ICRC and (if `udp.checksum`) UDP checksum;
    /// returns [`buffer_len`](Self::buffer_len). Nothing is written on error.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let payload = self.roce.payload;
        self.emit_with(buf, payload.len(), |d| d.copy_from_slice(payload))
    }

    /// Like [`emit`](Self::emit) for a payload of `payload_len` bytes that `fill` writes in
    /// place, so data can go from registered memory to the wire with one copy; the ICRC and
    /// checksums cover what `fill` wrote. `self.roce.payload` is ignored; the BTH pad count must
    /// suit `payload_len` (see [`pad_for`](crate::pad_for)).
    pub fn emit_with(
        &self,
        buf: &mut [u8],
        payload_len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<usize> {
        self.emit_with_sink(buf, payload_len, |s| {
            s.fill_with(payload_len, fill);
        })
    }

    /// Like [`emit_with`](Self::emit_with), but `fill` writes the payload through a
    /// [`PayloadSink`], which runs the ICRC over the bytes as it copies them (one pass over the
    /// data instead of two). Bytes `fill` leaves unwritten are zero.
    pub fn emit_with_sink(
        &self,
        buf: &mut [u8],
        payload_len: usize,
        fill: impl FnOnce(&mut PayloadSink<'_>),
    ) -> Result<usize> {
        let ip_len = self.ip.header_len();
        let roce_len =
            self.roce.header_len() + payload_len + usize::from(self.roce.bth.pad_count) + ICRC_LEN;
        let len = ip_len + udp::HEADER_LEN + roce_len;
        if buf.len() < len {
            return Err(Error::BufferTooSmall { required: len });
        }
        let udp_len = len - ip_len;
        if udp_len > usize::from(u16::MAX) {
            return Err(Error::FieldOverflow);
        }
        let buf = &mut buf[..len];
        // The transport headers first: they validate the opcode layout before anything else.
        let (hdr, _) = self
            .roce
            .emit_headers(&mut buf[ip_len + udp::HEADER_LEN..], payload_len)?;
        match &self.ip {
            IpRepr::V4(r) => r.emit(buf, udp_len)?,
            IpRepr::V6(r) => r.emit(buf, udp_len)?,
        }
        self.udp
            .emit(&mut buf[ip_len..], udp_len - udp::HEADER_LEN)?;
        emit_body(buf, ip_len + udp::HEADER_LEN + hdr, payload_len, fill)?;
        if self.udp.checksum {
            let (_, rest) = buf.split_at_mut(ip_len);
            let (udp_hdr, transport) = rest.split_at_mut(udp::HEADER_LEN);
            let acc = self.ip.pseudo_header_sum(udp_len as u16);
            let acc = checksum::sum(checksum::sum(acc, udp_hdr), transport);
            let c = match checksum::finish(acc) {
                0 => 0xffff,
                c => c,
            };
            udp_hdr[udp::field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
        }
        Ok(len)
    }
}

/// The part of every emit after the headers: runs `fill` over the payload through a
/// [`PayloadSink`] (copy and ICRC in one pass), then covers the pad and stores the ICRC.
/// `packet` is the whole IP packet, its headers written up to `hdr_end` and its pad and ICRC
/// zeroed.
pub(crate) fn emit_body(
    packet: &mut [u8],
    hdr_end: usize,
    payload_len: usize,
    fill: impl FnOnce(&mut PayloadSink<'_>),
) -> Result<()> {
    let crc = icrc::start_packet(packet, hdr_end)?;
    let t_end = packet.len() - ICRC_LEN;
    let (payload, tail) = packet[hdr_end..].split_at_mut(payload_len);
    let mut sink = PayloadSink::new(payload, crc);
    fill(&mut sink);
    let mut crc = sink.finish();
    let pad_len = t_end - hdr_end - payload_len;
    if pad_len != 0 {
        crc.update(&tail[..pad_len]);
    }
    tail[pad_len..].copy_from_slice(&crc.finalize().to_le_bytes());
    Ok(())
}

/// The ICRC of `packet` (IP header through the end of the UDP payload, ICRC included) whose
/// IP header is `ip_len` bytes and transport headers `roce_hdr` bytes.
fn contiguous_icrc(packet: &[u8], ip_len: usize, roce_hdr: usize) -> Result<u32> {
    let hdr_end = ip_len + udp::HEADER_LEN + roce_hdr;
    let mut crc = icrc::start_packet(packet, hdr_end)?;
    let end = packet.len().saturating_sub(ICRC_LEN).max(hdr_end);
    crc.update(&packet[hdr_end..end]);
    Ok(crc.finalize())
}

/// A checked, zero-copy view of a RoCEv2 IP packet: the receive fast path.
///
/// [`new_checked`](Self::new_checked) validates the IP and UDP headers and the transport packet
/// (and, as `checks` says, the checksums and the ICRC) without building the transport `Repr`;
/// read the fields you need through [`roce`](Self::roce), or build everything with
/// [`to_repr`](Self::to_repr).
#[derive(Debug, Clone, Copy)]
pub struct RoceV2Packet<'a> {
    ip: IpRepr,
    udp: udp::Repr,
    roce: RocePacket<&'a [u8]>,
    /// The IP packet from its first byte to the end of the UDP payload, for an ICRC check
    /// after parsing (the headers lie contiguously there).
    packet: &'a [u8],
    icrc_checked: bool,
}

impl<'a> RoceV2Packet<'a> {
    /// Validates an IP packet (trailing bytes past the IP length, such as Ethernet padding, are
    /// ignored).
    pub fn new_checked(ip_packet: &'a [u8], checks: &Checks) -> Result<RoceV2Packet<'a>> {
        let (ip, ip_payload) = match ip_packet.first().map(|b| b >> 4) {
            Some(4) => {
                let (r, p) = ipv4::Repr::parse(ip_packet, checks.ip_checksum)?;
                (IpRepr::V4(r), p)
            }
            Some(6) => {
                let (r, p) = ipv6::Repr::parse(ip_packet)?;
                (IpRepr::V6(r), p)
            }
            Some(v) => return Err(Error::BadIpVersion(v)),
            None => {
                return Err(Error::Truncated {
                    needed: ipv4::HEADER_LEN,
                    got: 0,
                })
            }
        };
        let (udp, udp_csum, udp_payload) = udp::Repr::parse(ip_payload, checks.udp_port)?;
        let roce = RocePacket::new_checked(udp_payload)?;
        if checks.udp_checksum && udp_csum != 0 {
            // ip_payload is the whole UDP datagram; its length was checked to fit u16.
            let len = ip_payload.len() as u16;
            if checksum::sum(ip.pseudo_header_sum(len), ip_payload) != 0xffff {
                return Err(Error::BadUdpChecksum);
            }
        }
        let packet = &ip_packet[..ip.header_len() + udp::HEADER_LEN + udp_payload.len()];
        if checks.icrc {
            let computed = contiguous_icrc(packet, ip.header_len(), roce.header_len())?;
            let received = roce.icrc();
            if computed != received {
                return Err(Error::IcrcMismatch { computed, received });
            }
        }
        // Built once, in place: moving a half-written view around costs store-forwarding stalls.
        Ok(RoceV2Packet {
            ip,
            udp,
            roce,
            packet,
            icrc_checked: checks.icrc,
        })
    }

    fn computed_icrc(&self) -> Result<u32> {
        contiguous_icrc(self.packet, self.ip.header_len(), self.roce.header_len())
    }

    /// Whether the ICRC was verified when this view was made (`Checks::icrc`).
    pub fn icrc_checked(&self) -> bool {
        self.icrc_checked
    }

    /// Whether the ICRC is good: true at once if it was verified when this view was made,
    /// otherwise computed now.
    pub fn icrc_ok(&self) -> bool {
        self.icrc_checked || self.computed_icrc().ok() == Some(self.roce.icrc())
    }

    /// This view with its ICRC verified (at once if it was when the view was made), or `None`
    /// if the ICRC is bad.
    pub fn check_icrc(&self) -> Option<RoceV2Packet<'a>> {
        self.icrc_ok().then_some(RoceV2Packet {
            icrc_checked: true,
            ..*self
        })
    }

    /// This view marked as having a good ICRC without computing it: for a host that verified the
    /// ICRC by other means (a UDP host solves the IPv4 Identification from it, which leaves the
    /// ICRC right by construction). A wrong vouch lets a corrupt packet through.
    pub fn vouch_icrc(self) -> RoceV2Packet<'a> {
        RoceV2Packet {
            icrc_checked: true,
            ..self
        }
    }

    /// The payload as a [`PayloadSource`]. If the ICRC was not verified yet, the source runs it
    /// over the bytes as they are copied out and [`PayloadSource::icrc_ok`] tells the outcome.
    pub fn payload_source(&self) -> PayloadSource<'a> {
        let buf: &'a [u8] = self.roce.into_inner();
        let hdr = self.roce.header_len();
        let pad = usize::from(self.roce.bth().pad_count());
        let end = buf.len() - ICRC_LEN;
        let payload = &buf[hdr..end - pad];
        if self.icrc_checked {
            return PayloadSource::from_slice(payload);
        }
        let hdr_end = self.ip.header_len() + udp::HEADER_LEN + hdr;
        // `start_packet` cannot fail on a view that parsed; if it did, the check fails.
        let crc = icrc::start_packet(self.packet, hdr_end).ok();
        PayloadSource::unverified(payload, crc, &buf[end - pad..end], self.roce.icrc())
    }

    /// Returns the IP header.
    pub fn ip(&self) -> &IpRepr {
        &self.ip
    }
    /// Returns the UDP header.
    pub fn udp(&self) -> &udp::Repr {
        &self.udp
    }
    /// Returns the transport packet.
    pub fn roce(&self) -> &RocePacket<&'a [u8]> {
        &self.roce
    }
    /// Builds the whole [`RoceV2Repr`].
    pub fn to_repr(&self) -> RoceV2Repr<'a> {
        RoceV2Repr {
            ip: self.ip,
            udp: self.udp,
            roce: self.roce.to_repr(),
        }
    }
}

/// A RoCEv2 packet inside an Ethernet II frame (optionally VLAN-tagged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameRepr<'a> {
    /// Ethernet header.
    pub eth: ethernet::Repr,
    /// The IP packet.
    pub packet: RoceV2Repr<'a>,
}

impl<'a> FrameRepr<'a> {
    /// Parses an Ethernet frame (no FCS) with every check.
    pub fn parse(frame: &'a [u8]) -> Result<FrameRepr<'a>> {
        FrameRepr::parse_with(frame, &Checks::ALL)
    }

    /// Parses an Ethernet frame with the chosen checks. Trailing Ethernet padding is ignored.
    pub fn parse_with(frame: &'a [u8], checks: &Checks) -> Result<FrameRepr<'a>> {
        let (eth, off) = ethernet::Repr::parse(frame)?;
        let ip = &frame[off..];
        let version = ip.first().map_or(0, |b| b >> 4);
        let expected = match eth.ip_version {
            IpVersion::V4 => 4,
            IpVersion::V6 => 6,
        };
        if !ip.is_empty() && version != expected {
            return Err(Error::BadIpVersion(version));
        }
        let packet = RoceV2Repr::parse_with(ip, checks)?;
        Ok(FrameRepr { eth, packet })
    }

    /// Length of the frame without FCS.
    pub fn buffer_len(&self) -> usize {
        self.eth.header_len() + self.packet.buffer_len()
    }

    /// Writes the frame; returns [`buffer_len`](Self::buffer_len). Nothing is written on error.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        if self.eth.ip_version != self.packet.ip.version() {
            return Err(Error::BadIpVersion(match self.packet.ip.version() {
                IpVersion::V4 => 4,
                IpVersion::V6 => 6,
            }));
        }
        let len = self.buffer_len();
        if buf.len() < len {
            return Err(Error::BufferTooSmall { required: len });
        }
        let h = self.eth.header_len();
        self.packet.emit(&mut buf[h..len])?;
        self.eth.emit(buf)?;
        Ok(len)
    }
}
