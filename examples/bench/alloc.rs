//! A counting global allocator: the live heap and its peak, so a memory figure can say how
//! much of the resident set is the program's own data and when it was at its largest.
//!
//! The resident set (VmHWM) also counts the allocator's free lists, thread stacks and the
//! binary; the live heap does not, which is what makes the two worth reading side by side.

use std::alloc::{GlobalAlloc, Layout};

use mimalloc::MiMalloc;

/// The allocator the `embatch` binary uses (src/main.rs), so that the figures are its own.
static INNER: MiMalloc = MiMalloc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes allocated and not yet freed.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// The most bytes live at once since the last [`take_peak`].
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// The binary's allocator, counted.
pub struct Counting;

// SAFETY: every method forwards to the binary's allocator unchanged; the counters only observe.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract, which is passed on as it is.
        let ptr = unsafe { INNER.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { INNER.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator with `layout`, which is the binary's allocator's.
        unsafe { INNER.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; that allocator made the block.
        let new = unsafe { INNER.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        new
    }
}

fn grew(bytes: usize) {
    let now = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

/// Bytes live now.
pub fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// The peak since the last call, and a new start for the next one at the current level.
pub fn take_peak() -> usize {
    PEAK.swap(live(), Ordering::Relaxed)
}
