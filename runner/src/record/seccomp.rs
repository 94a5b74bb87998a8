//! The seccomp filters: the tracer is stopped only for the system calls it decodes, not for
//! the millions a VMM (and every helper a scenario script forks) makes.
//!
//! The *root* filter, installed in the command before it execs and inherited by every thread
//! and child, returns `SECCOMP_RET_TRACE` (a `PTRACE_EVENT_SECCOMP` stop) only for an `ioctl`
//! whose request is a VFIO one (type `;`, numbers 100-127: `0x3b64..=0x3b7f`), on any fd: the
//! request number is an argument, so BPF selects it exactly. A process that makes no VFIO
//! ioctl (a shell, `grep`, `sleep`, a VMM without VFIO devices) never stops.
//!
//! An *fd* filter per device or data fd: when a VFIO ioctl hands a process a new device fd
//! (`VFIO_GROUP_GET_DEVICE_FD`, a bound cdev) or data fd (a SET of `MIG_DEVICE_STATE`), or a
//! `dup`, `dup2`, `dup3` or `fcntl(F_DUPFD, F_DUPFD_CLOEXEC)` copies one, the tracer adds, at
//! that call's exit and before the VMM can use the fd, a filter that traces the read/write
//! family, `close`, `dup` and `fcntl` whose fd argument is that number (the decoder looks only
//! at fcntl's two dup commands), `dup2`/`dup3` from or onto it and a `close_range` whose range
//! holds it ([`super::ptrace`] injects a
//! `seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC)` call, so every thread of the
//! process has it, and every child it forks later). QEMU's eventfd and monitor traffic (a few
//! thousand calls per migration) then never stops the tracer. A number that is closed and
//! reused for another file stays traced (the tracer looks the fd up and lets it go: one
//! stop), so nothing is missed. A process handed a data or device fd by another process
//! (`SCM_RIGHTS`) that uses it without a VFIO ioctl of its own would be missed: `record
//! --stop-on-all-io` installs a root filter that traces the whole family on every fd.
//!
//! Filters stack (the kernel takes the most restrictive action). Every call of another
//! architecture passes (a 64-bit VMM makes none). `poll`/`ppoll` (with `--poll`) cannot be
//! selected by fd (the fds are in memory), so they are traced in every process that has an
//! fd filter.

use libc::{sock_filter, sock_fprog};

/// `AUDIT_ARCH_X86_64` (include/uapi/linux/audit.h: EM_X86_64 | __AUDIT_ARCH_64BIT | LE).
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;

/// Offsets in `struct seccomp_data`.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
/// Low 32 bits of `args[0]` (little endian): the fd (the kernel takes an `int`).
const OFF_ARG0_LO: u32 = 16;
/// Low 32 bits of `args[1]` (little endian): the ioctl request, dup2/dup3's new fd.
const OFF_ARG1_LO: u32 = 16 + 8;

/// First and last VFIO ioctl request (`_IO(VFIO_TYPE, VFIO_BASE + n)`, n = 0..=27).
pub const VFIO_IOCTL_FIRST: u32 = 0x3b64;
pub const VFIO_IOCTL_LAST: u32 = 0x3b7f;

/// The calls an fd filter traces when their first argument is its fd (x86_64 numbers);
/// besides, it traces `dup2`/`dup3` onto its fd and a `close_range` that covers it.
pub fn fd_calls() -> Vec<u32> {
    traced_calls(false)
        .into_iter()
        .filter(|nr| {
            ![libc::SYS_dup2 as u32, libc::SYS_dup3 as u32, libc::SYS_close_range as u32].contains(nr)
        })
        .collect()
}

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
        libc::SYS_dup,
        libc::SYS_fcntl,
        libc::SYS_dup2,
        libc::SYS_dup3,
        libc::SYS_close_range,
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

/// What a filter stops on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    /// VFIO ioctls only (the root filter of a recording).
    VfioIoctls,
    /// The read/write family and close on one fd, dup2/dup3 from or onto it (and poll/ppoll
    /// on any fd with `poll`): added to a process when it gets a device or data fd.
    Fd { fd: u32, poll: bool },
    /// VFIO ioctls and the whole family on every fd (the root filter with
    /// `--stop-on-all-io`).
    Both { poll: bool },
}

/// A conditional jump at absolute position `at` to absolute targets.
fn jump_to(code: u32, k: u32, at: usize, t: usize, f: usize) -> sock_filter {
    let off = |to: usize| u8::try_from(to - at - 1).expect("a BPF jump fits in 255 instructions");
    jump(code, k, off(t), off(f))
}

/// The BPF program of a layer.
pub fn program(layer: Layer) -> Vec<sock_filter> {
    use libc::{BPF_ABS, BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W};
    let ret_allow = stmt(BPF_RET | BPF_K, libc::SECCOMP_RET_ALLOW);
    let ret_trace = stmt(BPF_RET | BPF_K, libc::SECCOMP_RET_TRACE);
    let mut p = vec![
        stmt(BPF_LD | BPF_W | BPF_ABS, OFF_ARCH),
        jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        ret_allow,
        stmt(BPF_LD | BPF_W | BPF_ABS, OFF_NR),
    ];
    if let Layer::Fd { fd, poll } = layer {
        // Compares: [poll, ppoll] -> TRACE; dup2, dup3 -> DUP; the family -> ARG0;
        // close_range -> RANGE; then ALLOW; DUP: arg1 == fd -> TRACE, else ARG0: arg0 == fd ->
        // TRACE, else ALLOW; RANGE: arg0 <= fd <= arg1 (unsigned, as the kernel reads them) ->
        // TRACE, else ALLOW.
        let polls: &[i64] = if poll { &[libc::SYS_poll, libc::SYS_ppoll] } else { &[] };
        let dups = [libc::SYS_dup2, libc::SYS_dup3];
        let family = fd_calls();
        let a0 = p.len() + polls.len() + dups.len() + family.len() + 1;
        let (dup, arg0, range) = (a0 + 1, a0 + 3, a0 + 5);
        let (trace, allow) = (range + 4, range + 5);
        for nr in polls {
            p.push(jump_to(BPF_JMP | BPF_JEQ | BPF_K, *nr as u32, p.len(), trace, p.len() + 1));
        }
        for nr in dups {
            p.push(jump_to(BPF_JMP | BPF_JEQ | BPF_K, nr as u32, p.len(), dup, p.len() + 1));
        }
        for nr in family {
            p.push(jump_to(BPF_JMP | BPF_JEQ | BPF_K, nr, p.len(), arg0, p.len() + 1));
        }
        p.push(jump_to(BPF_JMP | BPF_JEQ | BPF_K, libc::SYS_close_range as u32, p.len(), range, p.len() + 1));
        p.push(ret_allow);
        p.push(stmt(BPF_LD | BPF_W | BPF_ABS, OFF_ARG1_LO));
        p.push(jump_to(BPF_JMP | BPF_JEQ | BPF_K, fd, p.len(), trace, p.len() + 1));
        p.push(stmt(BPF_LD | BPF_W | BPF_ABS, OFF_ARG0_LO));
        p.push(jump_to(BPF_JMP | BPF_JEQ | BPF_K, fd, p.len(), trace, allow));
        p.push(stmt(BPF_LD | BPF_W | BPF_ABS, OFF_ARG0_LO));
        p.push(jump_to(BPF_JMP | BPF_JGT | BPF_K, fd, p.len(), allow, p.len() + 1));
        p.push(stmt(BPF_LD | BPF_W | BPF_ABS, OFF_ARG1_LO));
        p.push(jump_to(BPF_JMP | BPF_JGE | BPF_K, fd, p.len(), trace, allow));
        p.push(ret_trace);
        p.push(ret_allow);
        return p;
    }
    let calls = match layer {
        Layer::Both { poll } => traced_calls(poll),
        _ => Vec::new(),
    };
    let n = calls.len() as u8;
    // ioctl: jump to the request check at the end, over n compares, ALLOW and TRACE.
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

/// The program as the bytes of a `struct sock_fprog` followed by its instructions, for a
/// tracee whose memory will hold them at `addr` (the pointer in the header is `addr + 16`).
pub fn fprog_bytes(prog: &[sock_filter], addr: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(16 + prog.len() * 8);
    b.extend_from_slice(&(prog.len() as u16).to_le_bytes());
    b.extend_from_slice(&[0u8; 6]);
    b.extend_from_slice(&(addr + 16).to_le_bytes());
    for ins in prog {
        b.extend_from_slice(&ins.code.to_le_bytes());
        b.push(ins.jt);
        b.push(ins.jf);
        b.extend_from_slice(&ins.k.to_le_bytes());
    }
    b
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
        run_args(prog, nr, arch, [0, arg1])
    }

    /// As [`run`], with the first two arguments.
    fn run_args(prog: &[sock_filter], nr: u32, arch: u32, args: [u64; 2]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        data[16..24].copy_from_slice(&args[0].to_le_bytes());
        data[24..32].copy_from_slice(&args[1].to_le_bytes());
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
        let p = program(Layer::VfioIoctls);
        let ioctl = libc::SYS_ioctl as u32;
        for req in [0x3b64u64, 0x3b6a, 0x3b75, 0x3b79, 0x3b7f] {
            assert_eq!(run(&p, ioctl, AUDIT_ARCH_X86_64, req), TRACE, "{req:#x}");
        }
        for req in [0x3b63u64, 0x3b80, 0x5401, 0xae80, 0xc008_ae67] {
            assert_eq!(run(&p, ioctl, AUDIT_ARCH_X86_64, req), ALLOW, "{req:#x}");
        }
    }

    #[test]
    fn the_read_write_family_traces_on_every_fd_only_with_stop_on_all_io() {
        let p = program(Layer::Both { poll: false });
        for nr in traced_calls(false) {
            assert_eq!(run(&p, nr, AUDIT_ARCH_X86_64, 0), TRACE, "syscall {nr}");
        }
        for nr in [libc::SYS_openat, libc::SYS_futex, libc::SYS_ppoll, libc::SYS_mmap, libc::SYS_exit_group] {
            assert_eq!(run(&p, nr as u32, AUDIT_ARCH_X86_64, 0), ALLOW, "syscall {nr}");
        }
        let p = program(Layer::Both { poll: true });
        assert_eq!(run(&p, libc::SYS_ppoll as u32, AUDIT_ARCH_X86_64, 0), TRACE);
        assert_eq!(run(&p, libc::SYS_poll as u32, AUDIT_ARCH_X86_64, 0), TRACE);
        let root = program(Layer::VfioIoctls);
        for nr in traced_calls(true) {
            assert_eq!(run(&root, nr, AUDIT_ARCH_X86_64, 0x3b75), ALLOW, "root, syscall {nr}");
        }
    }

    #[test]
    fn an_fd_layer_traces_the_family_on_its_fd_and_dups_from_or_onto_it_only() {
        let p = program(Layer::Fd { fd: 27, poll: false });
        for nr in fd_calls() {
            assert_eq!(run_args(&p, nr, AUDIT_ARCH_X86_64, [27, 0]), TRACE, "syscall {nr} on fd 27");
            assert_eq!(run_args(&p, nr, AUDIT_ARCH_X86_64, [28, 27]), ALLOW, "syscall {nr} on fd 28");
            // The kernel reads an fd as an int: the upper half of the register does not count.
            assert_eq!(run_args(&p, nr, AUDIT_ARCH_X86_64, [0xffff_ffff_0000_001b, 0]), TRACE);
        }
        for nr in [libc::SYS_dup2, libc::SYS_dup3] {
            let nr = nr as u32;
            assert_eq!(run_args(&p, nr, AUDIT_ARCH_X86_64, [27, 40]), TRACE, "dup from the fd");
            assert_eq!(run_args(&p, nr, AUDIT_ARCH_X86_64, [5, 27]), TRACE, "dup onto the fd");
            assert_eq!(run_args(&p, nr, AUDIT_ARCH_X86_64, [5, 40]), ALLOW, "dup of others");
        }
        for nr in [libc::SYS_dup, libc::SYS_fcntl] {
            assert!(fd_calls().contains(&(nr as u32)), "a copy of the fd by syscall {nr} is followed");
        }
        let close_range = libc::SYS_close_range as u32;
        for (first, last) in [(27, 27), (3, u64::from(u32::MAX)), (0, 27), (27, 40)] {
            assert_eq!(
                run_args(&p, close_range, AUDIT_ARCH_X86_64, [first, last]),
                TRACE,
                "{first}..={last}"
            );
        }
        for (first, last) in [(28, u64::from(u32::MAX)), (3, 26), (40, 27)] {
            assert_eq!(
                run_args(&p, close_range, AUDIT_ARCH_X86_64, [first, last]),
                ALLOW,
                "{first}..={last}"
            );
        }
        for nr in [libc::SYS_ioctl, libc::SYS_ppoll, libc::SYS_poll, libc::SYS_openat] {
            assert_eq!(run_args(&p, nr as u32, AUDIT_ARCH_X86_64, [27, 0x3b75]), ALLOW, "syscall {nr}");
        }
        let p = program(Layer::Fd { fd: 3, poll: true });
        assert_eq!(run_args(&p, libc::SYS_ppoll as u32, AUDIT_ARCH_X86_64, [0x7ff0_0000, 2]), TRACE);
        assert_eq!(run_args(&p, libc::SYS_read as u32, AUDIT_ARCH_X86_64, [3, 0]), TRACE);
        assert_eq!(run_args(&p, libc::SYS_read as u32, AUDIT_ARCH_X86_64, [4, 0]), ALLOW);
        assert_eq!(run_args(&p, libc::SYS_read as u32, 0x4000_0003, [3, 0]), ALLOW, "another arch");
    }

    #[test]
    fn the_fprog_bytes_hold_the_length_the_pointer_and_each_instruction() {
        let p = program(Layer::VfioIoctls);
        let b = fprog_bytes(&p, 0x7ff0_0000_1000);
        assert_eq!(b.len(), 16 + 8 * p.len());
        assert_eq!(u16::from_le_bytes([b[0], b[1]]) as usize, p.len());
        assert_eq!(u64::from_le_bytes(b[8..16].try_into().unwrap()), 0x7ff0_0000_1010);
        let last = &b[b.len() - 8..];
        assert_eq!(u16::from_le_bytes([last[0], last[1]]), p[p.len() - 1].code);
        assert_eq!(u32::from_le_bytes(last[4..8].try_into().unwrap()), p[p.len() - 1].k);
    }

    #[test]
    fn calls_of_another_architecture_pass() {
        let p = program(Layer::Both { poll: true });
        // i386 ioctl (54) with a VFIO request, and i386 read (3).
        assert_eq!(run(&p, 54, 0x4000_0003, 0x3b75), ALLOW);
        assert_eq!(run(&p, 3, 0x4000_0003, 0), ALLOW);
    }

    #[test]
    fn without_a_tracer_a_traced_call_fails_with_enosys_and_others_work() {
        // In a forked child (the filter cannot be removed): an ioctl with a VFIO request and a
        // read() fail with ENOSYS (SECCOMP_RET_TRACE with no tracer), a TCGETS ioctl and
        // getpid() work. The child reports through its exit status.
        let prog = program(Layer::Both { poll: false });
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
