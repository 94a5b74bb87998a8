//! The small subcommands: `clauses`, `sim`, `completions`, `man`.

use vmc::clauses::catalog;
use vmc::device::MigrationApi;
use vmc::device::sim::Defect;

use crate::cli::{ClauseFormat, exit};

/// `vfio-mig-conform man`: one roff page (docs/vfio-mig-conform.1) for the whole command
/// line, the subcommands as sections of it, generated from the clap definition.
pub fn man(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    use clap::CommandFactory;
    let mut cmd = crate::cli::Cli::command();
    cmd.build();
    let main = clap_mangen::Man::new(cmd.clone());
    main.render_title(out)?;
    main.render_name_section(out)?;
    main.render_synopsis_section(out)?;
    main.render_description_section(out)?;
    main.render_options_section(out)?;
    main.render_extra_section(out)?;
    writeln!(out, ".SH COMMANDS")?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("vfio-mig-conform {}", sub.get_name());
        writeln!(out, ".SS {}", name.replace('-', "\\-"))?;
        if let Some(about) = sub.get_about() {
            writeln!(out, "{}", about.to_string().replace('-', "\\-"))?;
        }
        let mut buf = Vec::new();
        let page = clap_mangen::Man::new(sub.clone().bin_name(&name));
        page.render_synopsis_section(&mut buf)?;
        page.render_options_section(&mut buf)?;
        // The subcommand's sections become paragraphs of its COMMANDS entry.
        for line in String::from_utf8_lossy(&buf).lines() {
            if line.starts_with(".ie \\n(.g .ds Aq") || line.starts_with(".el .ds Aq") {
                // The quote-string prelude, already defined at the top of the page.
            } else if line == ".SH SYNOPSIS" {
                writeln!(out, ".PP")?;
            } else if let Some(title) = line.strip_prefix(".SH ") {
                writeln!(out, ".PP\n\\fI{}\\fR", title.to_lowercase())?;
            } else {
                writeln!(out, "{line}")?;
            }
        }
    }
    writeln!(
        out,
        ".SH SEE ALSO\nShell completions: \\fBvfio\\-mig\\-conform completions bash\\fR (or zsh, fish, elvish, powershell).\n\
The user guide docs/guide.md; the clause catalog docs/clauses.md."
    )?;
    main.render_version_section(out)
}

/// `vfio-mig-conform clauses`.
pub fn clauses(format: ClauseFormat, coverage: bool) -> u8 {
    let cat = catalog();
    if coverage {
        let observers = vmc::checks::observers();
        let observed = cat.all().iter().filter(|c| observers.contains_key(&c.id)).count();
        let reasoned =
            cat.all().iter().filter(|c| !observers.contains_key(&c.id) && c.unobservable.is_some()).count();
        let n = cat.all().len();
        let summary = format!(
            "{observed} of {n} clauses observed by at least one check, {reasoned} that no check can observe (each says why), {} not observed yet",
            n - observed - reasoned
        );
        // What the CHECKS column says for a clause no check observes.
        let none = |c: &vmc::clauses::Clause| match &c.unobservable {
            Some(why) => format!("no check can observe it: {why}"),
            None => "not observed by any check yet".to_string(),
        };
        match format {
            ClauseFormat::Json => {
                let v: Vec<serde_json::Value> = cat
                    .all()
                    .iter()
                    .map(|c| serde_json::json!({"id": c.id, "level": c.level, "checks": observers.get(&c.id).cloned().unwrap_or_default(), "unobservable": c.unobservable}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            }
            ClauseFormat::Md => {
                println!("| clause | level | checks | for example |\n|---|---|---|---|");
                for c in cat.all() {
                    match observers.get(&c.id) {
                        Some(list) => println!("| {} | {} | {} | `{}` |", c.id, c.level, list.len(), list[0]),
                        None => println!("| {} | {} | 0 | {} |", c.id, c.level, none(c).replace('|', "\\|")),
                    }
                }
                println!("\n{summary}");
            }
            ClauseFormat::Text => {
                let rows: Vec<Vec<String>> = cat
                    .all()
                    .iter()
                    .map(|c| {
                        let (n, example) = match observers.get(&c.id) {
                            Some(list) => (list.len().to_string(), list[0].clone()),
                            None => ("0".to_string(), format!("({})", none(c))),
                        };
                        vec![c.id.clone(), c.level.to_string(), n, example]
                    })
                    .collect();
                print!("{}", columns(&["CLAUSE", "LEVEL", "CHECKS", "FOR EXAMPLE"], &rows));
                println!("{summary}");
            }
        }
        return exit::OK;
    }
    match format {
        ClauseFormat::Md => print!("{}", cat.to_markdown(&vmc::checks::observers())),
        ClauseFormat::Json => println!("{}", serde_json::to_string_pretty(cat.all()).unwrap_or_default()),
        ClauseFormat::Text => {
            let rows: Vec<Vec<String>> = cat
                .all()
                .iter()
                .map(|c| {
                    let feature = if c.feature.as_str() == "none" { "-" } else { c.feature.as_str() };
                    vec![c.id.clone(), c.level.to_string(), feature.to_string(), c.statement.clone()]
                })
                .collect();
            print!("{}", columns(&["CLAUSE", "LEVEL", "FEATURE", "STATEMENT"], &rows));
            println!("{}", plural(cat.all().len(), "clause", "clauses"));
        }
    }
    exit::OK
}

/// A table with a header row, every column as wide as its widest cell (the last one not
/// padded), two spaces between columns.
fn columns(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, cell) in width.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, cell) in cells.enumerate() {
            if i + 1 == width.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = width[i]));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(&mut header.iter().copied());
    for r in rows {
        out.push_str(&line(&mut r.iter().map(String::as_str)));
    }
    out
}

/// `vfio-mig-conform sim --list-defects`.
pub fn sim(list_defects: bool) -> u8 {
    if !list_defects {
        eprintln!("vfio-mig-conform sim: nothing to do (try --list-defects)");
        return exit::USAGE;
    }
    for d in Defect::ALL {
        let api = if d.api() == MigrationApi::V1 { "sim:v1" } else { "sim:v2" };
        let set = if d.held_out() { "held-out" } else { "" };
        let clauses = vmc::clauses::join(d.clauses()).replace(' ', "");
        println!("{:<42} {api}  {set:<8}  {clauses:<40} {}", d.name(), d.summary());
    }
    exit::OK
}

/// The exit code a run record stands for, by the rules of the run itself: 6 when a device
/// could not be restored, 5 when the run did not finish (interrupted, or no end line), 1 when
/// a check fails (FAIL, TIMEOUT, ERROR, or XPASS when the run had `--strict-profile`) or a
/// fuzz session found something new, 0 otherwise.
pub fn record_exit(run: &vmc::report::record::Run) -> u8 {
    use vmc::report::record::Totals;
    if run.footer.as_ref().is_some_and(|f| f.exit_code == i32::from(exit::WEDGED)) {
        exit::WEDGED
    } else if run.unfinished().is_some() {
        exit::INTERRUPTED
    } else if Totals::from_results(&run.results()).failed(run.header.strict_profile) {
        exit::VIOLATION
    } else {
        exit::OK
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `vfio-mig-conform report RUN.jsonl... --format F`: rebuild a report from run records. The
/// exit code is the worst of [`record_exit`] over the records.
pub fn report(runs: &[std::path::PathBuf], format: crate::cli::ReportFormat) -> Result<u8, String> {
    use crate::cli::ReportFormat;
    use vmc::report::record::{Run, Totals};
    let mut loaded = Vec::new();
    for path in runs {
        loaded.push((path, Run::read(path)?));
    }
    let mut worst = exit::OK;
    for (path, run) in &loaded {
        worst = worst.max(record_exit(run));
        let results = run.results();
        let strict_profile = run.header.strict_profile;
        match format {
            ReportFormat::Ktap => {
                print!(
                    "{}",
                    vmc::report::ktap::render(&results, false, run.header.timeout_secs, strict_profile)
                );
                if let Some(why) = run.unfinished() {
                    println!(
                        "# {}: {}",
                        why.replace('#', ""),
                        plural(run.checks.len(), "check recorded", "checks recorded")
                    );
                }
            }
            ReportFormat::Junit => {
                print!(
                    "{}",
                    vmc::report::junit::render(&results, &path.display().to_string(), strict_profile)
                );
            }
            ReportFormat::Json => {
                println!("{}", serde_json::to_string_pretty(run).map_err(|e| e.to_string())?);
            }
            ReportFormat::Pretty => pretty(path, run, &results, &Totals::from_results(&results)),
        }
    }
    Ok(worst)
}

/// The pretty form of one record: the totals, whether it finished, the fuzz sessions, then
/// every result that is not a plain PASS (failures with their blocks).
fn pretty(
    path: &std::path::Path,
    run: &vmc::report::record::Run,
    results: &[vmc::report::record::CheckResult],
    totals: &vmc::report::record::Totals,
) {
    use vmc::outcome::Outcome;
    let dev = run.header.devices.first().map(|d| d.info.spec.clone()).unwrap_or_default();
    let findings: usize = run.fuzz.iter().map(|f| f.findings.len()).sum();
    let fuzz = if run.fuzz.is_empty() {
        String::new()
    } else {
        format!(", {}", plural(findings, "fuzz finding", "fuzz findings"))
    };
    println!(
        "{}: {dev}: {}{fuzz}: {}",
        path.display(),
        plural(run.checks.len(), "check", "checks"),
        totals.line()
    );
    if let Some(why) = run.unfinished() {
        println!(
            "  INTERRUPTED: {why}; {} before it stopped",
            plural(run.checks.len(), "check was recorded", "checks were recorded")
        );
    }
    for f in &run.fuzz {
        let known = f.findings.iter().filter(|x| x.known.is_some()).count();
        println!(
            "  fuzz session on {} (seed {}): {:.1} s, {}, (cur,new) pairs {} of {}; {} ({known} known, {} new)",
            f.device,
            f.seed,
            f.duration_ms as f64 / 1000.0,
            plural(f.ops as usize, "operation", "operations"),
            f.arcs_covered.len(),
            f.arcs_possible,
            plural(f.findings.len(), "finding", "findings"),
            f.findings.len() - known
        );
    }
    let strict_profile = run.header.strict_profile;
    for c in results.iter().filter(|c| c.outcome != Outcome::Pass) {
        let fails =
            if c.outcome == Outcome::Xpass && strict_profile { " (fails: --strict-profile)" } else { "" };
        println!("{:<12} {}{fails}", c.outcome.as_str(), c.id);
        if c.outcome.is_failure() || !c.findings.is_empty() || c.outcome == Outcome::Xpass {
            for line in c.failure_block().lines() {
                println!("    {line}");
            }
        }
    }
}

/// `vfio-mig-conform report RUN.jsonl... --html DIR`: the static HTML report. The exit code
/// is the worst of [`record_exit`] over the records, as for the other report formats.
pub fn report_html(runs: &[std::path::PathBuf], dir: &std::path::Path) -> Result<u8, String> {
    use vmc::report::record::Run;
    let mut loaded = Vec::new();
    let mut worst = exit::OK;
    for path in runs {
        let run = Run::read(path)?;
        worst = worst.max(record_exit(&run));
        loaded.push((path.display().to_string(), run));
    }
    let pages = vmc::report::html::render(&loaded);
    if dir.exists() && !dir.is_dir() {
        return Err(format!("{}: exists and is not a directory (--html takes a directory)", dir.display()));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for p in &pages {
        let path = dir.join(&p.file);
        std::fs::write(&path, &p.html).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let plural = if loaded.len() == 1 { "" } else { "s" };
    println!("{}: {} run{plural}, {} pages", dir.join("index.html").display(), loaded.len(), pages.len());
    Ok(worst)
}

/// `vfio-mig-conform report A B --diff`: the checks whose raw verdict (before any profile)
/// differs between two runs. Exit 1 when any does, 0 when all agree.
pub fn diff(runs: &[std::path::PathBuf], filter: Option<&str>) -> Result<u8, String> {
    use vmc::report::record::Run;
    let [a, b] = runs else {
        return Err(format!("--diff compares exactly two runs, {} given", runs.len()));
    };
    let (ra, rb) = (Run::read(a)?, Run::read(b)?);
    // XFAIL/XPASS come from a profile: compare what the device did.
    let raw = vmc::report::record::CheckResult::raw_verdict;
    let keep = |id: &str| filter.is_none_or(|f| id.starts_with(f));
    let mut compared = 0;
    let mut differ = 0;
    for ca in ra.checks.iter().filter(|c| keep(&c.id)) {
        let Some(cb) = rb.checks.iter().find(|c| c.id == ca.id) else {
            println!("{:<48} {:<12} (not in {})", ca.id, raw(ca), b.display());
            differ += 1;
            continue;
        };
        compared += 1;
        if raw(ca) != raw(cb) {
            differ += 1;
            println!("{:<48} {:<12} {:<12}", ca.id, raw(ca), raw(cb));
        }
    }
    for cb in rb.checks.iter().filter(|c| keep(&c.id)) {
        if !ra.checks.iter().any(|c| c.id == cb.id) {
            println!("{:<48} {:<12} (not in {})", cb.id, raw(cb), a.display());
            differ += 1;
        }
    }
    println!("{compared} checks compared, {differ} differ ({} vs {})", a.display(), b.display());
    Ok(if differ == 0 { exit::OK } else { exit::VIOLATION })
}
