//! How a run is named on the index: its label (device spec, device, migration, kernel,
//! profile, and a warning when it did not finish), the Runs table and the column headers.

use super::run_page::totals_html;
use super::{esc, run_file, short, utc};
use crate::device::MigrationApi;
use crate::report::record::{Run, Totals};

/// A run as a column: device spec (defect and flags included), device, kernel, profile
/// (from the header), and why it did not finish, if it did not.
#[derive(Clone, Debug)]
pub(super) struct RunLabel {
    pub(super) spec: String,
    pub(super) device: String,
    pub(super) flags: String,
    pub(super) kernel: String,
    pub(super) profile: String,
    /// [`Run::unfinished`]: no end line, or an interrupted end.
    pub(super) unfinished: Option<String>,
}

pub(super) fn label_of(run: &Run) -> RunLabel {
    let h = &run.header;
    let dev = h.devices.first();
    let spec = if h.devices.is_empty() {
        "no device".to_string()
    } else {
        h.devices.iter().map(|d| d.info.spec.as_str()).collect::<Vec<_>>().join(" + ")
    };
    let device = dev
        .map(|d| {
            let name =
                d.info.model.clone().or_else(|| d.info.driver.clone()).unwrap_or_else(|| d.info.spec.clone());
            if h.devices.len() > 1 { format!("{name} (+{} peers)", h.devices.len() - 1) } else { name }
        })
        .unwrap_or_else(|| "no device".to_string());
    let flags = dev
        .map(|d| match d.facts.api {
            MigrationApi::V2 => format!("v2 {}", d.facts.flags),
            MigrationApi::V1 => "v1".to_string(),
            MigrationApi::None => "no migration".to_string(),
        })
        .unwrap_or_default();
    let kernel = match dev {
        // The kernel and the path to the device (group/type1 or cdev/iommufd) tell runs of one
        // driver apart in the runs x clauses matrix.
        Some(d) if d.info.backend == crate::device::Backend::Kernel => {
            let k = d.info.kernel.clone().unwrap_or_else(|| h.host_kernel.clone());
            match &d.info.iommu {
                Some(iommu) => format!("{k} ({iommu})"),
                None => k,
            }
        }
        Some(d) => match d.info.kernel.as_deref().and_then(crate::oracle::kernels::release_of) {
            Some((major, minor)) => format!("simulated {major}.{minor}"),
            None => "simulated".to_string(),
        },
        None => h.host_kernel.clone(),
    };
    let profile = h.profile.as_deref().map_or_else(
        || "no profile".to_string(),
        |p| p.split_once(" (").map_or(p, |(name, _)| name).to_string(),
    );
    RunLabel { spec, device, flags, kernel, profile, unfinished: run.unfinished() }
}

/// The warning badge of a run that did not finish: its verdicts are partial.
pub(super) fn unfinished_badge(l: &RunLabel) -> String {
    l.unfinished
        .as_deref()
        .map(|why| {
            format!(
                " <span class=\"badge o-error unfinished\" title=\"{}\">&#9888; not finished: partial verdicts</span>",
                esc(why)
            )
        })
        .unwrap_or_default()
}

pub(super) fn runs_table(runs: &[(String, Run)], labels: &[RunLabel]) -> String {
    let mut s = String::from(
        "<div class=\"wide\"><table class=\"runs\">\n<tr><th>Run</th><th>Device spec</th><th>Device</th><th>Migration</th><th>Kernel</th><th>Profile</th><th>Started</th><th>Totals</th></tr>\n",
    );
    for (i, ((name, run), l)) in runs.iter().zip(labels).enumerate() {
        let why = l
            .unfinished
            .as_deref()
            .map(|w| format!("<br><small class=\"why\">{}</small>", esc(w)))
            .unwrap_or_default();
        s.push_str(&format!(
            "<tr data-run=\"{}\"{}><td><a href=\"{}\">R{}</a> <small title=\"{}\">{}</small>{}{why}</td><td class=\"spec\"><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            i + 1,
            if l.unfinished.is_some() { " class=\"unfinished\"" } else { "" },
            run_file(i),
            i + 1,
            esc(name),
            esc(short(name)),
            unfinished_badge(l),
            esc(&l.spec),
            esc(&l.device),
            esc(&l.flags),
            esc(&l.kernel),
            esc(&l.profile),
            utc(run.header.started),
            totals_html(&Totals::from_results(&run.checks))
        ));
    }
    s.push_str("</table></div>\n");
    s
}

pub(super) fn run_header_cell(i: usize, name: &str, l: &RunLabel) -> String {
    format!(
        "<th class=\"run\" data-run=\"{}\" title=\"{}\"><a href=\"{}\"><b>R{}</b></a>{}<br><code class=\"spec\">{}</code><br>{}<br>{}<br>{}<br><i>{}</i></th>",
        i + 1,
        esc(name),
        run_file(i),
        i + 1,
        unfinished_badge(l),
        esc(&l.spec),
        esc(&l.device),
        esc(&l.flags),
        esc(&l.kernel),
        esc(&l.profile)
    )
}
