//! The command line, as one clap definition (also the source of the man page and shell
//! completions).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Exit codes (kselftest-compatible where kselftest defines them).
pub mod exit {
    /// Every selected check is conformant.
    pub const OK: u8 = 0;
    /// At least one FAIL, TIMEOUT or ERROR (or XPASS with --strict-profile).
    pub const VIOLATION: u8 = 1;
    /// Usage error, bad input file, or nothing selected.
    pub const USAGE: u8 = 2;
    /// The device could not be opened (missing, not VFIO, permission, busy, ambiguous).
    pub const DEVICE: u8 = 3;
    /// The device has no migration support (kselftest SKIP).
    pub const SKIP: u8 = 4;
    /// Interrupted by SIGINT/SIGTERM, or standard output was closed; the device was restored
    /// and results flushed.
    pub const INTERRUPTED: u8 = 5;
    /// The device could not be returned to RUNNING: it needs attention.
    pub const WEDGED: u8 = 6;
}

const AFTER_HELP: &str = "\
DEVICE is /dev/vfio/N (group), /dev/vfio/devices/vfioX (cdev), a PCI address (0000:3b:00.1),
an mdev UUID, or a simulated device: sim:v2[?flags=stop_copy,p2p,pre_copy&size=N&dma=on&defect=NAME]
or sim:v1[?...]. `vfio-mig-conform sim --list-defects` lists the defects.

Exit codes: 0 conformant, 1 violation (FAIL/TIMEOUT/ERROR), 2 usage error or nothing selected,
3 device cannot be opened, 4 device has no migration support (skip), 5 interrupted,
6 device could not be restored to RUNNING.";

/// Conformance suite and fuzz harness for Linux VFIO live-migration drivers.
#[derive(Parser, Debug)]
#[command(
    name = "vfio-mig-conform",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = AFTER_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Output format of a run on stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    /// One line per check, failures with Expected/Actual at the end.
    #[default]
    Pretty,
    /// One character per check.
    Terse,
    /// libtest JSON events.
    Json,
    /// KTAP v1 (kselftest/KernelCI), nested by check family.
    Ktap,
    /// KTAP with one level (for parsers that do not see nested levels, e.g. LAVA's tappy).
    TapFlat,
}

/// Running the suite against a device.
#[derive(Args, Debug, Default)]
pub struct RunArgs {
    /// The device to test (see below).
    #[arg(env = "VFIO_MIG_CONFORM_DEVICE", required = true)]
    pub device: Option<String>,
    /// Run only checks whose name contains FILTER (or equals it with --exact).
    pub filter: Option<String>,
    /// A second (third, ...) device for multi-device checks (P2P orderings, cross-device
    /// streams); they get labels B, C, ...
    #[arg(long = "peer", value_name = "DEVICE")]
    pub peers: Vec<String>,
    /// The device's name inside its IOMMU group, when the group holds several.
    #[arg(long, value_name = "NAME")]
    pub device_name: Option<String>,
    /// Vendor profile: a name from profiles/ (mtty, mlx5, ...) or a YAML file.
    #[arg(long, short = 'p', value_name = "PROFILE")]
    pub profile: Option<String>,
    /// Treat broken SHOULD clauses (NON-STRICT) as failures.
    #[arg(long)]
    pub strict: bool,
    /// Treat XPASS (a declared deviation that did not happen) as a failure.
    #[arg(long)]
    pub strict_profile: bool,
    /// Match FILTER exactly.
    #[arg(long)]
    pub exact: bool,
    /// Skip checks whose name contains this (repeatable).
    #[arg(long, value_name = "FILTER")]
    pub skip: Vec<String>,
    /// List the checks instead of running them.
    #[arg(long)]
    pub list: bool,
    /// Run the sequences of these YAML files instead of the built-in suite (repeatable).
    #[arg(long, value_name = "FILE")]
    pub sequence: Vec<PathBuf>,
    /// Fixture directories to load (default: the built-in fixtures).
    #[arg(long, value_name = "DIR")]
    pub fixtures: Vec<PathBuf>,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = Format::Pretty)]
    pub format: Format,
    /// Also write JUnit XML here.
    #[arg(long, value_name = "PATH")]
    pub junit: Option<PathBuf>,
    /// Also write the run record (JSON Lines, written as checks finish) here.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Also write KTAP here.
    #[arg(long, value_name = "PATH")]
    pub ktap: Option<PathBuf>,
    /// Per-operation watchdog in seconds (1 to 86400).
    #[arg(long, value_name = "SECS", default_value_t = crate::run::DEFAULT_TIMEOUT, value_parser = watchdog_seconds)]
    pub timeout: u64,
    /// Run checks in this process instead of one child process per check (no watchdog).
    #[arg(long)]
    pub no_fork: bool,
    /// Bound on any one migration stream read (bytes; k/m/g suffixes).
    #[arg(long, value_name = "BYTES", default_value = crate::run::DEFAULT_MAX_STREAM)]
    pub max_stream: String,
    /// Print every step of every check with its result.
    #[arg(long)]
    pub trace: bool,
    /// Less output.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Colour: auto, always, never.
    #[arg(long, value_name = "WHEN", default_value = "auto")]
    pub color: String,
}

/// Output format of `clauses`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ClauseFormat {
    Text,
    Json,
    Md,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// List the clause catalog, or which checks observe each clause.
    Clauses {
        #[arg(long, value_enum, default_value_t = ClauseFormat::Text)]
        format: ClauseFormat,
        /// Show, per clause, which checks observe it and which clauses no check observes.
        #[arg(long)]
        coverage: bool,
    },
    /// Simulated devices.
    Sim {
        /// List the injectable defects with the clauses each violates.
        #[arg(long)]
        list_defects: bool,
    },
    /// Rebuild reports from run records.
    Report {
        /// Run records (--json files).
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ReportFormat::Pretty)]
        format: ReportFormat,
        /// Compare the verdicts of two runs check by check (exit 1 if any differs).
        #[arg(long)]
        diff: bool,
        /// With --diff: only checks whose name starts with this.
        #[arg(long, value_name = "PREFIX")]
        filter: Option<String>,
        /// Write a static HTML report (index.html and one page per run) into DIR instead:
        /// arc matrix, clause table, runs x clauses matrix, fuzz coverage.
        #[arg(long, value_name = "DIR", conflicts_with_all = ["diff", "format"])]
        html: Option<PathBuf>,
    },
    /// Live fuzzing: seeded random walks of operations on a device, every step judged by the
    /// oracle; discrepancies are shrunk into minimal YAML reproducers.
    Fuzz(FuzzArgs),
    /// Print the YAML sequence that replays a cargo-fuzz input (e.g. a crash file of
    /// `cargo fuzz run fsm_v2`): replay it with `vfio-mig-conform DEVICE --sequence FILE`.
    FuzzToYaml {
        /// The fuzz input.
        file: PathBuf,
        /// Which target the input is for: fsm_v2, v1_region or resume_stream (default: the
        /// target directory the file is in, e.g. fuzz/artifacts/fsm_v2/, else fsm_v2).
        #[arg(long, value_name = "TARGET")]
        target: Option<String>,
    },
    /// Kernel coverage of `fuzz --coverage kcov` against the kernel image (on the host with the
    /// kernel build): writes the function list for `fuzz --kcov-filter`, and for each fuzz
    /// session of the given records prints the distinct driver PCs over time and the share of
    /// the driver's KCOV blocks reached, with the unreached lines.
    KcovReport(KcovReportArgs),
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
}

/// `vfio-mig-conform kcov-report`.
#[derive(Debug, Args)]
pub struct KcovReportArgs {
    /// Run records (`fuzz --json`) with kernel coverage.
    #[arg(value_name = "RUN.jsonl")]
    pub runs: Vec<PathBuf>,
    /// The kernel image the PCs come from (vmlinux with DWARF for the driver's object).
    #[arg(long, value_name = "PATH")]
    pub vmlinux: PathBuf,
    /// The driver's source file, as DWARF names it (a suffix is enough).
    #[arg(long, value_name = "FILE", default_value = "samples/vfio-mdev/mtty.c")]
    pub source: String,
    /// Other source files whose functions also count for the fuzzer (the VFIO core).
    #[arg(long = "also", value_name = "FILE", default_value = "drivers/vfio/vfio_main.c")]
    pub also: Vec<String>,
    /// Kernel source tree, to show the text of each line.
    #[arg(long, value_name = "DIR")]
    pub ksrc: Option<PathBuf>,
    /// The functions whose blocks are counted (default for mtty.c: its migration code; else
    /// every function of the file).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub functions: Vec<String>,
    /// Write the function list for `fuzz --kcov-filter` (driver and core functions) here.
    #[arg(long, value_name = "PATH")]
    pub filter_out: Option<PathBuf>,
    /// Write the records again with the symbolized driver coverage (for `report --html`).
    #[arg(long, value_name = "DIR")]
    pub write: Option<PathBuf>,
    /// Times (seconds) at which to count distinct PCs.
    #[arg(long, value_name = "SECS", value_delimiter = ',', default_value = "60,300")]
    pub at: Vec<f64>,
}

/// `vfio-mig-conform fuzz DEVICE`.
#[derive(Args, Debug)]
#[command(after_help = "\
Every walk runs as a check in a child process under the watchdog, and the devices are restored
after each. A finding whose clauses are all declared deviations of the profile (given, or matched
to the device as the main run does) is \"known\"; the others are new.

Exit codes: 0 no new findings, 1 new findings, 2 usage error, 3 device cannot be opened,
4 no migration support, 5 interrupted, 6 device could not be restored.")]
pub struct FuzzArgs {
    /// The device to fuzz (as for a run).
    pub device: String,
    /// How long to fuzz: 60s, 5m, 1h, 500ms (a plain number is seconds).
    #[arg(long, value_name = "TIME", default_value = "60s")]
    pub duration: String,
    /// Seed of the random walks (default: from the clock; printed so a session can be repeated).
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Only these operation kinds, comma separated (set_state, read, write, ...).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub ops: Vec<String>,
    /// Also operations that can hurt a real host: raw feature calls, config-space and MMIO
    /// writes with random values, v1 header writes.
    #[arg(long)]
    pub allow_disruptive: bool,
    /// Peer devices (labels B, C, ...): captured streams are also restored into them.
    #[arg(long = "peer", value_name = "DEVICE")]
    pub peers: Vec<String>,
    /// The device's name inside its IOMMU group, when the group holds several.
    #[arg(long, value_name = "NAME")]
    pub device_name: Option<String>,
    /// Vendor profile whose deviations make findings "known" (a name, a file, or none).
    #[arg(long, short = 'p', value_name = "PROFILE")]
    pub profile: Option<String>,
    /// Write the run record (header, fuzz summary, footer) here.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Directory for the shrunk YAML reproducers.
    #[arg(long, value_name = "DIR", default_value = "target/fuzz-findings")]
    pub out: PathBuf,
    /// Stop at the first new (not known) finding.
    #[arg(long)]
    pub stop_on_finding: bool,
    /// Stop once every (cur, new) pair of the device's states has been exercised.
    #[arg(long)]
    pub until_covered: bool,
    /// Longest walk, in operations.
    #[arg(long, value_name = "N", default_value_t = 48)]
    pub max_walk: usize,
    /// Per-operation watchdog in seconds (1 to 86400).
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = watchdog_seconds)]
    pub timeout: u64,
    /// Run walks in this process (no watchdog, no crash containment).
    #[arg(long)]
    pub no_fork: bool,
    /// No progress line and a shorter summary.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Kernel coverage feedback: `kcov` collects the kernel PCs of every step from
    /// /sys/kernel/debug/kcov (CONFIG_KCOV) and mutates the walks that reached new driver
    /// code; kernel reports (KASAN, lockdep, WARN, BUG, hung task) in /dev/kmsg become
    /// findings of the step that caused them. Without KCOV the session says so and runs blind.
    #[arg(long, value_name = "SOURCE", default_value = "none", value_parser = ["none", "kcov"])]
    pub coverage: String,
    /// With --coverage: collect and report coverage, but do not steer by it (blind walks, for
    /// comparing guided and blind sessions).
    #[arg(long)]
    pub blind: bool,
    /// Corpus directory: its sequences seed the session, and the session's corpus (a minimal
    /// set of walks reaching every PC it reached) is saved back into it (`c-*.yaml`).
    #[arg(long, value_name = "DIR")]
    pub corpus: Option<PathBuf>,
    /// Which kernel functions count for --coverage: a file of function names, one per line
    /// (`vfio-mig-conform kcov-functions` writes one from the kernel's vmlinux); default:
    /// functions and modules named vfio*, mdev* and after the device's driver.
    #[arg(long, value_name = "FILE")]
    pub kcov_filter: Option<PathBuf>,
}

/// Output format of `report`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Pretty,
    Ktap,
    Junit,
    Json,
}

/// `--timeout`: a watchdog of 1 s to a day (0 would fire at once; beyond a day a deadline is
/// no watchdog at all, and near u64::MAX it overflows the clock).
fn watchdog_seconds(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if (1..=86_400).contains(&n) => Ok(n),
        Ok(n) => Err(format!("{n} s: the watchdog takes 1 to 86400 seconds")),
        Err(e) => Err(format!("`{s}` is not a number of seconds: {e}")),
    }
}
