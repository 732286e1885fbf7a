//! The node's global allocator: the system allocator, except that very large allocations reserve
//! address space lazily (`mmap` with `MAP_NORESERVE`) instead of committing memory up front.
//!
//! Why: decoders of wire formats pre-allocate from element counts read off the wire. The
//! kafka-protocol crate (0.18) calls `Vec::with_capacity(n)` with `n` up to `i32::MAX` before
//! reading a single element, so an 8-byte request can ask for hundreds of GiB. With the system
//! allocator that allocation fails and the process aborts. Here it succeeds as untouched virtual
//! memory; the decoder then runs out of input after a few elements, returns an error, and the
//! mapping is released. Real large buffers behave as usual: pages are committed when touched.
//!
//! Counts so large that `n * size` overflows `isize` never reach the allocator (`Vec` panics with
//! "capacity overflow"); the dispatcher catches that panic and closes the connection.
//!
//! With `vm.overcommit_memory = 2` the kernel ignores `MAP_NORESERVE` and such a request fails as
//! before; the default heuristic mode (0) and mode 1 are protected.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;

/// Allocations at least this large are mapped lazily.
const LAZY_THRESHOLD: usize = 256 * 1024 * 1024;
/// Mappings are page aligned; larger alignments go to the system allocator.
const PAGE: usize = 4096;

/// The system allocator with lazily committed large allocations.
#[derive(Debug, Default)]
pub struct LazyLargeAlloc;

fn is_lazy(layout: Layout) -> bool {
    layout.size() >= LAZY_THRESHOLD && layout.align() <= PAGE
}

fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping with no address hint touches no existing memory.
    let mapped = unsafe {
        libc::mmap(
            ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if mapped == libc::MAP_FAILED {
        ptr::null_mut()
    } else {
        mapped.cast()
    }
}

// SAFETY: every pointer handed out is either from `System` (and returned to it) or from a private
// anonymous mapping of at least `layout.size()` bytes, page aligned (>= any alignment accepted for
// it), zero-filled by the kernel, and unmapped with the same size on `dealloc`.
unsafe impl GlobalAlloc for LazyLargeAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_lazy(layout) {
            map(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_lazy(layout) {
            // Fresh anonymous mappings are already zeroed.
            map(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_lazy(layout) {
            // SAFETY: `ptr` came from `map(layout.size())` (same layout, as GlobalAlloc requires).
            unsafe {
                libc::munmap(ptr.cast(), layout.size());
            }
        } else {
            // SAFETY: `ptr` came from `System` with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: GlobalAlloc guarantees `new_size`, rounded up to the alignment, fits isize.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !is_lazy(layout) && !is_lazy(new_layout) {
            // SAFETY: both sides are system allocations; forwarded with the caller's guarantees.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: `new_layout` is valid (above); the copy stays within both allocations, which
        // cannot overlap since the new one is fresh; the old one is freed with its own layout.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_untouched_allocations_succeed_and_small_ones_work() {
        let alloc = LazyLargeAlloc;
        // 512 GiB: far beyond this machine's memory, yet only address space is reserved.
        let layout = Layout::from_size_align(512 << 30, 8).unwrap();
        unsafe {
            let p = alloc.alloc(layout);
            assert!(!p.is_null(), "lazy allocation failed");
            *p = 7; // one page committed
            assert_eq!(*p, 7);
            alloc.dealloc(p, layout);
        }
        let small = Layout::from_size_align(64, 8).unwrap();
        unsafe {
            let p = alloc.alloc_zeroed(small);
            assert_eq!(*p, 0);
            let grown = alloc.realloc(p, small, LAZY_THRESHOLD * 2);
            assert_eq!(*grown, 0);
            *grown.add(LAZY_THRESHOLD) = 1;
            let shrunk = alloc.realloc(
                grown,
                Layout::from_size_align(LAZY_THRESHOLD * 2, 8).unwrap(),
                32,
            );
            assert_eq!(*shrunk, 0);
            alloc.dealloc(shrunk, Layout::from_size_align(32, 8).unwrap());
        }
    }
}
