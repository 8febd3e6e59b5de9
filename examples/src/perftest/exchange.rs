//! perftest's out-of-band exchange over TCP (port 18515 by default), as `perftest_communication.c`
//! runs it without `-R`: in every step the client writes first and the server reads first.
//!
//! 1. Versions: a 16-byte NUL-padded string each way.
//! 2. System data: the cycle buffer (page size) and the cache line size, each a 4-byte
//!    network-order integer, each exchanged in turn.
//! 3. MTU: the `ibv_mtu` enum as decimal text, 2 bytes with the NUL.
//! 4. The QP's key message (108 bytes with the GID, see [`KeyMsg`]).
//! 5. Barriers ("hand shakes"): the same key message again, each way.
//! 6. BW tests that only the client measures (READ, WRITE, atomic): the client's report, five
//!    8-byte network-order fields (size, iterations, peak, average, message rate), each
//!    exchanged in turn; the server prints the client's.
//! 7. `done` (5 bytes with the NUL) each way before closing.
//!
//! perftest 6.28 and later add a parameter negotiation after the MTU, but only with a peer
//! whose version string is 6.28 or more; this side announces [`VERSION`], below that, as
//! Debian's perftest does, so every version from 5.32 on talks to it the same way.
//!
//! Every read here keeps the RDMA device running (the `pump` closure, which says whether the
//! device did anything) while it waits, because a passive side must answer RDMA READs while it
//! sits at a barrier; the timeout counts from the last TCP or RDMA activity.

use std::io::{self, Read, Write};
use std::net::{Ipv6Addr, TcpStream};
use std::time::{Duration, Instant};

/// The version this side announces (that of Debian bookworm's perftest).
pub const VERSION: &str = "6.06";
/// Length of the key message with a GID, NUL included.
pub const KEY_MSG_LEN: usize = 108;

/// A QP's address and buffer as perftest exchanges them
/// (`%04x:%04x:%06x:%06x:%08x:%016llx:` + 16 × `%02x:` + `%08x:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyMsg {
    /// LID (0 on RoCE).
    pub lid: u16,
    /// Outstanding READ/atomic operations this side accepts (its `max_qp_rd_atom`).
    pub out_reads: u16,
    /// QP number.
    pub qpn: u32,
    /// First PSN.
    pub psn: u32,
    /// rkey of the buffer (0 for SEND tests).
    pub rkey: u32,
    /// Address of the buffer.
    pub vaddr: u64,
    /// GID.
    pub gid: Ipv6Addr,
    /// SRQ number (0 without SRQ).
    pub srqn: u32,
}

impl KeyMsg {
    /// The 108-byte message.
    pub fn to_wire(&self) -> [u8; KEY_MSG_LEN] {
        let mut s = format!(
            "{:04x}:{:04x}:{:06x}:{:06x}:{:08x}:{:016x}:",
            self.lid,
            self.out_reads,
            self.qpn & 0xff_ffff,
            self.psn & 0xff_ffff,
            self.rkey,
            self.vaddr
        );
        for b in self.gid.octets() {
            s.push_str(&format!("{b:02x}:"));
        }
        s.push_str(&format!("{:08x}:", self.srqn));
        let mut m = [0u8; KEY_MSG_LEN];
        let n = s.len().min(KEY_MSG_LEN - 1);
        m[..n].copy_from_slice(&s.as_bytes()[..n]);
        m
    }

    /// Parses a key message; `None` if any field is not hex.
    pub fn parse(m: &[u8]) -> Option<KeyMsg> {
        let end = m.iter().position(|&b| b == 0).unwrap_or(m.len());
        let s = std::str::from_utf8(&m[..end]).ok()?;
        let f: Vec<&str> = s.split(':').collect();
        if f.len() < 23 {
            return None;
        }
        let hex = |i: usize| u64::from_str_radix(f[i], 16).ok();
        let mut gid = [0u8; 16];
        for (i, b) in gid.iter_mut().enumerate() {
            *b = u8::from_str_radix(f[6 + i], 16).ok()?;
        }
        Some(KeyMsg {
            lid: u16::try_from(hex(0)?).ok()?,
            out_reads: u16::try_from(hex(1)?).ok()?,
            qpn: u32::try_from(hex(2)?).ok()?,
            psn: u32::try_from(hex(3)?).ok()?,
            rkey: u32::try_from(hex(4)?).ok()?,
            vaddr: hex(5)?,
            gid: Ipv6Addr::from(gid),
            srqn: u32::try_from(hex(22)?).ok()?,
        })
    }

    /// The line perftest prints for an address (`local address: ...`); which fields show depends
    /// on the test, as in perftest.
    pub fn describe(&self, side: &str, out_reads: bool, rdma: bool) -> String {
        let mut s = format!(
            " {side} address: LID {:04x} QPN 0x{:04x} PSN 0x{:06x}",
            self.lid, self.qpn, self.psn
        );
        if out_reads {
            s.push_str(&format!(" OUT 0x{:02x}", self.out_reads));
        }
        if rdma {
            s.push_str(&format!(
                " RKey 0x{:06x} VAddr 0x{:014x}",
                self.rkey, self.vaddr
            ));
        }
        s.push_str("\n GID: ");
        let g = self.gid.octets();
        let parts: Vec<String> = g.iter().map(|b| format!("{b:02}")).collect();
        s.push_str(&parts.join(":"));
        s
    }
}

/// The BW report the client hands the server (`xchg_bw_reports`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BwReport {
    /// Message size in bytes.
    pub size: u64,
    /// Iterations.
    pub iters: u64,
    /// Peak bandwidth, MB/s (or Gb/s with `--report_gbits`).
    pub bw_peak: f64,
    /// Average bandwidth, same unit.
    pub bw_avg: f64,
    /// Message rate, Mpps.
    pub msg_rate: f64,
}

/// Why the exchange failed.
#[derive(Debug)]
pub enum ExchangeError {
    /// The socket failed or closed.
    Io(io::Error),
    /// The peer sent something that is not perftest's.
    Protocol(String),
    /// The pump (the RDMA device) failed while waiting.
    Device(String),
    /// Nothing arrived in time.
    Timeout(&'static str),
}

impl std::fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExchangeError::Io(e) => write!(f, "out-of-band exchange: {e}"),
            ExchangeError::Protocol(s) => write!(f, "out-of-band exchange: {s}"),
            ExchangeError::Device(s) => write!(f, "{s}"),
            ExchangeError::Timeout(what) => {
                write!(f, "out-of-band exchange: timed out waiting for {what}")
            }
        }
    }
}

impl From<io::Error> for ExchangeError {
    fn from(e: io::Error) -> ExchangeError {
        ExchangeError::Io(e)
    }
}

/// One end of the exchange.
pub struct Oob {
    sock: TcpStream,
    client: bool,
    timeout: Duration,
}

impl Oob {
    /// Wraps a connected socket; `client` says which side writes first.
    pub fn new(sock: TcpStream, client: bool, timeout: Duration) -> io::Result<Oob> {
        sock.set_nodelay(true)?;
        sock.set_nonblocking(true)?;
        Ok(Oob {
            sock,
            client,
            timeout,
        })
    }

    fn write(&mut self, b: &[u8]) -> Result<(), ExchangeError> {
        // The socket is non-blocking; these messages are small, but keep writing until all left.
        let mut off = 0;
        let end = Instant::now() + self.timeout;
        while off < b.len() {
            match self.sock.write(&b[off..]) {
                Ok(0) => return Err(ExchangeError::Protocol("peer closed".into())),
                Ok(n) => off += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if Instant::now() > end {
                        return Err(ExchangeError::Timeout("the socket to drain"));
                    }
                    std::thread::yield_now();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn read(
        &mut self,
        b: &mut [u8],
        what: &'static str,
        pump: &mut dyn FnMut() -> Result<bool, String>,
    ) -> Result<(), ExchangeError> {
        let mut off = 0;
        let mut last = Instant::now();
        while off < b.len() {
            match self.sock.read(&mut b[off..]) {
                Ok(0) => {
                    return Err(ExchangeError::Protocol(format!(
                        "peer closed the connection while this side waited for {what}"
                    )))
                }
                Ok(n) => {
                    off += n;
                    last = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // RDMA traffic counts as progress: a passive side waits out the run. The
                    // device runs many times per look at the socket, which is rarely ready.
                    let mut heard = false;
                    for _ in 0..64 {
                        heard |= pump().map_err(ExchangeError::Device)?;
                    }
                    if heard {
                        last = Instant::now();
                    } else if last.elapsed() > self.timeout {
                        return Err(ExchangeError::Timeout(what));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// One step: the client writes then reads, the server reads then writes.
    fn step(
        &mut self,
        mine: &[u8],
        theirs: &mut [u8],
        what: &'static str,
        pump: &mut dyn FnMut() -> Result<bool, String>,
    ) -> Result<(), ExchangeError> {
        if self.client {
            self.write(mine)?;
            self.read(theirs, what, pump)
        } else {
            self.read(theirs, what, pump)?;
            self.write(mine)
        }
    }

    /// Steps 1–3: versions, system data, MTU. Returns the MTU enum both use (the smaller).
    pub fn setup(&mut self, mtu_enum: u8) -> Result<u8, ExchangeError> {
        let mut none = || Ok(false);
        let mut v = [0u8; 16];
        v[..VERSION.len()].copy_from_slice(VERSION.as_bytes());
        let mut peer = [0u8; 16];
        self.step(&v, &mut peer, "the peer's version", &mut none)?;
        let peer_version = cstr(&peer);
        let (major, minor) = parse_version(&peer_version).ok_or_else(|| {
            ExchangeError::Protocol(format!(
                "the peer's version {peer_version:?} is not perftest's"
            ))
        })?;
        if (major, minor) < (5, 32) {
            return Err(ExchangeError::Protocol(format!(
                "perftest {peer_version} predates the system-data exchange (5.32); use a newer one"
            )));
        }
        // Cycle buffer (page size) and cache line size, each in turn.
        let mut b = [0u8; 4];
        self.step(
            &4096u32.to_be_bytes(),
            &mut b,
            "the peer's cycle buffer",
            &mut none,
        )?;
        self.step(
            &64u32.to_be_bytes(),
            &mut b,
            "the peer's cache line size",
            &mut none,
        )?;
        let mut m = [0u8; 2];
        let mine = [b'0' + mtu_enum, 0];
        self.step(&mine, &mut m, "the peer's MTU", &mut none)?;
        let peer_mtu = cstr(&m)
            .parse::<u8>()
            .ok()
            .filter(|v| (1..=5).contains(v))
            .ok_or_else(|| ExchangeError::Protocol(format!("bad MTU message {m:?}")))?;
        Ok(peer_mtu.min(mtu_enum))
    }

    /// Step 4, and every barrier: sends this QP's key message, returns the peer's.
    pub fn keys(
        &mut self,
        mine: &KeyMsg,
        pump: &mut dyn FnMut() -> Result<bool, String>,
    ) -> Result<KeyMsg, ExchangeError> {
        let mut m = [0u8; KEY_MSG_LEN];
        self.step(&mine.to_wire(), &mut m, "the peer's key message", pump)?;
        KeyMsg::parse(&m).ok_or_else(|| {
            ExchangeError::Protocol(format!(
                "bad key message {:?} (is the peer using -x with a GID?)",
                cstr(&m)
            ))
        })
    }

    /// The client's BW report to the server; returns the peer's (the server's is meaningless).
    pub fn bw_report(
        &mut self,
        mine: &BwReport,
        pump: &mut dyn FnMut() -> Result<bool, String>,
    ) -> Result<BwReport, ExchangeError> {
        let fields = [
            mine.size,
            mine.iters,
            mine.bw_peak.to_bits(),
            mine.bw_avg.to_bits(),
            mine.msg_rate.to_bits(),
        ];
        let mut got = [0u64; 5];
        for (f, g) in fields.iter().zip(got.iter_mut()) {
            let mut b = [0u8; 8];
            self.step(&f.to_be_bytes(), &mut b, "the BW report", pump)?;
            *g = u64::from_be_bytes(b);
        }
        Ok(BwReport {
            size: got[0],
            iters: got[1],
            bw_peak: f64::from_bits(got[2]),
            bw_avg: f64::from_bits(got[3]),
            msg_rate: f64::from_bits(got[4]),
        })
    }

    /// Step 7: both write `done`, then read the peer's (a peer that closed instead is fine).
    pub fn close(mut self, pump: &mut dyn FnMut() -> Result<bool, String>) {
        let _ = self.write(b"done\0");
        let mut b = [0u8; 5];
        let _ = self.read(&mut b, "done", pump);
    }
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// "6.06" → (6, 6); "5.32" → (5, 32).
fn parse_version(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.split_once('.')?;
    let minor: String = b.chars().take_while(|c| c.is_ascii_digit()).collect();
    Some((a.trim().parse().ok()?, minor.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_message_is_perftests() {
        // A message Debian's ib_read_bw sent (captured between the interop guests).
        let wire = b"0000:0080:000015:b54a20:00000684:00007f62b02ec000:00:00:00:00:00:00:00:00:00:00:ff:ff:0a:4d:00:0c:00000000:";
        let mut m = [0u8; KEY_MSG_LEN];
        m[..wire.len()].copy_from_slice(wire);
        let k = KeyMsg::parse(&m).unwrap();
        assert_eq!(
            k,
            KeyMsg {
                lid: 0,
                out_reads: 0x80,
                qpn: 0x15,
                psn: 0xb54a20,
                rkey: 0x684,
                vaddr: 0x7f62_b02e_c000,
                gid: "::ffff:10.77.0.12".parse().unwrap(),
                srqn: 0,
            }
        );
        assert_eq!(k.to_wire(), m);
        assert_eq!(wire.len() + 1, KEY_MSG_LEN);
        assert_eq!(KeyMsg::parse(b"0000:zz"), None);
        assert_eq!(KeyMsg::parse(&[0u8; KEY_MSG_LEN]), None);
    }

    #[test]
    fn addresses_print_like_perftest() {
        let k = KeyMsg {
            lid: 0,
            out_reads: 0x80,
            qpn: 0x11,
            psn: 0x477f10,
            rkey: 0x224,
            vaddr: 0x7f1e_a605_b000,
            gid: "::ffff:10.77.0.12".parse().unwrap(),
            srqn: 0,
        };
        assert_eq!(
            k.describe("local", true, true),
            " local address: LID 0000 QPN 0x0011 PSN 0x477f10 OUT 0x80 RKey 0x000224 VAddr 0x007f1ea605b000\n GID: 00:00:00:00:00:00:00:00:00:00:255:255:10:77:00:12"
        );
        assert_eq!(
            k.describe("remote", false, false),
            " remote address: LID 0000 QPN 0x0011 PSN 0x477f10\n GID: 00:00:00:00:00:00:00:00:00:00:255:255:10:77:00:12"
        );
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("6.06"), Some((6, 6)));
        assert_eq!(parse_version("5.32"), Some((5, 32)));
        assert_eq!(parse_version("6.29"), Some((6, 29)));
        assert_eq!(parse_version("x"), None);
    }

    #[test]
    fn a_client_and_a_server_exchange_everything() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let key = |qpn| KeyMsg {
            lid: 0,
            out_reads: 16,
            qpn,
            psn: 0x123456,
            rkey: 7,
            vaddr: 0x1000,
            gid: "::ffff:127.0.0.1".parse().unwrap(),
            srqn: 0,
        };
        let t = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut o = Oob::new(s, false, Duration::from_secs(5)).unwrap();
            let mtu = o.setup(3).unwrap();
            let rem = o.keys(&key(0x22), &mut || Ok(false)).unwrap();
            let rep = o
                .bw_report(&BwReport::default(), &mut || Ok(false))
                .unwrap();
            o.close(&mut || Ok(false));
            (mtu, rem, rep)
        });
        let mut o = Oob::new(
            TcpStream::connect(addr).unwrap(),
            true,
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(o.setup(5).unwrap(), 3);
        assert_eq!(o.keys(&key(0x11), &mut || Ok(false)).unwrap(), key(0x22));
        let mine = BwReport {
            size: 4096,
            iters: 1000,
            bw_peak: 1.5,
            bw_avg: 1.25,
            msg_rate: 0.5,
        };
        assert_eq!(
            o.bw_report(&mine, &mut || Ok(false)).unwrap(),
            BwReport::default()
        );
        o.close(&mut || Ok(false));
        let (mtu, rem, rep) = t.join().unwrap();
        assert_eq!((mtu, rem, rep), (3, key(0x11), mine));
    }
}
