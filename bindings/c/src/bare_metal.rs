//! What the Rust standard library would provide, for the build without it: memory from the C
//! side's `malloc` / `aligned_alloc` / `free`, and `abort` on a panic (which the library's own
//! code never raises on input from C; an allocation failure is the likely cause).

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;

extern "C" {
    fn malloc(size: usize) -> *mut c_void;
    fn aligned_alloc(align: usize, size: usize) -> *mut c_void;
    fn free(p: *mut c_void);
    fn abort() -> !;
}

/// The C heap.
struct CHeap;

// SAFETY: malloc/aligned_alloc return memory of at least the size asked, aligned as asked
// (malloc: to max_align_t, 16 on the targets we build for), or NULL; free takes what they
// returned.
unsafe impl GlobalAlloc for CHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl; aligned_alloc wants the size a multiple of the alignment.
        unsafe {
            if layout.align() <= 16 {
                malloc(layout.size()).cast()
            } else {
                let size = layout.size().next_multiple_of(layout.align());
                aligned_alloc(layout.align(), size).cast()
            }
        }
    }
    unsafe fn dealloc(&self, p: *mut u8, _layout: Layout) {
        // SAFETY: `p` came from alloc above.
        unsafe { free(p.cast()) }
    }
}

#[global_allocator]
static HEAP: CHeap = CHeap;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // SAFETY: abort has no preconditions.
    unsafe { abort() }
}

/// The prebuilt `core`/`alloc` of the toolchain are compiled for unwinding and name this
/// symbol; with `panic = "abort"` (required for this build) nothing ever unwinds, so it is
/// never called.
#[no_mangle]
extern "C" fn rust_eh_personality() {}
