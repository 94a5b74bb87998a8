//! `vfio-mig-conform fuzz DEVICE` (live fuzzing through the process isolation of the main run)
//! and `vfio-mig-conform fuzz-to-yaml FILE`.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use vmc::device::{Device, MigrationApi};
use vmc::engine::{Engine, EngineOptions};
use vmc::fuzz::coverage::{FilterSpec, KcovSource, PcFilter, X86_64_TEXT};
use vmc::fuzz::live::{LiveOptions, Session, WalkOutcome, unknown_kinds};
use vmc::report::record::{Line, RunFooter, Totals};

use crate::cli::{FuzzArgs, exit};
use crate::run::Exit;

/// Parses `60s`, `5m`, `1h`, `500ms`, `90`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim().to_ascii_lowercase();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (&t[..i], &t[i..]),
        None => (t.as_str(), "s"),
    };
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "sec" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    (secs.is_finite() && (0.0..1e9).contains(&secs)).then(|| Duration::from_secs_f64(secs))
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64 ^ u64::from(std::process::id()))
        .unwrap_or(1)
}

/// `vfio-mig-conform fuzz`.
pub fn fuzz(args: &FuzzArgs) -> Result<u8, Exit> {
    crate::isolate::install_signal_handlers();
    let duration = parse_duration(&args.duration).filter(|d| !d.is_zero()).ok_or_else(|| {
        Exit::new(
            exit::USAGE,
            format!(
                "--duration `{}` is not a time above 0 and below 10^9 s, like 60s, 5m or 500ms",
                args.duration
            ),
        )
    })?;
    let max_stream = vmc::units::parse_size(&args.max_stream).filter(|n| *n > 0).ok_or_else(|| {
        Exit::new(
            exit::USAGE,
            format!("--max-stream `{}` is not a size above 0 like 256m or 65536", args.max_stream),
        )
    })?;
    // Inputs are validated before any device is opened.
    let explicit = match args.profile.as_deref() {
        None => None,
        Some("none") => Some(None),
        Some(p) => {
            let p = crate::suite::explicit_profile(p)?;
            crate::suite::names_known_checks(&p, &[])?;
            Some(Some(p))
        }
    };
    let all_kinds: Vec<String> =
        args.ops.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    let unknown: Vec<String> = unknown_kinds(MigrationApi::V2, &all_kinds)
        .into_iter()
        .filter(|k| !unknown_kinds(MigrationApi::V1, std::slice::from_ref(k)).is_empty())
        .collect();
    if !unknown.is_empty() {
        return Err(Exit::new(
            exit::USAGE,
            format!(
                "--ops: unknown operation kind(s) {} (v2: {}; v1: {})",
                unknown.join(", "),
                vmc::fuzz::live::V2_KINDS.join(", "),
                vmc::fuzz::live::V1_KINDS.join(", ")
            ),
        ));
    }
    if let Some(k) = all_kinds.iter().find(|k| vmc::fuzz::live::kind_is_disruptive(k))
        && !args.allow_disruptive
    {
        return Err(Exit::new(exit::USAGE, format!("--ops {k} is disruptive: add --allow-disruptive")));
    }
    let filter_file = match &args.kcov_filter {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| Exit::new(exit::USAGE, format!("--kcov-filter {}: {e}", p.display())))?,
        ),
        None => None,
    };
    let mut devices: Vec<Box<dyn Device>> = Vec::new();
    let mut _locks = Vec::new();
    crate::isolate::touching_devices();
    for spec in std::iter::once(&args.device).chain(args.peers.iter()) {
        _locks.push(crate::open::lock(spec)?);
        devices.push(crate::open::open_answering(
            spec,
            args.device_name.as_deref(),
            None,
            args.timeout.max(1),
            !args.no_fork,
        )?);
    }
    let mut engine = Engine::new(devices, EngineOptions { max_stream });
    let facts = engine.slots[0].facts.clone();
    if facts.api == MigrationApi::None {
        errln!(
            "vfio-mig-conform fuzz: SKIP: {}: no migration support ({})",
            args.device,
            facts.why_not.as_deref().unwrap_or("no v2 migration feature and no v1 migration region")
        );
        return Ok(exit::SKIP);
    }
    if !all_kinds.is_empty() {
        let bad = unknown_kinds(facts.api, &all_kinds);
        if !bad.is_empty() {
            return Err(Exit::new(
                exit::USAGE,
                format!("--ops {}: not operations of a {} device", bad.join(", "), facts.api),
            ));
        }
    }
    let inputs = crate::suite::Inputs { sequences: Vec::new(), only_sequences: true, profile: explicit };
    let profile = crate::suite::profile(&inputs, &engine);
    let seed = args.seed.unwrap_or_else(clock_seed);
    let opts = LiveOptions {
        seed,
        kinds: (!all_kinds.is_empty()).then_some(all_kinds),
        allow_disruptive: args.allow_disruptive,
        max_walk: args.max_walk,
        guided: !args.blind,
        fault_sweep: args.fault_sweep,
        neighbours: !args.no_neighbours,
        ..LiveOptions::default()
    };
    let header = vmc::report::record::RunHeader {
        timeout_secs: args.timeout,
        ..crate::run::run_header(&engine, profile.as_ref(), false)
    };
    let mut record = match &args.json {
        Some(path) => Some(crate::run::start_record(path, &header)?),
        None => None,
    };
    // A panic inside a walk becomes a finding (the check process reports its message): do not
    // also print it.
    std::panic::set_hook(Box::new(|_| {}));
    let mut session = Session::new(&mut engine, opts);
    let model = session.model().map(str::to_string);
    let coverage_note = if args.coverage == "kcov" {
        let driver = engine.slots[0].dev.info().driver.clone();
        match kcov_source(filter_file.as_deref(), args.kcov_filter.as_deref(), driver.as_deref()) {
            Ok(src) => {
                let note = format!(
                    "coverage: kcov ({}), {}{}",
                    src.filter().description,
                    if args.blind { "blind (measured only)" } else { "guided" },
                    src.kmsg_error.as_ref().map(|e| format!("; no kernel reports: {e}")).unwrap_or_default()
                );
                session.set_coverage(&mut engine, Box::new(src));
                match (args.fault_sweep, session.sweeping()) {
                    (true, true) => format!("{note}; fault sweeps of new code paths"),
                    (true, false) => format!(
                        "{note}; no fault sweeps: {}",
                        if args.blind {
                            "--blind does not steer"
                        } else {
                            "the fail_nth kind is off (not in --ops, or the device cannot inject faults)"
                        }
                    ),
                    _ => note,
                }
            }
            Err(e) => format!(
                "coverage: none: {e}; fuzzing without coverage feedback{}",
                if args.fault_sweep { " (and without --fault-sweep)" } else { "" }
            ),
        }
    } else {
        String::new()
    };
    if !args.quiet {
        let prof = profile.as_ref().map(|p| format!(", profile {}", p.name)).unwrap_or_default();
        errln!(
            "vfio-mig-conform fuzz: {} ({}, flags {}{prof}), seed {seed}, {} s; operations: {}",
            args.device,
            facts.api,
            facts.flags,
            duration.as_secs_f64(),
            session.kinds().join(",")
        );
    }
    if !coverage_note.is_empty() {
        errln!("vfio-mig-conform fuzz: {coverage_note}");
    }
    let tty = std::io::stderr().is_terminal() && !args.quiet;
    let started = Instant::now();
    // --duration bounds the session's wall time: the check process in flight is killed at the
    // deadline (whatever operation it is in), and nothing runs after it (shrinking included).
    let until = started + duration;
    let iso = crate::isolate::Isolation {
        fork: !args.no_fork,
        timeout: Duration::from_secs(args.timeout.max(1)),
        kernel_log: false,
        until: Some(until),
    };
    if args.no_fork {
        // In-process walks cannot be killed: the engine stops them at the next step instead.
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        engine.interrupt = Some(std::sync::Arc::clone(&flag));
        std::thread::spawn(move || {
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        });
    }
    let mut last_progress = Instant::now();
    let mut exec = |e: &mut Engine, c: &vmc::check::Check| {
        if Instant::now() >= until {
            return vmc::engine::CheckRun {
                end: vmc::engine::CheckEnd::HarnessError(crate::isolate::TIME_UP.to_string()),
                ..Default::default()
            };
        }
        crate::isolate::run_check(e, c, iso)
    };
    let replay = replay_command(args, max_stream);
    let mut wedged = None;
    let mut stopped_for = None;
    let mut unknown_count = 0usize;
    let mut failing_count = 0usize;
    let mut known_count = 0usize;
    let mut seeds = match &args.corpus {
        Some(dir) => {
            let (seeds, errors) = vmc::fuzz::corpus::load(dir);
            for e in &errors {
                errln!("vfio-mig-conform fuzz: corpus: skipped {e}");
            }
            if !args.quiet && !seeds.is_empty() {
                errln!("vfio-mig-conform fuzz: corpus: {} sequences from {}", seeds.len(), dir.display());
            }
            seeds
        }
        None => Vec::new(),
    }
    .into_iter();
    loop {
        if crate::isolate::interrupted().is_some() || started.elapsed() >= duration {
            break;
        }
        let outcome = match seeds.next() {
            Some((name, steps)) => session.seed(&mut engine, &mut exec, &name, steps),
            None => session.walk(&mut engine, &mut exec),
        };
        let (new, stop) = match outcome {
            WalkOutcome::Done(new) => (new, false),
            WalkOutcome::Wedged(e, new) => {
                wedged = Some(e);
                (new, true)
            }
            WalkOutcome::Interrupted(_) => (Vec::new(), true),
        };
        for i in new {
            let f = &mut session.findings[i];
            let known = profile.as_ref().and_then(|p| {
                p.declares(&f.key, model.as_deref()).map(|ds| {
                    let reasons: Vec<String> = ds.iter().map(|d| d.describe()).collect();
                    format!("{}: {}", p.name, reasons.join("; "))
                })
            });
            f.record.known = known.clone();
            let file = args.out.join(format!("{}.yaml", f.sequence.id));
            let command =
                format!("{replay} --sequence {}", crate::run::shell_quote(&file.display().to_string()));
            let text = format!("# replay: {command}\n{}", f.record.reproducer);
            match write_finding(&args.out, &file, &text) {
                Ok(()) => {
                    f.record.reproducer_file = Some(file.display().to_string());
                    f.record.replay = Some(command);
                }
                Err(e) => errln!("vfio-mig-conform fuzz: cannot write {}: {e}", file.display()),
            }
            if tty {
                err!("\r\x1b[K");
            }
            let tag = if known.is_some() { "known" } else { "NEW" };
            errln!(
                "vfio-mig-conform fuzz: [{tag}] {} after {:.1} s: expected {}; actual {} ({}{})",
                f.key.join(", "),
                f.record.after_secs,
                f.record.expected,
                f.record.actual,
                count(f.sequence.steps.len(), "step", "steps"),
                f.record.reproducer_file.as_ref().map(|p| format!(", {p}")).unwrap_or_default()
            );
            if known.is_some() {
                known_count += 1;
            } else {
                unknown_count += 1;
                // Exit 1 only for what breaks a MUST (or hangs, or errs): a new SHOULD
                // finding is reported NON-STRICT, as the suite reports it.
                if vmc::outcome::fuzz_finding_outcome(&f.record.clauses, f.record.level, false).is_failure() {
                    failing_count += 1;
                }
                if args.stop_on_finding {
                    stopped_for = Some(f.key.join(", "));
                }
            }
        }
        if stop {
            break;
        }
        if tty && last_progress.elapsed() >= Duration::from_millis(250) {
            last_progress = Instant::now();
            let secs = started.elapsed().as_secs_f64();
            err!(
                "\r\x1b[Kfuzz: {secs:.0}/{:.0} s  {} ops ({:.0}/s)  pairs {}/{}  PCs {}  findings {} ({} known)",
                duration.as_secs_f64(),
                session.ops,
                session.ops as f64 / secs.max(1e-9),
                session.covered.intersection(&session.possible).count(),
                session.possible.len(),
                session.pcs(),
                unknown_count + known_count,
                known_count
            );
        }
        if stopped_for.is_some() || (args.until_covered && session.all_covered()) {
            break;
        }
    }
    if tty {
        err!("\r\x1b[K");
        let _ = std::io::stderr().flush();
    }
    let interrupted = crate::isolate::interrupted();
    let summary = session.summary(&args.device);
    print_summary(&session, &summary, args, seed);
    if let (Some(dir), true) = (&args.corpus, summary.coverage.is_some()) {
        match vmc::fuzz::corpus::save(dir, &session.corpus_texts()) {
            Ok(files) => outln!("  corpus: {} sequences saved in {}", files.len(), dir.display()),
            Err(e) => errln!("vfio-mig-conform fuzz: corpus not saved: {e}"),
        }
    }
    let code = if let Some(w) = &wedged {
        errln!("vfio-mig-conform fuzz: stopped: {w}");
        exit::WEDGED
    } else if let Some(why) = &interrupted {
        errln!("vfio-mig-conform fuzz: {why}: the device was restored");
        exit::INTERRUPTED
    } else if failing_count > 0 {
        exit::VIOLATION
    } else if session.walks == 0 {
        // Nothing was fuzzed: an exit 0 would read as "no finding" to a CI parser.
        errln!(
            "vfio-mig-conform fuzz: no walk ran within --duration {}: nothing was fuzzed (give a longer --duration)",
            args.duration
        );
        exit::USAGE
    } else {
        exit::OK
    };
    if let Some(w) = &mut record {
        let _ = w.write(&Line::Fuzz(Box::new(summary)));
        let _ = w.write(&Line::End(RunFooter {
            totals: Totals::default(),
            exit_code: i32::from(code),
            duration_ms: started.elapsed().as_millis() as u64,
            interrupted,
        }));
    }
    Ok(code)
}

/// The KCOV source: the functions of `--kcov-filter` (link-time ranges, or names resolved
/// through /proc/kallsyms), else functions and modules named vfio*, mdev* and after the
/// device's driver.
fn kcov_source(
    filter: Option<&str>,
    path: Option<&Path>,
    driver: Option<&str>,
) -> Result<KcovSource, String> {
    vmc::fuzz::kcov::available().map_err(|e| e.to_string())?;
    let (spec, base) = match filter {
        Some(text) => vmc::fuzz::coverage::parse_filter_file(text),
        None => {
            let mut p = vec!["vfio".to_string(), "mdev".to_string()];
            // `vfio-mtty` / `mtty`: the part after the last dash names the driver's functions.
            if let Some(d) = driver.and_then(|d| d.rsplit('-').next()).filter(|d| d.len() >= 3) {
                p.push(d.to_string());
            }
            (FilterSpec::Prefixes(p), X86_64_TEXT)
        }
    };
    // Link-time ranges need no symbol table: KCOV reports link-time PCs.
    let kallsyms = if matches!(spec, FilterSpec::Ranges(_)) {
        String::new()
    } else {
        let k = std::fs::read_to_string("/proc/kallsyms").map_err(|e| format!("/proc/kallsyms: {e}"))?;
        if !k
            .lines()
            .any(|l| l.split_whitespace().next().is_some_and(|a| !a.trim_start_matches('0').is_empty()))
        {
            return Err("/proc/kallsyms shows no addresses (kernel.kptr_restrict; run as root)".to_string());
        }
        k
    };
    let mut f = PcFilter::from_kallsyms(&kallsyms, &spec, base);
    if let Some(p) = path {
        f.description = format!("{} from {}", f.description, p.display());
    }
    if f.is_empty() {
        return Err(format!("no kernel function matches the filter ({})", f.description));
    }
    KcovSource::new(vmc::fuzz::coverage::DEFAULT_WORDS, f, base).map_err(|e| e.to_string())
}

/// `1 step`, `3 steps`.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn write_finding(dir: &Path, file: &Path, text: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(file, text)
}

/// The command that replays a reproducer of this session (without its `--sequence FILE`):
/// the devices as given, and the bounds the session ran under, so a replay judges the same
/// bytes and is cut at the same time.
fn replay_command(args: &FuzzArgs, max_stream: u64) -> String {
    use crate::run::shell_quote;
    let mut cmd = vec!["vfio-mig-conform".to_string(), shell_quote(&args.device)];
    for p in &args.peers {
        cmd.push(format!("--peer {}", shell_quote(p)));
    }
    if let Some(n) = &args.device_name {
        cmd.push(format!("--device-name {}", shell_quote(n)));
    }
    if let Some(p) = &args.profile {
        cmd.push(format!("--profile {}", shell_quote(p)));
    }
    if max_stream != vmc::units::parse_size(crate::run::DEFAULT_MAX_STREAM).unwrap_or(0) {
        cmd.push(format!("--max-stream {}", shell_quote(&args.max_stream)));
    }
    if args.timeout != crate::run::DEFAULT_TIMEOUT {
        cmd.push(format!("--timeout {}", args.timeout));
    }
    cmd.join(" ")
}

fn print_summary(session: &Session, s: &vmc::report::record::FuzzSummary, args: &FuzzArgs, seed: u64) {
    // Standard output may be closed (`| head`): the summary is best effort (the record, when
    // asked for, has it all), and a closed pipe must not turn into a panic after the run.
    let mut out = std::io::stdout().lock();
    macro_rules! say {
        ($($arg:tt)*) => {
            let _ = writeln!(out, $($arg)*);
        };
    }
    say!(
        "vfio-mig-conform fuzz: {} (seed {seed}): {:.1} s, {}, {} ({:.0} ops/s)",
        args.device,
        s.duration_ms as f64 / 1000.0,
        count(session.walks as usize, "walk", "walks"),
        count(s.ops as usize, "operation", "operations"),
        s.ops_per_sec
    );
    if s.arcs_possible > 0 {
        let when = match session.covered_all {
            Some((secs, ops)) => format!(", all after {secs:.3} s ({ops} ops)"),
            None => String::new(),
        };
        say!("  (cur,new) pairs: {} of {} covered{when}", s.arcs_covered.len(), s.arcs_possible);
        let missing = session.missing();
        if !missing.is_empty() {
            say!("    not covered: {}", missing.join(" "));
        }
    }
    if let Some(c) = &s.coverage {
        let secs = s.duration_ms as f64 / 1000.0;
        say!(
            "  kernel coverage ({}, {}): {} distinct PCs ({}); {} runs ({:.0}/s), {} mutants of the corpus, corpus {} entries",
            c.source,
            if c.guided { "guided" } else { "blind" },
            c.pcs.len(),
            c.filter,
            c.execs,
            c.execs as f64 / secs.max(1e-9),
            c.mutants,
            c.corpus
        );
        if c.sweep_runs > 0 {
            say!(
                "    fault sweeps of new code paths: {} paths, {} runs, {} of them with the fault injected",
                c.sweep_paths,
                c.sweep_runs,
                c.sweep_faults
            );
        }
        if c.neighbour_runs > 0 {
            say!(
                "    neighbour runs of new data-file calls: {} runs, {} of them reached a new PC",
                c.neighbour_runs,
                c.neighbour_finds
            );
        }
        if c.truncated_runs > 0 {
            say!("    {} runs filled the KCOV buffer (their last steps' PCs are missing)", c.truncated_runs);
        }
    }
    let mut paths = s.error_paths.clone();
    paths.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    say!("  error paths: {} distinct", paths.len());
    if !args.quiet {
        for chunk in paths.chunks(4) {
            let line: Vec<String> = chunk.iter().map(|(k, n)| format!("{k} x{n}")).collect();
            say!("    {}", line.join("   "));
        }
    }
    let known = s.findings.iter().filter(|f| f.known.is_some()).count();
    say!("  findings: {} ({} known, {} new)", s.findings.len(), known, s.findings.len() - known);
    for f in &session.findings {
        let r = &f.record;
        let tag = if r.known.is_some() { "known" } else { "NEW" };
        say!(
            "    [{tag}] {}: {} (shrunk from {} in {}), seen {}, first after {:.1} s",
            f.key.join(", "),
            count(f.sequence.steps.len(), "step", "steps"),
            f.shrunk_from,
            count(f.shrink_runs, "run", "runs"),
            count(f.sightings as usize, "time", "times"),
            r.after_secs
        );
        say!("      expected {}", r.expected);
        say!("        actual {}", r.actual);
        if let Some(k) = &r.known {
            say!("      declared: {k}");
        }
        if let (Some(p), Some(command)) = (&r.reproducer_file, &r.replay) {
            say!("      reproducer: {p}");
            say!("      replay: {command}");
        }
    }
}

/// `vfio-mig-conform fuzz-to-yaml FILE [--target T]`.
pub fn to_yaml(file: &Path, target: Option<&str>) -> u8 {
    use vmc::fuzz::Target;
    let name = target.map(str::to_string).or_else(|| {
        file.ancestors()
            .filter_map(|p| p.file_name()?.to_str())
            .find(|n| Target::by_name(n).is_some())
            .map(str::to_string)
    });
    let t = match name.as_deref() {
        None => Target::FsmV2,
        Some(n) => match Target::by_name(n) {
            Some(t) => t,
            None => {
                errln!(
                    "vfio-mig-conform fuzz-to-yaml: unknown target `{n}` (fsm_v2, v1_region, resume_stream)"
                );
                return exit::USAGE;
            }
        },
    };
    let bytes = match vmc::sequence::read_bounded(file) {
        Ok(b) => b,
        Err(e) => {
            errln!("vfio-mig-conform fuzz-to-yaml: {}: {e}", file.display());
            return exit::USAGE;
        }
    };
    match vmc::fuzz::to_yaml(t, &bytes) {
        Ok(y) => {
            out!("{y}");
            exit::OK
        }
        Err(e) => {
            errln!("vfio-mig-conform fuzz-to-yaml: {}: {e}", file.display());
            exit::USAGE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("60s"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("lots"), None);
        assert_eq!(parse_duration("5 weeks"), None);
    }

    #[test]
    fn counts_in_the_summary_agree_in_number() {
        assert_eq!(count(1, "step", "steps"), "1 step");
        assert_eq!(count(0, "walk", "walks"), "0 walks");
        assert_eq!(count(3, "time", "times"), "3 times");
    }
}
