//! `vfio-mig-conform DEVICE`: open the devices, build the checks, run one libtest-mimic
//! trial per check, write the record and the reports, and map outcomes to the exit code.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use libtest_mimic::{Arguments, Completion, Failed, FormatSetting, Trial};
use vmc::check::Check;
use vmc::device::{Device, MigrationApi};
use vmc::engine::{Engine, EngineOptions};
use vmc::outcome::{Outcome, Verdict, judge};
use vmc::report::ktap::KtapWriter;
use vmc::report::record::{CheckResult, DeviceRecord, Line, RecordWriter, RunFooter, RunHeader, Totals};

use crate::cli::{Format, RunArgs, exit};
use crate::open;

/// An error that ends the run with an exit code.
#[derive(Debug)]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

impl Exit {
    pub fn new(code: u8, message: impl Into<String>) -> Exit {
        Exit { code, message: message.into() }
    }
}

pub(crate) fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._:-=,".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The command that runs exactly one check again.
/// The defaults of `--max-stream` and `--timeout` (`cli.rs` uses them; a reproducer omits them).
pub(crate) const DEFAULT_MAX_STREAM: &str = "4g";
pub(crate) const DEFAULT_TIMEOUT: u64 = 10;

fn reproduce(args: &RunArgs, check: &Check) -> String {
    let mut cmd = vec!["vfio-mig-conform".to_string(), shell_quote(args.device.as_deref().unwrap_or(""))];
    for p in &args.peers {
        cmd.push(format!("--peer {}", shell_quote(p)));
    }
    if let Some(n) = &args.device_name {
        cmd.push(format!("--device-name {}", shell_quote(n)));
    }
    if let Some(p) = &args.profile {
        cmd.push(format!("--profile {}", shell_quote(p)));
    }
    // The options that change a verdict travel with it.
    if args.max_stream != DEFAULT_MAX_STREAM {
        cmd.push(format!("--max-stream {}", shell_quote(&args.max_stream)));
    }
    if args.timeout != DEFAULT_TIMEOUT {
        cmd.push(format!("--timeout {}", args.timeout));
    }
    if args.strict {
        cmd.push("--strict".to_string());
    }
    if let Some(f) = &check.sequence_file {
        cmd.push(format!("--sequence {}", shell_quote(f)));
    }
    cmd.push(format!("--exact {}", shell_quote(&check.id)));
    cmd.join(" ")
}

/// The record's first line: the tool and this command, the devices as opened, the profile.
pub(crate) fn run_header(
    engine: &Engine,
    profile: Option<&vmc::profile::Profile>,
    strict: bool,
) -> RunHeader {
    RunHeader {
        record_version: vmc::report::record::RECORD_VERSION,
        tool: "vfio-mig-conform".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        started: now_secs(),
        command: std::env::args().collect(),
        devices: engine
            .slots
            .iter()
            .map(|s| DeviceRecord {
                label: s.label.clone(),
                info: s.dev.info().clone(),
                facts: s.facts.clone(),
            })
            .collect(),
        profile: profile.map(|p| format!("{} ({})", p.name, p.file)),
        strict,
        strict_profile: false,
        timeout_secs: DEFAULT_TIMEOUT,
        host_kernel: uname_r(),
    }
}

/// Creates the run record at `path` with its header line (exit 2 when it cannot be written).
pub(crate) fn start_record(path: &std::path::Path, header: &RunHeader) -> Result<RecordWriter, Exit> {
    let fail = |e: std::io::Error| {
        Exit::new(exit::USAGE, format!("cannot write the run record {}: {e}", path.display()))
    };
    let mut w = RecordWriter::create(path).map_err(fail)?;
    w.write(&Line::Run(header.clone())).map_err(fail)?;
    Ok(w)
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

pub(crate) fn uname_r() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}

fn libtest_args(args: &RunArgs) -> Arguments {
    Arguments {
        filter: args.filter.clone(),
        exact: args.exact,
        skip: args.skip.clone(),
        list: args.list,
        quiet: args.quiet,
        test_threads: Some(1),
        color: Some(match args.color {
            crate::cli::ColorWhen::Always => libtest_mimic::ColorSetting::Always,
            crate::cli::ColorWhen::Never => libtest_mimic::ColorSetting::Never,
            crate::cli::ColorWhen::Auto => libtest_mimic::ColorSetting::Auto,
        }),
        format: Some(match args.format {
            Format::Terse => FormatSetting::Terse,
            Format::Json => FormatSetting::Json,
            _ => FormatSetting::Pretty,
        }),
        // KTAP and JSON events are written by the runner itself (see `events.rs`).
        logfile: (matches!(args.format, Format::Ktap | Format::TapFlat)
            || (args.format == Format::Json && !args.list))
            .then(|| "/dev/null".to_string()),
        ..Arguments::default()
    }
}

/// Why no check was selected, in the words of the command line.
fn nothing_selected(args: &RunArgs, available: usize) -> String {
    let mut why = Vec::new();
    match (&args.filter, args.exact) {
        (Some(f), true) => why.push(format!("no check is named `{f}`")),
        (Some(f), false) => why.push(format!("no check name contains `{f}`")),
        (None, _) => {}
    }
    if !args.skip.is_empty() {
        let skips: Vec<String> = args.skip.iter().map(|s| format!("`{s}`")).collect();
        why.push(format!("--skip {} left none", skips.join(", ")));
    }
    if why.is_empty() {
        why.push("the run has no checks".to_string());
    }
    let checks = if available == 1 { "check" } else { "checks" };
    format!("no checks selected: {}; `--list` shows the {available} {checks} available", why.join(" and "))
}

/// Everything the trials share.
struct Shared {
    engine: Engine,
    iso: crate::isolate::Isolation,
    strict: bool,
    /// `--strict-profile`: an XPASS fails (the trial too, so libtest's summary agrees).
    strict_profile: bool,
    profile: Option<vmc::profile::Profile>,
    record: Option<RecordWriter>,
    ktap_out: Option<KtapWriter<Box<dyn Write + Send>>>,
    ktap_file: Option<KtapWriter<Box<dyn Write + Send>>>,
    results: Vec<CheckResult>,
    trace: bool,
    /// Set when a device could not be returned to RUNNING: later checks are not run.
    wedged: Option<String>,
    /// The progress line on stderr (only drawn when stderr is a terminal and stdout is not).
    progress: crate::progress::Progress,
    /// `--format json`: the event lines.
    events: Option<crate::events::JsonEvents>,
}

impl Shared {
    /// A check that was not run: KTAP still needs its line to keep the plan whole.
    fn ktap_only(&mut self, r: &CheckResult) {
        for k in [&mut self.ktap_out, &mut self.ktap_file].into_iter().flatten() {
            let _ = k.result(r);
        }
    }

    fn finish_check(&mut self, r: CheckResult) {
        self.progress.finish(r.outcome.fails(self.strict_profile));
        if let Some(w) = &mut self.record
            && let Err(e) = w.write(&Line::Check(Box::new(r.clone())))
        {
            self.progress.clear();
            errln!("vfio-mig-conform: cannot write the run record: {e}");
        }
        for k in [&mut self.ktap_out, &mut self.ktap_file].into_iter().flatten() {
            let _ = k.result(&r);
        }
        self.results.push(r);
    }
}

/// Runs the suite.
pub fn run(args: &RunArgs) -> Result<u8, Exit> {
    // The SIGINT/SIGTERM handlers are already installed: bind::run, this function's caller,
    // does it first thing.
    let started = Instant::now();
    let max_stream = vmc::units::parse_size(&args.max_stream).filter(|n| *n > 0).ok_or_else(|| {
        Exit::new(
            exit::USAGE,
            format!("--max-stream `{}` is not a size above 0 like 4g or 65536", args.max_stream),
        )
    })?;
    // Output files are created before any device is opened, so a bad path costs no run.
    let junit_file = match args.junit.as_ref().filter(|_| !args.list) {
        Some(path) => Some(
            std::fs::File::create(path)
                .map_err(|e| Exit::new(exit::USAGE, format!("cannot write {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let device = args.device.clone().ok_or_else(|| Exit::new(exit::USAGE, "no DEVICE given"))?;
    // Every input file is validated before a device is opened.
    let inputs = crate::suite::Inputs::load(args)?;
    let mut devices: Vec<Box<dyn Device>> = Vec::new();
    let mut _locks = Vec::new();
    crate::isolate::touching_devices();
    for spec in std::iter::once(&device).chain(args.peers.iter()) {
        _locks.push(open::lock(spec)?);
        let (name, backend) = (args.device_name.as_deref(), args.iommu_backend.as_deref());
        devices.push(open::open_answering(spec, name, backend, args.timeout, !args.no_fork)?);
    }
    let engine = Engine::new(devices, EngineOptions { max_stream });
    let primary = &engine.slots[0].facts;
    if primary.api == MigrationApi::None {
        let why = format!(
            "{device}: no migration support ({})",
            primary.why_not.as_deref().unwrap_or("no v2 migration feature and no v1 migration region")
        );
        if matches!(args.format, Format::Ktap | Format::TapFlat) {
            let _ = KtapWriter::skip_all(std::io::stdout(), &why);
        } else {
            errln!("vfio-mig-conform: SKIP: {why}");
        }
        return Ok(exit::SKIP);
    }

    let checks = crate::suite::checks(&inputs, &engine)?;
    let profile = crate::suite::profile(&inputs, &engine);
    if let Some(p) = &profile {
        if args.profile.is_none()
            && !args.quiet
            && !matches!(args.format, Format::Ktap | Format::TapFlat | Format::Json)
        {
            outln!(
                "vfio-mig-conform: using profile `{}` ({}; --profile none to run without)",
                p.name,
                p.file
            );
        }
        let info = engine.slots[0].dev.info();
        if !p.drivers.is_empty() && !p.matches(info.driver.as_deref(), info.model.as_deref()) {
            errln!(
                "vfio-mig-conform: warning: profile `{}` is for driver {} (models {}); this device is driver {}, model {}",
                p.name,
                p.drivers.join("/"),
                if p.models.is_empty() { "any".to_string() } else { p.models.join("/") },
                info.driver.as_deref().unwrap_or("unknown"),
                info.model.as_deref().unwrap_or("unknown"),
            );
        }
        for m in p.claim_mismatches(&engine.slots[0].facts) {
            errln!("vfio-mig-conform: warning: profile `{}` does not match the device: {m}", p.name);
        }
    }
    let largs = libtest_args(args);
    let probe_trials: Vec<Trial> = checks.iter().map(|c| Trial::test(c.id.clone(), || Ok(()))).collect();
    let selected: Vec<&Check> =
        checks.iter().zip(&probe_trials).filter(|(_, t)| !largs.is_filtered_out(t)).map(|(c, _)| c).collect();
    if selected.is_empty() && !args.list {
        return Err(Exit::new(exit::USAGE, nothing_selected(args, checks.len())));
    }

    let header = RunHeader {
        strict_profile: args.strict_profile,
        timeout_secs: args.timeout,
        ..run_header(&engine, profile.as_ref(), args.strict)
    };
    let selected_ids: Vec<String> = selected.iter().map(|c| c.id.clone()).collect();
    let mut record = None;
    let mut ktap_out = None;
    let mut ktap_file = None;
    if !args.list {
        if let Some(path) = &args.json {
            record = Some(start_record(path, &header)?);
        }
        if matches!(args.format, Format::Ktap | Format::TapFlat) {
            let out: Box<dyn Write + Send> = Box::new(std::io::stdout());
            ktap_out = Some(
                KtapWriter::start(out, &selected_ids, args.format == Format::TapFlat, args.timeout)
                    .map_err(|e| Exit::new(exit::USAGE, format!("stdout: {e}")))?
                    .strict_profile(args.strict_profile),
            );
        }
        if let Some(path) = &args.ktap {
            let f = std::fs::File::create(path)
                .map_err(|e| Exit::new(exit::USAGE, format!("cannot write {}: {e}", path.display())))?;
            let out: Box<dyn Write + Send> = Box::new(f);
            ktap_file = Some(
                KtapWriter::start(out, &selected_ids, false, args.timeout)
                    .map_err(|e| Exit::new(exit::USAGE, format!("{}: {e}", path.display())))?
                    .strict_profile(args.strict_profile),
            );
        }
    }
    let strict = args.strict || profile.as_ref().is_some_and(|p| p.strict);
    let kernel_log = args.kernel_log || std::env::var("VMC_GUEST").is_ok_and(|v| v == "1");
    let kernel_log = kernel_log
        && match crate::kmsg::Window::open() {
            Ok(_) => true,
            Err(e) => {
                eprintln!(
                    "warning: the kernel log cannot be read ({}: {e}); checks are judged without it \
                     (needs CAP_SYSLOG or kernel.dmesg_restrict=0)",
                    crate::kmsg::KMSG
                );
                false
            }
        };
    let iso = crate::isolate::Isolation {
        fork: !args.no_fork,
        timeout: std::time::Duration::from_secs(args.timeout.max(1)),
        kernel_log,
        until: None,
    };
    let shared = Arc::new(Mutex::new(Shared {
        engine,
        iso,
        strict,
        strict_profile: args.strict_profile,
        profile,
        record,
        ktap_out,
        ktap_file,
        results: Vec::new(),
        trace: args.trace,
        wedged: None,
        progress: crate::progress::Progress::auto(selected_ids.len(), args.quiet || args.list),
        events: (args.format == Format::Json && !args.list)
            .then(|| crate::events::JsonEvents::start(selected_ids.len(), checks.len() - selected_ids.len())),
    }));

    let trials: Vec<Trial> = checks
        .into_iter()
        .map(|check| {
            let shared = Arc::clone(&shared);
            let repro = reproduce(args, &check);
            let id = check.id.clone();
            Trial::ignorable_test(id, move || run_trial_with_events(&shared, &check, repro))
        })
        .collect();
    run_trials(&largs, trials);
    if args.list {
        return Ok(exit::OK);
    }

    // A panic in one trial's bookkeeping must not lose the others' results.
    let mut shared = shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    shared.progress.clear();
    let totals = Totals::from_results(&shared.results);
    let interrupted = crate::isolate::interrupted();
    let mut code = if let Some(w) = &shared.wedged {
        errln!("vfio-mig-conform: stopped early: {w}");
        exit::WEDGED
    } else if let Some(why) = &interrupted {
        errln!(
            "vfio-mig-conform: {why}: the device was restored; {} finished check{} in the record",
            shared.results.len(),
            if shared.results.len() == 1 { " is" } else { "s are" }
        );
        exit::INTERRUPTED
    } else if totals.failed(args.strict_profile) {
        exit::VIOLATION
    } else {
        exit::OK
    };
    if let Some(k) = shared.ktap_out.take() {
        let _ = k.finish();
    }
    if let Some(e) = &shared.events {
        e.finish();
    }
    if let Some(k) = shared.ktap_file.take() {
        let _ = k.finish();
    }
    if let (Some(path), Some(mut f)) = (&args.junit, junit_file) {
        let xml = vmc::report::junit::render(&shared.results, "vfio-mig-conform", args.strict_profile);
        if let Err(e) = f.write_all(xml.as_bytes()).and_then(|()| f.flush()) {
            // The record still gets its footer; the run's own verdict wins over this one.
            errln!("vfio-mig-conform: cannot write {}: {e}", path.display());
            if code == exit::OK {
                code = exit::USAGE;
            }
        }
    }
    if let Some(w) = &mut shared.record {
        let footer = RunFooter {
            totals: totals.clone(),
            exit_code: i32::from(code),
            duration_ms: started.elapsed().as_millis() as u64,
            interrupted,
        };
        let _ = w.write(&Line::End(footer));
    }
    if !matches!(args.format, Format::Ktap | Format::TapFlat | Format::Json) && !args.quiet {
        // Standard output may be closed (`| head`): the summary is best effort, the code stands.
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "{}", vmc::report::notable::render(&shared.results));
        let _ = writeln!(
            out,
            "vfio-mig-conform: {} check{} in {:.2}s: {}",
            totals.total(),
            if totals.total() == 1 { "" } else { "s" },
            started.elapsed().as_secs_f64(),
            totals.line()
        );
    }
    Ok(code)
}

/// Runs the trials through libtest-mimic. Its printer panics when standard output is closed
/// (`vfio-mig-conform DEV | head`); that happens between trials, after the last device restore,
/// so the run stops there like an interrupted one (the record keeps every finished check,
/// exit 5) instead of dying with a panic. Any other panic is not ours to hide.
fn run_trials(largs: &Arguments, trials: Vec<Trial>) {
    let hook = Arc::new(std::panic::take_hook());
    let quiet_pipe = Arc::clone(&hook);
    std::panic::set_hook(Box::new(move |info| {
        if !crate::isolate::is_broken_pipe(info.payload()) {
            quiet_pipe(info);
        }
    }));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| libtest_mimic::run(largs, trials)));
    std::panic::set_hook(Box::new(move |info| hook(info)));
    if let Err(payload) = result {
        if crate::isolate::is_broken_pipe(&*payload) {
            crate::isolate::output_closed(crate::isolate::Closed::Stdout);
        } else {
            std::panic::resume_unwind(payload);
        }
    }
}

/// Runs one trial and, with `--format json`, writes its events.
fn run_trial_with_events(
    shared: &Arc<Mutex<Shared>>,
    check: &Check,
    reproduce: String,
) -> Result<Completion, Failed> {
    let json = {
        let s = shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(e) = &s.events {
            e.test_started(&check.id);
        }
        s.events.is_some()
    };
    let (result, text) = run_trial(shared, check, reproduce);
    if json {
        let mut s = shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let how = match &result {
            Ok(Completion::Completed) => crate::events::Event::Ok,
            Ok(_) => crate::events::Event::Ignored(&text),
            Err(_) => crate::events::Event::Failed(&text),
        };
        if let Some(e) = &mut s.events {
            e.test_finished(&check.id, &how);
        }
    }
    result
}

/// Runs one trial: its libtest result, and the text that goes with it (the failure block, or
/// why it was ignored).
fn run_trial(
    shared: &Arc<Mutex<Shared>>,
    check: &Check,
    reproduce: String,
) -> (Result<Completion, Failed>, String) {
    let mut s = shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    s.progress.start(&check.id);
    if let Some(why) = crate::isolate::interrupted() {
        // Not run: keep the KTAP plan whole, record nothing in the run record.
        let r = CheckResult::new(
            check,
            &vmc::engine::CheckRun::default(),
            Verdict {
                outcome: Outcome::Unsupported,
                reason: Some(format!("not run: {why}")),
                deviation: None,
            },
            s.strict,
            reproduce,
        );
        s.ktap_only(&r);
        let why = format!("not run: {why}");
        return (Ok(Completion::ignored_with(why.clone())), why);
    }
    let skip = if let Some(w) = &s.wedged {
        Some(format!("not run: {w}"))
    } else if let Some(p) = s.profile.as_ref().filter(|p| !p.covers(&check.clauses)) {
        let fams: Vec<&str> = p.families.iter().map(|f| f.as_str()).collect();
        Some(format!("not in the clause families of profile {} ({})", p.name, fams.join(", ")))
    } else {
        None
    };
    let run = match skip {
        Some(why) => {
            vmc::engine::CheckRun { end: vmc::engine::CheckEnd::Unsupported(why), ..Default::default() }
        }
        None => {
            let iso = s.iso;
            crate::isolate::run_check(&mut s.engine, check, iso)
        }
    };
    if crate::isolate::interrupted().is_some() && run.end.interrupted() {
        // The interrupted check did not finish: not recorded, only reported on stderr.
        s.progress.clear();
        errln!("vfio-mig-conform: {}: {}", check.id, run.end.error().unwrap_or(""));
        if let Some(e) = &run.restore_error {
            s.wedged = Some(e.clone());
        }
        let r = CheckResult::new(
            check,
            &run,
            Verdict {
                outcome: Outcome::Unsupported,
                reason: Some("not finished: interrupted".to_string()),
                deviation: None,
            },
            s.strict,
            reproduce,
        );
        s.ktap_only(&r);
        return (Ok(Completion::ignored_with("interrupted")), "interrupted".to_string());
    }
    if let Some(e) = &run.restore_error {
        s.wedged = Some(e.clone());
    }
    let model = s.engine.slots[0].dev.info().model.clone();
    let verdict = judge(&run, &check.id, s.strict, s.profile.as_ref(), model.as_deref());
    let outcome = verdict.outcome;
    let result = CheckResult::new(check, &run, verdict, s.strict, reproduce);
    if s.trace {
        s.progress.clear();
        for t in &result.trace {
            errln!("  [{}] step {} {}: {}", t.device, t.step, t.op, t.obs.summary());
        }
    }
    let block = result.failure_block();
    let reason = result.reason.clone();
    let strict_profile = s.strict_profile;
    s.finish_check(result);
    match outcome {
        Outcome::Xpass if strict_profile => {
            let text = format!("{outcome} (fails under --strict-profile)\n{block}");
            (Err(Failed::from(&text)), text)
        }
        Outcome::Pass | Outcome::Xfail | Outcome::NonStrict | Outcome::Info | Outcome::Xpass => {
            (Ok(Completion::Completed), String::new())
        }
        Outcome::Unsupported => {
            let why = reason.unwrap_or_else(|| "unsupported".to_string());
            (Ok(Completion::ignored_with(why.clone())), why)
        }
        Outcome::Fail | Outcome::Timeout | Outcome::Error => {
            let text = format!("{outcome}\n{block}");
            (Err(Failed::from(&text)), text)
        }
    }
}
