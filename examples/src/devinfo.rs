//! `rxe devinfo` (in the manner of `ibv_devinfo -v`) and `rxe status` (in the manner of
//! `rxe_cfg status`): what a userspace device on an address would be, and which of this host's
//! interfaces can carry one.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr, UdpSocket};

use rxe_transport::device::{MAX_CONNECTIONS, QP_DEPTH};
use rxe_transport::qp::MAX_RD_ATOMIC;
use rxe_transport::verbs::{MAX_INLINE, MAX_SGE};
use rxe_transport::Mtu;
use rxe_user::{netdev, UdpDevice, UdpDeviceConfig};

fn mtu_line(m: Mtu) -> String {
    let e = match m {
        Mtu::M256 => 1,
        Mtu::M512 => 2,
        Mtu::M1024 => 3,
        Mtu::M2048 => 4,
        Mtu::M4096 => 5,
    };
    format!("{} ({e})", m.bytes())
}

fn guid(g: u64) -> String {
    format!(
        "{:04x}:{:04x}:{:04x}:{:04x}",
        g >> 48,
        (g >> 32) & 0xffff,
        (g >> 16) & 0xffff,
        g & 0xffff
    )
}

/// Opens a device on `addr:port` and describes it; `verbose` adds the limits (`-v`).
pub fn devinfo(addr: IpAddr, port: u16, verbose: bool) -> Result<String, String> {
    let dev = UdpDevice::open(UdpDeviceConfig::new(SocketAddr::new(addr, port)))
        .map_err(|e| format!("cannot open a device on {addr}:{port}: {e}"))?;
    let mut dev = dev;
    let cfg = *dev.core().config();
    let mut o = String::new();
    let _ = writeln!(o, "hca_id:\trxe0");
    let _ = writeln!(o, "\ttransport:\t\t\tInfiniBand (0)");
    let _ = writeln!(o, "\tfw_ver:\t\t\t\t{}", env!("CARGO_PKG_VERSION"));
    let _ = writeln!(o, "\tnode_guid:\t\t\t{}", guid(cfg.ca_guid));
    let _ = writeln!(o, "\tsys_image_guid:\t\t\t{}", guid(cfg.ca_guid));
    let _ = writeln!(o, "\tvendor_id:\t\t\t0xffffff");
    let _ = writeln!(o, "\tvendor_part_id:\t\t\t0");
    let _ = writeln!(o, "\thw_ver:\t\t\t\t0x0");
    let _ = writeln!(o, "\tphys_port_cnt:\t\t\t1");
    if verbose {
        let _ = writeln!(o, "\tmax_mr_size:\t\t\t0x{:x}", u64::from(u32::MAX));
        let _ = writeln!(o, "\tmax_qp:\t\t\t\t{}", cfg.max_qp);
        let _ = writeln!(o, "\tmax_qp_wr:\t\t\t{QP_DEPTH}");
        let _ = writeln!(o, "\tmax_sge:\t\t\t{MAX_SGE}");
        let _ = writeln!(o, "\tmax_mr:\t\t\t\t{}", cfg.max_mr);
        let _ = writeln!(o, "\tmax_qp_rd_atom:\t\t\t{MAX_RD_ATOMIC}");
        let _ = writeln!(o, "\tmax_qp_init_rd_atom:\t\t{MAX_RD_ATOMIC}");
        let _ = writeln!(o, "\tmax_inline_data:\t\t{MAX_INLINE}");
        let _ = writeln!(o, "\tatomic_cap:\t\t\tATOMIC_HCA (1)");
        let _ = writeln!(o, "\tmax_mw:\t\t\t\t{}", cfg.max_mr);
        let _ = writeln!(o, "\tmax_srq_wr:\t\t\t{QP_DEPTH}");
        let _ = writeln!(o, "\tmax_pkeys:\t\t\t1");
        let _ = writeln!(o, "\tlocal_ca_ack_delay:\t\t15");
        let _ = writeln!(o, "\tconnections (rdma_cm):\t\t{MAX_CONNECTIONS}");
    }
    let _ = writeln!(o, "\t\tport:\t1");
    let _ = writeln!(o, "\t\t\tstate:\t\t\tPORT_ACTIVE (4)");
    let _ = writeln!(o, "\t\t\tmax_mtu:\t\t4096 (5)");
    let _ = writeln!(o, "\t\t\tactive_mtu:\t\t{}", mtu_line(cfg.port_mtu));
    let _ = writeln!(o, "\t\t\tsm_lid:\t\t\t0");
    let _ = writeln!(o, "\t\t\tport_lid:\t\t0");
    let _ = writeln!(o, "\t\t\tport_lmc:\t\t0x00");
    let _ = writeln!(o, "\t\t\tlink_layer:\t\tEthernet");
    let _ = writeln!(
        o,
        "\t\t\tUDP:\t\t\t{} (RoCEv2 peers send to port {})",
        dev.local_addr(),
        4791
    );
    let gid = rxe_wire::cma::gid_of(addr);
    let _ = writeln!(o, "\t\t\tGID[  0]:\t\t{gid}, RoCE v2");
    Ok(o)
}

/// One line per interface address: link, netdev MTU, the RoCE MTU a device there gets, and
/// whether UDP port 4791 is free on it (kernel rxe or another device would hold it).
pub fn status() -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "  {:<10} {:<5} {:>6}  {:<28} {:>5}  udp/4791",
        "Name", "Link", "NMTU", "Address", "RMTU"
    );
    for (name, addr) in netdev::interface_addresses() {
        let link = std::fs::read_to_string(format!("/sys/class/net/{name}/operstate"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let link = match link.as_str() {
            "up" | "unknown" => "yes",
            _ => "no",
        };
        let nmtu = netdev::netdev_mtu(addr)
            .map(|m| m.to_string())
            .unwrap_or_else(|| "?".into());
        let rmtu = netdev::active_mtu(addr).bytes();
        let link_local = matches!(addr, IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80);
        let port = match UdpSocket::bind(SocketAddr::new(addr, 4791)) {
            _ if link_local => "link-local: not supported".to_string(),
            Ok(_) => "free".to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => "in use".to_string(),
            Err(e) => e.to_string(),
        };
        let _ = writeln!(
            o,
            "  {name:<10} {link:<5} {nmtu:>6}  {:<28} {rmtu:>5}  {port}",
            addr.to_string()
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devinfo_describes_a_loopback_device() {
        let port = 40000 + (std::process::id() % 20000) as u16;
        let text = devinfo("127.0.0.1".parse().unwrap(), port, true).unwrap();
        assert!(text.starts_with("hca_id:\trxe0\n"));
        assert!(text.contains("\tmax_qp_rd_atom:\t\t\t16\n"));
        assert!(text.contains("\t\t\tGID[  0]:\t\t::ffff:127.0.0.1, RoCE v2\n"));
        assert!(text.contains("active_mtu:\t\t"));
        // The port is busy while another device holds it.
        let _held = UdpSocket::bind(("127.0.0.1", port + 1)).unwrap();
        let e = devinfo("127.0.0.1".parse().unwrap(), port + 1, false).unwrap_err();
        assert!(e.contains("cannot open a device on 127.0.0.1"), "{e}");
    }

    #[test]
    fn status_lists_loopback() {
        let s = status();
        assert!(s.lines().next().unwrap().contains("RMTU"));
        assert!(
            s.lines()
                .any(|l| l.trim_start().starts_with("lo ") && l.contains("127.0.0.1")),
            "{s}"
        );
    }
}
