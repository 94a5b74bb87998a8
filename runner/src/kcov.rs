//! `vfio-mig-conform kcov-report`: the kernel coverage of fuzzing sessions, symbolized against
//! the kernel image on the host that built it.

use std::collections::HashSet;
use std::path::Path;

use vmc::fuzz::symbolize::{self, Function, MTTY_MIGRATION_FUNCTIONS};
use vmc::report::coverage::parse_hex;
use vmc::report::record::{Line, Run};

use crate::cli::{KcovReportArgs, exit};

/// How many of the blocks reached last `kcov-report` names.
const LAST_BLOCKS: usize = 5;

/// `vfio-mig-conform kcov-report`.
pub fn report(args: &KcovReportArgs) -> u8 {
    match run(args) {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("vfio-mig-conform kcov-report: {e}");
            exit::USAGE
        }
    }
}

fn in_any(funcs: &[&Function], pc: u64) -> bool {
    funcs.iter().any(|f| f.addr <= pc && pc < f.end)
}

fn run(args: &KcovReportArgs) -> Result<(), String> {
    let mut sources: Vec<&str> = vec![args.source.as_str()];
    sources.extend(args.also.iter().map(String::as_str));
    let funcs = symbolize::functions(&args.vmlinux, &sources).map_err(|e| e.to_string())?;
    if let Some(p) = &args.filter_out {
        let text = symbolize::filter_file(&args.vmlinux, &funcs).map_err(|e| e.to_string())?;
        std::fs::write(p, &text).map_err(|e| format!("{}: {e}", p.display()))?;
        println!(
            "{}: {} functions of {}",
            p.display(),
            text.lines().filter(|l| !l.starts_with('#')).count(),
            sources.join(", ")
        );
    }
    if args.runs.is_empty() {
        return Ok(());
    }
    let driver: Vec<&Function> = funcs.iter().filter(|f| f.file.ends_with(&args.source)).collect();
    let core: Vec<&Function> = funcs.iter().filter(|f| !f.file.ends_with(&args.source)).collect();
    let wanted: Vec<&str> = if !args.functions.is_empty() {
        args.functions.iter().map(String::as_str).collect()
    } else if args.source.ends_with("mtty.c") {
        MTTY_MIGRATION_FUNCTIONS.to_vec()
    } else {
        Vec::new()
    };
    let blocks =
        symbolize::blocks(&args.vmlinux, &funcs, &args.source, &wanted).map_err(|e| e.to_string())?;
    let text = args.ksrc.as_ref().and_then(|d| std::fs::read_to_string(d.join(&args.source)).ok());
    let image = format!("{}", args.vmlinux.display());
    for path in &args.runs {
        let mut run = Run::read(path)?;
        for (k, f) in run.fuzz.iter_mut().enumerate() {
            let Some(c) = &mut f.coverage else {
                println!("{} fuzz {}: no kernel coverage in the record", path.display(), k + 1);
                continue;
            };
            let pcs: Vec<(u64, f64)> = c.pcs.iter().filter_map(|(p, t)| Some((parse_hex(p)?, *t))).collect();
            let secs = f.duration_ms as f64 / 1000.0;
            println!(
                "{} fuzz {}: {} seed {}, {}, {secs:.0} s, {} runs ({:.1}/s), {} ops ({:.0}/s), {} mutants, {} fault-sweep runs, {} neighbour runs ({} new), corpus {}",
                path.display(),
                k + 1,
                f.device,
                f.seed,
                if c.guided { "guided" } else { "blind" },
                c.execs,
                c.execs as f64 / secs.max(1e-9),
                f.ops,
                f.ops_per_sec,
                c.mutants,
                c.sweep_runs,
                c.neighbour_runs,
                c.neighbour_finds,
                c.corpus
            );
            let count =
                |by: f64, set: &[&Function]| pcs.iter().filter(|(p, t)| *t <= by && in_any(set, *p)).count();
            let mut at = String::new();
            for t in args.at.iter().copied().chain(std::iter::once(f64::INFINITY)) {
                let label = if t.is_finite() { format!("{t:.0} s") } else { "end".to_string() };
                at.push_str(&format!("  {label}: {} driver, {} core", count(t, &driver), count(t, &core)));
            }
            println!("  distinct PCs: {} ({}); by time:{at}", pcs.len(), c.filter);
            let reached: HashSet<u64> = pcs.iter().map(|(p, _)| *p).collect();
            let view =
                symbolize::driver_coverage(&args.source, &image, &blocks, &reached, text.as_deref(), &wanted);
            let (cv, total) = view.totals();
            // When each block was first reached: the time of its PC's first sighting.
            let first: std::collections::HashMap<u64, f64> = pcs.iter().copied().collect();
            let mut seen: Vec<(f64, &symbolize::Block)> =
                blocks.iter().filter(|b| !b.tail).filter_map(|b| Some((*first.get(&b.pc)?, b))).collect();
            seen.sort_by(|a, b| a.0.total_cmp(&b.0));
            let times: Vec<f64> = seen.iter().map(|(t, _)| *t).collect();
            let mut by = String::new();
            for t in args.at.iter().copied() {
                by.push_str(&format!("  {t:.0} s: {}", times.iter().filter(|x| **x <= t).count()));
            }
            println!(
                "  {} {}: {cv} of {total} KCOV blocks reached ({:.1} %), the last after {:.1} s; by time:{by}",
                args.source,
                if wanted.is_empty() { "all functions" } else { "migration functions" },
                100.0 * cv as f64 / total.max(1) as f64,
                times.last().copied().unwrap_or(0.0)
            );
            // The blocks reached last: where a session spent its time.
            let last: Vec<String> = seen
                .iter()
                .rev()
                .take(LAST_BLOCKS)
                .map(|(t, b)| format!("{}:{} after {t:.1} s", b.function, b.line))
                .collect();
            if !last.is_empty() {
                println!("  reached last: {}", last.join(", "));
            }
            for func in &view.functions {
                println!("    {:<28} {:>3}/{:<3}", func.name, func.covered, func.blocks);
            }
            let unreached: Vec<String> = view
                .functions
                .iter()
                .flat_map(|func| {
                    func.lines.iter().filter(|l| l.covered < l.blocks).map(move |l| {
                        format!(
                            "    {}:{} ({} of {} blocks unreached) {}",
                            func.name,
                            l.line,
                            l.blocks - l.covered,
                            l.blocks,
                            l.text.trim()
                        )
                    })
                })
                .collect();
            if !unreached.is_empty() {
                println!("  unreached:");
                for u in unreached {
                    println!("{u}");
                }
            }
            if !view.tail_calls.is_empty() {
                println!(
                    "  not counted: {} block(s) KCOV cannot observe (tail calls of __sanitizer_cov_trace_pc: KCOV records the caller's return address, never theirs):",
                    view.tail_calls.len()
                );
                for t in &view.tail_calls {
                    println!("    {}:{} {}", t.function, t.line, t.text.trim());
                }
            }
            c.driver = Some(view);
        }
        if let Some(dir) = &args.write {
            let out = dir.join(path.file_name().unwrap_or_default());
            write_run(&out, &run)?;
            println!("  wrote {}", out.display());
        }
    }
    Ok(())
}

fn write_run(path: &Path, run: &Run) -> Result<(), String> {
    let mut lines = vec![Line::Run(run.header.clone())];
    lines.extend(run.checks.iter().map(|c| Line::Check(Box::new(c.clone()))));
    lines.extend(run.fuzz.iter().map(|f| Line::Fuzz(Box::new(f.clone()))));
    if let Some(f) = &run.footer {
        lines.push(Line::End(f.clone()));
    }
    let mut text = String::new();
    for l in &lines {
        text.push_str(&serde_json::to_string(l).map_err(|e| e.to_string())?);
        text.push('\n');
    }
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}
