//! Writing to standard output and standard error without panicking.
//!
//! `println!` and `eprintln!` panic when their stream is a pipe whose reader went away
//! (`vfio-mig-conform DEV 2>&1 | head`). During a run or a fuzzing session SIGPIPE stays
//! ignored (nothing may kill the runner between a check and its device's restore), so such a
//! write fails with EPIPE instead: these macros turn it into a stop, as SIGINT would (the
//! current check ends, the device is restored, the record is ended, exit 5).

use std::io::Write;

use crate::isolate::{Closed, output_closed};

/// Writes `args` to standard error; a closed standard error stops the run.
pub fn to_stderr(args: std::fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    if let Err(e) = err.write_fmt(args).and_then(|()| err.flush()) {
        closed_if_pipe(&e, Closed::Stderr);
    }
}

/// Writes `args` to standard output; a closed standard output stops the run.
pub fn to_stdout(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        closed_if_pipe(&e, Closed::Stdout);
    }
}

fn closed_if_pipe(e: &std::io::Error, which: Closed) {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        output_closed(which);
    }
}

/// `eprintln!` that never panics (see the module documentation).
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::say::to_stderr(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprint!` that never panics.
macro_rules! err {
    ($($arg:tt)*) => {
        $crate::say::to_stderr(format_args!($($arg)*))
    };
}

/// `println!` that never panics.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::say::to_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that never panics.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::say::to_stdout(format_args!($($arg)*))
    };
}
