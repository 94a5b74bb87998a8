//! Guarded argument buffers for ioctls whose size the driver decides.
//!
//! A [`Scratch`] is an anonymous mapping whose data ends exactly where a `PROT_NONE` guard
//! page begins. The kernel copies into it with `copy_to_user()`, so a driver that writes
//! past the size it was given gets `EFAULT` instead of corrupting this process's memory.
//! Untouched pages are never committed (`MAP_NORESERVE`), so a 4 GiB `argsz` costs only
//! address space.
//!
//! Almost every ioctl argument fits in one page: a dropped one-page scratch is kept (one per
//! thread) and handed out again, zeroed, by the next [`Scratch::zeroed`] of at most a page.
//! Its data still ends at the same guard page; only the mmap/mprotect/munmap per ioctl (and
//! the page fault on the fresh page) are saved.

use std::cell::Cell;
use std::ffi::c_void;
use std::num::NonZeroUsize;
use std::ptr::NonNull;

use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous, mprotect, munmap};

use crate::errno::Errno;

/// A zero-filled buffer of `len` bytes followed by an inaccessible guard page.
#[derive(Debug)]
pub(super) struct Scratch {
    base: NonNull<c_void>,
    map_len: usize,
    data_off: usize,
    len: usize,
}

// SAFETY: `Scratch` exclusively owns its private anonymous mapping; nothing else in the
// process holds a pointer into it, so moving it to another thread is sound.
unsafe impl Send for Scratch {}

pub(super) fn page_size() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|p| usize::try_from(p).ok())
            .filter(|p| p.is_power_of_two())
            .unwrap_or(4096)
    })
}

/// A dropped one-page scratch mapping (data page + guard page) kept for reuse.
#[derive(Debug)]
struct Spare {
    base: NonNull<c_void>,
    map_len: usize,
}

impl Drop for Spare {
    fn drop(&mut self) {
        // SAFETY: a spare is a mapping no `Scratch` refers to any more (its owner gave it up
        // when it was dropped); unmapping it invalidates no live reference.
        let _ = unsafe { munmap(self.base, self.map_len) };
    }
}

thread_local! {
    /// At most one spare one-page mapping per thread.
    static SPARE: Cell<Option<Spare>> = const { Cell::new(None) };
}

impl Scratch {
    /// The spare one-page mapping of this thread, if any, as a zeroed buffer of `len` bytes.
    fn reuse(len: usize, page: usize) -> Option<Scratch> {
        let spare = SPARE.try_with(Cell::take).ok().flatten()?;
        let (base, map_len) = (spare.base, spare.map_len);
        std::mem::forget(spare);
        let mut s = Scratch { base, map_len, data_off: page - len, len };
        s.as_mut_slice().fill(0);
        Some(s)
    }

    /// A zeroed buffer of `len` bytes (ENOMEM when the address space runs out).
    pub(super) fn zeroed(len: usize) -> Result<Scratch, Errno> {
        let page = page_size();
        if len <= page
            && let Some(s) = Scratch::reuse(len, page)
        {
            return Ok(s);
        }
        let data_pages = len.div_ceil(page).max(1);
        let map_len = data_pages.checked_add(1).and_then(|p| p.checked_mul(page)).ok_or(Errno::ENOMEM)?;
        let nz = NonZeroUsize::new(map_len).ok_or(Errno::ENOMEM)?;
        // SAFETY: a fresh private anonymous mapping at an address the kernel chooses; it
        // aliases no existing Rust object.
        let base = unsafe {
            mmap_anonymous(
                None,
                nz,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE | MapFlags::MAP_NORESERVE,
            )
        }
        .map_err(Errno::from)?;
        let data_end = data_pages * page;
        // SAFETY: `data_end` is within the `map_len`-byte mapping just created (one page
        // before its end), and the resulting pointer stays inside it.
        let guard = unsafe { NonNull::new_unchecked(base.as_ptr().cast::<u8>().add(data_end).cast()) };
        // SAFETY: the guard page is the last page of our own mapping; no reference into it
        // exists.
        if let Err(e) = unsafe { mprotect(guard, page, ProtFlags::PROT_NONE) } {
            // SAFETY: unmapping the mapping created above, to which nothing refers yet.
            let _ = unsafe { munmap(base, map_len) };
            return Err(e.into());
        }
        Ok(Scratch { base, map_len, data_off: data_end - len, len })
    }

    /// A buffer holding a copy of `bytes`.
    pub(super) fn from_bytes(bytes: &[u8]) -> Result<Scratch, Errno> {
        let mut s = Scratch::zeroed(bytes.len())?;
        s.as_mut_slice().copy_from_slice(bytes);
        Ok(s)
    }

    /// The first data byte, for the kernel (valid for `len()` bytes, then the guard page).
    pub(super) fn as_mut_ptr(&mut self) -> *mut u8 {
        // SAFETY: `data_off <= map_len - page`, inside the mapping.
        unsafe { self.base.as_ptr().cast::<u8>().add(self.data_off) }
    }

    pub(super) fn as_slice(&self) -> &[u8] {
        // SAFETY: `len` readable, initialised (anonymous memory is zero-filled, a reused page is
        // zeroed again) bytes start at
        // `data_off`; `&self` keeps the mapping alive and unaliased mutably.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().cast::<u8>().add(self.data_off), self.len) }
    }

    pub(super) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` makes this the only reference.
        unsafe {
            std::slice::from_raw_parts_mut(self.base.as_ptr().cast::<u8>().add(self.data_off), self.len)
        }
    }

    pub(super) fn put_u32(&mut self, off: usize, v: u32) {
        if let Some(d) = self.as_mut_slice().get_mut(off..off + 4) {
            d.copy_from_slice(&v.to_ne_bytes());
        }
    }

    pub(super) fn put_u64(&mut self, off: usize, v: u64) {
        if let Some(d) = self.as_mut_slice().get_mut(off..off + 8) {
            d.copy_from_slice(&v.to_ne_bytes());
        }
    }

    pub(super) fn u32_at(&self, off: usize) -> Option<u32> {
        self.as_slice().get(off..off + 4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(super) fn u64_at(&self, off: usize) -> Option<u64> {
        let b = self.as_slice().get(off..off + 8)?;
        Some(u64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.map_len == 2 * page_size() {
            // A one-page mapping: keep it for the next small buffer if the slot is free. The
            // borrow checker guarantees no slice from `as_slice`/`as_mut_slice` outlives
            // `self`, so nothing refers into the mapping once it is the spare.
            let spare = Spare { base: self.base, map_len: self.map_len };
            // Not kept (the slot is taken, or this thread's slot is gone): `Spare::drop`
            // unmaps it.
            let _unkept = SPARE.try_with(|slot| match slot.take() {
                None => {
                    slot.set(Some(spare));
                    None
                }
                Some(other) => {
                    slot.set(Some(other));
                    Some(spare)
                }
            });
            return;
        }
        // SAFETY: unmapping our own mapping; the borrow checker guarantees no slice from
        // `as_slice`/`as_mut_slice` outlives `self`.
        let _ = unsafe { munmap(self.base, self.map_len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_ends_at_the_guard_page() {
        for len in [0usize, 1, 7, 24, 4095, 4096, 4097, 70_000] {
            let mut s = Scratch::zeroed(len).expect("mmap");
            assert_eq!(s.as_slice().len(), len);
            assert!(s.as_slice().iter().all(|&b| b == 0));
            let end = s.as_mut_ptr() as usize + len;
            assert_eq!(end % page_size(), 0, "len {len}");
            s.put_u32(0, 0xdead_beef);
            if len >= 4 {
                assert_eq!(s.u32_at(0), Some(0xdead_beef));
            }
            assert_eq!(s.u64_at(len), None);
        }
    }

    #[test]
    fn a_reused_page_is_zeroed_and_still_guarded() {
        for len in [4096usize, 8, 24, 1] {
            let mut s = Scratch::zeroed(len).expect("mmap");
            assert!(s.as_slice().iter().all(|&b| b == 0), "len {len}");
            assert_eq!((s.as_mut_ptr() as usize + len) % page_size(), 0);
            s.as_mut_slice().fill(0xa5);
        }
        // Two at once: one comes from the spare, the other is fresh; both return.
        let (a, b) = (Scratch::zeroed(16).expect("mmap"), Scratch::zeroed(16).expect("mmap"));
        assert_ne!(a.base, b.base);
        assert!(a.as_slice().iter().chain(b.as_slice()).all(|&x| x == 0));
    }

    #[test]
    fn the_kernel_cannot_write_past_the_end() {
        // read(2) into the last 4 bytes with a count of 8 crosses into the guard page: the
        // kernel reports EFAULT instead of writing past the buffer.
        let mut s = Scratch::zeroed(4).expect("mmap");
        let f = std::fs::File::open("/dev/zero").expect("/dev/zero");
        use std::os::fd::AsRawFd;
        // SAFETY: the pointer is valid for 4 bytes followed by our own PROT_NONE page; the
        // kernel faults on the guard page rather than writing elsewhere.
        let r = unsafe { libc::read(f.as_raw_fd(), s.as_mut_ptr().cast(), 8) };
        assert!(r == 4 || (r == -1 && Errno::last() == Errno::EFAULT), "read returned {r}");
    }

    #[test]
    fn huge_buffers_cost_only_address_space() {
        let s = Scratch::zeroed(u32::MAX as usize).expect("4 GiB of address space");
        assert_eq!(s.as_slice()[s.as_slice().len() - 1], 0);
    }
}
