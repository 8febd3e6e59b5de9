//! `rxe ibv_rc_pingpong` and `rxe ibv_ud_pingpong`: rdma-core's examples
//! (libibverbs/examples/rc_pingpong.c, ud_pingpong.c) on an rxe-user device: the same TCP
//! exchange of `LID:QPN:PSN:GID` (`%04x:%06x:%06x:%s`, the GID as 32 hex digits, 52 bytes with the
//! terminating NUL) on port 18515, the same QP attributes (UD: Q_Key 0x11111111, a 40-byte GRH
//! area before each received message), and the same ping-pong of SENDs, so they run against the
//! real tools.

use crate::host_addr::HostAddr;
use std::io::{Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use rxe_transport::device::{CqId, QpInit, RcConnect};
use rxe_transport::{
    Access, AddressVector, Mtu, QpAttr, QpState, QpType, RecvWr, SendFlags, SendWr, Sge, WcOpcode,
    WcStatus, WrOpcode,
};
use rxe_user::{UdpDevice, UdpDeviceConfig};
use rxe_wire::{Psn, Qpn};

/// ibv_rc_pingpong's options.
#[derive(Debug, Clone)]
pub struct PingpongArgs {
    /// UD (`ibv_ud_pingpong`) instead of RC.
    pub ud: bool,
    /// The server to connect to; `None`: be the server.
    pub server: Option<HostAddr>,
    /// `-p`: TCP port of the exchange.
    pub port: u16,
    /// `-s`: message size.
    pub size: u32,
    /// `-m`: path MTU in bytes.
    pub mtu: u32,
    /// `-r`: receives posted at a time.
    pub rx_depth: u32,
    /// `-n`: exchanges.
    pub iters: u32,
    /// Address of this device (server: where to listen; default: the route to the peer).
    pub bind: Option<HostAddr>,
    /// RoCEv2 UDP port.
    pub udp_port: u16,
    /// Give up when nothing happens for this long.
    pub timeout: Duration,
}

/// What went wrong, in one line.
#[derive(Debug)]
pub struct PingpongError(pub String);

impl std::fmt::Display for PingpongError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn e<T: std::fmt::Display>(what: &'static str) -> impl Fn(T) -> PingpongError {
    move |x| PingpongError(format!("{what}: {x}"))
}

/// The exchange message: `%04x:%06x:%06x:%s` and a NUL, 52 bytes.
const MSG_LEN: usize = 52;

/// One side's address as the exchange carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dest {
    /// LID (0 on RoCE).
    pub lid: u16,
    /// QP number.
    pub qpn: u32,
    /// First PSN.
    pub psn: u32,
    /// GID.
    pub gid: Ipv6Addr,
}

impl Dest {
    /// The 52-byte message (`gid_to_wire_gid`: the 16 GID bytes as hex, in order).
    pub fn to_wire(&self) -> [u8; MSG_LEN] {
        let hex: String = self
            .gid
            .octets()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let s = format!("{:04x}:{:06x}:{:06x}:{hex}", self.lid, self.qpn, self.psn);
        let mut m = [0u8; MSG_LEN];
        let n = s.len().min(MSG_LEN - 1);
        m[..n].copy_from_slice(&s.as_bytes()[..n]);
        m
    }

    /// Parses a message (`sscanf("%x:%x:%x:%s")` and `wire_gid_to_gid`).
    pub fn parse(m: &[u8]) -> Option<Dest> {
        let end = m.iter().position(|&b| b == 0).unwrap_or(m.len());
        let s = std::str::from_utf8(&m[..end]).ok()?;
        let mut it = s.splitn(4, ':');
        let lid = u16::from_str_radix(it.next()?, 16).ok()?;
        let qpn = u32::from_str_radix(it.next()?, 16).ok()?;
        let psn = u32::from_str_radix(it.next()?, 16).ok()?;
        let g = it.next()?;
        if g.len() != 32 {
            return None;
        }
        let mut gid = [0u8; 16];
        for (i, b) in gid.iter_mut().enumerate() {
            *b = u8::from_str_radix(g.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Dest {
            lid,
            qpn,
            psn,
            gid: Ipv6Addr::from(gid),
        })
    }
}

fn show(gid: Ipv6Addr) -> String {
    gid.to_string()
}

fn mtu_of(bytes: u32) -> Option<Mtu> {
    Some(match bytes {
        256 => Mtu::M256,
        512 => Mtu::M512,
        1024 => Mtu::M1024,
        2048 => Mtu::M2048,
        4096 => Mtu::M4096,
        _ => return None,
    })
}

const BUF: u64 = 0x6000_0000;
/// ud_pingpong's Q_Key.
const UD_QKEY: u32 = 0x1111_1111;
/// The GRH area before a received datagram.
const GRH: u32 = 40;
const RECV_ID: u64 = 1;
const SEND_ID: u64 = 2;

/// Runs ibv_rc_pingpong; writes what it prints to `out`.
pub fn run(args: &PingpongArgs, out: &mut impl Write) -> Result<(), PingpongError> {
    let mtu = mtu_of(args.mtu).ok_or(PingpongError("-m: 256, 512, 1024, 2048 or 4096".into()))?;
    let local = match (args.bind, args.server) {
        (Some(ip), _) => ip,
        (None, Some(peer)) => HostAddr::of(
            rxe_user::netdev::source_address_for(peer.with_port(args.port))
                .map_err(e("no route to the server"))?,
        ),
        (None, None) => {
            return Err(PingpongError(
                "a server needs --bind ADDR (this device's address)".into(),
            ))
        }
    };
    let mut cfg = UdpDeviceConfig::new(local.with_port(args.udp_port));
    cfg.mtu = mtu;
    let mut dev = UdpDevice::open(cfg).map_err(e("open device"))?;
    let local_ip = local.ip;
    let size = args.size.max(1);
    if args.ud && size > mtu.bytes() {
        return Err(PingpongError(format!(
            "Requested size larger than port MTU ({})",
            mtu.bytes()
        )));
    }
    let grh = if args.ud { GRH } else { 0 };
    let rx_depth = args.rx_depth.clamp(2, 250);
    let c = dev.core();
    let pd = c.alloc_pd().map_err(e("alloc_pd"))?;
    let mr = c
        .reg_mr(pd, BUF, (size + grh) as usize, Access::LOCAL_WRITE)
        .map_err(e("reg_mr"))?;
    c.mr_bytes_mut(mr.lkey)
        .ok_or(PingpongError("region".into()))?
        .fill(0x7b);
    let cq: CqId = c.create_cq(rx_depth as usize + 1).map_err(e("create_cq"))?;
    let qpn = c
        .create_qp(&QpInit {
            qp_type: if args.ud { QpType::Ud } else { QpType::Rc },
            pd,
            send_cq: cq,
            recv_cq: cq,
            srq: None,
        })
        .map_err(e("create_qp"))?;
    let mut init = QpAttr {
        state: Some(QpState::Init),
        pkey_index: Some(0),
        port: Some(1),
        ..QpAttr::default()
    };
    if args.ud {
        init.qkey = Some(rxe_wire::QKey(UD_QKEY));
    } else {
        init.access = Some(Access::empty());
    }
    c.modify_qp(qpn, &init).map_err(e("modify QP to INIT"))?;
    if args.ud {
        // ud_pingpong moves the QP to RTS before the exchange.
        c.modify_qp(
            qpn,
            &QpAttr {
                state: Some(QpState::Rtr),
                ..QpAttr::default()
            },
        )
        .map_err(e("modify QP to RTR"))?;
    }
    let recv = RecvWr::new(
        RECV_ID,
        Sge {
            addr: BUF,
            length: size + grh,
            lkey: mr.lkey,
        },
    );
    for _ in 0..rx_depth {
        c.post_recv(qpn, recv.clone()).map_err(e("post_recv"))?;
    }
    let my = Dest {
        lid: 0,
        qpn: qpn.value(),
        psn: c.random_psn().value(),
        gid: rxe_wire::cma::gid_of(local_ip),
    };
    // rc_pingpong writes ", GID", ud_pingpong ": GID" for the local address (", GID" for the
    // remote one, as both do).
    let sep = if args.ud { ':' } else { ',' };
    writeln!(
        out,
        "  local address:  LID 0x{:04x}, QPN 0x{:06x}, PSN 0x{:06x}{sep} GID {}",
        my.lid,
        my.qpn,
        my.psn,
        show(my.gid)
    )
    .map_err(e("output"))?;
    let ud = args.ud;
    let connect = |dev: &mut UdpDevice, rem: &Dest| -> Result<(), PingpongError> {
        let c = dev.core();
        if ud {
            return c
                .modify_qp(
                    qpn,
                    &QpAttr {
                        state: Some(QpState::Rts),
                        sq_psn: Some(Psn::new(my.psn)),
                        ..QpAttr::default()
                    },
                )
                .map_err(e("modify QP to RTS"));
        }
        let mut rc = RcConnect::new(
            local_ip,
            rxe_wire::cma::ip_of(rem.gid),
            Qpn::new(rem.qpn),
            Psn::new(my.psn),
            Psn::new(rem.psn),
        );
        rc.mtu = mtu;
        rc.hop_limit = 1;
        rc.max_rd_atomic = 1;
        rc.max_dest_rd_atomic = 1;
        c.connect_rc(qpn, &rc).map_err(e("modify QP to RTR/RTS"))
    };
    let rem = match args.server {
        Some(peer) => {
            let mut s = TcpStream::connect(peer.with_port(args.port))
                .map_err(e("couldn't connect to the server"))?;
            s.write_all(&my.to_wire())
                .map_err(e("send local address"))?;
            let mut m = [0u8; MSG_LEN];
            s.read_exact(&mut m).map_err(e("read remote address"))?;
            s.write_all(b"done\0").map_err(e("write done"))?;
            let rem = Dest::parse(&m).ok_or(PingpongError("bad remote address".into()))?;
            connect(&mut dev, &rem)?;
            rem
        }
        None => {
            // As ibv_rc_pingpong, on every address (dual-stack) for a link-local device address,
            // whose exchange may come over IPv4; on the device's address otherwise.
            let listen = if local.is_link_local() {
                SocketAddr::from(([0u16; 8], args.port))
            } else {
                local.with_port(args.port)
            };
            let l = TcpListener::bind(listen).map_err(e("couldn't listen"))?;
            let (mut s, _) = l.accept().map_err(e("accept"))?;
            let mut m = [0u8; MSG_LEN];
            s.read_exact(&mut m).map_err(e("read remote address"))?;
            let rem = Dest::parse(&m).ok_or(PingpongError("bad remote address".into()))?;
            connect(&mut dev, &rem)?;
            s.write_all(&my.to_wire())
                .map_err(e("send local address"))?;
            // The client answers "done" (5 bytes); any answer will do.
            let mut done = [0u8; MSG_LEN];
            let _ = s.read(&mut done);
            rem
        }
    };
    writeln!(
        out,
        "  remote address: LID 0x{:04x}, QPN 0x{:06x}, PSN 0x{:06x}, GID {}",
        rem.lid,
        rem.qpn,
        rem.psn,
        show(rem.gid)
    )
    .map_err(e("output"))?;

    let mut send = SendWr::new(
        SEND_ID,
        WrOpcode::Send,
        Some(Sge {
            addr: BUF + u64::from(grh),
            length: size,
            lkey: mr.lkey,
        }),
        SendFlags::SIGNALED,
    );
    if ud {
        send.ud = Some(rxe_transport::UdDest {
            ah: AddressVector {
                sgid: local_ip,
                dgid: rxe_wire::cma::ip_of(rem.gid),
                hop_limit: 1,
                traffic_class: 0,
                flow_label: 0,
                udp_sport: None,
            },
            remote_qpn: Qpn::new(rem.qpn),
            remote_qkey: rxe_wire::QKey(UD_QKEY),
        });
    }
    let mut pending = RECV_ID;
    if args.server.is_some() {
        dev.core()
            .post_send(qpn, send.clone())
            .map_err(e("post_send"))?;
        pending |= SEND_ID;
    }
    let start = Instant::now();
    let (mut rcnt, mut scnt, mut routs) = (0u32, 0u32, rx_depth);
    let mut last = Instant::now();
    while rcnt < args.iters || scnt < args.iters {
        if dev.progress_received().map_err(e("socket"))? {
            last = Instant::now();
        }
        while let Some(wc) = dev.core().poll_cq(cq) {
            if wc.status != WcStatus::Success {
                return Err(PingpongError(format!(
                    "Failed status {} ({}) for wr_id {}",
                    wc.status.as_str(),
                    wc.status as u32,
                    wc.wr_id
                )));
            }
            match wc.opcode {
                WcOpcode::Recv => {
                    routs -= 1;
                    if routs <= 1 {
                        for _ in routs..rx_depth {
                            dev.core()
                                .post_recv(qpn, recv.clone())
                                .map_err(e("post_recv"))?;
                        }
                        routs = rx_depth;
                    }
                    rcnt += 1;
                    pending &= !RECV_ID;
                }
                _ => {
                    scnt += 1;
                    pending &= !SEND_ID;
                }
            }
            if scnt < args.iters && pending == 0 {
                dev.core()
                    .post_send(qpn, send.clone())
                    .map_err(e("post_send"))?;
                pending = RECV_ID | SEND_ID;
            }
        }
        if last.elapsed() > args.timeout {
            return Err(PingpongError(format!(
                "no progress for {:?} ({rcnt} received, {scnt} sent)",
                args.timeout
            )));
        }
    }
    let usec = start.elapsed().as_secs_f64() * 1e6;
    let bytes = u64::from(size) * u64::from(args.iters) * 2;
    writeln!(
        out,
        "{bytes} bytes in {:.2} seconds = {:.2} Mbit/sec",
        usec / 1e6,
        bytes as f64 * 8.0 / usec
    )
    .map_err(e("output"))?;
    writeln!(
        out,
        "{} iters in {:.2} seconds = {:.2} usec/iter",
        args.iters,
        usec / 1e6,
        usec / f64::from(args.iters)
    )
    .map_err(e("output"))?;
    // Let the last ACKs go out before the socket closes.
    let end = Instant::now() + Duration::from_millis(200);
    while Instant::now() < end {
        let _ = dev.progress();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exchange_message_is_rdma_cores() {
        let d = Dest {
            lid: 0,
            qpn: 0x11,
            psn: 0xabcdef,
            gid: "::ffff:10.77.0.11".parse().unwrap(),
        };
        let m = d.to_wire();
        assert_eq!(
            &m[..51],
            b"0000:000011:abcdef:00000000000000000000ffff0a4d000b"
        );
        assert_eq!(m[51], 0);
        assert_eq!(Dest::parse(&m), Some(d));
        assert_eq!(Dest::parse(b"zz"), None);
    }
}
