//! Plain syscalls on fds the backend owns (data fds, the device fd): read/write at an
//! offset or not, poll, fcntl. Each returns the raw errno.

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::fcntl::{FcntlArg, fcntl};

use crate::device::FdFlags;
use crate::errno::Errno;

/// The kernel sees the offset exactly as a C caller's `(off_t)offset` would give it.
fn off(offset: u64) -> libc::off_t {
    offset as libc::off_t
}

pub(super) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
    nix::unistd::read(fd, buf).map_err(Errno::from)
}

pub(super) fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> Result<usize, Errno> {
    nix::unistd::write(fd, buf).map_err(Errno::from)
}

pub(super) fn pread(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> Result<usize, Errno> {
    nix::sys::uio::pread(fd, buf, off(offset)).map_err(Errno::from)
}

pub(super) fn pwrite(fd: BorrowedFd<'_>, buf: &[u8], offset: u64) -> Result<usize, Errno> {
    nix::sys::uio::pwrite(fd, buf, off(offset)).map_err(Errno::from)
}

/// `poll()` for POLLIN|POLLOUT; the raw `revents` (0 on timeout).
pub(super) fn poll(fd: BorrowedFd<'_>, timeout_ms: i32) -> Result<i16, Errno> {
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN | libc::POLLOUT, revents: 0 };
    // SAFETY: one `pollfd` on the stack, `nfds` = 1; `fd` is borrowed from its owner for
    // the duration of the call.
    let r = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    if r < 0 { Err(Errno::last()) } else { Ok(pfd.revents) }
}

/// `FD_CLOEXEC` (F_GETFD) and the access mode (F_GETFL & O_ACCMODE).
pub(super) fn flags(fd: BorrowedFd<'_>) -> Result<FdFlags, Errno> {
    let fd_flags = fcntl(fd, FcntlArg::F_GETFD).map_err(Errno::from)?;
    let fl = fcntl(fd, FcntlArg::F_GETFL).map_err(Errno::from)?;
    Ok(FdFlags { cloexec: fd_flags & libc::FD_CLOEXEC != 0, access_mode: (fl & libc::O_ACCMODE) as u32 })
}

/// `call` on `fd` with a `len`-byte buffer of which only the first `valid` bytes are mapped:
/// the buffer ends `valid` bytes into an anonymous mapping followed by an inaccessible page.
pub(super) fn bad_buffer(
    fd: BorrowedFd<'_>,
    call: crate::op::BadCall,
    len: usize,
    valid: usize,
) -> Result<usize, Errno> {
    const PAGE: usize = 4096;
    let valid = valid.min(len);
    let mapped = valid.div_ceil(PAGE) * PAGE;
    let total = mapped + PAGE;
    let last = || Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO));
    // SAFETY: a fresh private anonymous mapping, owned here and unmapped before returning.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            total,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(last());
    }
    let base = p.cast::<u8>();
    // SAFETY: `base + mapped` is the page-aligned last page of the mapping just created.
    let guarded = unsafe { libc::mprotect(base.add(mapped).cast(), PAGE, libc::PROT_NONE) };
    let r = if guarded != 0 {
        Err(last())
    } else {
        // SAFETY: `buf` points `valid` bytes before the guard page, inside the mapping; the
        // kernel checks every access to the buffer and fails with EFAULT past the mapped part
        // (which is what this call is for); nothing in this process touches the guard page.
        let buf = unsafe { base.add(mapped - valid) };
        let n = match call {
            // SAFETY: as above; `len` bytes from `buf` are checked by the kernel.
            crate::op::BadCall::Read => unsafe { libc::read(fd.as_raw_fd(), buf.cast(), len) },
            // SAFETY: as above.
            crate::op::BadCall::Write => unsafe { libc::write(fd.as_raw_fd(), buf.cast(), len) },
            // SAFETY: the ioctl reads and writes its argument through copy_{from,to}_user.
            crate::op::BadCall::PrecopyInfo => unsafe {
                libc::ioctl(fd.as_raw_fd(), crate::device::VFIO_MIG_GET_PRECOPY_INFO as libc::c_ulong, buf)
                    as isize
            },
        };
        if n < 0 { Err(last()) } else { Ok(n as usize) }
    };
    // SAFETY: unmaps exactly the mapping created above; `buf` is not used after this.
    unsafe {
        libc::munmap(p, total);
    }
    r
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn pipes_behave_like_data_fds() {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
        assert_eq!(write(w.as_fd(), b"abc"), Ok(3));
        assert_eq!(poll(r.as_fd(), 0).map(|e| e & libc::POLLIN), Ok(libc::POLLIN));
        let mut buf = [0u8; 8];
        assert_eq!(read(r.as_fd(), &mut buf), Ok(3));
        assert_eq!(poll(r.as_fd(), 0), Ok(0));
        assert_eq!(pread(r.as_fd(), &mut buf, 0), Err(Errno::ESPIPE));
        assert_eq!(pwrite(w.as_fd(), b"x", 0), Err(Errno::ESPIPE));
        assert_eq!(flags(r.as_fd()), Ok(FdFlags { cloexec: true, access_mode: 0 }));
        assert_eq!(flags(w.as_fd()), Ok(FdFlags { cloexec: true, access_mode: 1 }));
    }
}
