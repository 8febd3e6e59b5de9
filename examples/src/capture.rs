//! Reading pcap and pcapng capture files into link-layer-tagged frames.

use std::fmt;
use std::io::Read;
use std::path::Path;

use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::DataLink;

/// The link layer a captured frame starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    /// Ethernet II (DLT_EN10MB).
    Ethernet,
    /// A bare IPv4 or IPv6 packet (DLT_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6).
    RawIp,
    /// Linux cooked capture v1 (`tcpdump -i any`): 16-byte header, protocol at bytes 14-15.
    LinuxSll,
    /// Anything else, with its link type number.
    Other(u32),
}

impl From<DataLink> for LinkType {
    fn from(d: DataLink) -> LinkType {
        match d {
            DataLink::ETHERNET => LinkType::Ethernet,
            DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => LinkType::RawIp,
            DataLink::LINUX_SLL => LinkType::LinuxSll,
            other => LinkType::Other(u32::from(other)),
        }
    }
}

/// One captured frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Link layer of `data`.
    pub link: LinkType,
    /// The bytes captured.
    pub data: Vec<u8>,
    /// Length on the wire; larger than `data.len()` when the capture was cut by a snap length.
    pub orig_len: u32,
}

/// Why a capture file could not be read.
#[derive(Debug)]
pub enum CaptureError {
    /// The file could not be opened or read.
    Io(std::io::Error),
    /// The file is neither pcap nor pcapng, or is corrupt.
    Format(String),
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaptureError::Io(e) => write!(f, "{e}"),
            CaptureError::Format(e) => write!(f, "not a readable pcap/pcapng file: {e}"),
        }
    }
}

impl std::error::Error for CaptureError {}

impl From<std::io::Error> for CaptureError {
    fn from(e: std::io::Error) -> CaptureError {
        CaptureError::Io(e)
    }
}

/// Reads every frame of a pcap or pcapng file (told apart by their magic numbers).
pub fn read_file(path: &Path) -> Result<Vec<Frame>, CaptureError> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut bytes)?;
    read_bytes(&bytes)
}

/// Reads every frame of an in-memory pcap or pcapng file.
pub fn read_bytes(bytes: &[u8]) -> Result<Vec<Frame>, CaptureError> {
    const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
    let fmt_err = |e: pcap_file::PcapError| CaptureError::Format(e.to_string());
    let mut frames = Vec::new();
    if bytes.starts_with(&PCAPNG_MAGIC) {
        let mut r = PcapNgReader::new(bytes).map_err(fmt_err)?;
        let mut links: Vec<LinkType> = Vec::new();
        while let Some(block) = r.next_block() {
            match block.map_err(fmt_err)? {
                Block::SectionHeader(_) => links.clear(),
                Block::InterfaceDescription(idb) => links.push(idb.linktype.into()),
                Block::EnhancedPacket(epb) => {
                    let link = links
                        .get(epb.interface_id as usize)
                        .copied()
                        .ok_or_else(|| {
                            CaptureError::Format(format!(
                                "packet on undeclared interface {}",
                                epb.interface_id
                            ))
                        })?;
                    frames.push(Frame {
                        link,
                        orig_len: epb.original_len,
                        data: epb.data.into_owned(),
                    });
                }
                Block::SimplePacket(spb) => {
                    let link = links.first().copied().ok_or_else(|| {
                        CaptureError::Format("simple packet before any interface".into())
                    })?;
                    frames.push(Frame {
                        link,
                        orig_len: spb.original_len,
                        data: spb.data.into_owned(),
                    });
                }
                _ => {}
            }
        }
    } else {
        let mut r = PcapReader::new(bytes).map_err(fmt_err)?;
        let link = LinkType::from(r.header().datalink);
        while let Some(p) = r.next_packet() {
            let p = p.map_err(fmt_err)?;
            frames.push(Frame {
                link,
                orig_len: p.orig_len,
                data: p.data.into_owned(),
            });
        }
    }
    Ok(frames)
}

/// Writes Ethernet frames as a classic pcap file (microsecond timestamps 1 ms apart).
pub fn write_pcap(path: &Path, frames: &[Vec<u8>]) -> Result<(), CaptureError> {
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    let file = std::fs::File::create(path)?;
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ..PcapHeader::default()
    };
    let mut w =
        PcapWriter::with_header(file, header).map_err(|e| CaptureError::Format(e.to_string()))?;
    for (i, f) in frames.iter().enumerate() {
        let ts = std::time::Duration::from_millis(i as u64);
        let len =
            u32::try_from(f.len()).map_err(|_| CaptureError::Format("frame too long".into()))?;
        w.write_packet(&PcapPacket::new(ts, len, f))
            .map_err(|e| CaptureError::Format(e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_a_format_error_not_a_panic() {
        assert!(matches!(
            read_bytes(b"not a capture at all"),
            Err(CaptureError::Format(_))
        ));
        assert!(matches!(
            read_bytes(&[0x0a, 0x0d, 0x0d, 0x0a, 1, 2]),
            Err(CaptureError::Format(_))
        ));
        assert!(matches!(read_bytes(&[]), Err(CaptureError::Format(_))));
    }

    #[test]
    fn pcap_round_trips() {
        let dir = std::env::temp_dir().join(format!("rxe-capture-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.pcap");
        let frames = vec![vec![1u8; 60], vec![2u8; 70]];
        write_pcap(&path, &frames).unwrap();
        let back = read_file(&path).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[1].data, frames[1]);
        assert_eq!(back[0].link, LinkType::Ethernet);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
