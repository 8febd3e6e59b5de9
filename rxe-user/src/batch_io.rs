//! UDP segmentation offload (GSO: one `sendmsg` carries up to [`MAX_SEGMENTS`] equal-sized
//! datagrams, `UDP_SEGMENT`) and receive coalescing (GRO: one `recvmsg` returns several
//! datagrams of one flow back to back, the segment size in a `UDP_GRO` control message). On
//! this machine's loopback they are the only way past ~1 GB/s: the kernel's per-datagram cost,
//! not copying or the CRC, sets the ceiling (`machine-limits.md`).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

/// `SOL_UDP` option and control message: the segment size of a GSO send.
const UDP_SEGMENT: libc::c_int = 103;
/// `SOL_UDP` option and control message: coalesce on receive / the coalesced segment size.
const UDP_GRO: libc::c_int = 104;
/// Most segments one GSO send may carry (the kernel's `UDP_MAX_SEGMENTS` is 128; 64 KiB of
/// payload is the tighter bound for 4 KiB segments).
pub(crate) const MAX_SEGMENTS: usize = 64;
/// Most payload bytes in one GSO send (an IP packet's 65535 less headers).
pub(crate) const MAX_GSO_BYTES: usize = 65_000;

/// Asks the kernel to coalesce received datagrams (`UDP_GRO`); `false` where it can't.
pub(crate) fn enable_gro(sock: &UdpSocket) -> bool {
    super::udp_device::set_sockopt(sock, libc::SOL_UDP, UDP_GRO, 1).is_ok()
}

fn sockaddr_of(to: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    #[allow(unsafe_code)]
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match to {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            #[allow(unsafe_code)]
            unsafe {
                std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin)
            };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            #[allow(unsafe_code)]
            unsafe {
                std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6)
            };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

fn addr_of(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            #[allow(unsafe_code)]
            let sin =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))),
                u16::from_be(sin.sin_port),
            ))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            #[allow(unsafe_code)]
            let sin6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)),
                u16::from_be(sin6.sin6_port),
            ))
        }
        _ => None,
    }
}

/// Control-message buffer with the alignment `cmsghdr` needs.
#[repr(C, align(8))]
struct Cmsg([u8; 64]);

/// Sends `payload` to `to` as datagrams of `segment` bytes (the last may be shorter) in one
/// `sendmsg`; a plain send when it is one datagram.
#[allow(unsafe_code)]
pub(crate) fn send_segments(
    sock: &UdpSocket,
    to: SocketAddr,
    payload: &[u8],
    segment: usize,
) -> io::Result<usize> {
    let (mut ss, ss_len) = sockaddr_of(to);
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    let mut cmsg = Cmsg([0; 64]);
    // SAFETY: msghdr is plain data; every pointer set below outlives the sendmsg call, the
    // control buffer is aligned and large enough for one int-sized control message.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = (&mut ss as *mut libc::sockaddr_storage).cast();
        msg.msg_namelen = ss_len;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if payload.len() > segment {
            let space = libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) as usize;
            msg.msg_control = cmsg.0.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_UDP;
            (*c).cmsg_type = UDP_SEGMENT;
            (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), segment as u16);
        }
        let r = libc::sendmsg(sock.as_raw_fd(), &msg, 0);
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r as usize)
        }
    }
}

/// One message of a [`send_many`]: `payload` to `to`, as datagrams of `segment` bytes (the last
/// may be shorter; one datagram when `segment >= payload.len()`).
pub(crate) struct OutMsg<'a> {
    pub(crate) to: SocketAddr,
    pub(crate) payload: &'a [u8],
    pub(crate) segment: usize,
}

/// Most messages one [`send_many`] call hands the kernel (`UIO_MAXIOV` allows 1024).
pub(crate) const MAX_MESSAGES: usize = 64;

/// Sends every message, in order, with as few `sendmmsg` calls as it takes (one, unless the
/// kernel stops early); each message may itself be a GSO run. Returns `(sent, syscalls)`:
/// how many messages the kernel took and how many calls it took. A message the kernel refuses
/// is skipped (and not counted as sent).
#[allow(unsafe_code)]
pub(crate) fn send_many(sock: &UdpSocket, msgs: &[OutMsg<'_>]) -> (usize, u64) {
    let n = msgs.len();
    let mut names: Vec<(libc::sockaddr_storage, libc::socklen_t)> =
        msgs.iter().map(|m| sockaddr_of(m.to)).collect();
    let mut iovs: Vec<libc::iovec> = msgs
        .iter()
        .map(|m| libc::iovec {
            iov_base: m.payload.as_ptr() as *mut libc::c_void,
            iov_len: m.payload.len(),
        })
        .collect();
    let mut cmsgs: Vec<Cmsg> = (0..n).map(|_| Cmsg([0; 64])).collect();
    // SAFETY: mmsghdr is plain data; every pointer stored below points into `names`, `iovs`,
    // `cmsgs` or a payload, all of which outlive the sendmmsg calls and are not moved (the
    // vectors are not resized after this point); each control buffer is aligned and large
    // enough for one u16 control message.
    let mut hdrs: Vec<libc::mmsghdr> = (0..n)
        .map(|i| unsafe {
            let mut h: libc::mmsghdr = std::mem::zeroed();
            h.msg_hdr.msg_name = (&mut names[i].0 as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = names[i].1;
            h.msg_hdr.msg_iov = &mut iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            if msgs[i].payload.len() > msgs[i].segment {
                let space = libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) as usize;
                h.msg_hdr.msg_control = cmsgs[i].0.as_mut_ptr().cast();
                h.msg_hdr.msg_controllen = space as _;
                let c = libc::CMSG_FIRSTHDR(&h.msg_hdr);
                (*c).cmsg_level = libc::SOL_UDP;
                (*c).cmsg_type = UDP_SEGMENT;
                (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), msgs[i].segment as u16);
            }
            h
        })
        .collect();
    let (mut at, mut sent, mut calls) = (0usize, 0usize, 0u64);
    while at < n {
        calls += 1;
        // SAFETY: `hdrs[at..]` are valid, initialised headers (see above).
        let r = unsafe {
            libc::sendmmsg(
                sock.as_raw_fd(),
                hdrs[at..].as_mut_ptr(),
                (n - at) as libc::c_uint,
                0,
            )
        };
        if r <= 0 {
            // The message at `at` was refused: skip it, go on with the rest.
            at += 1;
        } else {
            at += r as usize;
            sent += r as usize;
        }
    }
    (sent, calls)
}

/// Receives into `buf` without blocking: `(bytes, sender, segment size)` where a segment size
/// says the kernel coalesced datagrams of that size (the last may be shorter) back to back.
#[allow(unsafe_code)]
pub(crate) fn recv_segments(
    sock: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<usize>)> {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut cmsg = Cmsg([0; 64]);
    // SAFETY: every pointer in msghdr refers to a live local buffer of the length given; the
    // control messages are read only within msg_controllen as the kernel filled it.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = (&mut ss as *mut libc::sockaddr_storage).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg.0.as_mut_ptr().cast();
        msg.msg_controllen = cmsg.0.len() as _;
        let r = libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT);
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut segment = None;
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == UDP_GRO {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                segment = usize::try_from(v).ok().filter(|&s| s > 0);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        let from = addr_of(&ss).ok_or_else(|| io::Error::other("datagram from a non-IP sender"))?;
        Ok((r as usize, from, segment))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gso_send_arrives_as_equal_datagrams_or_one_gro_buffer() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let gro = enable_gro(&b);
        let payload: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let n = send_segments(&a, b.local_addr().unwrap(), &payload, 4096).unwrap();
        assert_eq!(n, payload.len());
        let mut got = Vec::new();
        let mut sizes = Vec::new();
        let mut buf = vec![0u8; 65536];
        let end = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while got.len() < payload.len() && std::time::Instant::now() < end {
            match recv_segments(&b, &mut buf) {
                Ok((n, from, seg)) => {
                    assert_eq!(from, a.local_addr().unwrap());
                    got.extend_from_slice(&buf[..n]);
                    match seg {
                        Some(s) => {
                            let mut left = n;
                            while left > 0 {
                                sizes.push(left.min(s));
                                left -= left.min(s);
                            }
                        }
                        None => sizes.push(n),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, payload);
        assert_eq!(sizes, vec![4096, 4096, 1808], "GRO enabled: {gro}");
        // One datagram: no control message needed.
        send_segments(&a, b.local_addr().unwrap(), &payload[..100], 4096).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (n, _, _) = recv_segments(&b, &mut buf).unwrap();
        assert_eq!(&buf[..n], &payload[..100]);
    }
}
