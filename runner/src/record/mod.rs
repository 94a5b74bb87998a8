//! `vfio-mig-conform record [-o FILE.yaml] -- VMM [ARGS...]`: runs a VMM under ptrace and
//! records what it does to its VFIO devices and migration data fds as a replayable YAML
//! sequence with its provenance (docs/sequences.md, "Recorded sequences").
//!
//! - [`seccomp`]: the filter that stops the VMM only on the calls the recorder decodes;
//! - [`ptrace`]: the tracer (every thread and child process);
//! - [`decode`]: system calls -> [`event::Event`]s (device and data fds per process);
//! - [`yaml`]: events -> the sequence; [`provenance`]: VMM, kernel, devices, date.

pub mod decode;
pub mod event;
pub mod payload;
pub mod provenance;
pub mod ptrace;
pub mod seccomp;
pub mod yaml;

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use clap::Args;

/// Exit status when the recorder itself failed (nothing recorded).
pub const RECORD_FAILED: u8 = 125;
/// Exit status when the VMM could not be executed.
pub const EXEC_FAILED: u8 = 127;

/// `vfio-mig-conform record`.
#[derive(Args, Debug)]
#[command(after_help = "\
The VMM runs under ptrace with seccomp filters: it stops only on VFIO ioctls and on the
read/write/close family on the device and data fds those ioctls return (--stop-on-all-io:
on every fd). Every thread and child process is followed: a shell script starting a
source and a destination QEMU is recorded as one sequence, devices labelled A, B, ... in the
order they are opened. Replay with: vfio-mig-conform DEV --peer DEV2 ... --sequence FILE.

Exit status: the VMM's (128 + N if a signal N ended it) once the recording is written;
2 usage error; 125 nothing recorded (no VFIO device opened, ptrace or seccomp refused);
127 the VMM could not be executed.")]
pub struct RecordArgs {
    /// Write the YAML sequence here (default: standard output).
    #[arg(long, short = 'o', value_name = "FILE.yaml")]
    pub output: Option<PathBuf>,
    /// Also write every decoded event as JSON lines here (streamed while recording).
    #[arg(long, value_name = "FILE.jsonl")]
    pub events: Option<PathBuf>,
    /// The sequence's id (default: `rec.<vmm>_<version>.<output file name>`).
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// The sequence's title.
    #[arg(long, value_name = "TEXT")]
    pub title: Option<String>,
    /// What the scenario did (goes into `models:` and the provenance).
    #[arg(long, value_name = "TEXT")]
    pub scenario: Option<String>,
    /// Device operations besides migration to put into the sequence.
    #[arg(long, value_enum, default_value_t = yaml::DeviceOps::All)]
    pub device_ops: yaml::DeviceOps,
    /// Also stop on poll()/ppoll() to record polls of data fds (QEMU's main loop calls ppoll
    /// constantly; QEMU 10 never polls a data fd).
    #[arg(long)]
    pub poll: bool,
    /// Stop on the read/write/close family on every fd of every process, not only on the
    /// device and data fds a process got from its own VFIO ioctls (slower; for a VMM that is
    /// handed such an fd by another process and uses it without a VFIO ioctl of its own).
    #[arg(long)]
    pub stop_on_all_io: bool,
    /// Keep at most this many bytes of data-fd transfers for matching a destination's writes
    /// to a source's reads (k/m/g suffixes); beyond, writes are recorded by size and hash.
    #[arg(long, value_name = "BYTES", default_value = "64m")]
    pub keep_bytes: String,
    /// The VMM and its arguments.
    #[arg(required = true, last = true, value_name = "VMM")]
    pub command: Vec<OsString>,
}

/// Runs the command.
pub fn record(a: &RecordArgs) -> u8 {
    let Some(keep) = vmc::units::parse_size(&a.keep_bytes) else {
        eprintln!("vfio-mig-conform record: --keep-bytes `{}` is not a size (e.g. 64m)", a.keep_bytes);
        return crate::cli::exit::USAGE;
    };
    if let Some(id) = &a.id
        && !vmc::sequence::valid_id(id)
    {
        eprintln!(
            "vfio-mig-conform record: --id `{id}` must be lower-case words joined by dots, at least three"
        );
        return crate::cli::exit::USAGE;
    }
    // Open the outputs first: a bad path is a usage error before anything runs.
    let sink: Option<Box<dyn Write>> = match &a.events {
        Some(p) => match std::fs::File::create(p) {
            Ok(f) => Some(Box::new(std::io::BufWriter::new(f))),
            Err(e) => {
                eprintln!("vfio-mig-conform record: cannot create {}: {e}", p.display());
                return crate::cli::exit::USAGE;
            }
        },
        None => None,
    };
    let mut out: Box<dyn Write> = match &a.output {
        Some(p) => match std::fs::File::create(p) {
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!("vfio-mig-conform record: cannot create {}: {e}", p.display());
                return crate::cli::exit::USAGE;
            }
        },
        None => Box::new(std::io::stdout()),
    };
    let mut dec = decode::Decoder::new(keep, sink);
    let t0 = std::time::Instant::now();
    let (_, ended) =
        match ptrace::run(&a.command, ptrace::Filters { poll: a.poll, all_io: a.stop_on_all_io }, &mut dec) {
            Ok(r) => r,
            Err(e @ ptrace::TraceError::Exec(..)) => {
                eprintln!("vfio-mig-conform record: {e}");
                discard(a);
                return EXEC_FAILED;
            }
            Err(e) => {
                eprintln!("vfio-mig-conform record: {e}");
                discard(a);
                return RECORD_FAILED;
            }
        };
    let wall = t0.elapsed();
    let status = ended.status().clamp(0, 255) as u8;
    for (pid, fd, why) in &dec.watch_failures {
        eprintln!(
            "vfio-mig-conform record: warning: fd {fd} of process {pid} (a VFIO device or data fd) could not be given its seccomp filter ({why}); its transfers are missing from the recording: record again with --stop-on-all-io"
        );
    }
    if dec.devices.is_empty() {
        eprintln!(
            "vfio-mig-conform record: {} opened no VFIO device (exit status {status}); nothing recorded ({} tracer stops, {} fd filter(s) added)",
            a.command[0].to_string_lossy(),
            dec.stops,
            dec.watched
        );
        discard(a);
        return RECORD_FAILED;
    }
    let prov = provenance::gather(&a.command, &dec, a.scenario.clone());
    let id = a.id.clone().unwrap_or_else(|| default_id(&prov, a.output.as_deref()));
    let models = match &a.scenario {
        Some(s) => format!(
            "{} ({}): {s}",
            prov.vmm.first().map_or("the VMM", |v| v.version.as_str()),
            prov.devices.iter().map(|d| format!("{} {}", d.label, d.kind)).collect::<Vec<_>>().join(", ")
        ),
        None => format!(
            "what {} did to {} device(s), as recorded",
            prov.vmm.first().map_or("the VMM", |v| v.version.as_str()),
            prov.devices.len()
        ),
    };
    let header = yaml::Header {
        id,
        title: a.title.clone().unwrap_or_else(|| {
            format!(
                "recorded: {}",
                a.command.iter().map(|s| s.to_string_lossy()).collect::<Vec<_>>().join(" ")
            )
        }),
        models,
        provenance: prov,
    };
    let text = yaml::render(&dec.events, &header, a.device_ops);
    let name = a.output.as_ref().map_or("<stdout>".to_string(), |p| p.display().to_string());
    // The recording must load as a fixture: a recorder bug must not produce a file that only
    // fails later.
    let loaded = vmc::sequence::load_str(&name, text.as_bytes());
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        eprintln!("vfio-mig-conform record: writing {name}: {e}");
        return RECORD_FAILED;
    }
    match loaded {
        Ok(check) => {
            let devs: Vec<String> = header
                .provenance
                .devices
                .iter()
                .map(|d| format!("{} = {} ({})", d.label, d.name, d.kind))
                .collect();
            eprintln!(
                "vfio-mig-conform record: {} steps on {} into {name}; {} events; {} tracer stops ({} followed to their exit) in {:.2} s; {} fd filter(s) added; the VMM exited with status {status}",
                check.steps.len(),
                devs.join(", "),
                dec.events.len(),
                dec.stops,
                dec.exits,
                wall.as_secs_f64(),
                dec.watched
            );
            status
        }
        Err(e) => {
            eprintln!(
                "vfio-mig-conform record: the recording does not load as a sequence (a recorder bug): {e}"
            );
            RECORD_FAILED
        }
    }
}

/// Removes an output file created before the recording failed.
fn discard(a: &RecordArgs) {
    if let Some(p) = &a.output {
        let _ = std::fs::remove_file(p);
    }
}

/// `rec.qemu_10_0_2.<file stem>`.
fn default_id(p: &vmc::provenance::Provenance, output: Option<&std::path::Path>) -> String {
    let clean = |s: &str| -> String {
        let mut o: String =
            s.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        while o.contains("__") {
            o = o.replace("__", "_");
        }
        o.trim_matches('_').to_string()
    };
    let vmm = p
        .vmm
        .first()
        .map(|v| {
            // "QEMU emulator version 10.0.2 (Debian ...)" -> qemu_10_0_2
            let w: Vec<&str> = v.version.split_whitespace().collect();
            let name = w.first().copied().unwrap_or("vmm");
            let ver = w
                .iter()
                .find(|x| x.chars().next().is_some_and(|c| c.is_ascii_digit()))
                .copied()
                .unwrap_or("");
            clean(&format!("{name}_{ver}"))
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "vmm".to_string());
    let stem =
        output.and_then(|o| o.file_stem()).map(|s| clean(&s.to_string_lossy())).filter(|s| !s.is_empty());
    format!("rec.{vmm}.{}", stem.unwrap_or_else(|| "recording".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_id_names_the_vmm_version_and_the_file() {
        let p = vmc::provenance::Provenance {
            vmm: vec![vmc::provenance::VmmProcess {
                version: "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2)".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let id = default_id(&p, Some(std::path::Path::new("fixtures/recorded/live-precopy.yaml")));
        assert_eq!(id, "rec.qemu_10_0_2.live_precopy");
        assert!(vmc::sequence::valid_id(&id));
        assert_eq!(default_id(&vmc::provenance::Provenance::default(), None), "rec.vmm.recording");
    }
}
