//! The seccomp filter installed in the VMM before it execs: the tracer is stopped only for
//! the system calls it decodes, not for the millions a VMM makes.
//!
//! `SECCOMP_RET_TRACE` (a `PTRACE_EVENT_SECCOMP` stop) for:
//! - `ioctl` whose request is a VFIO one (type `;`, numbers 100-127: `0x3b64..=0x3b7f`), on
//!   any fd: the request number is an argument, so BPF selects it exactly;
//! - the read/write family, `close`, `dup2`/`dup3` (which close their target) and, with
//!   `poll`, `poll`/`ppoll`: BPF cannot know which fds are data or device fds (they are
//!   created at run time and seccomp filters cannot be changed), so the tracer looks the fd up
//!   and lets uninteresting calls go at once (one stop, no exit stop);
//!
//! and `SECCOMP_RET_ALLOW` for everything else, and for every call of another architecture
//! (a 64-bit VMM makes none).

use libc::{sock_filter, sock_fprog};

/// `AUDIT_ARCH_X86_64` (include/uapi/linux/audit.h: EM_X86_64 | __AUDIT_ARCH_64BIT | LE).
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;

/// Offsets in `struct seccomp_data`.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
/// Low 32 bits of `args[1]` (little endian): the ioctl request.
const OFF_ARG1_LO: u32 = 16 + 8;

/// First and last VFIO ioctl request (`_IO(VFIO_TYPE, VFIO_BASE + n)`, n = 0..=27).
pub const VFIO_IOCTL_FIRST: u32 = 0x3b64;
pub const VFIO_IOCTL_LAST: u32 = 0x3b7f;

/// The system calls the read/write/close part of the filter traces (x86_64 numbers).
pub fn traced_calls(poll: bool) -> Vec<u32> {
    let mut v = vec![
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_pread64,
        libc::SYS_pwrite64,
        libc::SYS_readv,
        libc::SYS_writev,
        libc::SYS_preadv,
        libc::SYS_pwritev,
        libc::SYS_preadv2,
        libc::SYS_pwritev2,
        libc::SYS_close,
        libc::SYS_dup2,
        libc::SYS_dup3,
    ];
    if poll {
        v.extend([libc::SYS_poll, libc::SYS_ppoll]);
    }
    v.into_iter().map(|n| n as u32).collect()
}

fn stmt(code: u32, k: u32) -> sock_filter {
    sock_filter { code: code as u16, jt: 0, jf: 0, k }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code: code as u16, jt, jf, k }
}

/// The BPF program.
pub fn program(poll: bool) -> Vec<sock_filter> {
    use libc::{BPF_ABS, BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W};
    let ret_allow = stmt(BPF_RET | BPF_K, libc::SECCOMP_RET_ALLOW);
    let ret_trace = stmt(BPF_RET | BPF_K, libc::SECCOMP_RET_TRACE);
    let calls = traced_calls(poll);
    let mut p = vec![
        stmt(BPF_LD | BPF_W | BPF_ABS, OFF_ARCH),
        jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        ret_allow,
        stmt(BPF_LD | BPF_W | BPF_ABS, OFF_NR),
    ];
    // ioctl: jump to the request check at the end.
    let n = calls.len() as u8;
    // After this instruction: n compares, ALLOW, TRACE, then the ioctl block.
    p.push(jump(BPF_JMP | BPF_JEQ | BPF_K, libc::SYS_ioctl as u32, n + 2, 0));
    for (i, nr) in calls.iter().enumerate() {
        // Matching jumps over the remaining compares and the ALLOW to the TRACE.
        let to_trace = (n - 1 - i as u8) + 1;
        p.push(jump(BPF_JMP | BPF_JEQ | BPF_K, *nr, to_trace, 0));
    }
    p.push(ret_allow);
    p.push(ret_trace);
    // The ioctl block: VFIO_IOCTL_FIRST <= request <= VFIO_IOCTL_LAST traces.
    p.push(stmt(BPF_LD | BPF_W | BPF_ABS, OFF_ARG1_LO));
    p.push(jump(BPF_JMP | BPF_JGE | BPF_K, VFIO_IOCTL_FIRST, 0, 2));
    p.push(jump(BPF_JMP | BPF_JGT | BPF_K, VFIO_IOCTL_LAST, 1, 0));
    p.push(ret_trace);
    p.push(ret_allow);
    p
}

/// Installs `prog` in the calling thread with `PR_SET_NO_NEW_PRIVS`. Runs in the forked child
/// before exec: only async-signal-safe calls (prctl, seccomp), nothing allocates. Returns the
/// errno on failure.
pub fn install(prog: &[sock_filter]) -> Result<(), i32> {
    let fprog = sock_fprog { len: prog.len() as u16, filter: prog.as_ptr().cast_mut() };
    // SAFETY: prctl with PR_SET_NO_NEW_PRIVS takes integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(last_errno());
    }
    // SAFETY: `fprog` points at `prog`, a live slice of `len` sock_filter instructions, for the
    // duration of the call; the kernel copies the program.
    let r = unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &raw const fprog) };
    if r != 0 { Err(last_errno()) } else { Ok(()) }
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny interpreter of the BPF subset the program uses, over a `seccomp_data`.
    fn run(prog: &[sock_filter], nr: u32, arch: u32, arg1: u64) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        data[24..32].copy_from_slice(&arg1.to_le_bytes());
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            let ins = prog[pc];
            let code = u32::from(ins.code);
            match code {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                    let k = ins.k as usize;
                    acc = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
                    pc += 1;
                }
                c if c == libc::BPF_RET | libc::BPF_K => return ins.k,
                c => {
                    let taken = match c & 0xf0 {
                        0x10 => acc == ins.k,
                        0x20 => acc > ins.k,
                        0x30 => acc >= ins.k,
                        other => panic!("unexpected jump {other:#x}"),
                    };
                    pc += 1 + usize::from(if taken { ins.jt } else { ins.jf });
                }
            }
        }
    }

    const TRACE: u32 = libc::SECCOMP_RET_TRACE;
    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;

    #[test]
    fn vfio_ioctls_trace_and_other_ioctls_pass() {
        let p = program(false);
        let ioctl = libc::SYS_ioctl as u32;
        for req in [0x3b64u64, 0x3b6a, 0x3b75, 0x3b79, 0x3b7f] {
            assert_eq!(run(&p, ioctl, AUDIT_ARCH_X86_64, req), TRACE, "{req:#x}");
        }
        for req in [0x3b63u64, 0x3b80, 0x5401, 0xae80, 0xc008_ae67] {
            assert_eq!(run(&p, ioctl, AUDIT_ARCH_X86_64, req), ALLOW, "{req:#x}");
        }
    }

    #[test]
    fn the_read_write_family_traces_and_the_rest_passes() {
        let p = program(false);
        for nr in traced_calls(false) {
            assert_eq!(run(&p, nr, AUDIT_ARCH_X86_64, 0), TRACE, "syscall {nr}");
        }
        for nr in [libc::SYS_openat, libc::SYS_futex, libc::SYS_ppoll, libc::SYS_mmap, libc::SYS_exit_group] {
            assert_eq!(run(&p, nr as u32, AUDIT_ARCH_X86_64, 0), ALLOW, "syscall {nr}");
        }
        let p = program(true);
        assert_eq!(run(&p, libc::SYS_ppoll as u32, AUDIT_ARCH_X86_64, 0), TRACE);
        assert_eq!(run(&p, libc::SYS_poll as u32, AUDIT_ARCH_X86_64, 0), TRACE);
    }

    #[test]
    fn calls_of_another_architecture_pass() {
        let p = program(true);
        // i386 ioctl (54) with a VFIO request, and i386 read (3).
        assert_eq!(run(&p, 54, 0x4000_0003, 0x3b75), ALLOW);
        assert_eq!(run(&p, 3, 0x4000_0003, 0), ALLOW);
    }

    #[test]
    fn without_a_tracer_a_traced_call_fails_with_enosys_and_others_work() {
        // In a forked child (the filter cannot be removed): an ioctl with a VFIO request and a
        // read() fail with ENOSYS (SECCOMP_RET_TRACE with no tracer), a TCGETS ioctl and
        // getpid() work. The child reports through its exit status.
        let prog = program(false);
        // SAFETY: the child only makes raw system calls and _exit()s; it never returns into
        // the test harness.
        match unsafe { libc::fork() } {
            0 => {
                let code = (|| {
                    if install(&prog).is_err() {
                        return 10;
                    }
                    let mut b = [0u8; 1];
                    // SAFETY: raw calls on fd 0 with a valid buffer; results are only inspected.
                    let r = unsafe { libc::ioctl(0, 0x3b75, 0) };
                    // SAFETY: errno location of this thread.
                    let e = unsafe { *libc::__errno_location() };
                    if r != -1 || e != libc::ENOSYS {
                        return 11;
                    }
                    // SAFETY: as above.
                    let r = unsafe { libc::read(-1, b.as_mut_ptr().cast(), 1) };
                    // SAFETY: as above.
                    let e = unsafe { *libc::__errno_location() };
                    if r != -1 || e != libc::ENOSYS {
                        return 12;
                    }
                    // SAFETY: as above; TCGETS on an invalid fd fails with EBADF, not ENOSYS.
                    let r = unsafe { libc::ioctl(-1, libc::TCGETS, 0) };
                    // SAFETY: as above.
                    let e = unsafe { *libc::__errno_location() };
                    if r != -1 || e != libc::EBADF {
                        return 13;
                    }
                    0
                })();
                // SAFETY: ends the forked child without running the parent's destructors.
                unsafe { libc::_exit(code) }
            }
            -1 => panic!("fork failed"),
            pid => {
                let mut st = 0;
                // SAFETY: waits for our own child.
                assert_eq!(unsafe { libc::waitpid(pid, &mut st, 0) }, pid);
                assert!(libc::WIFEXITED(st), "child status {st:#x}");
                assert_eq!(libc::WEXITSTATUS(st), 0, "see the codes in the child");
            }
        }
    }
}
