//! The corpus of the coverage-guided live fuzzer: walks that reached kernel code (PCs) no
//! earlier walk had reached, kept to be mutated, and saved as YAML sequences (`--corpus DIR`)
//! that load back into the next session and replay with `--sequence`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::check::Step;
use crate::rng::Rng;

/// One kept walk.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The steps, cut after the last one that reached a new PC.
    pub steps: Vec<Step>,
    /// Every PC the entry's steps reached, sorted.
    pub pcs: Vec<u64>,
    /// How many PCs it was the first to reach.
    pub gain: usize,
    /// How often it was picked for mutation.
    pub picks: u64,
    /// Where it came from (`walk 12`, `mutation of 3`, `c-1a2b3c4d.yaml`).
    pub origin: String,
}

/// The kept walks and every PC reached so far.
#[derive(Clone, Debug, Default)]
pub struct Corpus {
    entries: Vec<Entry>,
    seen: HashSet<u64>,
    /// For each PC, how many entries reach it (what makes an entry's PCs rare).
    holders: HashMap<u64, u32>,
}

impl Corpus {
    pub fn new() -> Corpus {
        Corpus::default()
    }

    /// Distinct PCs reached by every run offered so far.
    pub fn covered(&self) -> usize {
        self.seen.len()
    }

    /// Whether `pc` was reached.
    pub fn reached(&self, pc: u64) -> bool {
        self.seen.contains(&pc)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn get(&self, i: usize) -> &Entry {
        &self.entries[i]
    }

    /// Offers a run (`per_step[i]`: the PCs step `i` reached). The run is kept when it reached
    /// a PC no earlier run had, cut after the last step that did so; returns the new PCs
    /// (empty: not kept).
    pub fn offer(&mut self, steps: &[Step], per_step: &[Vec<u64>], origin: impl Into<String>) -> Vec<u64> {
        let mut new: Vec<u64> = Vec::new();
        let mut fresh: HashSet<u64> = HashSet::new();
        let mut last = 0usize;
        for (i, pcs) in per_step.iter().enumerate().take(steps.len()) {
            for pc in pcs {
                if !self.seen.contains(pc) && fresh.insert(*pc) {
                    new.push(*pc);
                    last = i;
                }
            }
        }
        if new.is_empty() {
            return new;
        }
        let cut = last + 1;
        let mut pcs: Vec<u64> = per_step[..cut].iter().flatten().copied().collect();
        pcs.sort_unstable();
        pcs.dedup();
        self.seen.extend(new.iter().copied());
        for pc in &pcs {
            *self.holders.entry(*pc).or_default() += 1;
        }
        self.entries.push(Entry {
            steps: steps[..cut].to_vec(),
            pcs,
            gain: new.len(),
            picks: 0,
            origin: origin.into(),
        });
        new
    }

    /// Picks an entry to mutate: one whose PCs few other entries reach, and that was picked
    /// less often, is likelier. An entry's weight is the sum over its PCs of 1 / (entries
    /// reaching that PC): a PC only one entry reaches counts in full, one that every entry
    /// reaches hardly at all (the rare-edge schedule of AFL++, libFuzzer's entropic), so
    /// mutation goes where the corpus is thin rather than to the entries that found most
    /// early on.
    pub fn pick(&mut self, rng: &mut Rng) -> Option<usize> {
        if self.entries.is_empty() {
            return None;
        }
        let holders = &self.holders;
        let weight = |e: &Entry| {
            let rarity: f64 =
                e.pcs.iter().map(|pc| 1.0 / f64::from(holders.get(pc).copied().unwrap_or(1).max(1))).sum();
            // Fixed point (1/64 of a PC) so that the draw stays an integer one.
            (((1.0 + rarity) * 64.0) as u64 / (1 + e.picks / 8)).max(1)
        };
        let weights: Vec<u64> = self.entries.iter().map(weight).collect();
        let total: u64 = weights.iter().sum();
        let mut x = rng.below(total);
        let mut chosen = self.entries.len() - 1;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                chosen = i;
                break;
            }
            x -= w;
        }
        self.entries[chosen].picks += 1;
        Some(chosen)
    }

    /// A subset of the entries that still reaches every PC the entries reach: greedily, the
    /// entry adding the most PCs not yet covered, then the next, until nothing is added
    /// (shorter entries win ties).
    pub fn minimized(&self) -> Vec<usize> {
        let mut covered: HashSet<u64> = HashSet::new();
        let mut chosen: Vec<usize> = Vec::new();
        let mut left: Vec<usize> = (0..self.entries.len()).collect();
        loop {
            let best = left
                .iter()
                .map(|&i| (i, self.entries[i].pcs.iter().filter(|p| !covered.contains(p)).count()))
                .filter(|(_, n)| *n > 0)
                .max_by(|a, b| {
                    a.1.cmp(&b.1).then(self.entries[b.0].steps.len().cmp(&self.entries[a.0].steps.len()))
                });
            let Some((i, _)) = best else { break };
            covered.extend(self.entries[i].pcs.iter().copied());
            chosen.push(i);
            left.retain(|&j| j != i);
        }
        chosen.sort_unstable();
        chosen
    }
}

/// File name of a saved corpus entry (`c-<hash of its text>.yaml`).
pub fn file_name(text: &str) -> String {
    format!("c-{}.yaml", super::yaml::short_hash(text))
}

/// What went wrong reading or writing a corpus directory.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// Writes `texts` as corpus files into `dir` and removes the corpus files (`c-*.yaml`) that
/// are no longer part of it. Returns the files written.
pub fn save(dir: &Path, texts: &[String]) -> Result<Vec<PathBuf>, CorpusError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| CorpusError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut written = Vec::new();
    for t in texts {
        let p = dir.join(file_name(t));
        std::fs::write(&p, t).map_err(io(&p))?;
        written.push(p);
    }
    for e in std::fs::read_dir(dir).map_err(io(dir))?.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("c-") && name.ends_with(".yaml") && !written.contains(&p) {
            std::fs::remove_file(&p).map_err(io(&p))?;
        }
    }
    Ok(written)
}

/// Reads every `*.yaml` of `dir` as a sequence: the steps of each file that loads, and an
/// error (`file:line:col: ...`) for each that does not. A missing directory is an empty corpus.
pub fn load(dir: &Path) -> (Vec<(String, Vec<Step>)>, Vec<String>) {
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return (ok, errors) };
    let mut paths: Vec<PathBuf> =
        rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "yaml")).collect();
    paths.sort();
    for p in paths {
        let name = p.display().to_string();
        match crate::sequence::read_bounded(&p) {
            Err(e) => errors.push(format!("{name}: {e}")),
            Ok(bytes) => match crate::sequence::load_str(&name, &bytes) {
                Ok(check) => ok.push((
                    p.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or(name),
                    check.steps,
                )),
                Err(e) => errors.push(e.to_string()),
            },
        }
    }
    (ok, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::Op;

    fn steps(n: usize) -> Vec<Step> {
        (0..n).map(|i| Step::new(Op::Wait { ms: i as u16 + 1 }).oracle()).collect()
    }

    #[test]
    fn a_run_is_kept_only_when_it_reaches_a_new_pc() {
        let mut c = Corpus::new();
        assert_eq!(c.offer(&steps(3), &[vec![1, 2], vec![3], vec![]], "walk 1"), vec![1, 2, 3]);
        assert_eq!(c.len(), 1);
        // The same PCs again, in another order and split differently: nothing new, not kept.
        assert!(c.offer(&steps(2), &[vec![3, 1], vec![2]], "walk 2").is_empty());
        assert_eq!(c.len(), 1);
        // One new PC in the last step.
        assert_eq!(c.offer(&steps(4), &[vec![1], vec![], vec![2], vec![9]], "walk 3"), vec![9]);
        assert_eq!(c.len(), 2);
        assert_eq!(c.covered(), 4);
        assert_eq!(c.get(1).gain, 1);
        assert_eq!(c.get(1).pcs, vec![1, 2, 9]);
    }

    #[test]
    fn a_kept_run_is_cut_after_its_last_new_pc() {
        let mut c = Corpus::new();
        c.offer(&steps(1), &[vec![5]], "walk 1");
        // New PCs in steps 0 and 2; steps 3 and 4 add nothing.
        let new = c.offer(&steps(5), &[vec![6], vec![5], vec![7], vec![5], vec![6]], "walk 2");
        assert_eq!(new, vec![6, 7]);
        assert_eq!(c.get(1).steps.len(), 3);
        assert_eq!(c.get(1).pcs, vec![5, 6, 7]);
        // Coverage of steps beyond the walk (a shorter check) is ignored.
        assert!(c.offer(&steps(1), &[vec![5], vec![100]], "walk 3").is_empty());
    }

    #[test]
    fn minimizing_keeps_a_cover_of_every_pc() {
        let mut c = Corpus::new();
        c.offer(&steps(1), &[vec![1, 2]], "a");
        c.offer(&steps(1), &[vec![3]], "b");
        c.offer(&steps(2), &[vec![1, 2, 3], vec![4]], "c");
        c.offer(&steps(1), &[vec![5]], "d");
        let m = c.minimized();
        // c covers 1-4 alone; d adds 5; a and b add nothing.
        assert_eq!(m, vec![2, 3]);
        let union: HashSet<u64> = m.iter().flat_map(|&i| c.get(i).pcs.clone()).collect();
        assert_eq!(union.len(), c.covered());
    }

    #[test]
    fn entries_that_found_more_are_picked_more_often() {
        let mut c = Corpus::new();
        c.offer(&steps(1), &[vec![1]], "small");
        c.offer(&steps(1), &[(100..160).collect()], "big");
        let mut rng = Rng::new(5);
        let mut counts = [0u32; 2];
        for _ in 0..1000 {
            counts[c.pick(&mut rng).unwrap()] += 1;
        }
        assert!(counts[1] > counts[0] * 3, "{counts:?}");
        assert!(counts[0] > 0, "{counts:?}");
        assert_eq!(Corpus::new().pick(&mut rng), None);
    }

    #[test]
    fn an_entry_that_reaches_what_an_earlier_one_does_and_more_is_picked_at_least_as_often() {
        // Arrange: the first entry found 100 PCs; the second reaches the same 100 and one
        // more (it was first to 1); a third found 10 of its own. Weighed by PCs found first,
        // the first would be picked 50 times as often as the second, which holds all it
        // holds; weighed by rarity the 100 shared PCs count half for each.
        let mut c = Corpus::new();
        c.offer(&steps(1), &[(0..100).collect()], "first");
        c.offer(&steps(1), &[(0..101).collect()], "superset");
        c.offer(&steps(1), &[(300..310).collect()], "own");
        assert_eq!((c.get(0).gain, c.get(1).gain, c.get(2).gain), (100, 1, 10));
        // Act
        let mut rng = Rng::new(9);
        let mut counts = [0u32; 3];
        for _ in 0..3000 {
            counts[c.pick(&mut rng).unwrap()] += 1;
        }
        // Assert
        assert!(counts[1] * 10 >= counts[0] * 9, "{counts:?}");
        assert!(counts[2] > 0, "{counts:?}");
    }

    #[test]
    fn a_corpus_directory_keeps_only_the_current_entries() {
        let dir = std::env::temp_dir().join(format!("vmc-corpus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("c-00000000.yaml"), "stale").unwrap();
        std::fs::write(dir.join("keep.yaml"), "not ours").unwrap();
        let text = "id: fuzz.corpus.x\ntitle: t\nrequires: {api: v2, flags: [stop_copy]}\nsteps:\n  - set_state: STOP\n    expect: oracle\n".to_string();
        let written = save(&dir, std::slice::from_ref(&text)).unwrap();
        assert_eq!(written.len(), 1);
        assert!(!dir.join("c-00000000.yaml").exists());
        assert!(dir.join("keep.yaml").exists());
        let (ok, errors) = load(&dir);
        assert_eq!(ok.len(), 1, "{errors:?}");
        assert_eq!(ok[0].1.len(), 1);
        // keep.yaml is not a sequence: an error naming the file.
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("keep.yaml"), "{errors:?}");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(load(&dir).0.is_empty());
    }
}
