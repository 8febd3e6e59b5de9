//! Pre-rendered headers for the packets of one connected QP, as an RNIC keeps them in its QP
//! context.
//!
//! Between two packets of an RC or UC connection only a few header fields change: the IP length
//! (and for IPv4 the Identification and the header checksum), the UDP length, and the BTH
//! opcode, SE, pad count, AckReq and PSN. A [`PacketTemplate`] renders the IP and UDP headers
//! once; [`PacketTemplate::emit_with_sink`] copies them and patches those fields, writes the BTH
//! and extension headers, and runs the payload and ICRC exactly as
//! [`RoceV2Repr::emit_with_sink`](crate::RoceV2Repr::emit_with_sink) does. The bytes are the
//! same; only the work per packet is less.

use crate::error::{Error, Result, Unsupported};
use crate::packet::{emit_body, IpRepr};
use crate::payload::PayloadSink;
use crate::roce::{emit_transport_headers, pad_for, ExtHeaders};
use crate::{bth, checksum, icrc::ICRC_LEN, ipv4, ipv6, udp};

/// Room for the longest rendered header: IPv6 and UDP.
const HEAD_LEN: usize = ipv6::HEADER_LEN + udp::HEADER_LEN;

/// The IP and UDP headers of one connection, rendered once, as an RNIC keeps them in its QP
/// context: per packet only the IP length (and for IPv4 the Identification and the header
/// checksum), the UDP length and the transport headers are written. The bytes are those of
/// [`RoceV2Repr::emit_with_sink`](crate::RoceV2Repr::emit_with_sink).
///
/// ```
/// use core::net::Ipv4Addr;
/// use rxe_wire::{bth, ipv4, udp, ExtHeaders, IpRepr, Opcode, PKey, PacketTemplate, Psn, Qpn};
///
/// let ip = IpRepr::V4(ipv4::Repr {
///     src: Ipv4Addr::new(10, 0, 0, 1), dst: Ipv4Addr::new(10, 0, 0, 2),
///     tos: 0, ident: 0, dont_frag: true, ttl: 64,
/// });
/// let udp = udp::Repr { src_port: 0xc000, dst_port: udp::ROCE_PORT, checksum: false };
/// let template = PacketTemplate::new(&ip, &udp)?;
/// let bth = bth::Repr {
///     opcode: Opcode::RC_SEND_ONLY, solicited: false, mig_req: false, pad_count: 0,
///     pkey: PKey::DEFAULT, fecn: false, becn: false, dest_qp: Qpn::new(0x11),
///     ack_req: true, psn: Psn::new(7),
/// };
/// let mut buf = [0u8; 128];
/// let n = template.emit_with_sink(&mut buf, 1, &bth, &ExtHeaders::default(), 5, |sink| {
///     sink.copy_from(b"hello");
/// })?;
/// assert_eq!(n, 20 + 8 + 12 + 5 + 3 + 4);
/// # Ok::<(), rxe_wire::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct PacketTemplate {
    /// IP and UDP headers with the per-packet fields zero.
    head: [u8; HEAD_LEN],
    /// 20 (IPv4) or 40 (IPv6).
    ip_len: usize,
    /// IPv4: the one's-complement sum of the header words that never change.
    ipv4_sum: u32,
}

impl PacketTemplate {
    /// Renders `ip` and `udp` (for IPv4, `ident` is per packet and ignored here).
    ///
    /// Fails with [`Error::FieldOverflow`] for an IPv6 flow label over 20 bits, and with
    /// [`Unsupported::TemplateUdpChecksum`] when `udp.checksum` asks for a UDP checksum, which
    /// covers the payload and so cannot be pre-rendered (Linux rxe sends none; use
    /// [`RoceV2Repr`](crate::RoceV2Repr) for such packets).
    pub fn new(ip: &IpRepr, udp: &udp::Repr) -> Result<PacketTemplate> {
        if udp.checksum {
            return Err(Error::Unsupported(Unsupported::TemplateUdpChecksum));
        }
        let mut head = [0u8; HEAD_LEN];
        let ip_len = ip.header_len();
        let ipv4_sum = match ip {
            IpRepr::V4(r) => {
                let r = ipv4::Repr { ident: 0, ..*r };
                // Length 0 here; the real one is patched per packet.
                r.emit(&mut head, 0)?;
                // Zero the length and checksum again: the sum covers the constant words only.
                head[ipv4::field::TOTAL_LEN].fill(0);
                head[ipv4::field::CHECKSUM].fill(0);
                checksum::sum(0, &head[..ipv4::HEADER_LEN])
            }
            IpRepr::V6(r) => {
                r.emit(&mut head, 0)?;
                0
            }
        };
        udp.emit(&mut head[ip_len..], 0)?;
        head[ip_len..][udp::field::LENGTH].fill(0);
        Ok(PacketTemplate {
            head,
            ip_len,
            ipv4_sum,
        })
    }

    /// Length of the IP header this template renders.
    pub fn ip_header_len(&self) -> usize {
        self.ip_len
    }

    /// Writes a whole IP packet like
    /// [`RoceV2Repr::emit_with_sink`](crate::RoceV2Repr::emit_with_sink) with this template's IP
    /// and UDP headers, `ipv4_ident` as the IPv4 Identification (ignored for IPv6), and `bth`
    /// and `ext` as the transport headers (the pad count is computed from `payload_len`).
    /// Returns the packet's length. Fails, writing nothing, where that would.
    pub fn emit_with_sink(
        &self,
        buf: &mut [u8],
        ipv4_ident: u16,
        bth: &bth::Repr,
        ext: &ExtHeaders,
        payload_len: usize,
        fill: impl FnOnce(&mut PayloadSink<'_>),
    ) -> Result<usize> {
        let ip_len = self.ip_len;
        let t_start = ip_len + udp::HEADER_LEN;
        let mut bth = *bth;
        bth.pad_count = pad_for(payload_len);
        // The lengths first, so that nothing is written when they overflow.
        let info = bth
            .opcode
            .info()
            .ok_or(Error::UnknownOpcode(bth.opcode.0))?;
        let roce_len = info.header_len() + payload_len + usize::from(bth.pad_count) + ICRC_LEN;
        let udp_len = udp::HEADER_LEN + roce_len;
        let len = ip_len + udp_len;
        let udp_len16 = u16::try_from(udp_len).map_err(|_| Error::FieldOverflow)?;
        let ip_total = if ip_len == ipv4::HEADER_LEN {
            u16::try_from(len).map_err(|_| Error::FieldOverflow)?
        } else {
            udp_len16
        };
        let transport = buf
            .get_mut(t_start..)
            .ok_or(Error::BufferTooSmall { required: len })?;
        // The transport headers next: they validate the opcode layout before anything else.
        let (hdr, _) = emit_transport_headers(&bth, ext, transport, payload_len)?;
        let buf = &mut buf[..len];
        buf[..t_start].copy_from_slice(&self.head[..t_start]);
        if ip_len == ipv4::HEADER_LEN {
            buf[ipv4::field::TOTAL_LEN].copy_from_slice(&ip_total.to_be_bytes());
            buf[ipv4::field::IDENT].copy_from_slice(&ipv4_ident.to_be_bytes());
            let sum = self.ipv4_sum + u32::from(ip_total) + u32::from(ipv4_ident);
            buf[ipv4::field::CHECKSUM].copy_from_slice(&checksum::finish(sum).to_be_bytes());
        } else {
            buf[ipv6::field::PAYLOAD_LEN].copy_from_slice(&ip_total.to_be_bytes());
        }
        buf[ip_len..][udp::field::LENGTH].copy_from_slice(&udp_len16.to_be_bytes());
        emit_body(buf, t_start + hdr, payload_len, fill)?;
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Opcode, Psn, RoceRepr, RoceV2Repr};
    use core::net::{Ipv4Addr, Ipv6Addr};

    fn bth(opcode: Opcode, psn: u32) -> bth::Repr {
        bth::Repr {
            opcode,
            solicited: true,
            ack_req: psn.is_multiple_of(2),
            psn: Psn::new(psn),
            ..bth::tests::repr()
        }
    }

    fn generic(ip: IpRepr, udp: udp::Repr, b: bth::Repr, payload: &[u8], out: &mut [u8]) -> usize {
        let repr = RoceV2Repr {
            ip,
            udp,
            roce: RoceRepr::new(b, ExtHeaders::default(), payload),
        };
        repr.emit_with_sink(out, payload.len(), |s| {
            s.copy_from(payload);
        })
        .unwrap()
    }

    #[test]
    fn same_bytes_as_the_generic_emit() {
        let v4 = IpRepr::V4(ipv4::Repr {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 2),
            tos: 0x28,
            ident: 0,
            dont_frag: true,
            ttl: 64,
        });
        let v6 = IpRepr::V6(ipv6::Repr {
            src: Ipv6Addr::new(0xfe80, 0, 0, 0, 1, 2, 3, 4),
            dst: Ipv6Addr::new(0xfe80, 0, 0, 0, 5, 6, 7, 8),
            traffic_class: 3,
            flow_label: 0xabcde,
            hop_limit: 1,
        });
        let udp = udp::Repr {
            src_port: 0xc123,
            dst_port: udp::ROCE_PORT,
            checksum: false,
        };
        let payload: [u8; 300] = core::array::from_fn(|i| i as u8);
        for ip in [v4, v6] {
            let t = PacketTemplate::new(&ip, &udp).unwrap();
            for (i, len) in [0usize, 1, 3, 4, 255, 256, 299].into_iter().enumerate() {
                let ident = 0x1234u16.wrapping_mul(i as u16 + 1);
                let ip = match ip {
                    IpRepr::V4(r) => IpRepr::V4(ipv4::Repr { ident, ..r }),
                    v6 => v6,
                };
                let b = bth(Opcode::RC_SEND_ONLY, i as u32);
                let mut want = [0u8; 512];
                let n = generic(ip, udp, b, &payload[..len], &mut want);
                let mut got = [0xa5u8; 512];
                let m = t
                    .emit_with_sink(&mut got, ident, &b, &ExtHeaders::default(), len, |s| {
                        s.copy_from(&payload[..len]);
                    })
                    .unwrap();
                assert_eq!(m, n);
                assert_eq!(&got[..m], &want[..n], "len {len}");
            }
        }
    }

    #[test]
    fn refuses_what_it_cannot_render_and_bad_layouts() {
        let ip = IpRepr::V4(ipv4::Repr {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 2),
            tos: 0,
            ident: 0,
            dont_frag: true,
            ttl: 64,
        });
        let mut udp = udp::Repr {
            src_port: 1,
            dst_port: udp::ROCE_PORT,
            checksum: true,
        };
        assert_eq!(
            PacketTemplate::new(&ip, &udp).unwrap_err(),
            Error::Unsupported(Unsupported::TemplateUdpChecksum)
        );
        udp.checksum = false;
        let t = PacketTemplate::new(&ip, &udp).unwrap();
        let mut buf = [0x5au8; 128];
        // WRITE FIRST needs a RETH.
        let b = bth(Opcode::RC_RDMA_WRITE_FIRST, 1);
        assert_eq!(
            t.emit_with_sink(&mut buf, 0, &b, &ExtHeaders::default(), 64, |_| {}),
            Err(Error::BadOpcodeLayout(Opcode::RC_RDMA_WRITE_FIRST))
        );
        assert!(buf.iter().all(|&x| x == 0x5a), "nothing written on error");
        // Too small a buffer.
        let b = bth(Opcode::RC_SEND_ONLY, 1);
        assert!(matches!(
            t.emit_with_sink(&mut buf, 0, &b, &ExtHeaders::default(), 100, |_| {}),
            Err(Error::BufferTooSmall { .. })
        ));
        assert!(matches!(
            t.emit_with_sink(&mut buf[..10], 0, &b, &ExtHeaders::default(), 0, |_| {}),
            Err(Error::BufferTooSmall { .. })
        ));
    }
}
