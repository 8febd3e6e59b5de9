//! Registering caller memory (`ibv_reg_mr` on the application's own buffer), for FFI and for
//! applications that want the data in place: the device reads and writes the caller's bytes
//! directly, with no copy in or out.

use std::ptr::NonNull;

use rxe_transport::device::{DeviceError, MrKeys, RegionMemory};
use rxe_transport::{Access, Pd};

use crate::UdpDevice;

/// `len` bytes at `ptr`, lent to the device.
struct CallerRegion {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the caller of `reg_user_mr` promised the bytes stay valid and are only touched by the
// device while registered, whichever thread drives the device.
#[allow(unsafe_code)]
unsafe impl Send for CallerRegion {}

#[allow(unsafe_code)]
impl RegionMemory for CallerRegion {
    fn bytes(&self) -> &[u8] {
        // SAFETY: valid for `len` bytes and not written by anyone else while registered
        // (`reg_user_mr`'s contract).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes this the only view the device holds.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl UdpDevice {
    /// Registers the caller's `len` bytes at `ptr` as a memory region whose address (iova) is
    /// `ptr` itself, as verbs does: peers and work requests name its bytes by their virtual
    /// addresses. Returns the keys; [`Device::dereg_mr`](rxe_transport::device::Device::dereg_mr)
    /// with the lkey ends the registration.
    ///
    /// # Safety
    ///
    /// Until the region is deregistered or the device dropped, `ptr..ptr + len` must stay
    /// allocated, and nobody but the device may read or write it while the device might
    /// (between posting a work request that names it, or letting a peer at it through its
    /// rkey, and that work request's completion) — the same rule as for RDMA hardware. The
    /// memory need not be initialised only if nothing reads it before it is written.
    #[allow(unsafe_code)]
    pub unsafe fn reg_user_mr(
        &mut self,
        pd: Pd,
        ptr: *mut u8,
        len: usize,
        access: Access,
    ) -> Result<MrKeys, DeviceError> {
        let ptr = NonNull::new(ptr).ok_or(DeviceError::InvalidLength)?;
        let addr = ptr.as_ptr() as u64;
        self.core()
            .reg_mr_with(pd, addr, Box::new(CallerRegion { ptr, len }), access)
    }
}
