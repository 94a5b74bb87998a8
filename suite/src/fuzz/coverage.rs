//! Coverage feedback for the live fuzzer: what each step of a walk reached in the kernel, and
//! the kernel reports (splats) each step caused.
//!
//! A [`CoverageSource`] is attached to the engine once (it installs a per-step hook), begun
//! before each check run and collected after it. [`KcovSource`] is the real one: KCOV in
//! PC mode (`fuzz::kcov`), enabled in the process that runs the check; the hook writes, per
//! step, where the step's PCs start and end in the KCOV buffer and how far the kernel log had
//! got, into a small table shared with the parent (an anonymous shared mapping), so the parent
//! can split the buffer by step and attribute each kernel report to the step that printed it,
//! even when the check process died in the middle of a step. PCs are kept when they fall in
//! the functions of the VFIO core and the driver ([`PcFilter`]).

use std::collections::BTreeSet;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::kcov::{Kcov, KcovError, KcovRef};
use crate::check::Check;
use crate::engine::{CheckRun, Engine, StepPoint};
use crate::kmsg::{Kmsg, Splat};

/// What one check run covered.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunCoverage {
    /// The PCs each step reached (index = step index), sorted and without duplicates, after the
    /// source's filter.
    pub steps: Vec<Vec<u64>>,
    /// Kernel reports, with the step they are attributed to (None: before the first step).
    pub splats: Vec<(Option<usize>, Splat)>,
    /// The trace buffer filled up: the steps after it lack PCs.
    pub truncated: bool,
    /// PCs recorded before filtering (all kernel code the steps ran).
    pub raw: usize,
}

impl RunCoverage {
    /// Every PC of the run.
    pub fn all(&self) -> BTreeSet<u64> {
        self.steps.iter().flatten().copied().collect()
    }
}

/// A source of per-step coverage.
pub trait CoverageSource: std::fmt::Debug {
    /// Short name for messages and the record (`kcov`).
    fn name(&self) -> &'static str;
    /// Installs what must run in the check process (the engine's step hook).
    fn attach(&mut self, engine: &mut Engine);
    /// Called before each check run.
    fn begin(&mut self);
    /// Called after each check run (the check process has ended).
    fn collect(&mut self, check: &Check, run: &CheckRun) -> RunCoverage;
    /// Link-time address the source's PCs are relative to, for symbolizing (`_text`), if known.
    fn text_base(&self) -> Option<u64> {
        None
    }
    /// How PCs are filtered, for the record (`functions from FILE`, ...).
    fn filter_description(&self) -> String {
        String::new()
    }
}

/// Address ranges (canonical, i.e. link-time, addresses) of the functions whose PCs count.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PcFilter {
    /// Sorted, non-overlapping `[start, end)`.
    ranges: Vec<(u64, u64)>,
    /// Function names, in the order of `ranges`.
    names: Vec<String>,
    pub description: String,
}

/// Link-time address of `_text` on x86-64 (`__START_KERNEL` with the default
/// `CONFIG_PHYSICAL_START` of 16 MiB): `kaslr_offset()` is the runtime `_text` minus this.
pub const X86_64_TEXT: u64 = 0xffff_ffff_8100_0000;

/// What the filter keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterSpec {
    /// Functions with these names.
    Names(BTreeSet<String>),
    /// Functions whose name starts with one of these, and every function of a module whose
    /// name starts with one of these.
    Prefixes(Vec<String>),
    /// Link-time `[start, end)` ranges with function names (from the kernel image: exact, and
    /// independent of KASLR since KCOV PCs are link-time addresses).
    Ranges(Vec<(u64, u64, String)>),
}

impl PcFilter {
    /// Everything passes.
    pub fn all() -> PcFilter {
        PcFilter {
            ranges: vec![(0, u64::MAX)],
            names: vec!["*".into()],
            description: "every kernel PC".into(),
        }
    }

    /// A filter of link-time ranges.
    pub fn from_ranges(ranges: &[(u64, u64, String)], description: String) -> PcFilter {
        let mut r: Vec<(u64, u64, String)> = ranges.to_vec();
        r.sort();
        PcFilter {
            ranges: r.iter().map(|(a, b, _)| (*a, *b)).collect(),
            names: r.into_iter().map(|(_, _, n)| n).collect(),
            description,
        }
    }

    /// Builds the ranges from `/proc/kallsyms` text: each kept function spans from its address
    /// to the next text symbol's. `text_link`: the link-time `_text` (runtime addresses minus the
    /// KASLR offset are what KCOV reports).
    pub fn from_kallsyms(kallsyms: &str, spec: &FilterSpec, text_link: u64) -> PcFilter {
        let mut syms: Vec<(u64, &str, Option<&str>)> = Vec::new();
        let mut text_runtime = None;
        for line in kallsyms.lines() {
            let mut it = line.split_whitespace();
            let (Some(addr), Some(kind), Some(name)) = (it.next(), it.next(), it.next()) else { continue };
            let Ok(addr) = u64::from_str_radix(addr, 16) else { continue };
            if name == "_text" {
                text_runtime = Some(addr);
            }
            if !matches!(kind, "t" | "T" | "w" | "W") || addr == 0 {
                continue;
            }
            let module = it.next().map(|m| m.trim_start_matches('[').trim_end_matches(']'));
            syms.push((addr, name, module));
        }
        syms.sort_by_key(|s| s.0);
        let offset = text_runtime.map_or(0, |t| t.wrapping_sub(text_link));
        if let FilterSpec::Ranges(r) = spec {
            return PcFilter::from_ranges(r, format!("{} functions by address", r.len()));
        }
        let keep = |name: &str, module: Option<&str>| match spec {
            FilterSpec::Ranges(_) => false,
            FilterSpec::Names(n) => n.contains(name) || n.contains(super::symbolize::base_name(name)),
            FilterSpec::Prefixes(p) => p
                .iter()
                .any(|p| name.starts_with(p.as_str()) || module.is_some_and(|m| m.starts_with(p.as_str()))),
        };
        let mut ranges = Vec::new();
        let mut names = Vec::new();
        for (i, (addr, name, module)) in syms.iter().enumerate() {
            if !keep(name, *module) {
                continue;
            }
            let end = syms[i + 1..].iter().map(|s| s.0).find(|a| a > addr).unwrap_or(addr + 0x1000);
            ranges.push((addr.wrapping_sub(offset), end.wrapping_sub(offset)));
            names.push((*name).to_string());
        }
        let description = match spec {
            FilterSpec::Names(n) => {
                format!("{} named functions ({} found in kallsyms)", n.len(), names.len())
            }
            FilterSpec::Prefixes(p) => {
                format!("functions and modules named {}* ({} functions)", p.join("*, "), names.len())
            }
            FilterSpec::Ranges(_) => String::new(),
        };
        PcFilter { ranges, names, description }
    }

    /// Whether `pc` (canonical) is in a kept function.
    pub fn keeps(&self, pc: u64) -> bool {
        self.function_index(pc).is_some()
    }

    fn function_index(&self, pc: u64) -> Option<usize> {
        let i = self.ranges.partition_point(|r| r.0 <= pc);
        (i > 0 && pc < self.ranges[i - 1].1).then(|| i - 1)
    }

    /// The kept function `pc` is in.
    pub fn function(&self, pc: u64) -> Option<&str> {
        self.function_index(pc).map(|i| self.names[i].as_str())
    }

    /// How many functions the filter keeps.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether the filter keeps nothing.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

/// Reads a filter file (`#` comments): lines `0xSTART 0xEND name [file]` give link-time
/// ranges (what `kcov-report --filter-out` writes); otherwise one function name per line,
/// resolved through kallsyms, with `# text 0x...` giving the link-time `_text` (default
/// [`X86_64_TEXT`]).
pub fn parse_filter_file(text: &str) -> (FilterSpec, u64) {
    let mut names = BTreeSet::new();
    let mut ranges = Vec::new();
    let hex = |s: &str| s.strip_prefix("0x").and_then(|h| u64::from_str_radix(h, 16).ok());
    let mut base = X86_64_TEXT;
    for line in text.lines() {
        let l = line.trim();
        if let Some(v) = l.strip_prefix("# text ") {
            if let Ok(b) = u64::from_str_radix(v.trim().trim_start_matches("0x"), 16) {
                base = b;
            }
            continue;
        }
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let w: Vec<&str> = l.split_whitespace().collect();
        match (w.first().and_then(|s| hex(s)), w.get(1).and_then(|s| hex(s)), w.get(2)) {
            (Some(a), Some(b), Some(name)) if a < b => ranges.push((a, b, (*name).to_string())),
            _ => {
                names.insert(w[0].to_string());
            }
        }
    }
    if ranges.is_empty() { (FilterSpec::Names(names), base) } else { (FilterSpec::Ranges(ranges), base) }
}

// ---- the shared per-step table ----

/// Steps of one check the table has room for (later steps go uncounted).
const MAX_STEPS: usize = 4096;
const HEADER: usize = 4;
const PER_STEP: usize = 4;
/// Header words.
const H_BEGUN: usize = 0;
const H_ENABLE_ERR: usize = 1;
const H_KMSG_BASE: usize = 2;
/// Step words.
const S_START: usize = 0;
const S_END: usize = 1;
const S_KMSG: usize = 2;
const S_FLAGS: usize = 3;
const ENDED: u64 = 1;

/// A table of `AtomicU64` in an anonymous shared mapping: written by the check process (a
/// forked child) and read by its parent.
#[derive(Debug)]
struct SharedTable {
    ptr: std::ptr::NonNull<AtomicU64>,
    words: usize,
}

// SAFETY: the mapping is owned by this value and only accessed through atomics.
unsafe impl Send for SharedTable {}
// SAFETY: as above; every access is atomic.
unsafe impl Sync for SharedTable {}

impl SharedTable {
    fn new() -> Result<SharedTable, KcovError> {
        let words = HEADER + PER_STEP * MAX_STEPS;
        // SAFETY: a fresh anonymous shared mapping; nothing else refers to it yet.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                words * 8,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            let errno = crate::errno::Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
            return Err(KcovError::Mmap { bytes: words * 8, errno });
        }
        let ptr = std::ptr::NonNull::new(p.cast::<AtomicU64>())
            .ok_or(KcovError::Mmap { bytes: words * 8, errno: crate::errno::Errno::ENOMEM })?;
        Ok(SharedTable { ptr, words })
    }

    fn at(&self, i: usize) -> &AtomicU64 {
        assert!(i < self.words);
        // SAFETY: in bounds of the live mapping (zero-filled, page aligned); atomics make the
        // concurrent access of parent and child well defined.
        unsafe { &*self.ptr.as_ptr().add(i) }
    }

    fn step(&self, step: usize, field: usize) -> Option<&AtomicU64> {
        (step < MAX_STEPS).then(|| self.at(HEADER + step * PER_STEP + field))
    }

    fn clear(&self) {
        for i in 0..self.words {
            self.at(i).store(0, Ordering::Relaxed);
        }
    }
}

impl Drop for SharedTable {
    fn drop(&mut self) {
        // SAFETY: the mapping was created in `new` with this address and size; the hook that
        // shares it holds an Arc to the same state, so no user is left.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.words * 8);
        }
    }
}

/// What the hook needs, shared (Arc) between the source and the engine's hook.
#[derive(Debug)]
struct HookState {
    kcov: KcovRef,
    table: SharedTable,
    /// The descriptor the check process drains the kernel log from between steps (the
    /// source's own `Kmsg`, shared by fork).
    kmsg_fd: Option<RawFd>,
    /// Tracing is on in this process.
    enabled: bool,
}

impl HookState {
    fn on_step(&mut self, i: usize, point: StepPoint) {
        if !self.enabled {
            self.enabled = true;
            if let Some(fd) = self.kmsg_fd {
                let base = crate::kmsg::drain_fd_seq(fd).map_or(0, |s| s + 1);
                self.table.at(H_KMSG_BASE).store(base, Ordering::Relaxed);
            }
            match self.kcov.enable() {
                Ok(()) => self.kcov.reset(),
                Err(e) => self.table.at(H_ENABLE_ERR).store(e.0 as u64, Ordering::Relaxed),
            }
        }
        let pos = self.kcov.len() as u64;
        match point {
            StepPoint::Before => {
                if let Some(w) = self.table.step(i, S_START) {
                    w.store(pos, Ordering::Relaxed);
                    self.table.at(H_BEGUN).fetch_max(i as u64 + 1, Ordering::Relaxed);
                }
            }
            StepPoint::After => {
                if let Some(w) = self.table.step(i, S_END) {
                    w.store(pos, Ordering::Relaxed);
                }
                if let Some(fd) = self.kmsg_fd
                    && let Some(seq) = crate::kmsg::drain_fd_seq(fd)
                    && let Some(w) = self.table.step(i, S_KMSG)
                {
                    w.store(seq + 1, Ordering::Relaxed);
                }
                if let Some(w) = self.table.step(i, S_FLAGS) {
                    w.store(ENDED, Ordering::Release);
                }
            }
        }
    }
}

/// KCOV per step, with kernel reports from `/dev/kmsg`.
#[derive(Debug)]
pub struct KcovSource {
    kcov: Kcov,
    words: usize,
    state: Arc<Mutex<HookState>>,
    filter: PcFilter,
    text_link: u64,
    /// The parent's reader of the kernel log (full records).
    kmsg: Option<Kmsg>,
    /// The descriptor the check process consumes between steps (markers only).
    kmsg_markers: Option<Kmsg>,
    /// Why kernel reports are not collected, if they are not.
    pub kmsg_error: Option<String>,
    /// KCOV instances replaced because a stuck check process still held one.
    pub replaced: u64,
}

/// Default trace buffer: 1 Mi entries (8 MiB), enough for a walk of a few hundred steps.
pub const DEFAULT_WORDS: usize = 1 << 20;

impl KcovSource {
    /// Opens KCOV (and the kernel log, when readable).
    pub fn new(words: usize, filter: PcFilter, text_link: u64) -> Result<KcovSource, KcovError> {
        let kcov = Kcov::open(words)?;
        let words = kcov.words();
        let (kmsg, kmsg_markers, kmsg_error) = match (Kmsg::open_at_end(), Kmsg::open_at_end()) {
            (Ok(a), Ok(b)) => (Some(a), Some(b), None),
            (Err(e), _) | (_, Err(e)) => (None, None, Some(e.to_string())),
        };
        let state = HookState {
            kcov: kcov.handle(),
            table: SharedTable::new()?,
            kmsg_fd: kmsg_markers.as_ref().map(Kmsg::raw_fd),
            enabled: false,
        };
        Ok(KcovSource {
            kcov,
            words,
            state: Arc::new(Mutex::new(state)),
            filter,
            text_link,
            kmsg,
            kmsg_markers,
            kmsg_error,
            replaced: 0,
        })
    }

    /// The filter PCs pass through.
    pub fn filter(&self) -> &PcFilter {
        &self.filter
    }
}

fn lock(m: &Mutex<HookState>) -> std::sync::MutexGuard<'_, HookState> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl CoverageSource for KcovSource {
    fn name(&self) -> &'static str {
        "kcov"
    }

    fn attach(&mut self, engine: &mut Engine) {
        let state = Arc::clone(&self.state);
        engine.step_hook = Some(Box::new(move |i, point| lock(&state).on_step(i, point)));
    }

    fn begin(&mut self) {
        let mut st = lock(&self.state);
        // A check process stuck in the kernel (killed, D state) may still hold the buffer:
        // the next enable would fail with EBUSY, so take a fresh one.
        if st.table.at(H_ENABLE_ERR).load(Ordering::Relaxed) == crate::errno::Errno::EBUSY.0 as u64
            && let Ok(k) = Kcov::open(self.words)
        {
            st.kcov = k.handle();
            // The old buffer stays mapped by the stuck process; our mapping goes with `kcov`.
            self.kcov = k;
            self.replaced += 1;
        }
        st.table.clear();
        st.enabled = false;
    }

    fn collect(&mut self, _check: &Check, _run: &CheckRun) -> RunCoverage {
        let mut st = lock(&self.state);
        if st.enabled {
            // The check ran in this process: stop tracing here.
            let _ = st.kcov.disable();
            st.enabled = false;
        }
        let t = &st.table;
        let begun = t.at(H_BEGUN).load(Ordering::Acquire) as usize;
        let total = st.kcov.len();
        let mut out = RunCoverage { truncated: st.kcov.full(), ..RunCoverage::default() };
        for i in 0..begun.min(MAX_STEPS) {
            let start = t.step(i, S_START).map_or(0, |w| w.load(Ordering::Relaxed)) as usize;
            let ended = t.step(i, S_FLAGS).is_some_and(|w| w.load(Ordering::Acquire) & ENDED != 0);
            let end = if ended {
                t.step(i, S_END).map_or(0, |w| w.load(Ordering::Relaxed)) as usize
            } else {
                total
            };
            let raw = st.kcov.entries(start, end);
            out.raw += raw.len();
            let mut pcs: Vec<u64> = raw.into_iter().filter(|pc| self.filter.keeps(*pc)).collect();
            pcs.sort_unstable();
            pcs.dedup();
            out.steps.push(pcs);
        }
        // Kernel reports: split by the markers the check process left after each step.
        if let Some(k) = &mut self.kmsg {
            let records = k.drain().unwrap_or_default();
            let base = t.at(H_KMSG_BASE).load(Ordering::Relaxed);
            let marks: Vec<u64> = (0..begun.min(MAX_STEPS))
                .map(|i| t.step(i, S_KMSG).map_or(0, |w| w.load(Ordering::Relaxed)))
                .collect();
            for s in crate::kmsg::splats(&records) {
                out.splats.push((attribute(s.seq, base, &marks), s));
            }
        }
        if let Some(k) = &mut self.kmsg_markers {
            let _ = k.drain();
        }
        out
    }

    fn text_base(&self) -> Option<u64> {
        Some(self.text_link)
    }

    fn filter_description(&self) -> String {
        self.filter.description.clone()
    }
}

/// The step a kernel record of sequence number `seq` belongs to. `base`: 1 + the last record
/// before the first step (0: none seen); `marks[i]`: 1 + the last record read after step `i`
/// (0: none then). A record printed after the last read belongs to the last step that began:
/// the check process died in it, or the restore after it printed the record.
pub fn attribute(seq: u64, base: u64, marks: &[u64]) -> Option<usize> {
    if base > 0 && seq < base {
        return None;
    }
    let mut upto = 0u64;
    for (i, m) in marks.iter().enumerate() {
        upto = upto.max(*m);
        if upto > seq {
            return Some(i);
        }
    }
    marks.len().checked_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KALLSYMS: &str = "\
ffffffff9a000000 T _text
ffffffff9a001000 T _stext
ffffffff9b200000 t vfio_device_fops_unl_ioctl
ffffffff9b200400 t vfio_ioctl_device_feature_mig_device_state
ffffffff9b200800 T vfio_mig_get_next_state
ffffffff9b200c00 t iommufd_other
ffffffff9b300000 t handle_bar_read
ffffffff9b300500 t mtty_set_state
ffffffff9b300900 t mtty_step_state
ffffffff9b300f00 t mdpy_probe
ffffffff9b300f80 d some_data
ffffffffc0001000 t mfoo_ioctl\t[mfoo]
ffffffffc0002000 t mfoo_bar\t[mfoo]
ffffffffc0003000 t other_mod_fn\t[other]
";

    #[test]
    fn a_name_filter_keeps_exactly_the_named_functions_at_link_addresses() {
        let names: BTreeSet<String> = ["mtty_set_state", "handle_bar_read", "vfio_mig_get_next_state"]
            .iter()
            .map(|s| (*s).to_string())
            .collect();
        let f = PcFilter::from_kallsyms(KALLSYMS, &FilterSpec::Names(names), X86_64_TEXT);
        assert_eq!(f.len(), 3);
        // Runtime _text 0xffffffff9a000000 = link 0xffffffff81000000 + 0x19000000.
        let off = 0x1900_0000u64;
        assert!(f.keeps(0xffff_ffff_9b30_0504 - off));
        assert_eq!(f.function(0xffff_ffff_9b30_0504 - off), Some("mtty_set_state"));
        assert_eq!(f.function(0xffff_ffff_9b30_0004 - off), Some("handle_bar_read"));
        // mtty_step_state is not named; the address just before mtty_set_state is
        // handle_bar_read's.
        assert!(!f.keeps(0xffff_ffff_9b30_0904 - off));
        assert!(f.keeps(0xffff_ffff_9b30_04ff - off));
        // A runtime (not canonical) address is not kept.
        assert!(!f.keeps(0xffff_ffff_9b30_0504));
    }

    #[test]
    fn a_prefix_filter_keeps_prefixed_functions_and_whole_modules() {
        let f = PcFilter::from_kallsyms(
            KALLSYMS,
            &FilterSpec::Prefixes(vec!["vfio".into(), "mtty".into(), "mfoo".into()]),
            X86_64_TEXT,
        );
        let off = 0x1900_0000u64;
        let names: Vec<&str> = [0xffff_ffff_9b20_0010u64, 0xffff_ffff_9b30_0910, 0xffff_ffff_c000_2010]
            .iter()
            .map(|pc| f.function(pc - off).unwrap_or("-"))
            .collect();
        assert_eq!(names, vec!["vfio_device_fops_unl_ioctl", "mtty_step_state", "mfoo_bar"]);
        assert!(!f.keeps(0xffff_ffff_9b20_0c10 - off), "iommufd_other");
        assert!(!f.keeps(0xffff_ffff_c000_3010 - off), "other module");
        // mtty_step_state ends where mdpy_probe starts.
        assert!(!f.keeps(0xffff_ffff_9b30_0f10 - off));
    }

    #[test]
    fn a_filter_file_names_functions_and_the_text_base() {
        let (spec, base) = parse_filter_file(
            "# from vmlinux\n# text 0xffffffff82000000\nmtty_set_state samples/vfio-mdev/mtty.c\n\nvfio_mig_get_next_state\n",
        );
        assert_eq!(base, 0xffff_ffff_8200_0000);
        let FilterSpec::Names(n) = spec else { panic!("names") };
        assert_eq!(n.into_iter().collect::<Vec<_>>(), vec!["mtty_set_state", "vfio_mig_get_next_state"]);
    }

    #[test]
    fn a_filter_file_of_ranges_keeps_link_addresses_without_kallsyms() {
        let (spec, _) = parse_filter_file(
            "# text 0xffffffff81000000\n0xffffffff83e91c00 0xffffffff83e92da0 mtty_set_state samples/vfio-mdev/mtty.c\n0xffffffff83e8b790 0xffffffff83e8b810 mtty_get_data_size\n",
        );
        let f = PcFilter::from_kallsyms("", &spec, X86_64_TEXT);
        assert_eq!(f.len(), 2);
        assert_eq!(f.function(0xffff_ffff_83e9_1c05), Some("mtty_set_state"));
        assert_eq!(f.function(0xffff_ffff_83e8_b790), Some("mtty_get_data_size"));
        assert!(!f.keeps(0xffff_ffff_83e9_2da0));
    }

    #[test]
    fn kernel_records_go_to_the_step_that_printed_them() {
        // Step 0 read up to seq 10, step 1 read nothing new, step 2 read up to 14.
        let marks = [11, 0, 15];
        assert_eq!(attribute(3, 5, &marks), None, "before the first step");
        assert_eq!(attribute(7, 5, &marks), Some(0));
        assert_eq!(attribute(10, 5, &marks), Some(0));
        assert_eq!(attribute(12, 5, &marks), Some(2));
        // After the last read: the process died in step 2, or the restore after it printed it.
        assert_eq!(attribute(20, 5, &marks), Some(2));
        // Nothing read at all: the last step that began.
        assert_eq!(attribute(20, 0, &[0, 0]), Some(1));
        assert_eq!(attribute(20, 0, &[]), None);
    }
}
