//! `vfio-mig-conform`: the command-line front end. All logic lives in the `vmc` library.

#[macro_use]
mod say;

mod bind;
mod cli;
mod commands;
mod events;
mod fuzz;
mod isolate;
mod kcov;
mod kmsg;
mod open;
mod progress;
mod record;
mod run;
mod suite;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use cli::{Cli, Command, exit};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { exit::OK });
        }
    };
    // A fuzzing session and `restore` touch devices: like a run, they keep SIGPIPE ignored (a
    // restore killed between unbind and bind would leave the device on no driver).
    if cli.command.as_ref().is_some_and(|c| !matches!(c, Command::Fuzz(_) | Command::Restore { .. })) {
        default_sigpipe();
    }
    let code = match cli.command {
        Some(Command::Clauses { format, coverage }) => commands::clauses(format, coverage),
        Some(Command::Sim { list_defects }) => commands::sim(list_defects),
        Some(Command::Fuzz(args)) => match fuzz::fuzz(&args) {
            Ok(code) => code,
            Err(e) => {
                errln!("vfio-mig-conform fuzz: {}", e.message);
                e.code
            }
        },
        Some(Command::FuzzToYaml { file, target }) => fuzz::to_yaml(&file, target.as_deref()),
        Some(Command::KcovReport(args)) => kcov::report(&args),
        Some(Command::Record(args)) => record::record(&args),
        Some(Command::Completions { shell }) => {
            clap_complete::generate(shell, &mut Cli::command(), "vfio-mig-conform", &mut std::io::stdout());
            exit::OK
        }
        Some(Command::Man) => match commands::man(&mut std::io::stdout()) {
            Ok(()) => exit::OK,
            Err(e) => {
                errln!("vfio-mig-conform: {e}");
                exit::USAGE
            }
        },
        Some(Command::Report { runs, html: Some(dir), .. }) => match commands::report_html(&runs, &dir) {
            Ok(code) => code,
            Err(e) => {
                errln!("vfio-mig-conform report: {e}");
                exit::USAGE
            }
        },
        Some(Command::Report { runs, diff: true, filter, .. }) => {
            match commands::diff(&runs, filter.as_deref()) {
                Ok(code) => code,
                Err(e) => {
                    errln!("vfio-mig-conform report: {e}");
                    exit::USAGE
                }
            }
        }
        Some(Command::Report { runs, format, .. }) => match commands::report(&runs, format) {
            Ok(code) => code,
            Err(e) => {
                errln!("vfio-mig-conform report: {e}");
                exit::USAGE
            }
        },
        Some(Command::Restore { devices, wait }) => bind::restore_command(&devices, wait),
        None => match bind::run(&cli.run) {
            Ok(code) => code,
            Err(e) => {
                errln!("vfio-mig-conform: {}", e.message);
                e.code
            }
        },
    };
    ExitCode::from(code)
}

/// Subcommands that touch no device die quietly on a closed pipe (`| head`), like any Unix
/// tool. Runs keep SIGPIPE ignored so nothing interrupts a check before its device is
/// restored.
fn default_sigpipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: installing the default disposition for SIGPIPE replaces no Rust handler and is
    // done before any other thread exists.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}
