//! The kernel's KCOV interface (`/sys/kernel/debug/kcov`, Documentation/dev-tools/kcov.rst):
//! a trace buffer shared with the kernel, filled with the PCs of the code the enabling thread
//! runs in the kernel.
//!
//! `KCOV_INIT_TRACE` sizes the buffer (in 64-bit words), `mmap` shares it, `KCOV_ENABLE` starts
//! tracing the calling thread and `KCOV_DISABLE` stops it; word 0 counts the entries that follow.
//! PCs are canonical: the kernel subtracts the KASLR offset (`canonicalize_ip()` in
//! kernel/kcov.c), so they are link-time addresses of vmlinux.
//!
//! A buffer is tied to one thread at a time. The live fuzzer enables it in the check process
//! (a forked child shares the mapping with its parent, which reads the buffer after the child
//! has ended) and disables it when the walk is over (or the kernel does, when the child exits).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::errno::Errno;

/// Where the kernel exposes KCOV.
pub const KCOV_PATH: &str = "/sys/kernel/debug/kcov";

/// `_IOR('c', 1, unsigned long)`.
const KCOV_INIT_TRACE: libc::c_ulong = 0x8008_6301;
/// `_IO('c', 100)`.
const KCOV_ENABLE: libc::c_ulong = 0x6364;
/// `_IO('c', 101)`.
const KCOV_DISABLE: libc::c_ulong = 0x6365;

/// `KCOV_TRACE_PC`, the mode of `KCOV_ENABLE`: one word per basic block entered. (The other
/// mode, `KCOV_TRACE_CMP`, records comparison operands; the fuzzer does not use it: see
/// docs/fuzzing.md, "Comparisons".)
const KCOV_TRACE_PC: libc::c_ulong = 0;

/// 64-bit words in a 4 KiB page.
const PAGE_WORDS: usize = 4096 / 8;

/// What can go wrong with KCOV.
#[derive(Debug, thiserror::Error)]
pub enum KcovError {
    #[error(
        "{KCOV_PATH} is not there: the kernel has no CONFIG_KCOV, or debugfs is not mounted \
         (mount -t debugfs none /sys/kernel/debug)"
    )]
    Missing,
    #[error("cannot open {KCOV_PATH}: {0}")]
    Open(Errno),
    #[error("KCOV_INIT_TRACE({words} words) failed: {errno}")]
    Init { words: usize, errno: Errno },
    #[error("mmap of the KCOV buffer ({bytes} bytes) failed: {errno}")]
    Mmap { bytes: usize, errno: Errno },
}

/// One KCOV instance: the open file and its shared trace buffer.
#[derive(Debug)]
pub struct Kcov {
    fd: OwnedFd,
    area: NonNull<AtomicU64>,
    words: usize,
}

// SAFETY: the mapping is owned by this value and only accessed through atomics; moving it to
// another thread moves that ownership.
unsafe impl Send for Kcov {}

/// A copyable handle to a [`Kcov`] for the per-step hook: the descriptor and the buffer, valid
/// while the `Kcov` lives (the hook's owner keeps it alive, see `fuzz::coverage`).
#[derive(Clone, Copy, Debug)]
pub struct KcovRef {
    pub fd: RawFd,
    area: usize,
    pub words: usize,
}

impl Kcov {
    /// Opens KCOV with a buffer of `words` 64-bit entries, rounded up to whole pages (the
    /// kernel maps exactly the buffer, and a mapping is whole pages).
    pub fn open(words: usize) -> Result<Kcov, KcovError> {
        let words = words.max(2).div_ceil(PAGE_WORDS) * PAGE_WORDS;
        let path = std::ffi::CString::new(KCOV_PATH).expect("no NUL in the path");
        // SAFETY: `path` is a valid NUL-terminated string for the duration of the call.
        let raw = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if raw < 0 {
            let e = Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
            return Err(if e == Errno::ENOENT { KcovError::Missing } else { KcovError::Open(e) });
        }
        // SAFETY: `raw` was just returned by open() and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: KCOV_INIT_TRACE takes the buffer size by value; the descriptor is a KCOV file.
        if unsafe { libc::ioctl(fd.as_raw_fd(), KCOV_INIT_TRACE, words as libc::c_ulong) } != 0 {
            let errno = Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
            return Err(KcovError::Init { words, errno });
        }
        let bytes = words * 8;
        // SAFETY: a fresh shared mapping of the KCOV file, as large as the buffer just sized;
        // the kernel requires exactly this size, offset 0, read/write, shared.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            let errno = Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
            return Err(KcovError::Mmap { bytes, errno });
        }
        let area =
            NonNull::new(p.cast::<AtomicU64>()).ok_or(KcovError::Mmap { bytes, errno: Errno::ENOMEM })?;
        Ok(Kcov { fd, area, words })
    }

    /// A handle for code that runs in the check process.
    pub fn handle(&self) -> KcovRef {
        KcovRef { fd: self.fd.as_raw_fd(), area: self.area.as_ptr() as usize, words: self.words }
    }

    /// Buffer size in words (entry 0 is the count).
    pub fn words(&self) -> usize {
        self.words
    }
}

impl Drop for Kcov {
    fn drop(&mut self) {
        // SAFETY: the mapping was created in `open` with this address and size and is not
        // used after this (handles must not outlive the Kcov, see KcovRef).
        unsafe {
            libc::munmap(self.area.as_ptr().cast(), self.words * 8);
        }
    }
}

impl KcovRef {
    fn word(&self, i: usize) -> &AtomicU64 {
        assert!(i < self.words, "KCOV buffer index {i} out of {}", self.words);
        // SAFETY: `area` is a live mapping of `words` u64s (the Kcov outlives every handle),
        // aligned to a page; `i` is in bounds; the kernel writes it concurrently, hence atomics.
        unsafe { &*(self.area as *const AtomicU64).add(i) }
    }

    /// Starts tracing the PCs of the calling thread.
    pub fn enable(&self) -> Result<(), Errno> {
        // SAFETY: KCOV_ENABLE takes the mode by value on a KCOV descriptor.
        if unsafe { libc::ioctl(self.fd, KCOV_ENABLE, KCOV_TRACE_PC) } != 0 {
            return Err(Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)));
        }
        Ok(())
    }

    /// Stops tracing (EINVAL when this thread did not enable it).
    pub fn disable(&self) -> Result<(), Errno> {
        // SAFETY: KCOV_DISABLE takes 0 on a KCOV descriptor.
        if unsafe { libc::ioctl(self.fd, KCOV_DISABLE, 0 as libc::c_ulong) } != 0 {
            return Err(Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)));
        }
        Ok(())
    }

    /// Empties the buffer.
    pub fn reset(&self) {
        self.word(0).store(0, Ordering::Relaxed);
    }

    /// How many entries the buffer holds.
    pub fn len(&self) -> usize {
        (self.word(0).load(Ordering::Relaxed) as usize).min(self.words - 1)
    }

    /// Whether the buffer holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the buffer is full (the kernel drops what does not fit).
    pub fn full(&self) -> bool {
        self.len() + 1 >= self.words
    }

    /// Entries `[from, to)` (PC mode: PCs).
    pub fn entries(&self, from: usize, to: usize) -> Vec<u64> {
        let to = to.min(self.len());
        (from.min(to)..to).map(|i| self.word(i + 1).load(Ordering::Relaxed)).collect()
    }
}

/// Whether this kernel offers KCOV to this process.
pub fn available() -> Result<(), KcovError> {
    Kcov::open(PAGE_WORDS).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[ignore = "needs a kernel with CONFIG_KCOV and debugfs; run in the test VM (vm/run.sh --kernel 7.2)"]
    fn a_syscall_leaves_kernel_pcs_in_the_buffer() {
        let k = Kcov::open(1 << 16).expect("KCOV");
        let h = k.handle();
        h.enable().unwrap();
        h.reset();
        // SAFETY: getppid has no arguments and cannot fail.
        let _ = unsafe { libc::getppid() };
        let n = h.len();
        h.disable().unwrap();
        assert!(n > 0, "no PC recorded for getppid()");
        assert!(h.entries(0, n).iter().all(|pc| *pc >= 0xffff_ffff_8000_0000));
    }
}
