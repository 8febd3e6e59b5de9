//! Memory regions over the caller's memory: the device reads and writes the C program's bytes
//! in place.

use core::ptr::NonNull;

use rxe_transport::device::RegionMemory;

/// `len` bytes at `ptr`, lent to a device by `rxe_reg_mr`.
pub(crate) struct CallerRegion {
    ptr: NonNull<u8>,
    len: usize,
}

impl CallerRegion {
    /// The region, or `None` for a NULL pointer or no bytes.
    ///
    /// # Safety
    /// `ptr..ptr + len` stays allocated while the region is registered, and only the device
    /// touches it while the device may (`rxe_reg_mr`'s contract).
    pub(crate) unsafe fn new(ptr: *mut u8, len: usize) -> Option<CallerRegion> {
        if len == 0 || len > isize::MAX as usize {
            return None;
        }
        Some(CallerRegion {
            ptr: NonNull::new(ptr)?,
            len,
        })
    }
}

// SAFETY: the memory belongs to the registration, whichever thread drives the host (the host
// is used by one thread at a time).
unsafe impl Send for CallerRegion {}

impl RegionMemory for CallerRegion {
    fn bytes(&self) -> &[u8] {
        // SAFETY: valid for `len` bytes while registered (`new`'s contract).
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above; `&mut self` makes this the device's only view.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}
