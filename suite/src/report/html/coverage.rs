//! The kernel coverage view of the HTML report (`fuzz --coverage kcov`): a plot of distinct
//! driver PCs over time (one line per session, guided and blind side by side) and, when the
//! record has the driver symbolized (`kcov-report --write`), the driver's functions with
//! covered and uncovered lines. The run page shows each session's part ([`session_html`]), the
//! index every session in one plot ([`index_section`]).

use super::esc;
use crate::report::coverage::{CoverageRecord, DriverCoverage};
use crate::report::record::Run;

/// One session's curve for [`plot_svg`]: its label, whether it was guided, and (seconds,
/// distinct PCs) at each new PC.
pub(super) type Series = (String, bool, Vec<(f64, usize)>);

/// The plot of distinct PCs over time: one polyline per session (`label`, guided, curve), as
/// an inline SVG (no script, no external asset).
pub(super) fn plot_svg(series: &[Series]) -> String {
    const W: f64 = 640.0;
    const H: f64 = 240.0;
    const PAD: f64 = 40.0;
    let tmax = series.iter().flat_map(|s| s.2.iter().map(|p| p.0)).fold(1.0f64, f64::max);
    let ymax = series.iter().flat_map(|s| s.2.iter().map(|p| p.1)).max().unwrap_or(1).max(1) as f64;
    let x = |t: f64| PAD + (W - 2.0 * PAD) * t / tmax;
    let y = |n: f64| H - PAD - (H - 2.0 * PAD) * n / ymax;
    let mut out = format!(
        "<svg class=\"pcplot\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"distinct driver PCs over time\">\n"
    );
    out.push_str(&format!(
        "<line x1=\"{PAD}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#888\"/><line x1=\"{PAD}\" y1=\"{PAD}\" x2=\"{PAD}\" y2=\"{0}\" stroke=\"#888\"/>\n",
        H - PAD,
        W - PAD
    ));
    out.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" font-size=\"11\">{tmax:.0} s</text><text x=\"4\" y=\"{}\" font-size=\"11\">{ymax:.0}</text><text x=\"{PAD}\" y=\"{}\" font-size=\"11\">0</text>\n",
        W - PAD - 20.0,
        H - PAD + 14.0,
        PAD + 4.0,
        H - PAD + 14.0
    ));
    for (k, (label, guided, curve)) in series.iter().enumerate() {
        let colour = if *guided { "#1a7f37" } else { "#b35900" };
        let dash = if *guided { "" } else { " stroke-dasharray=\"5,3\"" };
        // A step function: the count holds until the next new PC; extend it to the end.
        let mut pts = vec![format!("{:.1},{:.1}", x(0.0), y(0.0))];
        let mut last = 0usize;
        for (t, n) in curve {
            pts.push(format!("{:.1},{:.1}", x(*t), y(last as f64)));
            pts.push(format!("{:.1},{:.1}", x(*t), y(*n as f64)));
            last = *n;
        }
        let tend = curve.last().map_or(0.0, |p| p.0).max(tmax * 0.999);
        pts.push(format!("{:.1},{:.1}", x(tend), y(last as f64)));
        out.push_str(&format!(
            "<polyline class=\"series {}\" data-label=\"{}\" data-final=\"{last}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"{dash} points=\"{}\"/>\n",
            if *guided { "guided" } else { "blind" },
            esc(label),
            pts.join(" ")
        ));
        out.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"{colour}\">{} ({last})</text>\n",
            PAD + 8.0,
            PAD + 14.0 * (k as f64 + 1.0),
            esc(label)
        ));
    }
    out.push_str("</svg>\n");
    out
}

/// The table of the driver's functions with their block share, and per function its lines
/// (covered, uncovered) in a `<details>`.
pub(super) fn driver_html(d: &DriverCoverage) -> String {
    let (c, b) = d.totals();
    let pct = |c: usize, b: usize| if b == 0 { 0.0 } else { 100.0 * c as f64 / b as f64 };
    let mut out = format!(
        "<div class=\"driver-coverage\" data-blocks=\"{b}\" data-covered=\"{c}\">\n<p>{}: {c} of {b} KCOV blocks reached ({:.1} %), in {}.</p>\n<table class=\"funcs\"><tr><th>Function</th><th>Blocks</th><th>Reached</th><th>Share</th></tr>\n",
        esc(&d.file),
        pct(c, b),
        esc(&d.image)
    );
    for f in &d.functions {
        out.push_str(&format!(
            "<tr class=\"func\" data-function=\"{0}\"><td><a href=\"#fn-{0}\">{0}</a></td><td>{1}</td><td>{2}</td><td>{3:.0} %</td></tr>\n",
            esc(&f.name),
            f.blocks,
            f.covered,
            pct(f.covered, f.blocks)
        ));
    }
    out.push_str("</table>\n");
    if !d.tail_calls.is_empty() {
        let at: Vec<String> = d
            .tail_calls
            .iter()
            .map(|t| format!("{}:{} <code>{}</code>", esc(&t.function), t.line, esc(t.text.trim())))
            .collect();
        out.push_str(&format!(
            "<p class=\"tail-calls\" data-tail-calls=\"{}\">Not counted: {} block(s) KCOV cannot observe, tail calls of <code>__sanitizer_cov_trace_pc</code> (it records the caller's return address instead): {}.</p>\n",
            d.tail_calls.len(),
            d.tail_calls.len(),
            at.join(", ")
        ));
    }
    for f in &d.functions {
        out.push_str(&format!(
            "<details class=\"fnsrc\" id=\"fn-{0}\"><summary>{0}: {1} of {2} blocks</summary>\n<pre class=\"src\">",
            esc(&f.name),
            f.covered,
            f.blocks
        ));
        for l in &f.lines {
            let class = if l.covered == l.blocks {
                "cov"
            } else if l.covered == 0 {
                "uncov"
            } else {
                "part"
            };
            out.push_str(&format!(
                "<span class=\"line {class}\" data-line=\"{}\" title=\"{} of {} blocks\">{:>5}  {}</span>\n",
                l.line,
                l.covered,
                l.blocks,
                l.line,
                esc(&l.text)
            ));
        }
        out.push_str("</pre></details>\n");
    }
    out.push_str("</div>\n");
    out
}

/// CSS for the coverage view (the page includes it once).
pub(super) const CSS: &str = ".pcplot{background:#fff;border:1px solid #ddd}\
.src .cov{background:#dafbe1}.src .uncov{background:#ffebe9}.src .part{background:#fff8c5}\
.src span.line{display:block;white-space:pre}table.funcs td{padding:0 .6em}";

/// The coverage part of one fuzzing session: figures, the plot of this session and the
/// driver's functions when symbolized.
pub(super) fn session_html(label: &str, c: &CoverageRecord) -> String {
    let mut out = format!(
        "<div class=\"kcov\" data-source=\"{}\" data-guided=\"{}\" data-pcs=\"{}\">\n<p>Kernel coverage ({}, {}): {} distinct PCs ({}), {} runs, {} mutants of the corpus, corpus {} entries.</p>\n",
        esc(&c.source),
        c.guided,
        c.pcs.len(),
        esc(&c.source),
        if c.guided { "guided" } else { "blind" },
        c.pcs.len(),
        esc(&c.filter),
        c.execs,
        c.mutants,
        c.corpus
    );
    out.push_str(&plot_svg(&[(label.to_string(), c.guided, c.curve())]));
    if let Some(d) = &c.driver {
        out.push_str(&driver_html(d));
    }
    out.push_str("</div>\n");
    out
}

/// Every session with coverage in one plot (guided and blind side by side), for the index.
pub(super) fn comparison_html(sessions: &[(String, &CoverageRecord)]) -> String {
    if sessions.is_empty() {
        return String::new();
    }
    let series: Vec<Series> = sessions
        .iter()
        .map(|(l, c)| (format!("{l} ({})", if c.guided { "guided" } else { "blind" }), c.guided, c.curve()))
        .collect();
    format!(
        "<div class=\"kcov-compare\">\n<p>Distinct driver PCs over time.</p>\n{}</div>\n",
        plot_svg(&series)
    )
}

/// The index's comparison plot of every fuzzing session with kernel coverage (empty without).
pub(super) fn index_section(runs: &[(String, Run)]) -> String {
    let cov: Vec<(String, &CoverageRecord)> = runs
        .iter()
        .enumerate()
        .flat_map(|(i, (_, r))| {
            r.fuzz
                .iter()
                .filter_map(move |f| f.coverage.as_ref().map(|c| (format!("R{} {}", i + 1, f.device), c)))
        })
        .collect();
    comparison_html(&cov)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::coverage::{FunctionCoverage, LineCoverage, TailCall};

    use crate::report::coverage::test_record as record;

    #[test]
    fn the_plot_has_one_line_per_session_ending_at_its_count() {
        let g = record(true, &[0.1, 0.2, 0.3]);
        let b = record(false, &[0.4]);
        let html = comparison_html(&[("run-1".into(), &g), ("run-2".into(), &b)]);
        assert_eq!(html.matches("<polyline").count(), 2);
        assert!(html.contains("class=\"series guided\""));
        assert!(html.contains("class=\"series blind\""));
        assert!(html.contains("data-final=\"3\""));
        assert!(html.contains("data-final=\"1\""));
        assert!(comparison_html(&[]).is_empty());
    }

    #[test]
    fn driver_lines_are_marked_covered_uncovered_or_partly_and_escaped() {
        let d = DriverCoverage {
            file: "samples/vfio-mdev/mtty.c".into(),
            image: "vmlinux".into(),
            functions: vec![FunctionCoverage {
                name: "mtty_load_state".into(),
                blocks: 4,
                covered: 2,
                lines: vec![
                    LineCoverage { line: 950, blocks: 1, covered: 1, text: "if (a < b)".into() },
                    LineCoverage { line: 951, blocks: 2, covered: 1, text: "x".into() },
                    LineCoverage { line: 952, blocks: 1, covered: 0, text: "return -EINVAL;".into() },
                ],
            }],
            tail_calls: vec![TailCall { function: "mtty_disable_files".into(), line: 808, text: "}".into() }],
        };
        let html = driver_html(&d);
        assert!(html.contains("data-tail-calls=\"1\"") && html.contains("mtty_disable_files:808"));
        assert!(html.contains("data-blocks=\"4\" data-covered=\"2\""));
        assert!(html.contains("class=\"line cov\" data-line=\"950\""));
        assert!(html.contains("class=\"line part\" data-line=\"951\""));
        assert!(html.contains("class=\"line uncov\" data-line=\"952\""));
        assert!(html.contains("if (a &lt; b)"));
        assert!(html.contains("50 %"));
    }
}
