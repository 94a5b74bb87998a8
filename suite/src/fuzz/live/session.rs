//! A live fuzzing session: walks (fresh, or with coverage feedback mutants of corpus entries)
//! run through the caller's process isolation, every step judged by the oracle; what a walk
//! shows is shrunk into a YAML reproducer; kernel reports are findings attributed to the step
//! that caused them; the (cur, new) pairs, error paths and kernel PCs reached are accounted.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::LiveOptions;
use super::mutate::mutate;
use super::neighbours::{Neighbour, Neighbours};
use super::shrink::{Shrunk, shrink};
use super::sweep::{Sweep, Sweeps};
use super::walk::{Walker, clean};
use crate::check::{Check, Step};
use crate::device::MigrationApi;
use crate::engine::{CheckEnd, CheckRun, Engine};
use crate::fuzz::corpus::Corpus;
use crate::fuzz::coverage::{CoverageSource, RunCoverage};
use crate::fuzz::yaml::{YamlSequence, YamlStep, short_hash};
use crate::kmsg::Splat;
use crate::op::Op;
use crate::oracle::model::{Facts, Model, Observation};
use crate::report::coverage::CoverageRecord;
use crate::report::record::{FuzzFinding, FuzzSummary};
use crate::state::{MigFlags, MigState};

/// A finding of the live fuzzer.
#[derive(Clone, Debug)]
pub struct LiveFinding {
    /// Sorted clauses (then `KERNEL ...` for a kernel report; or `ERROR`, `TIMEOUT`): the
    /// identity of the finding.
    pub key: Vec<String>,
    pub record: FuzzFinding,
    /// The shrunk reproducer.
    pub sequence: YamlSequence,
    /// How many walks showed it.
    pub sightings: u64,
    /// Steps before and after shrinking.
    pub shrunk_from: usize,
    pub shrink_runs: usize,
}

/// What one walk did.
#[derive(Debug)]
pub enum WalkOutcome {
    /// Indices into [`Session::findings`] of findings first seen in this walk.
    Done(Vec<usize>),
    /// The device could not be restored: stop (with the findings first seen in this walk).
    Wedged(String, Vec<usize>),
    /// SIGINT/SIGTERM: stop.
    Interrupted(String),
}

/// Runs one check on the engine (the runner passes its process isolation).
pub type Exec<'a> = dyn FnMut(&mut Engine, &Check) -> CheckRun + 'a;

/// A live fuzzing session.
#[derive(Debug)]
pub struct Session {
    pub opts: LiveOptions,
    walker: Walker,
    pub started: Instant,
    pub ops: u64,
    pub walks: u64,
    pub covered: BTreeSet<(MigState, MigState)>,
    pub possible: BTreeSet<(MigState, MigState)>,
    /// When every possible (cur, new) pair had been covered: (seconds, ops).
    pub covered_all: Option<(f64, u64)>,
    pub errors: BTreeMap<String, u64>,
    pub findings: Vec<LiveFinding>,
    api: MigrationApi,
    flags: MigFlags,
    facts: Facts,
    device_label: String,
    model: Option<String>,
    coverage: Option<Box<dyn CoverageSource>>,
    /// Walks that reached new kernel PCs (with [`Session::set_coverage`]).
    pub corpus: Corpus,
    /// Check runs (walks, seeds, shrink candidates).
    pub execs: u64,
    /// Walks that were mutants of corpus entries.
    pub mutants: u64,
    /// Every PC that passed the source's filter, with the seconds to its first sighting.
    first_seen: Vec<(u64, f64)>,
    raw_pcs: u64,
    truncated: u64,
    /// Kernel reports of runs not yet turned into findings: (check, step, report).
    pending: Vec<(Check, Option<usize>, Splat)>,
    yields: Yields,
    /// The current walk is a mutant; the PCs its run was first to reach.
    last_mutant: bool,
    last_new: usize,
    /// Fault sweeps of new code paths (guided, with the `fail_nth` kind), and the one the
    /// current walk runs.
    pub sweeps: Sweeps,
    current_sweep: Option<Sweep>,
    /// Neighbour runs of new data-file calls (guided), and the one the current walk runs.
    pub neighbours: Neighbours,
    current_neighbour: Option<Neighbour>,
}

/// How productive fresh walks and mutants have been lately: new PCs and runs of each, decayed
/// by 2 % per walk. Mutants are drawn with probability `rate(mutants) / (rate(mutants) +
/// rate(fresh))`, kept between 20 % and 90 %: on a device the walker already explores well,
/// fresh walks keep their share; where kept walks lead further, mutants take over.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Yields {
    /// (new PCs, runs) of fresh walks and of mutants.
    pub fresh: (f64, f64),
    pub mutant: (f64, f64),
}

impl Default for Yields {
    fn default() -> Self {
        Yields { fresh: (0.0, 0.0), mutant: (0.0, 0.0) }
    }
}

impl Yields {
    const DECAY: f64 = 0.98;

    /// Records a walk: whether it was a mutant, and how many PCs it was first to reach.
    pub fn record(&mut self, mutant: bool, new: usize) {
        for y in [&mut self.fresh, &mut self.mutant] {
            y.0 *= Self::DECAY;
            y.1 *= Self::DECAY;
        }
        let y = if mutant { &mut self.mutant } else { &mut self.fresh };
        y.0 += new as f64;
        y.1 += 1.0;
    }

    /// The probability of drawing a mutant.
    pub fn mutant_share(&self) -> f64 {
        // Laplace-smoothed rates: an untried strategy looks as good as one new PC per run.
        let rate = |(n, r): (f64, f64)| (n + 1.0) / (r + 1.0);
        let (m, f) = (rate(self.mutant), rate(self.fresh));
        (m / (m + f)).clamp(0.2, 0.9)
    }
}

impl Session {
    pub fn new(engine: &mut Engine, opts: LiveOptions) -> Session {
        engine.skip_harness_errors = true;
        engine.keep_trace = true;
        let walker = Walker::new(engine, &opts);
        let slot = &engine.slots[0];
        let facts = &slot.facts;
        let possible = if facts.api == MigrationApi::V2 {
            let s = facts.flags.states();
            s.iter().flat_map(|a| s.iter().map(move |b| (*a, *b))).collect()
        } else {
            BTreeSet::new()
        };
        Session {
            opts,
            walker,
            started: Instant::now(),
            ops: 0,
            walks: 0,
            covered: BTreeSet::new(),
            possible,
            covered_all: None,
            errors: BTreeMap::new(),
            findings: Vec::new(),
            api: facts.api,
            flags: facts.flags,
            facts: Facts {
                flags: facts.flags,
                dma_logging: facts.dma_logging,
                device_type: slot.dev.info().model.clone(),
            },
            device_label: slot.label.clone(),
            model: slot.dev.info().model.clone(),
            coverage: None,
            corpus: Corpus::new(),
            execs: 0,
            mutants: 0,
            first_seen: Vec::new(),
            raw_pcs: 0,
            truncated: 0,
            pending: Vec::new(),
            yields: Yields::default(),
            last_mutant: false,
            last_new: 0,
            sweeps: Sweeps::default(),
            current_sweep: None,
            neighbours: Neighbours::default(),
            current_neighbour: None,
        }
    }

    /// Collects coverage (and kernel reports) from `source` for every run from now on; with
    /// `opts.guided`, walks are then mostly mutants of the corpus.
    pub fn set_coverage(&mut self, engine: &mut Engine, mut source: Box<dyn CoverageSource>) {
        source.attach(engine);
        self.coverage = Some(source);
    }

    /// The operation kinds walks draw from.
    pub fn kinds(&self) -> &[&'static str] {
        self.walker.kinds()
    }

    /// Whether every possible (cur, new) pair has been covered.
    pub fn all_covered(&self) -> bool {
        !self.possible.is_empty() && self.possible.is_subset(&self.covered)
    }

    /// Distinct kernel PCs reached so far (0 without coverage).
    pub fn pcs(&self) -> usize {
        self.corpus.covered()
    }

    /// Whether walks are drawn from the corpus.
    pub fn guided(&self) -> bool {
        self.coverage.is_some() && self.opts.guided
    }

    /// Whether new code paths are swept with faults: asked for, guided, and faults can be
    /// injected (`fail_nth` is among the kinds, which the walker keeps only where the backend
    /// can arm it).
    pub fn sweeping(&self) -> bool {
        self.opts.fault_sweep && self.guided() && self.walker.kinds().contains(&"fail_nth")
    }

    /// Whether the variants of new data-file calls are run (`neighbours`): guided, unless
    /// turned off.
    pub fn neighbouring(&self) -> bool {
        self.opts.neighbours && self.guided()
    }

    /// Runs one check, collecting its coverage: a run that reached new PCs joins the corpus
    /// and, with `sweep`, queues fault sweeps and neighbour runs of its steps that reached
    /// them.
    fn execute(
        &mut self,
        engine: &mut Engine,
        exec: &mut Exec<'_>,
        check: &Check,
        origin: &str,
        sweep: bool,
    ) -> CheckRun {
        if let Some(c) = &mut self.coverage {
            c.begin();
        }
        let run = exec(engine, check);
        self.execs += 1;
        self.ops += run.trace.len() as u64;
        let cov: Option<RunCoverage> = self.coverage.as_mut().map(|c| c.collect(check, &run));
        if let Some(cov) = cov {
            self.raw_pcs += cov.raw as u64;
            self.truncated += u64::from(cov.truncated);
            // Steps skipped as harness errors (an fd or a stream that did not exist in this
            // run) ran nothing: an entry keeps only the steps that ran, so it loads and replays
            // as a sequence (a splice naming a capture no step made is refused by the loader).
            let ran = |i: &usize| !run.skipped.contains(i);
            let steps: Vec<_> =
                check.steps.iter().enumerate().filter(|(i, _)| ran(i)).map(|(_, s)| s.clone()).collect();
            let per_step: Vec<Vec<u64>> =
                cov.steps.iter().enumerate().filter(|(i, _)| ran(i)).map(|(_, p)| p.clone()).collect();
            let new = self.corpus.offer(&steps, &per_step, origin);
            self.last_new = new.len();
            if sweep && !new.is_empty() {
                let new: BTreeSet<u64> = new.iter().copied().collect();
                if self.sweeping() {
                    self.sweeps.offer(&steps, &per_step, &new);
                }
                if self.neighbouring() {
                    let opened: Vec<bool> = (0..check.steps.len())
                        .filter(|i| ran(i))
                        .map(|i| {
                            matches!(check.steps[i].op, Op::SetState(_))
                                && run
                                    .trace
                                    .iter()
                                    .any(|r| r.step == i && r.obs.data_fd.is_some_and(|fd| fd >= 0))
                        })
                        .collect();
                    self.neighbours.offer(&steps, &per_step, &opened, &new);
                }
            }
            let t = self.started.elapsed().as_secs_f64();
            self.first_seen.extend(new.iter().map(|pc| (*pc, t)));
            for (step, s) in cov.splats {
                self.pending.push((check.clone(), step, s));
            }
        }
        run
    }

    /// The next walk: with coverage feedback, a mutant of a corpus entry or a fresh walk, each
    /// with a probability that follows how many new PCs it has been finding lately
    /// ([`Yields`]).
    fn next_check(&mut self) -> (Check, String) {
        // Every other walk while fault sweeps wait.
        if self.sweeping()
            && self.walks.is_multiple_of(2)
            && let Some(s) = self.sweeps.take_next()
        {
            let origin = format!("fault sweep: step {} with fail_nth {}", s.at() + 1, s.nth());
            let check = self.walker.check(s.steps.clone());
            self.current_sweep = Some(s);
            return (check, origin);
        }
        // Every other walk (the others than the sweeps') while neighbour runs wait.
        if self.neighbouring()
            && !self.walks.is_multiple_of(2)
            && let Some(n) = self.neighbours.take_next()
        {
            let origin = format!("neighbour: step {} {}", n.at + 1, n.variant.name());
            let check = self.walker.check(n.steps.clone());
            self.current_neighbour = Some(n);
            return (check, origin);
        }
        let mutant = self.guided() && !self.corpus.is_empty() && {
            let p = self.yields.mutant_share();
            self.walker.rng().below(1000) < (p * 1000.0) as u64
        };
        self.last_mutant = mutant;
        if mutant {
            let i = self.corpus.pick(self.walker.rng()).unwrap_or(0);
            let j = self.walker.rng().below(self.corpus.len() as u64) as usize;
            let base = self.corpus.get(i).steps.clone();
            let other = (j != i).then(|| self.corpus.get(j).steps.clone());
            let steps = mutate(&mut self.walker, &base, other.as_deref(), &self.covered);
            self.mutants += 1;
            (self.walker.check(steps), format!("mutant of entry {i}"))
        } else {
            let c = self.walker.walk(&self.covered);
            let origin = c.id.clone();
            (c, origin)
        }
    }

    /// Runs one walk and shrinks what it finds.
    pub fn walk(&mut self, engine: &mut Engine, exec: &mut Exec<'_>) -> WalkOutcome {
        let (check, origin) = self.next_check();
        self.run_walk(engine, exec, &check, &origin)
    }

    /// Runs a seed (a sequence from `--corpus DIR`) as a walk: it joins the corpus when it
    /// reaches new PCs, and what it shows is a finding like any walk's.
    pub fn seed(
        &mut self,
        engine: &mut Engine,
        exec: &mut Exec<'_>,
        name: &str,
        steps: Vec<Step>,
    ) -> WalkOutcome {
        let steps: Vec<Step> = steps.into_iter().map(|s| Step { loc: None, ..s }).collect();
        let check = self.walker.check(steps);
        self.run_walk(engine, exec, &check, name)
    }

    fn run_walk(
        &mut self,
        engine: &mut Engine,
        exec: &mut Exec<'_>,
        check: &Check,
        origin: &str,
    ) -> WalkOutcome {
        self.last_new = 0;
        let sweep = self.current_sweep.take();
        let neighbour = self.current_neighbour.take();
        let run = self.execute(engine, exec, check, origin, sweep.is_none());
        match (sweep, neighbour) {
            (Some(s), _) => {
                let fired = run.trace.iter().find(|r| r.step == s.at()).and_then(|r| r.obs.fault);
                self.sweeps.done(s, fired, self.last_new > 0);
            }
            (None, Some(_)) => self.neighbours.done(self.last_new > 0),
            (None, None) => self.yields.record(self.last_mutant, self.last_new),
        }
        self.last_mutant = false;
        self.walks += 1;
        self.account(check, &run);
        // Kernel reports first: they explain a crashed or stuck check process, and the device
        // may be unusable afterwards.
        let kernel = !self.pending.is_empty();
        let mut new = self.kernel_findings();
        if let Some(e) = &run.restore_error {
            return WalkOutcome::Wedged(e.clone(), new);
        }
        if let Some(e) = run.end.error().filter(|_| run.end.interrupted()) {
            return WalkOutcome::Interrupted(e.to_string());
        }
        let problem = match &run.end {
            CheckEnd::HarnessError(e) => Some((e.clone(), false)),
            CheckEnd::Timeout(t) => Some((t.clone(), true)),
            CheckEnd::Completed | CheckEnd::Unsupported(_) => None,
        };
        if let Some((problem, timeout)) = problem {
            let key = vec![if timeout { "TIMEOUT".to_string() } else { "ERROR".to_string() }];
            if let Some(i) = self.seen(&key) {
                self.findings[i].sightings += 1;
            } else {
                let expected = if timeout {
                    "every operation returns within the watchdog timeout".to_string()
                } else {
                    "the walk runs without a harness error".to_string()
                };
                // Errors (a panic of the suite, a crashed check process) shrink like findings;
                // a timeout costs the whole watchdog per attempt and is kept as found, and so
                // is an error that came with a kernel report (re-running may wedge the device).
                let (steps, runs) = if timeout || kernel {
                    (check.steps.clone(), 0)
                } else {
                    let same = |r: &CheckRun| (r.end.error() == Some(problem.as_str())).then_some(usize::MAX);
                    let last = check.steps.len().saturating_sub(1);
                    let s = self.shrink(engine, exec, check, &same, last);
                    (s.steps, s.runs)
                };
                self.findings.push(self.finding(check, key, expected, problem, &steps, runs, Vec::new()));
                new.push(self.findings.len() - 1);
            }
        }
        let mut keys: Vec<(Vec<String>, usize)> = Vec::new();
        for f in &run.findings {
            let key = sorted(&f.violation.clauses);
            if !keys.iter().any(|(k, _)| *k == key) {
                keys.push((key, f.step));
            }
        }
        for (key, step) in keys {
            if let Some(i) = self.seen(&key) {
                self.findings[i].sightings += 1;
                continue;
            }
            let same = |r: &CheckRun| {
                r.findings.iter().find(|f| sorted(&f.violation.clauses) == key).map(|f| f.step)
            };
            let s = self.shrink(engine, exec, check, &same, step);
            let (expected, actual) = s
                .run
                .findings
                .iter()
                .find(|f| sorted(&f.violation.clauses) == key)
                .or_else(|| run.findings.iter().find(|f| sorted(&f.violation.clauses) == key))
                .map(|f| (f.violation.expected.clone(), f.violation.actual.clone()))
                .unwrap_or_default();
            let mut finding = self.finding(check, key, expected, actual, &s.steps, s.runs, Vec::new());
            finding.shrunk_from = step + 1;
            self.findings.push(finding);
            new.push(self.findings.len() - 1);
            if interrupted(&run) {
                break;
            }
        }
        new.extend(self.kernel_findings());
        WalkOutcome::Done(new)
    }

    /// Kernel reports of the runs so far as findings: the walk cut after the step that caused
    /// the report (not shrunk: a report may not come twice, lockdep reports once per boot, and
    /// re-running may wedge the device).
    fn kernel_findings(&mut self) -> Vec<usize> {
        let mut new = Vec::new();
        for (check, step, splat) in std::mem::take(&mut self.pending) {
            // The identity of the finding is the report (kind and title without addresses),
            // under the clause it breaks.
            let at = match step {
                Some(s) => format!(
                    "during step {} `{}`",
                    s + 1,
                    check.steps.get(s).map(|x| crate::engine::render_op(&x.op)).unwrap_or_default()
                ),
                None => "before the first step".to_string(),
            };
            let v = crate::oracle::kmsg::splat_violation(&splat, &at);
            let mut key = sorted(&v.clauses);
            key.push(format!("KERNEL {}", splat.key));
            if let Some(i) = self.seen(&key) {
                self.findings[i].sightings += 1;
                continue;
            }
            let upto = step.map_or(check.steps.len(), |s| (s + 1).min(check.steps.len()));
            let steps = clean(&check.steps[..upto]);
            let mut lines = vec!["kernel log:".to_string()];
            lines.extend(splat.lines.iter().take(40).map(|l| format!("  {l}")));
            let f = self.finding(&check, key, v.expected, v.actual, &steps, 0, lines);
            self.findings.push(f);
            new.push(self.findings.len() - 1);
        }
        new
    }

    fn seen(&self, key: &[String]) -> Option<usize> {
        self.findings.iter().position(|f| f.key == key)
    }

    fn yaml_steps(&self, steps: &[Step]) -> Vec<YamlStep> {
        steps
            .iter()
            .map(|s| YamlStep {
                op: s.op.clone(),
                name: s.name_fd.clone(),
                device: s.device.clone().filter(|d| *d != self.device_label),
                fail_nth: s.fail_nth,
            })
            .collect()
    }

    fn sequence(
        &self,
        comments: Vec<String>,
        id_prefix: &str,
        title: String,
        steps: &[Step],
    ) -> YamlSequence {
        let yaml_steps = self.yaml_steps(steps);
        let mut devices: Vec<String> = vec![self.device_label.clone()];
        for s in &yaml_steps {
            if let Some(d) = &s.device
                && !devices.contains(d)
            {
                devices.push(d.clone());
            }
        }
        devices.sort();
        let id = format!("{id_prefix}_{}", short_hash(&format!("{yaml_steps:?}")));
        YamlSequence {
            comments,
            id,
            title,
            api: self.api,
            flags: self.flags,
            devices: if devices.len() > 1 { devices } else { Vec::new() },
            steps: yaml_steps,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn finding(
        &self,
        check: &Check,
        key: Vec<String>,
        expected: String,
        actual: String,
        steps: &[Step],
        runs: usize,
        extra: Vec<String>,
    ) -> LiveFinding {
        let what = if key.is_empty() { "finding".to_string() } else { key.join(", ") };
        let slug: String = what
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect::<String>()
            .split('_')
            .filter(|s| !s.is_empty())
            .take(8)
            .collect::<Vec<_>>()
            .join("_");
        let mut comments = vec![
            format!("live fuzzing finding: {what}"),
            format!("expected: {expected}"),
            format!("  actual: {actual}"),
            format!(
                "shrunk from {} to {} steps in {runs} runs; seed {}, walk {}",
                check.steps.len(),
                steps.len(),
                self.opts.seed,
                check.id
            ),
        ];
        comments.extend(extra);
        let seq =
            self.sequence(comments, &format!("fuzz.live.{slug}"), format!("fuzz finding: {what}"), steps);
        LiveFinding {
            record: FuzzFinding {
                clauses: key.clone(),
                expected,
                actual,
                reproducer: seq.render(),
                reproducer_file: None,
                replay: None,
                known: None,
                level: crate::oracle::outcome::clauses_level(key.iter().map(String::as_str)),
                after_secs: self.started.elapsed().as_secs_f64(),
            },
            key,
            sequence: seq,
            sightings: 1,
            shrunk_from: check.steps.len(),
            shrink_runs: runs,
        }
    }

    fn shrink(
        &mut self,
        engine: &mut Engine,
        exec: &mut Exec<'_>,
        check: &Check,
        same: &dyn Fn(&CheckRun) -> Option<usize>,
        step: usize,
    ) -> Shrunk {
        let budget = self.opts.shrink_budget;
        let mut run = |steps: &[Step]| {
            let c = Check { steps: steps.to_vec(), ..check.clone() };
            self.execute(engine, exec, &c, "shrink", false)
        };
        shrink(&check.steps, step, same, budget, &mut run, &interrupted)
    }

    /// Follows the device under test through the run with the oracle's model (fed with what
    /// the device answered) to count (cur, new) pairs and error paths.
    fn account(&mut self, check: &Check, run: &CheckRun) {
        let mut m = Model::new(self.facts.clone(), Some(MigState::Running));
        for rec in &run.trace {
            let Some(step) = check.steps.get(rec.step) else { continue };
            let obs = &rec.obs;
            let name = step.op.name();
            if let Some(e) = obs.errno {
                *self.errors.entry(format!("{name}:{}", e.name())).or_default() += 1;
            } else if let Some(crate::oracle::model::StreamEnd::Errno(e)) = obs.end {
                *self.errors.entry(format!("{name}:{} (after data)", e.name())).or_default() += 1;
            }
            if rec.device != self.device_label || self.api != MigrationApi::V2 {
                continue;
            }
            match &step.op {
                Op::SetState(arg) => {
                    if let (Some(c), Some(n)) = (m.state, arg.state()) {
                        self.covered.insert((c, n));
                    }
                    m.judge_set(arg.raw(), obs);
                    // What the device says it is in counts, whatever the oracle expected.
                    m.state = obs.state.and_then(MigState::from_raw);
                }
                Op::GetState => {
                    m.judge_get(obs);
                    m.state = if obs.errno.is_none() { obs.state.and_then(MigState::from_raw) } else { None };
                }
                Op::Reset => {
                    m.judge_reset(obs);
                }
                Op::CloseDevice => m.on_close(),
                Op::Reopen => m.on_reopen(&Observation { errno: obs.errno, ..Observation::ok() }),
                _ => {}
            }
        }
        if self.covered_all.is_none() && self.all_covered() {
            self.covered_all = Some((self.started.elapsed().as_secs_f64(), self.ops));
        }
    }

    /// Pairs still missing, as `CUR->NEW`.
    pub fn missing(&self) -> Vec<String> {
        self.possible.difference(&self.covered).map(|(a, b)| format!("{a}->{b}")).collect()
    }

    /// The corpus to save: a minimal subset that reaches every PC, as YAML sequences.
    pub fn corpus_texts(&self) -> Vec<String> {
        self.corpus
            .minimized()
            .into_iter()
            .map(|i| {
                let e = self.corpus.get(i);
                let comments = vec![
                    format!(
                        "live fuzzing corpus entry: reaches {} kernel PCs, {} first ({})",
                        e.pcs.len(),
                        e.gain,
                        e.origin
                    ),
                    "replay: vfio-mig-conform DEVICE --sequence FILE; reused by fuzz --corpus DIR"
                        .to_string(),
                ];
                self.sequence(
                    comments,
                    "fuzz.corpus.entry",
                    "live fuzzing corpus entry".to_string(),
                    &e.steps,
                )
                .render()
            })
            .collect()
    }

    /// The session's coverage for the record.
    pub fn coverage_record(&self) -> Option<CoverageRecord> {
        let c = self.coverage.as_ref()?;
        Some(CoverageRecord {
            source: c.name().to_string(),
            guided: self.opts.guided,
            filter: c.filter_description(),
            text_base: c.text_base().map(|b| format!("{b:#x}")),
            execs: self.execs,
            mutants: self.mutants,
            sweep_paths: self.sweeps.paths,
            sweep_runs: self.sweeps.runs,
            sweep_faults: self.sweeps.faults,
            neighbour_runs: self.neighbours.runs,
            neighbour_finds: self.neighbours.finds,
            corpus: self.corpus.len(),
            raw_pcs: self.raw_pcs,
            truncated_runs: self.truncated,
            pcs: self
                .first_seen
                .iter()
                .map(|(pc, t)| (format!("{pc:#x}"), (*t * 1000.0).round() / 1000.0))
                .collect(),
            driver: None,
        })
    }

    /// The session as a record line.
    pub fn summary(&self, device: &str) -> FuzzSummary {
        let secs = self.started.elapsed().as_secs_f64();
        let covered_possible: Vec<String> =
            self.covered.intersection(&self.possible).map(|(a, b)| format!("{a}->{b}")).collect();
        FuzzSummary {
            device: device.to_string(),
            seed: self.opts.seed,
            duration_ms: (secs * 1000.0) as u64,
            ops: self.ops,
            ops_per_sec: if secs > 0.0 { self.ops as f64 / secs } else { 0.0 },
            arcs_covered: covered_possible,
            arcs_possible: self.possible.len(),
            error_paths: self.errors.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            findings: self.findings.iter().map(|f| f.record.clone()).collect(),
            coverage: self.coverage_record(),
        }
    }

    /// The device model of the device under test (for profile matching).
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }
}

fn sorted(v: &[crate::clauses::ClauseId]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|c| c.to_string()).collect();
    v.sort();
    v.dedup();
    v
}

fn interrupted(run: &CheckRun) -> bool {
    run.end.interrupted()
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::clauses::id::*;
    use crate::device::sim::{Defect, SimConfig};
    use crate::engine::EngineOptions;

    fn session(cfg: &SimConfig, seed: u64) -> (Engine, Session) {
        let mut e = Engine::new(vec![cfg.build()], EngineOptions { max_stream: 1 << 20 });
        let s = Session::new(&mut e, LiveOptions { seed, ..LiveOptions::default() });
        (e, s)
    }

    #[test]
    fn walks_on_the_reference_simulator_find_nothing_and_cover_every_pair() {
        for flags in [1u64, 3, 5, 7] {
            let cfg = SimConfig { flags: MigFlags(flags), ..SimConfig::v2() };
            let (mut e, mut s) = session(&cfg, flags);
            let mut exec = |e: &mut Engine, c: &Check| e.run(c);
            for _ in 0..400 {
                let WalkOutcome::Done(new) = s.walk(&mut e, &mut exec) else { panic!("walk stopped") };
                assert!(new.is_empty(), "{:?}", s.findings.iter().map(|f| &f.record).collect::<Vec<_>>());
                if s.all_covered() {
                    break;
                }
            }
            assert!(s.all_covered(), "flags {flags}: missing {:?}", s.missing());
        }
    }

    #[test]
    fn the_mutant_share_follows_which_strategy_finds_new_pcs() {
        let mut y = Yields::default();
        assert!((y.mutant_share() - 0.5).abs() < 1e-9);
        for _ in 0..50 {
            y.record(true, 3);
            y.record(false, 0);
        }
        assert!((y.mutant_share() - 0.9).abs() < 1e-9, "{y:?}");
        for _ in 0..200 {
            y.record(true, 0);
            y.record(false, 2);
        }
        assert!((y.mutant_share() - 0.2).abs() < 1e-9, "{y:?}");
        // Both dry: back towards even.
        for _ in 0..400 {
            y.record(true, 0);
            y.record(false, 0);
        }
        assert!((y.mutant_share() - 0.5).abs() < 0.05, "{y:?}");
    }

    #[test]
    fn a_defect_is_found_and_shrunk_to_a_reproducer_that_loads_and_replays() {
        let cfg = SimConfig { defects: vec![Defect::StopCopyToPreCopy], ..SimConfig::v2() };
        let (mut e, mut s) = session(&cfg, 3);
        let mut exec = |e: &mut Engine, c: &Check| e.run(c);
        let mut found = None;
        for _ in 0..2000 {
            if let WalkOutcome::Done(new) = s.walk(&mut e, &mut exec)
                && let Some(&i) = new.first()
            {
                found = Some(i);
                break;
            }
        }
        let f = &s.findings[found.expect("the defect is found")];
        assert_eq!(f.key, vec![V2_STATE_007.to_string()]);
        assert!(f.sequence.steps.len() <= 4, "not shrunk: {}", f.record.reproducer);
        let check = crate::sequence::load_str("r.yaml", f.record.reproducer.as_bytes())
            .unwrap_or_else(|e| panic!("{e}\n{}", f.record.reproducer));
        let run = e.run(&check);
        assert!(run.findings.iter().any(|x| x.violation.clauses == vec![V2_STATE_007]));
    }
}
