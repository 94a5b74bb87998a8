//! The tracer: starts the VMM under ptrace with the seccomp filter, follows every thread and
//! child process (PTRACE_O_TRACECLONE/FORK/VFORK/EXEC), and hands each filtered system call to
//! a [`Handler`] at its entry and, when the handler asks for it, at its exit. The tracee's
//! memory is read with `process_vm_readv` ([`Mem`]).
//!
//! One stop per filtered call the handler does not want (a `PTRACE_EVENT_SECCOMP` stop, then
//! `PTRACE_CONT`); two for the calls it decodes (resumed with `PTRACE_SYSCALL` to get the
//! syscall-exit stop). x86_64 only (registers).
//!
//! Watching an fd ([`super::seccomp`]): when the handler reports a new device or data fd at a
//! call's exit stop, the stopped thread is made to call
//! `seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, fd_filter)` before it returns
//! to the VMM: the program is written below its stack pointer (past the red zone), the
//! instruction pointer is moved back onto the `syscall` instruction with the seccomp call in
//! the registers, and once that call has run (its entry and exit stops) the registers of the
//! original call's exit are put back. Every thread of the process has the filter from then
//! on, and every child it forks.

use std::collections::{HashMap, HashSet};
use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno as NixErrno;
use nix::sys::ptrace::{self, Event as PEvent, Options};
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// A system call at its entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    pub nr: i64,
    pub args: [u64; 6],
}

/// Reads a stopped tracee's memory.
#[derive(Debug, Clone, Copy)]
pub struct Mem {
    pub tid: i32,
}

impl Mem {
    /// Reads `len` bytes at `addr` (fewer if the range is partly unmapped).
    pub fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        if len == 0 || addr == 0 {
            buf.clear();
            return buf;
        }
        let mut local = [std::io::IoSliceMut::new(&mut buf)];
        let remote = [nix::sys::uio::RemoteIoVec { base: addr as usize, len }];
        let n = nix::sys::uio::process_vm_readv(Pid::from_raw(self.tid), &mut local, &remote).unwrap_or(0);
        buf.truncate(n);
        buf
    }

    pub fn read_u32(&self, addr: u64) -> Option<u32> {
        self.read(addr, 4).try_into().ok().map(u32::from_le_bytes)
    }

    /// A NUL-terminated string of at most `max` bytes.
    pub fn read_cstr(&self, addr: u64, max: usize) -> String {
        let b = self.read(addr, max);
        let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).into_owned()
    }
}

/// What the handler wants after seeing a call's entry.
#[derive(Debug)]
pub enum Want<S> {
    /// Nothing more: the call runs untraced.
    Nothing,
    /// The exit too, with this state carried from the entry.
    Exit(S),
}

/// Where the tracer reports what it sees.
pub trait Handler {
    type Pending;
    /// A filtered call's entry (seccomp stop) in thread `tid` of process `pid`.
    fn entry(&mut self, pid: i32, tid: i32, call: Call, mem: Mem) -> Want<Self::Pending>;
    /// The exit of a call the handler asked for, with the raw return value (`rax`).
    fn exit(&mut self, pid: i32, tid: i32, pending: Self::Pending, ret: i64, mem: Mem);
    /// A new process `child` forked from `parent` (threads are not reported).
    fn fork(&mut self, parent: i32, child: i32);
    /// Process `pid` executed a program.
    fn exec(&mut self, pid: i32);
    /// Process `pid` ended with this status (exit code, or 128 + signal).
    fn exit_process(&mut self, pid: i32, status: i32);
    /// Device and data fds that became known since the last call, as (process, fd): the
    /// tracer adds an fd filter for each before the process runs on.
    fn take_new_fds(&mut self) -> Vec<(i32, i32)>;
    /// Process `pid` got the fd filter for `fd`, or could not get it (why).
    fn watched(&mut self, pid: i32, fd: i32, outcome: Result<(), String>);
}

/// An fd-filter injection in progress in one thread.
struct Inject {
    /// The registers at the exit stop of the call that made the fds known.
    saved: libc::user_regs_struct,
    /// The fd whose filter the injected seccomp() call installs.
    fd: i32,
    /// The next stop is the injected call's entry (else its exit).
    at_entry: bool,
    /// Fds still to do after this one.
    rest: Vec<i32>,
    /// Signals that arrived meanwhile, raised again at the end.
    deferred: Vec<Signal>,
}

/// Which stops the tracer sets up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Filters {
    /// Also stop on poll()/ppoll() (in processes with a device or data fd).
    pub poll: bool,
    /// Stop on the read/write family on every fd from the start, not only on device and data
    /// fds.
    pub all_io: bool,
}

/// How the traced command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Signaled(i32),
}

impl Ended {
    /// As a shell reports it: the exit code, or 128 + the signal.
    pub fn status(self) -> i32 {
        match self {
            Ended::Exited(c) => c,
            Ended::Signaled(s) => 128 + s,
        }
    }
}

/// Why tracing could not start or went wrong.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{0}: the command cannot be run: {1}")]
    Exec(String, NixErrno),
    #[error("fork failed: {0}")]
    Fork(NixErrno),
    #[error("ptrace {0} failed: {1} (is the recorder itself traced, or ptrace forbidden by Yama/seccomp?)")]
    Ptrace(&'static str, NixErrno),
    #[error("installing the seccomp filter failed: {0}")]
    Seccomp(NixErrno),
    #[error("the command has an empty name or a NUL byte in an argument")]
    BadArgv,
    #[error("recording needs x86_64 (system call registers); this is {0}")]
    Arch(&'static str),
}

/// Errors the child reports through its exit status before exec (a pipe would need more).
const CHILD_SECCOMP_FAILED: i32 = 0xfe;
const CHILD_EXEC_FAILED: i32 = 0xff;

/// State of the signal handlers: SIGTERM/SIGHUP to the recorder are passed to the VMM.
static FORWARD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    FORWARD.store(sig, std::sync::atomic::Ordering::SeqCst);
}

/// Runs `argv` under the tracer until every traced process has ended.
pub fn run<H: Handler>(argv: &[OsString], filters: Filters, h: &mut H) -> Result<(i32, Ended), TraceError> {
    if !cfg!(target_arch = "x86_64") {
        return Err(TraceError::Arch(std::env::consts::ARCH));
    }
    let cargs: Vec<CString> = argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| TraceError::BadArgv)?;
    if cargs.is_empty() || cargs[0].as_bytes().is_empty() {
        return Err(TraceError::BadArgv);
    }
    let mut ptrs: Vec<*const libc::c_char> = cargs.iter().map(|c| c.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    use super::seccomp::{Layer, program};
    let poll = filters.poll;
    let prog = program(if filters.all_io { Layer::Both { poll } } else { Layer::VfioIoctls });

    // SAFETY: the child only makes async-signal-safe calls (ptrace, raise, prctl, seccomp,
    // execvp, _exit) on memory prepared before the fork, and never returns.
    let child = match unsafe { libc::fork() } {
        -1 => return Err(TraceError::Fork(NixErrno::last())),
        0 => {
            // SAFETY: PTRACE_TRACEME takes no pointers; raise stops us until the parent has
            // set the options; the argv pointers stay valid (they live in the copied memory).
            unsafe {
                libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0);
                libc::raise(libc::SIGSTOP);
            }
            if super::seccomp::install(&prog).is_err() {
                // SAFETY: leave the child without running any destructor.
                unsafe { libc::_exit(CHILD_SECCOMP_FAILED) };
            }
            // SAFETY: `ptrs` is a NULL-terminated array of NUL-terminated strings.
            unsafe {
                libc::execvp(ptrs[0], ptrs.as_ptr());
                libc::_exit(CHILD_EXEC_FAILED)
            }
        }
        pid => Pid::from_raw(pid),
    };
    let opts = Options::PTRACE_O_TRACESECCOMP
        | Options::PTRACE_O_TRACECLONE
        | Options::PTRACE_O_TRACEFORK
        | Options::PTRACE_O_TRACEVFORK
        | Options::PTRACE_O_TRACEEXEC
        | Options::PTRACE_O_TRACESYSGOOD
        | Options::PTRACE_O_EXITKILL;
    match waitpid(child, Some(WaitPidFlag::__WALL)) {
        Ok(WaitStatus::Stopped(_, Signal::SIGSTOP)) => {}
        Ok(other) => return Err(TraceError::Ptrace("TRACEME", child_failure(other))),
        Err(e) => return Err(TraceError::Ptrace("waitpid", e)),
    }
    ptrace::setoptions(child, opts).map_err(|e| TraceError::Ptrace("SETOPTIONS", e))?;
    // SIGINT reaches the VMM from the terminal by itself; the recorder stays to write the
    // recording. SIGTERM and SIGHUP are passed on to the VMM.
    set_handlers(true);
    ptrace::cont(child, None).map_err(|e| TraceError::Ptrace("CONT", e))?;

    let root = child.as_raw();
    let mut t = Tracer {
        tgid: HashMap::new(),
        fresh: HashSet::new(),
        pending: HashMap::new(),
        watched: HashMap::new(),
        injecting: HashMap::new(),
        poll,
    };
    t.tgid.insert(root, root);
    let mut ended = Ended::Exited(0);
    let mut exec_seen = false;
    loop {
        let st = match waitpid(None, Some(WaitPidFlag::__WALL)) {
            Ok(s) => s,
            Err(NixErrno::ECHILD) => break,
            Err(NixErrno::EINTR) => {
                // A SIGTERM or SIGHUP to the recorder goes to every traced process: a
                // scenario that is stopped must not leave a VMM running under the tracer.
                let sig = FORWARD.swap(0, std::sync::atomic::Ordering::SeqCst);
                if let Ok(s) = Signal::try_from(sig) {
                    let pids: HashSet<i32> = t.tgid.values().copied().collect();
                    for p in pids {
                        let _ = nix::sys::signal::kill(Pid::from_raw(p), s);
                    }
                }
                continue;
            }
            Err(e) => return Err(TraceError::Ptrace("waitpid", e)),
        };
        match st {
            WaitStatus::PtraceEvent(tid, _, ev) if ev == PEvent::PTRACE_EVENT_SECCOMP as i32 => {
                let tid = tid.as_raw();
                let pid = t.pid_of(tid);
                let Some(r) = regs(tid) else {
                    resume(tid, false, None);
                    continue;
                };
                let call = Call { nr: r.orig_rax as i64, args: [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9] };
                match h.entry(pid, tid, call, Mem { tid }) {
                    Want::Nothing => resume(tid, false, None),
                    Want::Exit(p) => {
                        t.pending.insert(tid, p);
                        resume(tid, true, None);
                    }
                }
            }
            WaitStatus::PtraceSyscall(tid) => {
                let tid = tid.as_raw();
                if let Some(inj) = t.injecting.remove(&tid) {
                    let pid = t.pid_of(tid);
                    t.step_injection(tid, pid, inj, h);
                    continue;
                }
                if let Some(p) = t.pending.remove(&tid)
                    && let Some(r) = regs(tid)
                {
                    let ret = r.rax as i64;
                    // A call interrupted by a signal is restarted (and filtered again).
                    if !(-516..=-512).contains(&ret) {
                        let pid = t.pid_of(tid);
                        h.exit(pid, tid, p, ret, Mem { tid });
                        // New device or data fds: filter them before the VMM sees the result.
                        let mut rest = t.fresh_fds(pid, h.take_new_fds(), filters.all_io);
                        if let Some(fd) = rest.pop() {
                            let inj = Inject { saved: r, fd, at_entry: true, rest, deferred: Vec::new() };
                            t.start_injection(tid, pid, inj, h);
                            continue;
                        }
                    }
                }
                resume(tid, false, None);
            }
            WaitStatus::PtraceEvent(tid, _, ev)
                if ev == PEvent::PTRACE_EVENT_CLONE as i32
                    || ev == PEvent::PTRACE_EVENT_FORK as i32
                    || ev == PEvent::PTRACE_EVENT_VFORK as i32 =>
            {
                let parent_tid = tid.as_raw();
                let parent = t.pid_of(parent_tid);
                if let Ok(new) = ptrace::getevent(tid) {
                    let new = new as i32;
                    let new_pid = if ev == PEvent::PTRACE_EVENT_CLONE as i32 {
                        proc_tgid(new).unwrap_or(parent)
                    } else {
                        new
                    };
                    t.tgid.insert(new, new_pid);
                    if new_pid != parent {
                        // Filters are inherited: the child is watched on the parent's fds.
                        if let Some(w) = t.watched.get(&parent).cloned() {
                            t.watched.insert(new_pid, w);
                        }
                        h.fork(parent, new_pid);
                    }
                    // Its first stop is the SIGSTOP of the auto-attach unless already seen.
                    if !t.fresh.remove(&new) {
                        t.fresh.insert(new);
                    }
                }
                resume(parent_tid, false, None);
            }
            WaitStatus::PtraceEvent(tid, _, ev) if ev == PEvent::PTRACE_EVENT_EXEC as i32 => {
                let tid = tid.as_raw();
                // After exec the thread-group leader has the process id; other threads are gone.
                let pid = t.pid_of(tid);
                t.tgid.retain(|k, v| *v != pid || *k == pid);
                t.tgid.insert(tid, pid);
                t.pending.remove(&tid);
                t.injecting.remove(&tid);
                exec_seen |= pid == root;
                h.exec(pid);
                resume(tid, false, None);
            }
            WaitStatus::PtraceEvent(tid, _, _) => resume(tid.as_raw(), false, None),
            WaitStatus::Stopped(tid, sig) => {
                let tid = tid.as_raw();
                if sig == Signal::SIGSTOP && !t.tgid.contains_key(&tid) {
                    // A new task stopped before its parent's clone event: remember it.
                    t.fresh.insert(tid);
                    resume(tid, false, None);
                } else if sig == Signal::SIGSTOP && t.fresh.remove(&tid) {
                    resume(tid, false, None);
                } else if let Some(inj) = t.injecting.get_mut(&tid) {
                    // A signal on the way back to user mode, before the injected seccomp()
                    // runs: its handler must not run on the injected registers (or be taken
                    // for the injected call at the next syscall stop). Held back and raised
                    // again once the thread is back at its own call's exit.
                    inj.deferred.push(sig);
                    resume(tid, true, None);
                } else {
                    resume(tid, false, Some(sig));
                }
            }
            WaitStatus::Exited(tid, code) => {
                let tid = tid.as_raw();
                t.pending.remove(&tid);
                t.injecting.remove(&tid);
                if let Some(pid) = t.tgid.remove(&tid)
                    && pid == tid
                {
                    t.watched.remove(&pid);
                    h.exit_process(pid, code);
                }
                if tid == root {
                    ended = Ended::Exited(code);
                    if !exec_seen {
                        if code == CHILD_EXEC_FAILED {
                            return Err(TraceError::Exec(
                                argv[0].to_string_lossy().into_owned(),
                                exec_errno(&argv[0]),
                            ));
                        }
                        if code == CHILD_SECCOMP_FAILED {
                            return Err(TraceError::Seccomp(NixErrno::EINVAL));
                        }
                    }
                }
            }
            WaitStatus::Signaled(tid, sig, _) => {
                let tid = tid.as_raw();
                t.pending.remove(&tid);
                t.injecting.remove(&tid);
                if let Some(pid) = t.tgid.remove(&tid)
                    && pid == tid
                {
                    t.watched.remove(&pid);
                    h.exit_process(pid, 128 + sig as i32);
                }
                if tid == root {
                    ended = Ended::Signaled(sig as i32);
                }
            }
            WaitStatus::Continued(_) | WaitStatus::StillAlive => {}
        }
    }
    set_handlers(false);
    Ok((root, ended))
}

/// While tracing: SIGINT ignored, SIGTERM/SIGHUP caught without SA_RESTART (so waitpid
/// returns EINTR and the signal is passed on); afterwards the defaults.
fn set_handlers(tracing: bool) {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, sigaction};
    let (int, term) = if tracing {
        (SigHandler::SigIgn, SigHandler::Handler(on_signal))
    } else {
        (SigHandler::SigDfl, SigHandler::SigDfl)
    };
    for (sig, h) in [(Signal::SIGINT, int), (Signal::SIGTERM, term), (Signal::SIGHUP, term)] {
        // SAFETY: the handler only stores into an atomic; no Rust handler is replaced.
        let _ = unsafe { sigaction(sig, &SigAction::new(h, SaFlags::empty(), SigSet::empty())) };
    }
}

struct Tracer<P> {
    /// Thread id -> process id of every traced task.
    tgid: HashMap<i32, i32>,
    /// New tasks whose initial SIGSTOP is still to come (or came first).
    fresh: HashSet<i32>,
    /// Calls waiting for their exit stop.
    pending: HashMap<i32, P>,
    /// Per process, the fd numbers it has a filter for (or failed to get one: not tried
    /// again).
    watched: HashMap<i32, HashSet<i32>>,
    /// Threads running an injected seccomp() call.
    injecting: HashMap<i32, Inject>,
    /// Whether fd filters also stop on poll()/ppoll().
    poll: bool,
}

impl<P> Tracer<P> {
    /// The fds of `pid` among `new` that have no filter yet (none with `--stop-on-all-io`,
    /// whose root filter traces every fd). Fds of other processes (the handler learns of a
    /// fork's copies) are already covered by inheritance.
    fn fresh_fds(&mut self, pid: i32, new: Vec<(i32, i32)>, all_io: bool) -> Vec<i32> {
        if all_io {
            return Vec::new();
        }
        let w = self.watched.entry(pid).or_default();
        let mut out = Vec::new();
        for (p, fd) in new {
            if p == pid && fd >= 0 && w.insert(fd) {
                out.push(fd);
            }
        }
        out
    }

    /// Starts the injected seccomp() call of `inj.fd` (or, when that cannot be set up, reports
    /// it and goes on with the next fd).
    fn start_injection<H: Handler>(&mut self, tid: i32, pid: i32, mut inj: Inject, h: &mut H) {
        let prog = super::seccomp::program(super::seccomp::Layer::Fd { fd: inj.fd as u32, poll: self.poll });
        match inject_filter(tid, &inj.saved, &prog) {
            Ok(()) => {
                inj.at_entry = true;
                self.injecting.insert(tid, inj);
                resume(tid, true, None);
            }
            Err(why) => {
                h.watched(pid, inj.fd, Err(why));
                self.next_or_finish(tid, pid, inj, h);
            }
        }
    }

    /// The entry or exit stop of an injected seccomp() call.
    fn step_injection<H: Handler>(&mut self, tid: i32, pid: i32, mut inj: Inject, h: &mut H) {
        if inj.at_entry {
            inj.at_entry = false;
            if regs(tid).is_some_and(|r| r.orig_rax != libc::SYS_seccomp as u64) {
                h.watched(
                    pid,
                    inj.fd,
                    Err(format!("thread {tid} entered another system call than the injected seccomp()")),
                );
            }
            self.injecting.insert(tid, inj);
            resume(tid, true, None);
            return;
        }
        let ret = regs(tid).map_or(-i64::from(libc::ESRCH), |r| r.rax as i64);
        h.watched(
            pid,
            inj.fd,
            match ret {
                0 => Ok(()),
                r if r > 0 => Err(format!("thread {r} has a seccomp filter of its own (TSYNC failed)")),
                r => Err(format!("seccomp() failed: {}", NixErrno::from_raw(-r as i32))),
            },
        );
        self.next_or_finish(tid, pid, inj, h);
    }

    /// The next fd's injection, or, when none is left, the thread back at the exit of the call
    /// that made the fds known, as if nothing happened.
    fn next_or_finish<H: Handler>(&mut self, tid: i32, pid: i32, mut inj: Inject, h: &mut H) {
        if let Some(next) = inj.rest.pop() {
            inj.fd = next;
            self.start_injection(tid, pid, inj, h);
            return;
        }
        if let Err(e) = ptrace::setregs(Pid::from_raw(tid), inj.saved) {
            h.watched(pid, inj.fd, Err(format!("restoring the registers of thread {tid} failed: {e}")));
        }
        finish(pid, tid, &inj.deferred);
    }

    fn pid_of(&mut self, tid: i32) -> i32 {
        if let Some(p) = self.tgid.get(&tid) {
            return *p;
        }
        let p = proc_tgid(tid).unwrap_or(tid);
        self.tgid.insert(tid, p);
        p
    }
}

fn resume(tid: i32, to_exit: bool, sig: Option<Signal>) {
    let pid = Pid::from_raw(tid);
    // A task that died in between (SIGKILL, exit_group of another thread) cannot be resumed:
    // its exit is reported by waitpid.
    let _ = if to_exit { ptrace::syscall(pid, sig) } else { ptrace::cont(pid, sig) };
}

/// Makes the thread stopped at the exit stop of a call with registers `r` call
/// `seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, prog)` next: the program is
/// written below the stack pointer, past the 128-byte red zone, and the instruction pointer
/// goes back onto the 2-byte `syscall` instruction with the call in the registers. The
/// caller resumes the thread to that call's entry and exit stops.
fn inject_filter(tid: i32, r: &libc::user_regs_struct, prog: &[libc::sock_filter]) -> Result<(), String> {
    let len = 16 + prog.len() * 8;
    let addr = r.rsp.wrapping_sub(128 + len as u64 + 64) & !15;
    let bytes = super::seccomp::fprog_bytes(prog, addr);
    let local = [std::io::IoSlice::new(&bytes)];
    let remote = [nix::sys::uio::RemoteIoVec { base: addr as usize, len: bytes.len() }];
    match nix::sys::uio::process_vm_writev(Pid::from_raw(tid), &local, &remote) {
        Ok(n) if n == bytes.len() => {}
        Ok(n) => {
            return Err(format!(
                "only {n} of {} bytes of the filter could be written below its stack pointer",
                bytes.len()
            ));
        }
        Err(e) => return Err(format!("writing the filter below its stack pointer failed: {e}")),
    }
    let mut c = *r;
    c.rax = libc::SYS_seccomp as u64;
    c.orig_rax = libc::SYS_seccomp as u64;
    c.rip = r.rip.wrapping_sub(2);
    c.rdi = u64::from(libc::SECCOMP_SET_MODE_FILTER);
    c.rsi = libc::SECCOMP_FILTER_FLAG_TSYNC;
    c.rdx = addr;
    ptrace::setregs(Pid::from_raw(tid), c).map_err(|e| format!("setting the registers failed: {e}"))
}

/// Lets a thread go on from its restored call exit, raising the signals held back meanwhile
/// (as `tgkill`: the original siginfo is not kept).
fn finish(pid: i32, tid: i32, deferred: &[Signal]) {
    for sig in deferred {
        // SAFETY: tgkill takes integer arguments only.
        unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, *sig as i32) };
    }
    resume(tid, false, None);
}

fn regs(tid: i32) -> Option<libc::user_regs_struct> {
    ptrace::getregs(Pid::from_raw(tid)).ok()
}

/// The thread-group id of a task, from /proc.
pub fn proc_tgid(tid: i32) -> Option<i32> {
    let s = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix("Tgid:")).and_then(|v| v.trim().parse().ok())
}

/// Describes why the child did not stop at its SIGSTOP.
fn child_failure(st: WaitStatus) -> NixErrno {
    match st {
        WaitStatus::Exited(..) | WaitStatus::Signaled(..) => NixErrno::ESRCH,
        _ => NixErrno::EPERM,
    }
}

/// Why exec of `prog` fails, found again by looking it up (the child could only report that
/// it failed).
fn exec_errno(prog: &std::ffi::OsStr) -> NixErrno {
    let p = std::path::Path::new(prog);
    let found = if p.components().count() > 1 {
        p.exists()
    } else {
        std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(p).exists()))
    };
    if found { NixErrno::EACCES } else { NixErrno::ENOENT }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = "VMC_PTRACE_TEST_ROLE";
    const FILTER_TEST: &str = "record::ptrace::tests::an_fd_filter_added_at_a_calls_exit_stops_the_calls_on_that_fd_in_every_thread";
    const SIGNAL_TEST: &str =
        "record::ptrace::tests::signals_during_filter_injection_reach_their_handler_and_leave_results_alone";

    /// This test binary, running only test `name`, in `role` (a tracer must be the only thing
    /// in its process that waits for children: libtest runs other tests in threads).
    fn this_test(name: &str, role: &str) -> Vec<OsString> {
        let me = std::env::current_exe().unwrap();
        ["env".into(), format!("{ROLE}={role}").into(), me.into_os_string()]
            .into_iter()
            .chain(["--exact", name, "--test-threads=1", "-q"].map(OsString::from))
            .collect()
    }

    /// Runs `name` in role `tracer` in a process of its own and asserts it passed.
    fn in_own_process(name: &str) {
        let out = std::process::Command::new("env").args(this_test(name, "tracer")).output().unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The tracee: 200 reads of /dev/zero, an ioctl with a VFIO request on that fd (ENOTTY),
    /// then 50 reads in a thread started before it and 50 in this one.
    fn tracee() {
        use std::io::Read;
        // One fd for both threads (a clone would be another number).
        let f = std::sync::Arc::new(std::fs::File::open("/dev/zero").unwrap());
        let mut b = [0u8; 8];
        for _ in 0..200 {
            (&*f).read_exact(&mut b).unwrap();
        }
        let gate = std::sync::Arc::new(std::sync::Barrier::new(2));
        let (g, f2) = (gate.clone(), f.clone());
        let other = std::thread::spawn(move || {
            g.wait();
            let mut b = [0u8; 8];
            for _ in 0..50 {
                (&*f2).read_exact(&mut b).unwrap();
            }
        });
        // SAFETY: an ioctl without argument on an fd we own; only its result is looked at.
        let r = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&*f), 0x3b64) };
        assert_eq!(r, -1, "VFIO_GET_API_VERSION on /dev/zero fails");
        gate.wait();
        for _ in 0..50 {
            (&*f).read_exact(&mut b).unwrap();
        }
        other.join().unwrap();
    }

    /// Declares the fd of the first VFIO ioctl new at its exit, counts the reads on it; with
    /// `every`, declares a new made-up fd number at the exit of every ioctl (an injection each).
    #[derive(Default)]
    struct Watcher {
        fd: Option<(i32, i32)>,
        every: bool,
        ioctls: i32,
        new: Vec<(i32, i32)>,
        reads: u32,
        ok: u32,
        failed: Vec<String>,
    }

    impl Handler for Watcher {
        type Pending = ();
        fn entry(&mut self, pid: i32, _tid: i32, call: Call, _mem: Mem) -> Want<()> {
            if call.nr == libc::SYS_ioctl && self.every {
                self.ioctls += 1;
                self.fd = Some((pid, 1000 + self.ioctls));
                return Want::Exit(());
            }
            if call.nr == libc::SYS_ioctl && self.fd.is_none() {
                self.fd = Some((pid, call.args[0] as i32));
                return Want::Exit(());
            }
            if call.nr == libc::SYS_read && Some((pid, call.args[0] as i32)) == self.fd {
                self.reads += 1;
            }
            Want::Nothing
        }
        fn exit(&mut self, _pid: i32, _tid: i32, _p: (), _ret: i64, _mem: Mem) {
            self.new.extend(self.fd);
        }
        fn fork(&mut self, _parent: i32, _child: i32) {}
        fn exec(&mut self, _pid: i32) {}
        fn exit_process(&mut self, _pid: i32, _status: i32) {}
        fn take_new_fds(&mut self) -> Vec<(i32, i32)> {
            std::mem::take(&mut self.new)
        }
        fn watched(&mut self, _pid: i32, _fd: i32, outcome: Result<(), String>) {
            match outcome {
                Ok(()) => self.ok += 1,
                Err(e) => self.failed.push(e),
            }
        }
    }

    #[test]
    fn an_fd_filter_added_at_a_calls_exit_stops_the_calls_on_that_fd_in_every_thread() {
        match std::env::var(ROLE).as_deref() {
            Ok("tracee") => tracee(),
            Ok("tracer") => {
                // Act: trace the tracee, which learns of its fd at the ioctl's exit.
                let mut w = Watcher::default();
                let (_, ended) =
                    run(&this_test(FILTER_TEST, "tracee"), Filters { poll: false, all_io: false }, &mut w)
                        .unwrap();
                // Assert: the tracee passed, one filter, and exactly the 100 reads after the
                // ioctl stopped: none of the 200 before, both threads' after (TSYNC).
                assert_eq!(ended, Ended::Exited(0));
                assert_eq!((w.ok, &w.failed), (1, &Vec::<String>::new()));
                assert_eq!(w.reads, 100);
            }
            _ => in_own_process(FILTER_TEST),
        }
    }

    static HANDLED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

    extern "C" fn on_usr1(_: libc::c_int) {
        // A system call in the handler: a syscall stop while the tracer may be injecting.
        // SAFETY: getppid has no arguments and is async-signal-safe.
        unsafe { libc::getppid() };
        HANDLED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// The tracee of the signal test: 300 VFIO ioctls on /dev/zero (each followed by an
    /// injection) while another thread sends SIGUSR1 to this one as fast as it can. Every
    /// ioctl must still fail with ENOTTY (not return the injected seccomp()'s 0), and signals
    /// must still reach the handler.
    fn signalled_tracee() {
        use std::sync::atomic::{AtomicBool, Ordering};
        // SAFETY: installs a handler that only makes a system call and bumps an atomic.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_usr1 as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
        }
        let f = std::fs::File::open("/dev/zero").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() } as usize;
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let sender = std::thread::spawn(move || {
            let mut sent = 0u32;
            while !s2.load(Ordering::SeqCst) {
                // SAFETY: `me` is the live main test thread (joined below before it ends).
                unsafe { libc::pthread_kill(me as libc::pthread_t, libc::SIGUSR1) };
                sent += 1;
                std::thread::yield_now();
            }
            sent
        });
        for i in 0..300 {
            // SAFETY: an ioctl without argument on an fd we own.
            let r = unsafe { libc::ioctl(fd, 0x3b64) };
            let e = std::io::Error::last_os_error().raw_os_error();
            assert_eq!((r, e), (-1, Some(libc::ENOTTY)), "ioctl {i}");
        }
        stop.store(true, Ordering::SeqCst);
        let sent = sender.join().unwrap();
        assert!(sent > 0 && HANDLED.load(Ordering::SeqCst) > 0, "sent {sent}, handled {HANDLED:?}");
    }

    #[test]
    fn signals_during_filter_injection_reach_their_handler_and_leave_results_alone() {
        match std::env::var(ROLE).as_deref() {
            Ok("tracee") => signalled_tracee(),
            Ok("tracer") => {
                let mut w = Watcher { every: true, ..Watcher::default() };
                let (_, ended) =
                    run(&this_test(SIGNAL_TEST, "tracee"), Filters { poll: false, all_io: false }, &mut w)
                        .unwrap();
                assert_eq!(ended, Ended::Exited(0), "the tracee's checks failed (its output is above)");
                assert_eq!((w.ok, &w.failed), (300, &Vec::<String>::new()));
            }
            _ => in_own_process(SIGNAL_TEST),
        }
    }
}
