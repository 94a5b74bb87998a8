//! Running each check in a child process under a watchdog, as the kselftest harness does: a
//! thread stuck in the kernel can block its child, never the runner. The child reports every
//! step (and heartbeats inside long loops) over a pipe; the parent kills it when one operation
//! takes longer than `--timeout`, then restores the device (in another child, also watched).
//! SIGINT and SIGTERM set a flag: the current check is abandoned, the device restored, the
//! results flushed.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, kill, sigaction};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, pipe};
use serde::{Deserialize, Serialize};
use vmc::check::Check;
use vmc::engine::{CheckEnd, CheckRun, Engine};
use vmc::op::Op;

/// How long restoring a device after a failed check may take, at least: a reset is allowed
/// more time than one operation, so a slow (or loaded) machine is not mistaken for a wedged
/// device.
const RESTORE_PATIENCE: Duration = Duration::from_secs(10);

/// Set by SIGINT/SIGTERM.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// Which signal interrupted the run.
pub static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// How many SIGINT/SIGTERM arrived: the second ends the process at once.
static SIGNALS: AtomicU32 = AtomicU32::new(0);
/// Set once the run starts opening (or binding) devices: a second signal before that has no
/// device to leave behind.
static TOUCHING: AtomicBool = AtomicBool::new(false);
/// The process running a check or a restore (0: none), killed by a second signal.
static CHILD: AtomicI32 = AtomicI32::new(0);

/// Writes a fixed message to stderr from a signal handler (write(2) is async-signal-safe).
fn signal_safe_message(text: &str) {
    // SAFETY: write(2) on fd 2 with a pointer and length of a live &str; a closed or invalid
    // stderr makes it fail with EBADF/EPIPE, which is ignored.
    let _ = unsafe { libc::write(libc::STDERR_FILENO, text.as_ptr().cast(), text.len()) };
}

extern "C" fn on_signal(sig: libc::c_int) {
    if SIGNALS.fetch_add(1, Ordering::SeqCst) == 0 {
        // A closed output that stopped the run first keeps its reason.
        if !INTERRUPTED.swap(true, Ordering::SeqCst) {
            SIGNAL.store(sig, Ordering::SeqCst);
        }
        signal_safe_message(if sig == libc::SIGTERM {
            "\nvfio-mig-conform: SIGTERM: stopping once the device is restored (send it again to exit at once)\n"
        } else {
            "\nvfio-mig-conform: SIGINT: stopping once the device is restored (Ctrl-C again to exit at once)\n"
        });
        return;
    }
    if !TOUCHING.load(Ordering::SeqCst) {
        // The second signal before any device was opened (inputs still loading): nothing to
        // restore, so nothing to warn about; the run was interrupted.
        signal_safe_message(
            "\nvfio-mig-conform: second signal: exiting at once (no device was opened yet)\n",
        );
        // SAFETY: _exit(2) is async-signal-safe; no device fd is open.
        unsafe { libc::_exit(i32::from(INTERRUPTED_EXIT)) }
    }
    // The second signal: the user will not wait for the restore (a device stuck in a call
    // with --no-fork, a restore that hangs). End the check or restore process, say what that
    // leaves behind, and leave (exit 6: the device could not be restored).
    let child = CHILD.load(Ordering::SeqCst);
    if child > 0 {
        // SAFETY: kill(2) is async-signal-safe; `child` is the pid of our own live (or
        // not yet reaped) child process, never 0 or negative (no process group is hit).
        let _ = unsafe { libc::kill(child, libc::SIGKILL) };
    }
    signal_safe_message(
        "\nvfio-mig-conform: second signal: exiting at once without restoring the device; it may be left in a \
         non-RUNNING state (reset it, e.g. by running vfio-mig-conform on it again); the run record has no end line\n",
    );
    // SAFETY: _exit(2) is async-signal-safe and runs no destructors or atexit handlers; the
    // kernel closes the device fds.
    unsafe { libc::_exit(i32::from(WEDGED_EXIT)) }
}

/// Exit code of a second signal (`cli::exit::WEDGED`: the device could not be restored).
const WEDGED_EXIT: u8 = crate::cli::exit::WEDGED;
/// Exit code of a second signal before any device was opened (`cli::exit::INTERRUPTED`).
const INTERRUPTED_EXIT: u8 = crate::cli::exit::INTERRUPTED;

/// Remembers the process a second signal must kill (0 when there is none).
fn watch_child(pid: Option<Pid>) {
    CHILD.store(pid.map_or(0, Pid::as_raw), Ordering::SeqCst);
}

/// Sets up a check or restore process: it ignores SIGINT/SIGTERM (the parent decides what a
/// signal means and kills the child when it must), and it dies with its parent, so a runner
/// killed with SIGKILL leaves no process stuck on the device. `parent` is the runner's pid,
/// taken before the fork (it may have died before the death signal was armed).
fn child_setup(parent: Pid) {
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: ignoring signals installs no handler code.
        let _ = unsafe { sigaction(sig, &ignore) };
    }
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and touches no memory of ours.
    let _ = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    if nix::unistd::getppid() != parent {
        // SAFETY: the parent is gone already: leave without running anything of its.
        unsafe { libc::_exit(1) }
    }
}

/// Which standard stream lost its reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    Stdout,
    Stderr,
}

/// What [`SIGNAL`] holds when standard error was closed (standard output uses SIGPIPE).
const STDERR_CLOSED: i32 = -1;

/// Stops the run as a signal would: the reader of standard output or standard error went
/// away (`| head`, `2>&1 | head`). SIGPIPE itself stays ignored during a run, so the write
/// fails with EPIPE instead of killing the runner between a trial and its device's restore.
/// A signal that came first keeps its name.
pub fn output_closed(which: Closed) {
    let code = match which {
        Closed::Stdout => libc::SIGPIPE,
        Closed::Stderr => STDERR_CLOSED,
    };
    if !INTERRUPTED.load(Ordering::SeqCst) {
        SIGNAL.store(code, Ordering::SeqCst);
        INTERRUPTED.store(true, Ordering::SeqCst);
    }
}

/// Whether a panic payload is a failed write to a closed pipe (libtest-mimic's printer
/// unwraps its writes; `println!` panics on EPIPE).
pub fn is_broken_pipe(payload: &(dyn std::any::Any + Send)) -> bool {
    let msg = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("");
    msg.contains("Broken pipe") || msg.contains("BrokenPipe")
}

/// Marks the point from which the run opens, binds or changes devices (a second signal then
/// means "leave the device as it is", exit 6).
pub fn touching_devices() {
    TOUCHING.store(true, Ordering::SeqCst);
}

/// Installs the SIGINT/SIGTERM handlers (without SA_RESTART, so waits wake up). Commands that
/// open devices install them first thing, before their inputs load: a signal that came before
/// them would be lost (a background job of a non-interactive shell starts with SIGINT
/// ignored) or would end the process without a record. A signal from then on stops the run at
/// its first check boundary, with a complete record and exit 5.
pub fn install_signal_handlers() {
    let action = SigAction::new(SigHandler::Handler(on_signal), SaFlags::empty(), SigSet::empty());
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only uses atomics, write(2), kill(2) and _exit(2), which are
        // async-signal-safe.
        let _ = unsafe { sigaction(sig, &action) };
    }
}

/// Whether the run was interrupted, and by what.
pub fn interrupted() -> Option<String> {
    INTERRUPTED.load(Ordering::SeqCst).then(|| match SIGNAL.load(Ordering::SeqCst) {
        libc::SIGINT => "interrupted by SIGINT".to_string(),
        libc::SIGTERM => "interrupted by SIGTERM".to_string(),
        libc::SIGPIPE => "stopped: standard output was closed (broken pipe)".to_string(),
        STDERR_CLOSED => "stopped: standard error was closed (broken pipe)".to_string(),
        s => format!("interrupted by signal {s}"),
    })
}

/// How checks run.
#[derive(Clone, Copy, Debug)]
pub struct Isolation {
    /// One child process per check (the default); false runs checks in-process.
    pub fork: bool,
    /// Longest any one device operation may take, a whole read or write loop included.
    pub timeout: Duration,
    /// Judge the kernel log of each check's window (`--kernel-log`, always in the vm/ guest).
    pub kernel_log: bool,
    /// A deadline for the whole check (the end of a fuzzing session's `--duration`): the
    /// check process is killed when it passes, whatever the operation in flight.
    pub until: Option<Instant>,
}

/// A message from the child.
#[derive(Serialize, Deserialize)]
enum Msg {
    /// A step starts: index, the step as YAML, CLOCK_MONOTONIC µs (the kernel log's clock).
    Step(usize, String, u64),
    Beat,
    Done(Box<CheckRun>),
}

fn send(out: &mut std::fs::File, m: &Msg) {
    if let Ok(mut line) = serde_json::to_string(m) {
        line.push('\n');
        let _ = out.write_all(line.as_bytes());
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}

/// Runs `work`; a panic in it (a bug of ours) becomes the check's ERROR, named `what`, after
/// `restore` has put the devices back.
fn guarded(
    engine: &mut Engine,
    what: &str,
    work: impl FnOnce(&mut Engine) -> CheckRun,
    restore: impl FnOnce(&mut Engine) -> Result<(), String>,
) -> CheckRun {
    match std::panic::catch_unwind(AssertUnwindSafe(|| work(&mut *engine))) {
        Ok(r) => r,
        Err(p) => CheckRun {
            end: CheckEnd::HarnessError(format!(
                "internal error (a bug in vfio-mig-conform): {what}: {}",
                panic_message(&*p)
            )),
            restore_error: restore(engine).err(),
            ..Default::default()
        },
    }
}

/// Runs the check in this process (panics become ERROR).
fn run_here(engine: &mut Engine, check: &Check) -> CheckRun {
    guarded(engine, "panic", |e| e.run(check), restore_all)
}

/// Restores every device of the engine.
fn restore_all(engine: &mut Engine) -> Result<(), String> {
    for slot in &mut engine.slots {
        slot.dev.restore().map_err(|e| format!("device {} did not return to RUNNING: {e}", slot.label))?;
    }
    Ok(())
}

/// Kills a child and reaps it, waiting at most `patience`.
fn kill_and_reap(pid: Pid, patience: Duration) -> Option<WaitStatus> {
    let _ = kill(pid, Signal::SIGKILL);
    let until = Instant::now() + patience;
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) if Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(WaitStatus::StillAlive) => return None,
            Ok(s) => return Some(s),
            Err(_) => return None,
        }
    }
}

/// Restores the devices from a child process, so that a reset stuck in the kernel cannot
/// hang the runner. Simulated devices live in this process and are restored here too.
pub fn restore_watched(engine: &mut Engine, timeout: Duration) -> Result<(), String> {
    let parent = nix::unistd::getpid();
    // SAFETY: the runner is single-threaded here (libtest-mimic runs trials on the main thread
    // with one test thread); the child only restores and leaves with _exit.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            child_setup(parent);
            let code = i32::from(restore_all(engine).is_err());
            // SAFETY: leave without running destructors: the parent owns every resource.
            unsafe { libc::_exit(code) }
        }
        Ok(ForkResult::Parent { child }) => {
            watch_child(Some(child));
            let status = wait_restore(child, timeout);
            watch_child(None);
            match status? {
                WaitStatus::Exited(_, 0) => restore_all(engine),
                WaitStatus::Exited(_, 1) => {
                    Err("the device did not return to RUNNING after a reset".to_string())
                }
                other => Err(format!("the device could not be reset: the restore process {}", ended(&other))),
            }
        }
        Err(e) => restore_all(engine).map_err(|r| format!("{r} (fork failed: {e})")),
    }
}

/// How a child process ended, in words.
fn ended(status: &WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exited with status {code}"),
        WaitStatus::Signaled(_, sig, core) => {
            format!("was killed by {}{}", sig.as_str(), if *core { " (core dumped)" } else { "" })
        }
        _ => "stopped without exiting".to_string(),
    }
}

/// Waits for the restore process `child`, killing it after `timeout`.
fn wait_restore(child: Pid, timeout: Duration) -> Result<WaitStatus, String> {
    let until = Instant::now() + timeout;
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) if Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(WaitStatus::StillAlive) => {
                let _ = kill_and_reap(child, Duration::from_secs(1));
                return Err(format!(
                    "VFIO_DEVICE_RESET did not return within {} s (an earlier operation is still stuck in the kernel)",
                    timeout.as_secs()
                ));
            }
            Ok(s) => return Ok(s),
            Err(e) => return Err(format!("waiting for the restore process failed: {e}")),
        }
    }
}

/// Runs one check according to `iso`. A panic of the runner's own supervision (a bug) is the
/// check's ERROR, after the devices are restored: it never aborts the run or loses a verdict.
pub fn run_check(engine: &mut Engine, check: &Check, iso: Isolation) -> CheckRun {
    guarded(
        engine,
        "panic in the runner",
        |e| run_check_isolated(e, check, iso),
        |e| restore_watched(e, iso.timeout.max(RESTORE_PATIENCE)),
    )
}

fn run_check_isolated(engine: &mut Engine, check: &Check, iso: Isolation) -> CheckRun {
    // The window opens before the check (and its child) and is read after the restore.
    let mut window = if iso.kernel_log { crate::kmsg::Window::open().ok() } else { None };
    let mut steps = crate::kmsg::StepTimes::new();
    let mut run = run_check_windowed(engine, check, iso, &mut steps);
    if let Some(w) = &mut window {
        let device = engine.slots.first().map_or("A", |s| s.label.as_str()).to_string();
        crate::kmsg::judge(&mut run, w, &steps, &device);
    }
    run
}

fn run_check_windowed(
    engine: &mut Engine,
    check: &Check,
    iso: Isolation,
    steps: &mut crate::kmsg::StepTimes,
) -> CheckRun {
    if !iso.fork {
        return run_here(engine, check);
    }
    // A check that closes the device must hold the only device fd, or closing it would not
    // release the device (the parent's copy would keep it open): the parent closes its own
    // and the child opens a fresh one.
    let exclusive = check.steps.iter().any(|s| matches!(s.op, Op::CloseDevice | Op::Reopen));
    if exclusive {
        for slot in &mut engine.slots {
            let _ = slot.dev.close();
        }
    }
    let mut run = run_forked(engine, check, iso, exclusive, steps);
    if exclusive {
        for slot in &mut engine.slots {
            match slot.dev.reopen() {
                // EBUSY: the restore after a failure already opened it again.
                Ok(()) | Err(vmc::errno::Errno::EBUSY) => {}
                Err(e) => {
                    run.restore_error =
                        Some(format!("device {} could not be opened again after the check: {e}", slot.label));
                }
            }
        }
    }
    run
}

fn run_forked(
    engine: &mut Engine,
    check: &Check,
    iso: Isolation,
    reopen_first: bool,
    steps: &mut crate::kmsg::StepTimes,
) -> CheckRun {
    let (rd, wr) = match pipe() {
        Ok(p) => p,
        Err(e) => {
            let mut r = run_here(engine, check);
            r.notes.push(format!("ran in-process: pipe() failed with {e}"));
            return r;
        }
    };
    let parent = nix::unistd::getpid();
    // SAFETY: single-threaded at this point (see restore_watched); the child runs the check
    // and leaves with _exit, never returning into libtest-mimic.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            drop(rd);
            child_setup(parent);
            let mut out = std::fs::File::from(wr);
            if let Ok(mut progress_out) = out.try_clone() {
                engine.progress = Some(Box::new(move |i, op| {
                    let m = if op.is_empty() {
                        Msg::Beat
                    } else {
                        Msg::Step(i, op.to_string(), crate::kmsg::now_usec())
                    };
                    send(&mut progress_out, &m);
                }));
            }
            let mut reopened = Ok(());
            if reopen_first {
                for slot in &mut engine.slots {
                    if let Err(e) = slot.dev.reopen() {
                        reopened = Err(format!(
                            "device {} could not be opened in the check process: {e}",
                            slot.label
                        ));
                    }
                }
            }
            let run = match reopened {
                Ok(()) => run_here(engine, check),
                Err(e) => CheckRun { end: CheckEnd::HarnessError(e), ..Default::default() },
            };
            send(&mut out, &Msg::Done(Box::new(run)));
            let _ = out.flush();
            // SAFETY: leave without running destructors or atexit handlers of the parent's
            // libraries; the kernel closes this process's fds.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(wr);
            watch_child(Some(child));
            let run = supervise(engine, child, rd, iso, steps);
            watch_child(None);
            run
        }
        Err(e) => {
            let mut r = run_here(engine, check);
            r.notes.push(format!("ran in-process: fork() failed with {e}"));
            r
        }
    }
}

/// The start of the error of a check cut by [`Isolation::until`]; it begins with
/// "interrupted" so the fuzzer stops its walk (and its shrinking) there.
pub const TIME_UP: &str = "interrupted: the fuzzing time (--duration) ran out";

/// Whether a step (as the check process reports it) is a deliberate `wait`.
fn is_wait(op: &str) -> bool {
    op.strip_prefix("wait").is_some_and(|rest| rest.is_empty() || rest.starts_with(':'))
}

/// Whether the pipe's read end has data (or EOF) within `wait`.
fn pipe_ready(raw: std::os::fd::RawFd, wait: Duration) -> bool {
    // SAFETY: `raw` is the read end of the check's pipe, owned by the caller's reader for the
    // whole supervision loop, so it stays open while borrowed here.
    let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) };
    let mut fds = [PollFd::new(bfd.as_fd(), PollFlags::POLLIN)];
    let ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
    matches!(poll(&mut fds, PollTimeout::try_from(ms).unwrap_or(PollTimeout::ZERO)), Ok(n) if n > 0)
}

fn supervise(
    engine: &mut Engine,
    child: Pid,
    rd: OwnedFd,
    iso: Isolation,
    steps: &mut crate::kmsg::StepTimes,
) -> CheckRun {
    let raw = rd.as_raw_fd();
    let mut reader = BufReader::new(std::fs::File::from(rd));
    let mut deadline = Instant::now() + iso.timeout;
    let mut step: Option<(usize, String)> = None;
    let mut done: Option<CheckRun> = None;
    let fail = |engine: &mut Engine, mut r: CheckRun| {
        if let Err(e) = restore_watched(engine, iso.timeout.max(RESTORE_PATIENCE)) {
            r.restore_error = Some(e);
        }
        r
    };
    let where_ = |step: &Option<(usize, String)>| match step {
        Some((i, op)) => format!("step {} `{op}`", i + 1),
        None => "setting up the check".to_string(),
    };
    loop {
        if let Some(why) = interrupted() {
            let _ = kill_and_reap(child, Duration::from_secs(2));
            let r = CheckRun {
                end: CheckEnd::HarnessError(format!("{why} during {}", where_(&step))),
                ..Default::default()
            };
            return fail(engine, r);
        }
        if iso.until.is_some_and(|u| Instant::now() >= u) {
            let _ = kill_and_reap(child, Duration::from_secs(2));
            let r = CheckRun {
                end: CheckEnd::HarnessError(format!("{TIME_UP} during {}", where_(&step))),
                ..Default::default()
            };
            return fail(engine, r);
        }
        // Lines already buffered (two steps can arrive in one read) are handled before the pipe is
        // polled again, and a deadline that passed while this process was descheduled only counts
        // once the pipe holds nothing newer.
        let buffered = !reader.buffer().is_empty();
        let now = Instant::now();
        if now >= deadline && !buffered && !pipe_ready(raw, Duration::ZERO) {
            let reaped = kill_and_reap(child, Duration::from_secs(2));
            let mut r = CheckRun {
                end: CheckEnd::Timeout(format!(
                    "{} did not return within {} s",
                    where_(&step),
                    iso.timeout.as_secs()
                )),
                ..Default::default()
            };
            if reaped.is_none() {
                r.notes.push(
                    "the check process could not be killed: it is stuck in the kernel (D state)".to_string(),
                );
            }
            return fail(engine, r);
        }
        let wait = deadline.saturating_duration_since(now).min(Duration::from_millis(100));
        if !buffered && !pipe_ready(raw, wait) {
            continue;
        }
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => {
                // The child closed the pipe: it finished or died.
                let status = waitpid(child, None).ok();
                if let Some(r) = done {
                    return r;
                }
                let how = match status {
                    Some(s) => ended(&s),
                    None => "ended (its status could not be read)".to_string(),
                };
                let r = CheckRun {
                    end: CheckEnd::HarnessError(format!("the check process {how} during {}", where_(&step))),
                    ..Default::default()
                };
                return fail(engine, r);
            }
            Ok(_) => match serde_json::from_str::<Msg>(line.trim_end()) {
                Ok(Msg::Step(i, op, at)) => {
                    steps.push((i, op.clone(), at));
                    step = Some((i, op));
                    deadline = Instant::now() + iso.timeout;
                }
                // A heartbeat says a loop is still going, not that it will end: the watchdog
                // bounds the whole operation (a read of a stream that never ends is cut here or
                // by --max-stream, whichever comes first). Only a deliberate `wait` (longer
                // than --timeout if it likes) restarts it.
                Ok(Msg::Beat) => {
                    if step.as_ref().is_some_and(|(_, op)| is_wait(op)) {
                        deadline = Instant::now() + iso.timeout;
                    }
                }
                Ok(Msg::Done(r)) => done = Some(*r),
                Err(_) => {}
            },
        }
    }
}

/// Opens and probes a kernel device in a child process first, so that a device already wedged
/// (a kernel thread, or a process of an earlier run, stuck holding the device's lock) cannot
/// hang the runner in `open()` or in the first GET: an uninterruptible wait in the kernel
/// ignores every signal, SIGKILL included, so only a process that never makes the call is
/// safe. The child opens the device as the run will, probes it (GET MIG_DEVICE_STATE and the
/// feature probes), closes it and exits; `Err` when it has not finished within `timeout`.
/// Opening a vfio-pci device resets it, which may legitimately take seconds (a bus reset
/// sleeps, and an emulated machine is slow): after `note_after` the wait is said on stderr,
/// so that a slow open is seen as one and not mistaken for a hang.
/// A child that fails to open the device is not an error here: the run's own open reports it.
pub fn preflight(
    spec: &str,
    open: impl FnOnce() -> bool,
    note_after: Duration,
    timeout: Duration,
) -> Result<(), String> {
    let parent = nix::unistd::getpid();
    // SAFETY: the runner is single-threaded here (no device is open yet and libtest-mimic has
    // not started); the child only opens, probes, closes and leaves with _exit.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            child_setup(parent);
            let code = i32::from(!open());
            // SAFETY: leave without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        Ok(ForkResult::Parent { child }) => {
            watch_child(Some(child));
            let started = Instant::now();
            let until = started + timeout;
            let mut noted = false;
            let result = loop {
                match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) if Instant::now() < until && interrupted().is_none() => {
                        if !noted && started.elapsed() >= note_after && note_after < timeout {
                            noted = true;
                            errln!(
                                "vfio-mig-conform: {spec}: opening and probing the device has taken {} s so far (opening a \
                                 vfio-pci device resets it); waiting up to {} s before calling it wedged",
                                note_after.as_secs(),
                                timeout.as_secs()
                            );
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Ok(WaitStatus::StillAlive) if interrupted().is_some() => {
                        let _ = kill_and_reap(child, Duration::from_secs(1));
                        break Ok(());
                    }
                    Ok(WaitStatus::StillAlive) => {
                        let reaped = kill_and_reap(child, Duration::from_secs(1)).is_some();
                        break Err(format!(
                            "{spec}: the device does not answer: opening and probing it (open, GET MIG_DEVICE_STATE, \
                             the feature probes, close) did not finish within {} s{}. An earlier operation is \
                             probably stuck in the kernel holding the device's lock (see dmesg); reset the device \
                             or reload its driver, then run again",
                            timeout.as_secs(),
                            if reaped {
                                ""
                            } else {
                                " and the probing process cannot be killed (it waits in the kernel)"
                            }
                        ));
                    }
                    _ => break Ok(()),
                }
            };
            watch_child(None);
            result
        }
        // Without a child the run opens the device itself, as it did before this check existed.
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preflight_of_a_device_that_never_answers_ends_within_its_timeout_with_what_to_do() {
        // Arrange: an "open and probe" that never returns, as on a device whose lock a stuck
        // kernel thread holds.
        let started = Instant::now();

        // Act
        let result = preflight(
            "/dev/vfio/9",
            || loop {
                std::thread::sleep(Duration::from_secs(1));
            },
            Duration::from_millis(100),
            Duration::from_millis(300),
        );

        // Assert
        let message = result.expect_err("a device that never answers is an error");
        assert!(message.starts_with("/dev/vfio/9: the device does not answer"), "{message}");
        assert!(message.contains("reset the device or reload its driver"), "{message}");
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    }

    #[test]
    fn preflight_of_a_device_that_answers_or_fails_to_open_lets_the_run_go_on() {
        assert_eq!(preflight("sim", || true, Duration::from_secs(1), Duration::from_secs(5)), Ok(()));
        // A failed open is reported by the run's own open, with its own exit code.
        assert_eq!(preflight("sim", || false, Duration::from_secs(1), Duration::from_secs(5)), Ok(()));
    }
}
