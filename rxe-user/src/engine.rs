//! Background progress: an engine thread runs a [`UdpDevice`] (receives, timers, sends) so the
//! application only posts work and waits for completions, blocking with a timeout.
//!
//! The other mode, busy polling, is the [`UdpDevice`] itself: the caller's thread calls
//! [`UdpDevice::progress`] and gets the lowest latency. With an engine, the thread sleeps in
//! `poll(2)` on the socket (until a datagram arrives or the next protocol timer, at most 1 ms)
//! when there is nothing to do, and whatever the application posts is sent at once from the
//! application's thread.
//!
//! Completion channel: [`Engine::req_notify_cq`] arms a CQ as `ibv_req_notify_cq` does, and its
//! notification arrives on [`Engine::completion_fd`] (an eventfd, readable while notifications
//! wait: give it to epoll or an async runtime) and is taken with [`Engine::get_cq_event`].
//!
//! ```no_run
//! use std::time::Duration;
//! use rxe_user::{Engine, UdpDevice, UdpDeviceConfig};
//!
//! let dev = UdpDevice::open(UdpDeviceConfig::new("127.0.0.1:4791".parse().unwrap())).unwrap();
//! let engine = Engine::start(dev).unwrap();
//! let cq = engine.with(|d| d.core().create_cq(64).expect("cq")).unwrap();
//! // ... create and connect a QP, post work with engine.with(...), then:
//! let wc = engine.wait_cq(cq, Duration::from_secs(1)).unwrap();
//! # let _ = wc;
//! ```

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rxe_transport::device::{CqId, DeviceEvent};
use rxe_transport::WorkCompletion;

use crate::UdpDevice;

struct Shared {
    /// The device; `None` once [`Engine::stop`] took it back.
    dev: Mutex<Option<UdpDevice>>,
    /// Signalled whenever the device did something (a completion or event may be ready).
    cv: Condvar,
    stop: AtomicBool,
    /// CQ notifications taken from the device, not yet handed out; `chan` counts them.
    cq_events: Mutex<VecDeque<CqId>>,
    /// The completion channel: an eventfd (semaphore mode) holding one count per notification.
    chan: OwnedFd,
}

impl Shared {
    /// Moves the device's fired CQ notifications to the channel.
    fn collect_cq_events(&self, d: &mut UdpDevice) {
        while let Some(cq) = d.core().poll_cq_event() {
            self.cq_events
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_back(cq);
            eventfd_add(&self.chan);
        }
    }
}

/// A device run by its own thread.
pub struct Engine {
    shared: Arc<Shared>,
    fd: i32,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("fd", &self.fd).finish()
    }
}

/// Longest sleep of the engine thread (so a stop is noticed).
const MAX_SLEEP: Duration = Duration::from_millis(1);

impl Engine {
    /// Starts the engine thread for `dev`.
    pub fn start(dev: UdpDevice) -> io::Result<Engine> {
        let fd = dev.socket().as_raw_fd();
        let shared = Arc::new(Shared {
            dev: Mutex::new(Some(dev)),
            cv: Condvar::new(),
            stop: AtomicBool::new(false),
            cq_events: Mutex::new(VecDeque::new()),
            chan: eventfd()?,
        });
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("rxe-engine".into())
            .spawn(move || run(&s, fd))?;
        Ok(Engine {
            shared,
            fd,
            thread: Some(thread),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Option<UdpDevice>> {
        // A panic while the device was borrowed leaves it as it was; keep going.
        self.shared.dev.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the device (create objects, post work), then sends at once what it queued.
    pub fn with<R>(&self, f: impl FnOnce(&mut UdpDevice) -> R) -> io::Result<R> {
        let mut g = self.lock();
        let d = g.as_mut().ok_or_else(stopped)?;
        let r = f(d);
        let any = d.progress()?;
        self.shared.collect_cq_events(d);
        if any {
            self.shared.cv.notify_all();
        }
        Ok(r)
    }

    /// Arms `cq` (`ibv_req_notify_cq`): its next completion (with `solicited_only`, its next
    /// solicited receive or error completion) puts one notification on the completion channel.
    pub fn req_notify_cq(&self, cq: CqId, solicited_only: bool) -> io::Result<()> {
        self.with(|d| d.core().req_notify_cq(cq, solicited_only))?
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
    }

    /// The completion channel's file descriptor: readable while notifications wait.
    pub fn completion_fd(&self) -> BorrowedFd<'_> {
        self.shared.chan.as_fd()
    }

    /// The next CQ notification (`ibv_get_cq_event`), waiting up to `timeout`; `None` when none
    /// came. Re-arm with [`req_notify_cq`](Engine::req_notify_cq) for the next one.
    pub fn get_cq_event(&self, timeout: Duration) -> io::Result<Option<CqId>> {
        self.wait(timeout, |_| {
            let cq = self
                .shared
                .cq_events
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop_front()?;
            eventfd_take(&self.shared.chan);
            Some(cq)
        })
    }

    /// Looks at the device without running it (counters, memory).
    pub fn inspect<R>(&self, f: impl FnOnce(&UdpDevice) -> R) -> io::Result<R> {
        let g = self.lock();
        Ok(f(g.as_ref().ok_or_else(stopped)?))
    }

    /// The next completion on `cq`, waiting up to `timeout`; `None` when none came.
    pub fn wait_cq(&self, cq: CqId, timeout: Duration) -> io::Result<Option<WorkCompletion>> {
        self.wait(timeout, |d| d.core().poll_cq(cq))
    }

    /// The next device event (connection manager, QP errors), waiting up to `timeout`.
    pub fn wait_event(&self, timeout: Duration) -> io::Result<Option<DeviceEvent>> {
        self.wait(timeout, |d| d.core().poll_event())
    }

    fn wait<T>(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&mut UdpDevice) -> Option<T>,
    ) -> io::Result<Option<T>> {
        let end = Instant::now() + timeout;
        let mut g = self.lock();
        loop {
            if let Some(v) = f(g.as_mut().ok_or_else(stopped)?) {
                return Ok(Some(v));
            }
            let now = Instant::now();
            if now >= end {
                return Ok(None);
            }
            if self.thread.as_ref().is_none_or(|t| t.is_finished()) {
                return Err(io::Error::other("the engine thread has stopped"));
            }
            g = self
                .shared
                .cv
                .wait_timeout(g, (end - now).min(MAX_SLEEP * 10))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Stops the thread; returns the device, or the error that stopped the thread.
    pub fn stop(mut self) -> io::Result<UdpDevice> {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            match t.join() {
                Ok(r) => r?,
                Err(_) => return Err(io::Error::other("the engine thread panicked")),
            }
        }
        self.lock().take().ok_or_else(stopped)
    }
}

fn stopped() -> io::Error {
    io::Error::other("the engine has stopped")
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(s: &Shared, fd: i32) -> io::Result<()> {
    while !s.stop.load(Ordering::Acquire) {
        let (any, sleep) = {
            let mut g = s.dev.lock().unwrap_or_else(|p| p.into_inner());
            let Some(d) = g.as_mut() else {
                return Ok(());
            };
            let any = d.progress()?;
            s.collect_cq_events(d);
            let now = d.now();
            let sleep = d
                .core()
                .poll_timeout()
                .map_or(MAX_SLEEP, |t| {
                    Duration::from_nanos(t.as_nanos().saturating_sub(now.as_nanos()))
                })
                .min(MAX_SLEEP);
            (any, sleep)
        };
        if any {
            s.cv.notify_all();
            continue;
        }
        wait_readable(fd, sleep);
    }
    Ok(())
}

/// A non-blocking semaphore-mode eventfd.
#[allow(unsafe_code)]
fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; a non-negative result is a new descriptor we own.
    let fd = unsafe {
        libc::eventfd(
            0,
            libc::EFD_NONBLOCK | libc::EFD_CLOEXEC | libc::EFD_SEMAPHORE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds one to the eventfd's count.
#[allow(unsafe_code)]
fn eventfd_add(fd: &OwnedFd) {
    let one = 1u64.to_ne_bytes();
    // SAFETY: writes 8 bytes from a live buffer to a descriptor we own.
    unsafe {
        libc::write(fd.as_raw_fd(), one.as_ptr().cast(), one.len());
    }
}

/// Takes one from the eventfd's count (semaphore mode; never blocks).
#[allow(unsafe_code)]
fn eventfd_take(fd: &OwnedFd) {
    let mut b = [0u8; 8];
    // SAFETY: reads at most 8 bytes into a live buffer from a descriptor we own.
    unsafe {
        libc::read(fd.as_raw_fd(), b.as_mut_ptr().cast(), b.len());
    }
}

/// Sleeps until `fd` is readable or `timeout` passes.
#[allow(unsafe_code)]
fn wait_readable(fd: i32, timeout: Duration) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(1000) as libc::c_int;
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe {
        libc::poll(&mut p, 1, ms);
    }
}
