//! The InfiniBand transport part of a RoCEv2 packet: the UDP payload from the BTH to the ICRC.

use crate::error::{check_len, Error, Result};
use crate::icrc::ICRC_LEN;
use crate::immdt::ImmDt;
use crate::opcode::{HeaderSet, Opcode, OpcodeInfo, PayloadRule, Transport};
use crate::{aeth, atmack, atmeth, bth, deth, feth, ieth, immdt, reth};

/// The extension headers of a packet: one `Option` per header. Which ones are `Some` must match
/// the opcode's [`HeaderSet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ExtHeaders {
    /// Datagram ETH (UD).
    pub deth: Option<deth::Repr>,
    /// Flush ETH (FLUSH).
    pub feth: Option<feth::Repr>,
    /// RDMA ETH (WRITE first/only, READ request, FLUSH, ATOMIC WRITE).
    pub reth: Option<reth::Repr>,
    /// ACK ETH (ACK, READ response first/last/only, atomic ACK).
    pub aeth: Option<aeth::Repr>,
    /// Atomic ETH (COMPARE_SWAP, FETCH_ADD).
    pub atomic_eth: Option<atmeth::Repr>,
    /// Atomic ACK ETH (ATOMIC_ACKNOWLEDGE).
    pub atomic_ack_eth: Option<atmack::Repr>,
    /// Immediate data (`*_WITH_IMMEDIATE`).
    pub immdt: Option<ImmDt>,
    /// Invalidate ETH (`SEND_*_WITH_INVALIDATE`).
    pub ieth: Option<ieth::Repr>,
}

impl ExtHeaders {
    /// Returns the set of headers present.
    pub fn header_set(&self) -> HeaderSet {
        let mut s = HeaderSet::empty();
        s.set(HeaderSet::DETH, self.deth.is_some());
        s.set(HeaderSet::FETH, self.feth.is_some());
        s.set(HeaderSet::RETH, self.reth.is_some());
        s.set(HeaderSet::AETH, self.aeth.is_some());
        s.set(HeaderSet::ATOMIC_ETH, self.atomic_eth.is_some());
        s.set(HeaderSet::ATOMIC_ACK_ETH, self.atomic_ack_eth.is_some());
        s.set(HeaderSet::IMMDT, self.immdt.is_some());
        s.set(HeaderSet::IETH, self.ieth.is_some());
        s
    }

    /// Writes the headers present into `buf` (exactly `header_set().byte_len()` bytes) in wire order.
    fn emit(&self, buf: &mut [u8]) {
        let mut off = 0;
        if let Some(h) = &self.deth {
            h.emit(&mut deth::Packet::new_unchecked(
                &mut buf[off..off + deth::HEADER_LEN],
            ));
            off += deth::HEADER_LEN;
        }
        if let Some(h) = &self.feth {
            h.emit(&mut buf[off..off + feth::HEADER_LEN]);
            off += feth::HEADER_LEN;
        }
        if let Some(h) = &self.reth {
            h.emit(&mut reth::Packet::new_unchecked(
                &mut buf[off..off + reth::HEADER_LEN],
            ));
            off += reth::HEADER_LEN;
        }
        if let Some(h) = &self.aeth {
            h.emit(&mut aeth::Packet::new_unchecked(
                &mut buf[off..off + aeth::HEADER_LEN],
            ));
            off += aeth::HEADER_LEN;
        }
        if let Some(h) = &self.atomic_eth {
            h.emit(&mut atmeth::Packet::new_unchecked(
                &mut buf[off..off + atmeth::HEADER_LEN],
            ));
            off += atmeth::HEADER_LEN;
        }
        if let Some(h) = &self.atomic_ack_eth {
            h.emit(&mut atmack::Packet::new_unchecked(
                &mut buf[off..off + atmack::HEADER_LEN],
            ));
            off += atmack::HEADER_LEN;
        }
        if let Some(h) = &self.immdt {
            h.emit(&mut buf[off..off + immdt::HEADER_LEN]);
            off += immdt::HEADER_LEN;
        }
        if let Some(h) = &self.ieth {
            h.emit(&mut buf[off..off + ieth::HEADER_LEN]);
        }
    }
}

/// Returns the pad count that aligns `payload_len` to 4 bytes.
pub const fn pad_for(payload_len: usize) -> u8 {
    ((4 - (payload_len % 4)) % 4) as u8
}

/// A whole transport packet: BTH, extension headers and payload. Pad and ICRC are implied.
///
/// Parsing checks everything that can be checked without the IP header: BTH version, a known
/// opcode, the buffer holding the opcode's headers and ICRC, pad count against payload, and the
/// opcode's payload rule. The ICRC itself needs the IP and UDP headers: see
/// [`RoceV2Repr`](crate::RoceV2Repr) or [`icrc::compute`](crate::icrc::compute).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoceRepr<'a> {
    /// Base transport header.
    pub bth: bth::Repr,
    /// Extension headers, as the opcode requires.
    pub ext: ExtHeaders,
    /// Payload, without pad.
    pub payload: &'a [u8],
}

impl<'a> RoceRepr<'a> {
    /// Makes a packet with the pad count computed from the payload length.
    pub fn new(mut bth: bth::Repr, ext: ExtHeaders, payload: &'a [u8]) -> RoceRepr<'a> {
        bth.pad_count = pad_for(payload.len());
        RoceRepr { bth, ext, payload }
    }

    /// Parses a UDP payload (BTH through ICRC) without checking the ICRC.
    pub fn parse(udp_payload: &'a [u8]) -> Result<RoceRepr<'a>> {
        Ok(RocePacket::new_checked(udp_payload)?.to_repr())
    }

    /// Parses like [`parse`](Self::parse) and also requires an opcode of `transport`.
    pub fn parse_for(udp_payload: &'a [u8], transport: Transport) -> Result<RoceRepr<'a>> {
        let r = RoceRepr::parse(udp_payload)?;
        let opcode = r.bth.opcode;
        match opcode.info() {
            Some(i) if i.transport == transport => Ok(r),
            _ => Err(Error::WrongTransport {
                opcode,
                expected: transport,
            }),
        }
    }

    /// Returns the opcode's table entry (`None` if the opcode is not one rxe handles).
    pub fn info(&self) -> Option<&'static OpcodeInfo> {
        self.bth.opcode.info()
    }

    /// Length of BTH and extension headers.
    pub fn header_len(&self) -> usize {
        bth::HEADER_LEN + self.ext.header_set().byte_len()
    }

    /// Length of the whole UDP payload: headers, payload, pad and ICRC.
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload.len() + usize::from(self.bth.pad_count) + ICRC_LEN
    }

    /// Writes headers, payload and zeroed pad to the start of `buf`, leaving the ICRC bytes zero;
    /// returns [`buffer_len`](Self::buffer_len). Nothing is written on error.
    ///
    /// Fails when the extension headers do not match the opcode, the payload breaks the
    /// opcode's rule, the pad count is over 3 or on an opcode without payload, or `buf` is short.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        self.emit_with(buf, self.payload.len(), |d| d.copy_from_slice(self.payload))
    }

    /// Like [`emit`](Self::emit) for a payload of `payload_len` bytes that `fill` writes in
    /// place (e.g. straight from registered memory, saving a copy); `self.payload` is ignored.
    /// `fill` gets exactly `payload_len` bytes and runs only once every check has passed.
    pub fn emit_with(
        &self,
        buf: &mut [u8],
        payload_len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<usize> {
        let (hdr, len) = self.emit_headers(buf, payload_len)?;
        fill(&mut buf[hdr..hdr + payload_len]);
        Ok(len)
    }

    /// Checks the layout for `payload_len` bytes of payload, then writes the headers and zeroes
    /// pad and ICRC; returns (header length, whole length). Nothing is written on error.
    pub(crate) fn emit_headers(
        &self,
        buf: &mut [u8],
        payload_len: usize,
    ) -> Result<(usize, usize)> {
        emit_transport_headers(&self.bth, &self.ext, buf, payload_len)
    }
}

/// [`RoceRepr::emit_headers`] from its parts: checks the layout for `payload_len` bytes of
/// payload, then writes BTH and extension headers and zeroes pad and ICRC; returns (header
/// length, whole length). Nothing is written on error.
pub(crate) fn emit_transport_headers(
    bth: &bth::Repr,
    ext: &ExtHeaders,
    buf: &mut [u8],
    payload_len: usize,
) -> Result<(usize, usize)> {
    let opcode = bth.opcode;
    let info = info(opcode)?;
    if ext.header_set() != info.headers {
        return Err(Error::BadOpcodeLayout(opcode));
    }
    check_payload(info, opcode, payload_len)?;
    let pad = usize::from(bth.pad_count);
    if pad > 3 || (pad != 0 && !info.has_payload()) {
        return Err(Error::BadPad {
            pad: bth.pad_count,
            available: payload_len,
        });
    }
    let hdr = info.header_len();
    let len = hdr + payload_len + pad + ICRC_LEN;
    if buf.len() < len {
        return Err(Error::BufferTooSmall { required: len });
    }
    bth.emit(&mut bth::Packet::new_unchecked(&mut buf[..bth::HEADER_LEN]));
    ext.emit(&mut buf[bth::HEADER_LEN..hdr]);
    // Pad and ICRC zeroed with fixed-size stores (a variable-length fill is a memset call).
    let pad_at = hdr + payload_len;
    if pad != 0 {
        buf[pad_at..pad_at + pad].copy_from_slice(&[0u8; 3][..pad]);
    }
    buf[len - ICRC_LEN..len].copy_from_slice(&[0u8; ICRC_LEN]);
    Ok((hdr, len))
}

/// A checked, zero-copy view of a transport packet: the UDP payload from the BTH to the ICRC.
///
/// [`new_checked`](Self::new_checked) runs every check [`RoceRepr::parse`] runs, so the accessors
/// cannot fail or panic; nothing is copied until a header is read. This is the receive fast path:
/// read the fields you need, or build the whole [`RoceRepr`] with [`to_repr`](Self::to_repr).
#[derive(Debug, Clone, Copy)]
pub struct RocePacket<T: AsRef<[u8]>> {
    buffer: T,
    info: &'static OpcodeInfo,
}

impl<T: AsRef<[u8]>> RocePacket<T> {
    /// Validates a UDP payload: BTH version, a known opcode, room for the opcode's headers and
    /// the ICRC, the pad count against the payload and the opcode's payload rule. The ICRC itself
    /// is not checked (it needs the IP header).
    pub fn new_checked(buffer: T) -> Result<RocePacket<T>> {
        let buf = buffer.as_ref();
        check_len(buf, bth::HEADER_LEN + ICRC_LEN)?;
        let b = bth::Packet::new_unchecked(buf);
        let tver = b.tver();
        if tver != 0 {
            return Err(Error::BadTransportVersion(tver));
        }
        let opcode = b.opcode();
        let info = info(opcode)?;
        let hdr_len = info.header_len();
        check_len(buf, hdr_len + ICRC_LEN)?;
        let body = buf.len() - hdr_len - ICRC_LEN;
        let pad = b.pad_count();
        if usize::from(pad) > body || (pad != 0 && !info.has_payload()) {
            return Err(Error::BadPad {
                pad,
                available: body,
            });
        }
        check_payload(info, opcode, body - usize::from(pad))?;
        Ok(RocePacket { buffer, info })
    }

    /// Returns the opcode's table entry.
    pub fn info(&self) -> &'static OpcodeInfo {
        self.info
    }
    /// Returns the opcode.
    pub fn opcode(&self) -> Opcode {
        self.bth().opcode()
    }
    /// Returns a view of the BTH.
    pub fn bth(&self) -> bth::Packet<&[u8]> {
        bth::Packet::new_unchecked(&self.buffer.as_ref()[..bth::HEADER_LEN])
    }
    /// Length of BTH and extension headers.
    pub fn header_len(&self) -> usize {
        self.info.header_len()
    }
    /// The bytes of extension header `h`, if the opcode has it.
    fn ext(&self, h: HeaderSet, len: usize) -> Option<&[u8]> {
        if !self.info.headers.contains(h) {
            return None;
        }
        let start = bth::HEADER_LEN + self.info.headers.offset_of(h);
        self.buffer.as_ref().get(start..start + len)
    }
    /// Returns the DETH, if present.
    pub fn deth(&self) -> Option<deth::Packet<&[u8]>> {
        self.ext(HeaderSet::DETH, deth::HEADER_LEN)
            .map(deth::Packet::new_unchecked)
    }
    /// Returns the FETH, if present.
    pub fn feth(&self) -> Option<feth::Repr> {
        self.ext(HeaderSet::FETH, feth::HEADER_LEN)
            .and_then(|b| feth::Repr::parse(b).ok())
    }
    /// Returns the RETH, if present.
    pub fn reth(&self) -> Option<reth::Packet<&[u8]>> {
        self.ext(HeaderSet::RETH, reth::HEADER_LEN)
            .map(reth::Packet::new_unchecked)
    }
    /// Returns the AETH, if present.
    pub fn aeth(&self) -> Option<aeth::Packet<&[u8]>> {
        self.ext(HeaderSet::AETH, aeth::HEADER_LEN)
            .map(aeth::Packet::new_unchecked)
    }
    /// Returns the AtomicETH, if present.
    pub fn atomic_eth(&self) -> Option<atmeth::Packet<&[u8]>> {
        self.ext(HeaderSet::ATOMIC_ETH, atmeth::HEADER_LEN)
            .map(atmeth::Packet::new_unchecked)
    }
    /// Returns the AtomicAckETH, if present.
    pub fn atomic_ack_eth(&self) -> Option<atmack::Packet<&[u8]>> {
        self.ext(HeaderSet::ATOMIC_ACK_ETH, atmack::HEADER_LEN)
            .map(atmack::Packet::new_unchecked)
    }
    /// Returns the immediate data, if present.
    pub fn immdt(&self) -> Option<ImmDt> {
        self.ext(HeaderSet::IMMDT, immdt::HEADER_LEN)
            .and_then(|b| ImmDt::parse(b).ok())
    }
    /// Returns the IETH, if present.
    pub fn ieth(&self) -> Option<ieth::Repr> {
        self.ext(HeaderSet::IETH, ieth::HEADER_LEN)
            .and_then(|b| ieth::Repr::parse(b).ok())
    }
    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
    /// Returns the payload, without pad.
    pub fn payload(&self) -> &[u8] {
        let buf = self.buffer.as_ref();
        let end = buf.len() - ICRC_LEN - usize::from(self.bth().pad_count());
        &buf[self.header_len()..end]
    }
    /// Returns the packet without its ICRC: BTH, extension headers, payload and pad, which is
    /// the `transport` argument of [`icrc::compute`](crate::icrc::compute).
    pub fn without_icrc(&self) -> &[u8] {
        let buf = self.buffer.as_ref();
        &buf[..buf.len() - ICRC_LEN]
    }
    /// Returns the ICRC the packet carries.
    pub fn icrc(&self) -> u32 {
        let buf = self.buffer.as_ref();
        let b = &buf[buf.len() - ICRC_LEN..];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
    /// Returns the extension headers, parsed.
    pub fn ext_headers(&self) -> ExtHeaders {
        ExtHeaders {
            deth: self.deth().map(|p| deth::Repr::parse(&p)),
            feth: self.feth(),
            reth: self.reth().map(|p| reth::Repr::parse(&p)),
            aeth: self.aeth().map(|p| aeth::Repr::parse(&p)),
            atomic_eth: self.atomic_eth().map(|p| atmeth::Repr::parse(&p)),
            atomic_ack_eth: self.atomic_ack_eth().map(|p| atmack::Repr::parse(&p)),
            immdt: self.immdt(),
            ieth: self.ieth(),
        }
    }
}

impl<'a> RocePacket<&'a [u8]> {
    /// Builds the whole [`RoceRepr`], borrowing the payload from the buffer.
    pub fn to_repr(&self) -> RoceRepr<'a> {
        let buf: &'a [u8] = self.buffer;
        let bth = bth::Packet::new_unchecked(buf);
        let end = buf.len() - ICRC_LEN - usize::from(bth.pad_count());
        RoceRepr {
            // TVer was checked to be 0, so parsing the BTH cannot fail; keep the fields as read.
            bth: bth::Repr {
                opcode: bth.opcode(),
                solicited: bth.solicited(),
                mig_req: bth.mig_req(),
                pad_count: bth.pad_count(),
                pkey: bth.pkey(),
                fecn: bth.fecn(),
                becn: bth.becn(),
                dest_qp: bth.dest_qp(),
                ack_req: bth.ack_req(),
                psn: bth.psn(),
            },
            ext: self.ext_headers(),
            payload: &buf[self.info.header_len()..end],
        }
    }
}

fn info(opcode: Opcode) -> Result<&'static OpcodeInfo> {
    opcode.info().ok_or(Error::UnknownOpcode(opcode.0))
}

fn check_payload(info: &OpcodeInfo, opcode: Opcode, len: usize) -> Result<()> {
    let ok = match info.payload {
        PayloadRule::None => len == 0,
        PayloadRule::Any => true,
        PayloadRule::Exactly(n) => len == usize::from(n),
    };
    if ok {
        Ok(())
    } else {
        Err(Error::BadPayloadLen { opcode, len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aeth::Syndrome;
    use crate::types::{Msn, PKey, Psn, QKey, Qpn, Rkey};

    fn bth(opcode: Opcode) -> bth::Repr {
        bth::Repr {
            opcode,
            solicited: false,
            mig_req: false,
            pad_count: 0,
            pkey: PKey::DEFAULT,
            fecn: false,
            becn: false,
            dest_qp: Qpn::new(0x11),
            ack_req: true,
            psn: Psn::new(100),
        }
    }

    fn emit(r: &RoceRepr<'_>) -> [u8; 64] {
        let mut buf = [0xa5u8; 64];
        let n = r.emit(&mut buf).unwrap();
        assert_eq!(n, r.buffer_len());
        buf
    }

    #[test]
    fn send_with_odd_payload_gets_zero_pad() {
        let r = RoceRepr::new(bth(Opcode::RC_SEND_ONLY), ExtHeaders::default(), b"hello");
        assert_eq!(r.bth.pad_count, 3);
        assert_eq!(r.buffer_len(), 12 + 5 + 3 + 4);
        let buf = emit(&r);
        assert_eq!(buf[1] & 0x30, 0x30);
        assert_eq!(&buf[12..17], b"hello");
        assert_eq!(&buf[17..24], &[0; 7]);
        assert_eq!(RoceRepr::parse(&buf[..24]).unwrap(), r);
    }

    #[test]
    fn rejects_reth_on_send_only() {
        let ext = ExtHeaders {
            reth: Some(reth::Repr {
                va: 0,
                rkey: Rkey(1),
                dma_len: 0,
            }),
            ..ExtHeaders::default()
        };
        let r = RoceRepr::new(bth(Opcode::RC_SEND_ONLY), ext, b"");
        assert_eq!(
            r.emit(&mut [0u8; 64]).unwrap_err(),
            Error::BadOpcodeLayout(Opcode::RC_SEND_ONLY)
        );
    }

    #[test]
    fn rejects_payload_on_an_ack() {
        let ext = ExtHeaders {
            aeth: Some(aeth::Repr {
                syndrome: Syndrome::Ack { credits: 31 },
                msn: Msn::new(1),
            }),
            ..ExtHeaders::default()
        };
        let ack = RoceRepr::new(bth(Opcode::RC_ACKNOWLEDGE), ext, b"");
        let mut buf = emit(&ack);
        // Four more bytes between AETH and ICRC: a payload the opcode does not allow.
        assert_eq!(
            RoceRepr::parse(&buf[..24]).unwrap_err(),
            Error::BadPayloadLen {
                opcode: Opcode::RC_ACKNOWLEDGE,
                len: 4
            }
        );
        buf[1] |= 0x10;
        assert_eq!(
            RoceRepr::parse(&buf[..20]).unwrap_err(),
            Error::BadPad {
                pad: 1,
                available: 0
            }
        );
        let bad = RoceRepr {
            payload: b"x",
            ..ack
        };
        assert!(matches!(
            bad.emit(&mut [0u8; 64]),
            Err(Error::BadPayloadLen { .. })
        ));
    }

    #[test]
    fn rejects_pad_larger_than_payload() {
        let r = RoceRepr::new(bth(Opcode::RC_SEND_ONLY), ExtHeaders::default(), b"ab");
        let mut buf = emit(&r);
        assert_eq!(RoceRepr::parse(&buf[..20]).unwrap(), r);
        buf[1] = 0x30; // pad 3 but only 4 body bytes: fine; shrink the body to 2 bytes
        assert_eq!(
            RoceRepr::parse(&buf[..18]).unwrap_err(),
            Error::BadPad {
                pad: 3,
                available: 2
            }
        );
    }

    #[test]
    fn atomic_write_needs_exactly_eight_bytes() {
        let ext = ExtHeaders {
            reth: Some(reth::Repr {
                va: 8,
                rkey: Rkey(2),
                dma_len: 8,
            }),
            ..ExtHeaders::default()
        };
        let ok = RoceRepr::new(bth(Opcode::RC_ATOMIC_WRITE), ext, &[1; 8]);
        let buf = emit(&ok);
        assert_eq!(RoceRepr::parse(&buf[..ok.buffer_len()]).unwrap(), ok);
        let bad = RoceRepr::new(bth(Opcode::RC_ATOMIC_WRITE), ext, &[1; 4]);
        assert_eq!(
            bad.emit(&mut [0u8; 64]).unwrap_err(),
            Error::BadPayloadLen {
                opcode: Opcode::RC_ATOMIC_WRITE,
                len: 4
            }
        );
    }

    #[test]
    fn unknown_opcodes_and_truncation_are_typed_errors() {
        let mut buf = emit(&RoceRepr::new(
            bth(Opcode::RC_SEND_ONLY),
            ExtHeaders::default(),
            b"",
        ));
        buf[0] = 0x81;
        assert_eq!(
            RoceRepr::parse(&buf[..16]).unwrap_err(),
            Error::UnknownOpcode(0x81)
        );
        buf[0] = Opcode::RC_RDMA_WRITE_FIRST.0;
        assert_eq!(
            RoceRepr::parse(&buf[..31]).unwrap_err(),
            Error::Truncated {
                needed: 32,
                got: 31
            }
        );
    }

    #[test]
    fn parse_for_checks_the_transport() {
        let ext = ExtHeaders {
            deth: Some(deth::Repr {
                qkey: QKey::GSI,
                src_qp: Qpn::GSI,
            }),
            ..ExtHeaders::default()
        };
        let ud = RoceRepr::new(bth(Opcode::UD_SEND_ONLY), ext, b"mad!");
        let buf = emit(&ud);
        let n = ud.buffer_len();
        assert_eq!(RoceRepr::parse_for(&buf[..n], Transport::Ud).unwrap(), ud);
        assert_eq!(
            RoceRepr::parse_for(&buf[..n], Transport::Rc).unwrap_err(),
            Error::WrongTransport {
                opcode: Opcode::UD_SEND_ONLY,
                expected: Transport::Rc
            }
        );
    }

    #[test]
    fn emit_into_a_short_buffer_writes_nothing() {
        let r = RoceRepr::new(bth(Opcode::RC_SEND_ONLY), ExtHeaders::default(), b"hello");
        let mut buf = [0xa5u8; 23];
        assert_eq!(
            r.emit(&mut buf).unwrap_err(),
            Error::BufferTooSmall { required: 24 }
        );
        assert_eq!(buf, [0xa5; 23]);
    }
}
