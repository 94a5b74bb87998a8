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
    /// Interrupted by SIGINT/SIGTERM, or standard output or error was closed; the device was restored
    /// and results flushed.
    pub const INTERRUPTED: u8 = 5;
    /// The device could not be returned to RUNNING, or a second SIGINT/SIGTERM ended the
    /// process before it was: it needs attention.
    pub const WEDGED: u8 = 6;
}

const AFTER_HELP: &str = "\
DEVICE is /dev/vfio/N (group), /dev/vfio/devices/vfioX (cdev), a PCI address (0000:3b:00.1;
also from $VMC_BDF, like the kernel selftests' $VFIO_SELFTESTS_BDF; with --bind it is bound to
vfio-pci for the run), an mdev UUID, or a simulated device:
  sim:v2[?KEY=VALUE&...]  the v2 FSM; keys: flags=stop_copy,p2p,pre_copy (migration flags),
                          size=N (state bytes, k/m/g suffixes), dma=on|off (DMA logging),
                          report=stub|real (stub: DMA_LOGGING_REPORT fails with EOPNOTSUPP),
                          type=NAME (device type; streams of another type are foreign),
                          seed=N (the state's contents), kernel=6.12|7.2 (the release
                          it simulates: clauses the release lacks are UNSUPPORTED),
                          defect=NAME[,NAME...]
  sim:v1[?KEY=VALUE&...]  the v1 migration region; keys: size=, type=, seed=, kernel=, defect=
  sim:plain               a VFIO device without migration support (exit 4)
`vfio-mig-conform sim --list-defects` lists the defects.

Exit codes: 0 conformant, 1 violation (FAIL, TIMEOUT or ERROR, or XPASS with --strict-profile),
2 usage error, bad input or nothing selected, 3 device cannot be opened, 4 device has no
migration support (skip), 5 interrupted (SIGINT/SIGTERM, or standard output or error closed;
the device restored), 6 device could not be restored to RUNNING, or does not answer (wedged).";

const REPORT_AFTER_HELP: &str = "\
Every format counts the same results: the checks of each record and the findings of its fuzz
sessions (a new finding by its recorded level: FAIL for a MUST, NON-STRICT for a SHOULD; a
known one an XFAIL); an XPASS fails when the run had
--strict-profile.

Exit codes (the worst over the records): 0 conformant, 1 a violation (FAIL, TIMEOUT, ERROR,
XPASS under --strict-profile, or a new fuzz finding), 2 unreadable record or usage error,
5 a run was interrupted or did not finish (no end line), 6 a run could not restore its device.
With --diff: 0 the verdicts agree, 1 some differ.";

/// Conformance suite and fuzz harness for Linux VFIO live-migration drivers.
#[derive(Parser, Debug)]
#[command(
    name = "vfio-mig-conform",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    // `--timeout -1` is a bad value for --timeout, not an option `-1` (and not the FILTER).
    allow_negative_numbers = true,
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
#[derive(Args, Clone, Debug, Default)]
pub struct RunArgs {
    /// The device to test (see below).
    #[arg(env = "VFIO_MIG_CONFORM_DEVICE", required_unless_present = "vmc_bdf")]
    pub device: Option<String>,
    /// $VMC_BDF: the PCI address to test when DEVICE is not given.
    #[arg(long = "vmc-bdf", env = "VMC_BDF", hide = true, value_name = "BDF")]
    pub vmc_bdf: Option<String>,
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
    /// Per-operation watchdog in seconds (1 to 86400), a whole read or write loop included.
    #[arg(long, value_name = "SECS", default_value_t = crate::run::DEFAULT_TIMEOUT, value_parser = watchdog_seconds)]
    pub timeout: u64,
    /// Run checks in this process instead of one child process per check (no watchdog).
    #[arg(long)]
    pub no_fork: bool,
    /// Read the kernel log (/dev/kmsg) around every check: a KASAN report, lockdep splat, WARN,
    /// BUG/Oops, soft lockup or hung task makes the check FAIL (V2-KERNEL-001). Needs
    /// CAP_SYSLOG (or kernel.dmesg_restrict=0); always on in the vm/ guest (VMC_GUEST=1).
    #[arg(long)]
    pub kernel_log: bool,
    /// Bound on any one migration stream read (bytes; k/m/g suffixes).
    #[arg(long, value_name = "BYTES", default_value = crate::run::DEFAULT_MAX_STREAM)]
    pub max_stream: String,
    /// Print every step of every check with its result.
    #[arg(long)]
    pub trace: bool,
    /// Less output.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Colour of the pretty output.
    #[arg(long, value_name = "WHEN", value_enum, default_value_t = ColorWhen::Auto)]
    pub color: ColorWhen,
    /// Bind PCI devices (DEVICE and --peer addresses) that are not on vfio-pci to it for the
    /// run, through driver_override, and put the original driver back afterwards (also after
    /// Ctrl-C; after a crash the next run or `vfio-mig-conform restore` does).
    #[arg(long)]
    pub bind: bool,
    /// With --bind: bind a device the host is using (an interface that is up, a mounted disk).
    #[arg(long, requires = "bind")]
    pub force: bool,
    /// IOMMU back end: vfio_type1_iommu, vfio_type1v2_iommu, iommufd_compat_type1,
    /// iommufd_compat_type1v2, iommufd, vfio_noiommu (type1, type1v2, noiommu for short), or
    /// `all`: one run per back end available (output files get a .BACKEND suffix). Default:
    /// type1v2 for a group, iommufd for a cdev, vfio_noiommu for a noiommu-N group.
    #[arg(long, value_name = "NAME", value_parser = iommu_backend)]
    pub iommu_backend: Option<String>,
}

/// `--iommu-backend`: a back end name (the kernel VFIO selftests' names) or `all`.
fn iommu_backend(s: &str) -> Result<String, String> {
    if s == "all" {
        return Ok(s.to_string());
    }
    match vmc::device::kernel::IommuBackend::parse(s) {
        Some(b) => Ok(b.name().to_string()),
        None => Err(format!(
            "`{s}` is not an IOMMU back end: vfio_type1_iommu, vfio_type1v2_iommu, iommufd_compat_type1, iommufd_compat_type1v2, iommufd, vfio_noiommu or all"
        )),
    }
}

/// `--color`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, ValueEnum)]
pub enum ColorWhen {
    /// When standard output is a terminal.
    #[default]
    Auto,
    Always,
    Never,
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
    #[command(after_help = REPORT_AFTER_HELP)]
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
        #[arg(long, value_name = "PREFIX", requires = "diff")]
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
    /// Record what a VMM does to its VFIO devices (run under ptrace) as a replayable YAML
    /// sequence: `record -o FILE.yaml -- qemu-system-x86_64 ...`.
    Record(crate::record::RecordArgs),
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
    /// Put devices that `--bind` bound back on their original driver (the state files under
    /// $VMC_STATE_DIR, default /run/vfio-mig-conform/bound): after a run that was killed.
    #[command(visible_alias = "unbind")]
    Restore {
        /// PCI addresses (default: every device with a state file).
        devices: Vec<String>,
        /// Seconds to wait for a run that still holds a device to end.
        #[arg(long, value_name = "SECS", default_value_t = 30)]
        wait: u64,
    },
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
#[command(
    allow_negative_numbers = true,
    after_help = "\
Every walk runs as a check in a child process under the watchdog, and the devices are restored
after each. A finding whose clauses are all declared deviations of the profile (given, or matched
to the device as the main run does) is \"known\"; the others are new.

Exit codes: 0 no new failing finding, 1 a new finding of a MUST clause, a hang or a harness
error (a new SHOULD finding is NON-STRICT), 2 usage error (or no walk ran within --duration), 3 device cannot be
opened, 4 no migration support, 5 interrupted, 6 device could not be restored or does not answer (wedged)."
)]
pub struct FuzzArgs {
    /// The device to fuzz (as for a run).
    pub device: String,
    /// How long to fuzz: 60s, 5m, 1h, 500ms (a plain number is seconds). It bounds the
    /// session's wall time: the walk in flight is cut when it runs out.
    #[arg(long, value_name = "TIME", default_value = "60s")]
    pub duration: String,
    /// Seed of the random walks (default: from the clock; printed so a session can be repeated).
    #[arg(long, value_name = "S", value_parser = seed)]
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
    #[arg(long, value_name = "N", default_value_t = 48, value_parser = walk_length)]
    pub max_walk: usize,
    /// Per-operation watchdog in seconds (1 to 86400), a whole read or write loop included.
    #[arg(long, value_name = "SECS", default_value_t = crate::run::DEFAULT_TIMEOUT, value_parser = watchdog_seconds)]
    pub timeout: u64,
    /// Bound on any one migration stream read (bytes; k/m/g suffixes); the replay command of
    /// each reproducer carries it.
    #[arg(long, value_name = "BYTES", default_value = "256m")]
    pub max_stream: String,
    /// Run walks in this process (no watchdog, no crash containment; --duration is checked
    /// between operations).
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
    /// With guided --coverage and the fail_nth kind: run each step that reached new kernel
    /// code again with a fault in its 1st, 2nd, ... allocation until none fires (or three in
    /// a row reach nothing new). Off by default: on mtty it took a quarter of the runs and
    /// reached no block sooner (docs/fuzzing.md); for drivers whose migration calls allocate
    /// more deeply than fresh walks inject (1 to 12).
    #[arg(long)]
    pub fault_sweep: bool,
    /// With guided --coverage: do not run the variants of a data-file call (read, write,
    /// PRECOPY_INFO) that reached new kernel code (the same call again, on the other data fd,
    /// a write in 8-byte pieces), which are otherwise run once each, every other walk.
    #[arg(long)]
    pub no_neighbours: bool,
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
    ranged(s, 1, 86_400, " s", "the watchdog takes 1 to 86400 seconds")
}

/// `--max-walk`: 4 operations (a walk needs room for a save or restore) to 10000.
fn walk_length(s: &str) -> Result<usize, String> {
    ranged(s, 4, 10_000, " operations", "a walk takes 4 to 10000 operations").map(|n| n as usize)
}

/// `--seed`: any 64-bit number.
fn seed(s: &str) -> Result<u64, String> {
    ranged(s, 0, u64::MAX, "", "a seed is 0 to 18446744073709551615")
}

/// An integer from `lo` to `hi`; the message says which when it is not (`-1`, `1e3`, `lots`).
fn ranged(s: &str, lo: u64, hi: u64, unit: &str, range: &str) -> Result<u64, String> {
    match s.trim().parse::<i128>() {
        Ok(n) if n >= i128::from(lo) && n <= i128::from(hi) => Ok(n as u64),
        Ok(n) => Err(format!("{n}{unit}: {range}")),
        Err(_) => Err(format!("`{s}` is not a whole number: {range}")),
    }
}
