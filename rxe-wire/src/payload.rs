//! Moving a packet's payload to and from memory with the ICRC computed on the way.
//!
//! A sender fills a [`PayloadSink`] (from [`RoceV2Repr::emit_with_sink`]); a receiver drains a
//! [`PayloadSource`] (from [`RoceV2Packet::payload_source`]). Both run the ICRC over exactly the
//! bytes they move, fusing copy and CRC into one pass where the CPU allows
//! ([`icrc::fused_copy_available`]), so data crosses the core once instead of twice.
//!
//! [`RoceV2Repr::emit_with_sink`]: crate::RoceV2Repr::emit_with_sink
//! [`RoceV2Packet::payload_source`]: crate::RoceV2Packet::payload_source
//! [`icrc::fused_copy_available`]: crate::icrc::fused_copy_available

use crate::icrc::Crc32;

/// The payload area of a packet being built; what is written here is covered by the ICRC.
///
/// Bytes are written front to back. Whatever is left unwritten when the fill closure returns is
/// zeroed (and covered by the ICRC like the rest).
pub struct PayloadSink<'a> {
    buf: &'a mut [u8],
    pos: usize,
    crc: Crc32,
}

impl<'a> PayloadSink<'a> {
    pub(crate) fn new(buf: &'a mut [u8], crc: Crc32) -> PayloadSink<'a> {
        PayloadSink { buf, pos: 0, crc }
    }
    /// Length of the whole payload.
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    /// Bytes not written yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    /// Copies as much of `src` as fits (copy and CRC in one pass); returns the bytes copied.
    #[inline]
    pub fn copy_from(&mut self, src: &[u8]) -> usize {
        let n = self.crc.copy_update(&mut self.buf[self.pos..], src);
        self.pos += n;
        n
    }
    /// Lets `f` write the next `min(n, remaining)` bytes in place, then runs the CRC over them;
    /// returns that count. For memory that cannot be read as one slice.
    #[inline]
    pub fn fill_with(&mut self, n: usize, f: impl FnOnce(&mut [u8])) -> usize {
        let n = n.min(self.remaining());
        let d = &mut self.buf[self.pos..self.pos + n];
        f(d);
        self.crc.update(d);
        self.pos += n;
        n
    }
    /// Zeroes the unwritten rest and returns the CRC through the end of the payload.
    pub(crate) fn finish(self) -> Crc32 {
        let PayloadSink { buf, pos, mut crc } = self;
        let rest = &mut buf[pos..];
        if !rest.is_empty() {
            rest.fill(0);
            crc.update(rest);
        }
        crc
    }
}

/// The payload of a received packet, read front to back into memory.
///
/// When the packet's ICRC has not been verified yet, the bytes read are run through the CRC as
/// they are copied, and [`icrc_ok`](Self::icrc_ok) finishes the check: this is cut-through
/// placement as RNICs do it (data reaches memory before the trailing ICRC is known to be good),
/// so use it only where a bad packet's bytes are certain to be overwritten before anyone may
/// read them. Otherwise it is a plain copy and `icrc_ok` is true.
pub struct PayloadSource<'a> {
    data: &'a [u8],
    pos: usize,
    check: Option<Pending<'a>>,
}

struct Pending<'a> {
    /// `None` fails the check (the header CRC could not be computed).
    crc: Option<Crc32>,
    pad: &'a [u8],
    icrc: u32,
}

impl<'a> PayloadSource<'a> {
    /// A source over bytes that need no check (already verified, or not from the network).
    pub fn from_slice(data: &'a [u8]) -> PayloadSource<'a> {
        PayloadSource {
            data,
            pos: 0,
            check: None,
        }
    }
    pub(crate) fn unverified(
        data: &'a [u8],
        crc: Option<Crc32>,
        pad: &'a [u8],
        icrc: u32,
    ) -> PayloadSource<'a> {
        PayloadSource {
            data,
            pos: 0,
            check: Some(Pending { crc, pad, icrc }),
        }
    }
    /// Length of the whole payload.
    pub fn len(&self) -> usize {
        self.data.len()
    }
    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }
    /// Whether the ICRC is still to be checked by [`icrc_ok`](Self::icrc_ok).
    pub fn is_unverified(&self) -> bool {
        self.check.is_some()
    }
    /// Copies the next `min(dst.len(), remaining)` bytes into `dst`; returns that count.
    #[inline]
    pub fn copy_to(&mut self, dst: &mut [u8]) -> usize {
        let src = &self.data[self.pos..];
        let n = match &mut self.check {
            Some(Pending { crc: Some(c), .. }) => c.copy_update(dst, src),
            Some(Pending { crc: None, .. }) | None => {
                let n = src.len().min(dst.len());
                dst[..n].copy_from_slice(&src[..n]);
                n
            }
        };
        self.pos += n;
        n
    }
    /// Returns the next `min(n, remaining)` bytes (run through the CRC if it is pending), for
    /// memory that cannot be written as one slice.
    #[inline]
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.remaining());
        let d = &self.data[self.pos..self.pos + n];
        if let Some(Pending { crc: Some(c), .. }) = &mut self.check {
            c.update(d);
        }
        self.pos += n;
        d
    }
    /// Finishes the ICRC check over the unread rest of the payload and the pad: true when the
    /// packet's ICRC is good (always, when it was verified before this source was made).
    pub fn icrc_ok(self) -> bool {
        match self.check {
            None => true,
            Some(Pending { crc: None, .. }) => false,
            Some(Pending {
                crc: Some(mut c),
                pad,
                icrc,
            }) => {
                c.update(&self.data[self.pos..]);
                c.update(pad);
                c.finalize() == icrc
            }
        }
    }
}
