//! The host: its network devices, the Soft-RoCE links on them (`rdma link add` or the module
//! parameters `add` / `remove`), transmission control (`control_method` / `control_value`), and
//! the settings new links get.

use alloc::boxed::Box;
use alloc::ffi::CString;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::RefCell;
use core::ffi::CStr;
use core::net::IpAddr;

use core::ffi::{c_char, c_int, c_void};

use rxe_kernel::link::Links;
use rxe_kernel::netdev::MacAddr;
use rxe_kernel::port::Port;
use rxe_kernel::tx_control::{ControlMethod, TxControls};
use rxe_transport::device::DeviceConfig;

use crate::device::rxe_device;
use crate::error::*;
use crate::netdev::{rxe_netdev_ops, CNetDev, NetdevState};

/// No transmission control (the default).
pub const RXE_CONTROL_NONE: c_int = 0;
/// Hold transmission while frames handed to the NIC minus frames it has taken reach the value.
pub const RXE_CONTROL_WATERMARK: c_int = 1;
/// Hold transmission to the value in bits per second (a token bucket).
pub const RXE_CONTROL_BANDWIDTH: c_int = 2;

/// A host: network devices and the Soft-RoCE links on them. Create with [`rxe_host_new`], free
/// with [`rxe_host_free`].
pub struct rxe_host {
    links: Links<CNetDev>,
    netdevs: Vec<(String, CNetDev)>,
    controls: TxControls,
    template: DeviceConfig,
    last_error: CString,
}

/// Settings of the devices links make from now on ([`rxe_host_set_link_config`]). Start from
/// [`rxe_link_config_init`].
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rxe_link_config {
    /// Every packet's UDP source port; 0 (the default) picks one per QP as Linux rxe does.
    pub udp_sport: u16,
    /// Added to the IPv4 Identification after each packet: 1 (the default) counts like Linux; 0
    /// sends the same value (0) always, as a UDP-socket host's kernel does.
    pub ipv4_ident_step: u16,
    /// Whether `retry_cnt` 7 retries forever, as Linux rxe (1, the default), or 7 times (0).
    pub retry_cnt_7_is_infinite: c_int,
    /// Most QPs (default 1024).
    pub max_qp: u32,
    /// Most memory regions and windows (default 1024).
    pub max_mr: u32,
    /// Most protection domains (default 1024).
    pub max_pd: u32,
    /// Most completion queues (default 1024).
    pub max_cq: u32,
    /// Most shared receive queues (default 1024).
    pub max_srq: u32,
    /// Most address handles (default 1024).
    pub max_ah: u32,
}

fn default_template(seed: u64) -> DeviceConfig {
    DeviceConfig::new(IpAddr::V4(core::net::Ipv4Addr::UNSPECIFIED), seed)
}

/// Reads a C string argument.
pub(crate) fn c_str<'a>(p: *const c_char) -> Option<&'a str> {
    if p.is_null() {
        return None;
    }
    // SAFETY: the caller passes a NUL-terminated string valid for the call (header contract).
    unsafe { CStr::from_ptr(p) }.to_str().ok()
}

/// The host behind a pointer, if not NULL and not inside a callback.
fn host<'a>(h: *mut rxe_host) -> Result<&'a mut rxe_host, c_int> {
    // SAFETY: a non-NULL pointer came from rxe_host_new and is not freed (header contract).
    let h = unsafe { h.as_mut() }.ok_or(RXE_ERR_INVAL)?;
    if h.netdevs
        .iter()
        .any(|(_, n)| n.state.try_borrow().map_or(true, |s| s.in_callback))
    {
        return Err(RXE_ERR_REENTRANT);
    }
    Ok(h)
}

/// Runs `f` on the host; on failure records `detail` for [`rxe_host_last_error`].
fn with_host(
    h: *mut rxe_host,
    f: impl FnOnce(&mut rxe_host) -> Result<c_int, (c_int, String)>,
) -> c_int {
    let h = match host(h) {
        Ok(h) => h,
        Err(code) => return code,
    };
    match f(h) {
        Ok(v) => v,
        Err((code, detail)) => {
            h.last_error = CString::new(detail).unwrap_or_default();
            code
        }
    }
}

fn arg(p: *const c_char, what: &str) -> Result<&'static str, (c_int, String)> {
    c_str(p).ok_or((RXE_ERR_INVAL, format!("{what}: NULL or not UTF-8")))
}

impl rxe_host {
    fn netdev(&self, ifname: &str) -> Result<&CNetDev, (c_int, String)> {
        self.netdevs
            .iter()
            .find(|(n, _)| n == ifname)
            .map(|(_, d)| d)
            .ok_or((RXE_ERR_NOENT, format!("no netdev {ifname:?}")))
    }

    /// Applies the interface's transmission control to its port, if it has one.
    fn apply_control(&mut self, ifname: &str) {
        let c = self.controls.get(ifname);
        if let Some(p) = self.links.on_netdev(ifname) {
            p.set_control(c);
        }
    }
}

/// A new host with no netdevs or links; `seed` seeds every link's keys and PSNs (mixed with
/// the link's name). Free it with [`rxe_host_free`]. Returns NULL only if memory ran out.
#[no_mangle]
pub extern "C" fn rxe_host_new(seed: u64) -> *mut rxe_host {
    Box::into_raw(Box::new(rxe_host {
        links: Links::new(seed),
        netdevs: Vec::new(),
        controls: TxControls::default(),
        template: default_template(seed),
        last_error: CString::default(),
    }))
}

/// Frees a host, its links (every `rxe_device` of it) and the memory registrations they hold
/// (the caller's memory itself stays the caller's). NULL is ignored.
///
/// # Safety
/// `h` is NULL or from [`rxe_host_new`], not freed before, and not used after.
#[no_mangle]
pub unsafe extern "C" fn rxe_host_free(h: *mut rxe_host) {
    if !h.is_null() {
        // SAFETY: the caller's contract above.
        drop(unsafe { Box::from_raw(h) });
    }
}

/// What the last refused call on this host (not on one of its devices) was refused for, as a
/// NUL-terminated string valid until the next call on the host; "" if none.
///
/// # Safety
/// `h` is a live host.
#[no_mangle]
pub unsafe extern "C" fn rxe_host_last_error(h: *const rxe_host) -> *const c_char {
    // SAFETY: the caller's contract above.
    match unsafe { h.as_ref() } {
        Some(h) => h.last_error.as_ptr(),
        None => c"".as_ptr(),
    }
}

/// Fills `cfg` with the defaults (Linux-like: per-QP UDP source ports, Identification counting
/// by 1, `retry_cnt` 7 forever, 1024 of each object).
///
/// # Safety
/// `cfg` points to writable memory for one `rxe_link_config`.
#[no_mangle]
pub unsafe extern "C" fn rxe_link_config_init(cfg: *mut rxe_link_config) -> c_int {
    let d = default_template(0);
    let c = rxe_link_config {
        udp_sport: d.udp_sport.unwrap_or(0),
        ipv4_ident_step: d.ipv4_ident_step,
        retry_cnt_7_is_infinite: c_int::from(d.retry_cnt_7_is_infinite),
        max_qp: d.max_qp as u32,
        max_mr: d.max_mr as u32,
        max_pd: d.max_pd as u32,
        max_cq: d.max_cq as u32,
        max_srq: d.max_srq as u32,
        max_ah: d.max_ah as u32,
    };
    // SAFETY: the caller's contract above.
    match unsafe { cfg.as_mut() } {
        Some(out) => {
            *out = c;
            RXE_OK
        }
        None => RXE_ERR_INVAL,
    }
}

/// Sets what devices of links added from now on are made with (existing links keep theirs).
///
/// # Safety
/// `h` is a live host; `cfg` points to an `rxe_link_config`.
#[no_mangle]
pub unsafe extern "C" fn rxe_host_set_link_config(
    h: *mut rxe_host,
    cfg: *const rxe_link_config,
) -> c_int {
    with_host(h, |h| {
        // SAFETY: the caller's contract above.
        let c = unsafe { cfg.as_ref() }.ok_or((RXE_ERR_INVAL, "cfg is NULL".into()))?;
        let counts = [c.max_qp, c.max_mr, c.max_pd, c.max_cq, c.max_srq, c.max_ah];
        if counts.contains(&0) {
            return Err((RXE_ERR_INVAL, "every max_* must be at least 1".into()));
        }
        h.template = DeviceConfig {
            udp_sport: (c.udp_sport != 0).then_some(c.udp_sport),
            ipv4_ident_step: c.ipv4_ident_step,
            retry_cnt_7_is_infinite: c.retry_cnt_7_is_infinite != 0,
            max_qp: c.max_qp as usize,
            max_mr: c.max_mr as usize,
            max_pd: c.max_pd as usize,
            max_cq: c.max_cq as usize,
            max_srq: c.max_srq as usize,
            max_ah: c.max_ah as usize,
            ..h.template
        };
        h.links.set_template(h.template);
        Ok(RXE_OK)
    })
}

/// Registers network device `ifname` (1 to 15 bytes) with its callbacks, `ctx` (passed to each
/// callback), MAC address (`mac[0..6]`) and MTU. The link starts up, with no addresses.
///
/// # Safety
/// `h` is a live host; `ifname` a NUL-terminated string; `ops` points to an `rxe_netdev_ops`
/// (copied); `mac` to 6 bytes. `ctx` stays valid while the netdev is registered.
#[no_mangle]
pub unsafe extern "C" fn rxe_netdev_register(
    h: *mut rxe_host,
    ifname: *const c_char,
    ops: *const rxe_netdev_ops,
    ctx: *mut c_void,
    mac: *const u8,
    mtu: u32,
) -> c_int {
    with_host(h, |h| {
        let name = arg(ifname, "ifname")?;
        if name.is_empty() || name.len() > 15 || name.contains(['/', ' ']) {
            return Err((RXE_ERR_INVAL, format!("bad interface name {name:?}")));
        }
        // SAFETY: the caller's contract above.
        let ops = *unsafe { ops.as_ref() }.ok_or((RXE_ERR_INVAL, "ops is NULL".into()))?;
        if ops.transmit.is_none() || ops.resolve.is_none() {
            return Err((
                RXE_ERR_INVAL,
                "ops.transmit and ops.resolve are required".into(),
            ));
        }
        if mac.is_null() {
            return Err((RXE_ERR_INVAL, "mac is NULL".into()));
        }
        let mut m = [0u8; 6];
        // SAFETY: the caller's contract above: 6 readable bytes.
        m.copy_from_slice(unsafe { core::slice::from_raw_parts(mac, 6) });
        if h.netdevs.iter().any(|(n, _)| n == name) {
            return Err((RXE_ERR_EXIST, format!("netdev {name:?} is registered")));
        }
        let state = NetdevState {
            ops,
            ctx,
            mac: MacAddr(m),
            mtu,
            addrs: Vec::new(),
            link_up: true,
            in_callback: false,
            last_error: CString::default(),
        };
        h.netdevs.push((
            name.to_string(),
            CNetDev {
                state: Rc::new(RefCell::new(state)),
            },
        ));
        Ok(RXE_OK)
    })
}

/// Unregisters a netdev; refused (`RXE_ERR_BUSY`) while a link is on it.
///
/// # Safety
/// `h` is a live host; `ifname` a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn rxe_netdev_unregister(h: *mut rxe_host, ifname: *const c_char) -> c_int {
    with_host(h, |h| {
        let name = arg(ifname, "ifname")?;
        h.netdev(name)?;
        if h.links.on_netdev(name).is_some() {
            return Err((RXE_ERR_BUSY, format!("a link is on {name:?}")));
        }
        h.netdevs.retain(|(n, _)| n != name);
        Ok(RXE_OK)
    })
}

fn update(
    h: *mut rxe_host,
    ifname: *const c_char,
    f: impl FnOnce(&mut NetdevState) -> Result<(), (c_int, String)>,
) -> c_int {
    with_host(h, |h| {
        let name = arg(ifname, "ifname")?;
        let d = h.netdev(name)?;
        f(&mut d.state.borrow_mut())?;
        Ok(RXE_OK)
    })
}

/// [`update`] with the address `addr` parsed first (a bad one is refused before the netdev is
/// looked up, and its detail recorded).
fn update_addr(
    h: *mut rxe_host,
    ifname: *const c_char,
    addr: *const c_char,
    f: impl FnOnce(&mut NetdevState, IpAddr) -> Result<(), (c_int, String)>,
) -> c_int {
    with_host(h, |h| {
        let ip = parse_ip(addr)?;
        let name = arg(ifname, "ifname")?;
        let d = h.netdev(name)?;
        f(&mut d.state.borrow_mut(), ip)?;
        Ok(RXE_OK)
    })
}

fn parse_ip(addr: *const c_char) -> Result<IpAddr, (c_int, String)> {
    let s = arg(addr, "address")?;
    s.parse().map_err(|_| {
        (
            RXE_ERR_INVAL,
            format!("{s:?} is not an IPv4 or IPv6 address"),
        )
    })
}

/// Adds an IP address (`"10.0.0.1"`, `"fe80::1"`) to a netdev: a GID of its link from now on.
/// A link's device sends from the first address the netdev had when the link was added.
///
/// # Safety
/// `h` is a live host; `ifname` and `addr` NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn rxe_netdev_add_addr(
    h: *mut rxe_host,
    ifname: *const c_char,
    addr: *const c_char,
) -> c_int {
    update_addr(h, ifname, addr, |s, ip| {
        if s.addrs.contains(&ip) {
            return Err((RXE_ERR_EXIST, format!("{ip} is there already")));
        }
        s.addrs.push(ip);
        Ok(())
    })
}

/// Removes an IP address from a netdev.
///
/// # Safety
/// `h` is a live host; `ifname` and `addr` NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn rxe_netdev_del_addr(
    h: *mut rxe_host,
    ifname: *const c_char,
    addr: *const c_char,
) -> c_int {
    update_addr(h, ifname, addr, |s, ip| {
        let before = s.addrs.len();
        s.addrs.retain(|a| *a != ip);
        if s.addrs.len() == before {
            return Err((RXE_ERR_NOENT, format!("{ip} is not there")));
        }
        Ok(())
    })
}

/// Reports a netdev's new MTU: the port's active MTU follows (QPs keep their path MTU).
///
/// # Safety
/// `h` is a live host; `ifname` a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn rxe_netdev_set_mtu(
    h: *mut rxe_host,
    ifname: *const c_char,
    mtu: u32,
) -> c_int {
    update(h, ifname, |s| {
        s.mtu = mtu;
        Ok(())
    })
}

/// Reports a netdev's link going up (`up` ≠ 0) or down: the port's state follows.
///
/// # Safety
/// `h` is a live host; `ifname` a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn rxe_netdev_set_link(
    h: *mut rxe_host,
    ifname: *const c_char,
    up: c_int,
) -> c_int {
    update(h, ifname, |s| {
        s.link_up = up != 0;
        Ok(())
    })
}

/// Runs an `rdma link` command: `"rdma link add rxe0 type rxe netdev eth0"` or
/// `"rdma link delete rxe0"` (the leading `rdma` may be left out). The netdev must be
/// registered and have an address. Deleting a link frees its device.
///
/// # Safety
/// `h` is a live host; `cmd` a NUL-terminated string. After a delete, the link's `rxe_device`
/// pointer is dangling.
#[no_mangle]
pub unsafe extern "C" fn rxe_link_command(h: *mut rxe_host, cmd: *const c_char) -> c_int {
    with_host(h, |h| {
        let cmd = arg(cmd, "cmd")?;
        let netdevs = &h.netdevs;
        let name = h
            .links
            .command(cmd, |ifname| {
                netdevs
                    .iter()
                    .find(|(n, _)| n == ifname)
                    .map(|(_, d)| d.clone())
            })
            .map_err(|e| (link_code(&e), format!("{cmd:?}: {e}")))?;
        if let Some(ifname) = h
            .links
            .list()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, i)| i)
        {
            h.apply_control(&ifname);
        }
        Ok(RXE_OK)
    })
}

/// Writes a module parameter, as `echo VALUE > /sys/module/rdma_rxe/parameters/PARAM` did for
/// the original Soft-RoCE port:
/// - `add`: an interface name (`"eth0"`): a link `rxe<N>` on it, N the first free number;
/// - `remove`: a link name (`"rxe0"`);
/// - `control_method`: `"<interface> none|watermark|bandwidth"`;
/// - `control_value`: `"<interface> <frames or bits per second>"`.
///
/// A string that does not parse is refused and the old setting stays.
///
/// # Safety
/// `h` is a live host; `param` and `value` NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn rxe_param_set(
    h: *mut rxe_host,
    param: *const c_char,
    value: *const c_char,
) -> c_int {
    with_host(h, |h| {
        let param = arg(param, "param")?;
        let value = arg(value, "value")?;
        let ifname = || value.split_ascii_whitespace().next().unwrap_or("");
        match param {
            "add" => {
                let ifname = value.trim();
                let dev = h.netdev(ifname)?.clone();
                h.links
                    .param_add(ifname, dev)
                    .map_err(|e| (link_code(&e), format!("add {value:?}: {e}")))?;
                h.apply_control(ifname);
            }
            "remove" => {
                h.links
                    .param_remove(value)
                    .map_err(|e| (link_code(&e), format!("remove {value:?}: {e}")))?;
            }
            "control_method" => {
                h.controls
                    .set_method(value)
                    .map_err(|e| (param_code(&e), format!("control_method {value:?}: {e}")))?;
                h.apply_control(ifname());
            }
            "control_value" => {
                h.controls
                    .set_value(value)
                    .map_err(|e| (param_code(&e), format!("control_value {value:?}: {e}")))?;
                h.apply_control(ifname());
            }
            other => {
                return Err((
                    RXE_ERR_NOENT,
                    format!("no parameter {other:?} (add, remove, control_method, control_value)"),
                ))
            }
        }
        Ok(RXE_OK)
    })
}

/// Reads an interface's transmission control: `*method` gets an `RXE_CONTROL_*`, `*value` the
/// frames or bits per second (0: not set).
///
/// # Safety
/// `h` is a live host; `ifname` a NUL-terminated string; `method` and `value` writable.
#[no_mangle]
pub unsafe extern "C" fn rxe_control_get(
    h: *mut rxe_host,
    ifname: *const c_char,
    method: *mut c_int,
    value: *mut u64,
) -> c_int {
    with_host(h, |h| {
        let name = arg(ifname, "ifname")?;
        let c = h.controls.get(name);
        // SAFETY: the caller's contract above.
        let (m, v) = unsafe { (method.as_mut(), value.as_mut()) };
        let (Some(m), Some(v)) = (m, v) else {
            return Err((RXE_ERR_INVAL, "method or value is NULL".into()));
        };
        *m = match c.method {
            ControlMethod::None => RXE_CONTROL_NONE,
            ControlMethod::Watermark => RXE_CONTROL_WATERMARK,
            ControlMethod::Bandwidth => RXE_CONTROL_BANDWIDTH,
        };
        *v = c.value;
        Ok(RXE_OK)
    })
}

/// The device of link `name` (`"rxe0"`), or NULL if there is none. The pointer stays valid until
/// the link is deleted or the host freed.
///
/// # Safety
/// `h` is a live host; `name` a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn rxe_device_get(h: *mut rxe_host, name: *const c_char) -> *mut rxe_device {
    let Ok(h) = host(h) else {
        return core::ptr::null_mut();
    };
    let Some(name) = c_str(name) else {
        return core::ptr::null_mut();
    };
    match h.links.get(name) {
        Some(p) => (p as *mut Port<CNetDev>).cast(),
        None => core::ptr::null_mut(),
    }
}

/// Writes the names of the host's links, NUL-separated, into `buf` (`len` bytes); returns how
/// many links there are, or `RXE_ERR_INVAL` if they do not fit.
///
/// # Safety
/// `h` is a live host; `buf` writable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn rxe_link_list(h: *mut rxe_host, buf: *mut c_char, len: usize) -> c_int {
    with_host(h, |h| {
        let list = h.links.list();
        let mut bytes = Vec::new();
        for (name, _) in &list {
            bytes.extend_from_slice(name.as_bytes());
            bytes.push(0);
        }
        if buf.is_null() || bytes.len() > len {
            return Err((RXE_ERR_INVAL, format!("{} bytes needed", bytes.len())));
        }
        // SAFETY: the caller's contract above; `bytes.len() <= len`.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast(), bytes.len()) };
        Ok(list.len() as c_int)
    })
}
