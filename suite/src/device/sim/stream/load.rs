//! The resuming side of the simulated stream: [`Loader`] verifies the records as they arrive,
//! in any segmentation, and [`Loader::finish`] yields the state a complete stream restores.

use super::*;

/// Why a resume stream was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// The stream belongs to another device type or state size.
    Foreign(String),
    /// The stream is damaged (bad content, unknown record, hash mismatch, data after END).
    Corrupt(String),
    /// The stream stopped before its END record.
    Truncated(String),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Foreign(s) => write!(f, "foreign stream: {s}"),
            LoadError::Corrupt(s) => write!(f, "corrupt stream: {s}"),
            LoadError::Truncated(s) => write!(f, "truncated stream: {s}"),
        }
    }
}

/// The state a complete stream restores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    pub regs: [u32; NUM_REGS],
    pub versions: [u32; HOT_PAGES],
}

#[derive(Clone, Debug)]
enum LoadPhase {
    /// Collecting a record header (8 bytes).
    RecordHeader,
    /// Collecting a fixed payload of `len` bytes for `tag`.
    Fixed {
        tag: u32,
        len: usize,
    },
    /// Collecting the PAGES prefix (16 bytes), then the versions.
    PagesPrefix {
        len: u64,
    },
    PagesVersions {
        first: u64,
        count: u64,
    },
    /// Verifying page data.
    PagesData {
        first: u64,
        versions: Vec<u32>,
        idx: usize,
        pos: u64,
    },
    Done,
}

/// The resuming side: consumes the stream in any segmentation.
#[derive(Clone, Debug)]
pub struct Loader {
    id: StreamIdentity,
    check_identity: bool,
    check_content: bool,
    phase: LoadPhase,
    buf: Vec<u8>,
    hash: StreamHash,
    records: u32,
    seen_header: bool,
    regs: Option<[u32; NUM_REGS]>,
    versions: [u32; HOT_PAGES],
    error: Option<LoadError>,
    bytes: u64,
    /// One bit per page of the state: sent at least once.
    covered: Vec<u64>,
}

impl Loader {
    /// `check_identity`/`check_content` exist so defects can switch validation off.
    pub fn new(id: StreamIdentity, check_identity: bool, check_content: bool) -> Loader {
        Loader {
            id,
            check_identity,
            check_content,
            phase: LoadPhase::RecordHeader,
            buf: Vec::with_capacity(64),
            hash: StreamHash::default(),
            records: 0,
            seen_header: false,
            regs: None,
            versions: [0; HOT_PAGES],
            error: None,
            bytes: 0,
            covered: vec![0; usize::try_from(id.npages().div_ceil(64)).unwrap_or(0)],
        }
    }

    /// The first page no PAGES record has carried, if any.
    fn missing_page(&self) -> Option<u64> {
        let n = self.id.npages();
        (0..n).find(|p| self.covered.get((p / 64) as usize).is_none_or(|w| w & (1 << (p % 64)) == 0))
    }

    pub fn error(&self) -> Option<&LoadError> {
        self.error.as_ref()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    fn fail(&mut self, e: LoadError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    /// Consumes bytes. Errors are remembered (and returned) but never panic.
    pub fn write(&mut self, mut data: &[u8]) -> Result<(), LoadError> {
        self.bytes += data.len() as u64;
        while !data.is_empty() {
            if let Some(e) = &self.error {
                return Err(e.clone());
            }
            match &mut self.phase {
                LoadPhase::Done => {
                    self.fail(LoadError::Corrupt(format!("{} bytes after the END record", data.len())));
                    break;
                }
                LoadPhase::PagesData { first, versions, idx, pos } => {
                    let page = *first + *idx as u64;
                    let len = self.id.page_len(page);
                    let take = ((len - *pos) as usize).min(data.len());
                    if self.check_content {
                        let mut expect = vec![0u8; take];
                        fill_page(self.id.seed, page, versions[*idx], *pos, &mut expect);
                        if expect != data[..take] {
                            let at = *pos;
                            self.hash.update(&data[..take]);
                            self.fail(LoadError::Corrupt(format!(
                                "page {page} content differs near byte {at}"
                            )));
                            break;
                        }
                    }
                    self.hash.update(&data[..take]);
                    *pos += take as u64;
                    data = &data[take..];
                    if *pos == len {
                        *pos = 0;
                        *idx += 1;
                        if *idx == versions.len() {
                            self.phase = LoadPhase::RecordHeader;
                        }
                    }
                }
                _ => {
                    let need = match &self.phase {
                        LoadPhase::RecordHeader => 8,
                        LoadPhase::Fixed { len, .. } => *len,
                        LoadPhase::PagesPrefix { .. } => 16,
                        LoadPhase::PagesVersions { count, .. } => 4 * *count as usize,
                        _ => unreachable!(),
                    };
                    // Never hash the END record itself before checking it.
                    let is_end = matches!(self.phase, LoadPhase::Fixed { tag: TAG_END, .. });
                    let take = (need - self.buf.len()).min(data.len());
                    self.buf.extend_from_slice(&data[..take]);
                    if !is_end {
                        self.hash.update(&data[..take]);
                    }
                    data = &data[take..];
                    if self.buf.len() == need {
                        let buf = std::mem::take(&mut self.buf);
                        self.complete(&buf);
                    }
                }
            }
        }
        match &self.error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn complete(&mut self, buf: &[u8]) {
        let u32_at = |o: usize| u32::from_le_bytes(buf[o..o + 4].try_into().unwrap_or([0; 4]));
        let u64_at = |o: usize| u64::from_le_bytes(buf[o..o + 8].try_into().unwrap_or([0; 8]));
        match self.phase.clone() {
            LoadPhase::RecordHeader => {
                let (tag, len) = (u32_at(0), u32_at(4));
                self.records += 1;
                if !self.seen_header && tag != TAG_HEADER {
                    return self
                        .fail(LoadError::Corrupt(format!("first record has tag {tag:#x}, not HEADER")));
                }
                if self.check_content && self.regs.is_some() && tag != TAG_END {
                    return self.fail(LoadError::Corrupt(format!(
                        "record {tag:#x} after REGS (REGS is the last record before END)"
                    )));
                }
                self.phase = match (tag, len) {
                    (TAG_HEADER, HEADER_LEN) if !self.seen_header => {
                        LoadPhase::Fixed { tag, len: HEADER_LEN as usize }
                    }
                    (TAG_REGS, REGS_LEN) => LoadPhase::Fixed { tag, len: REGS_LEN as usize },
                    (TAG_END, END_LEN) => LoadPhase::Fixed { tag, len: END_LEN as usize },
                    (TAG_PAGES, l) if l >= 16 => LoadPhase::PagesPrefix { len: u64::from(l) },
                    _ => {
                        return self.fail(LoadError::Corrupt(format!(
                            "unexpected record tag {tag:#x} length {len}"
                        )));
                    }
                };
            }
            LoadPhase::Fixed { tag: TAG_HEADER, .. } => {
                self.seen_header = true;
                let (magic, version) = (u64_at(0), u32_at(8));
                let got = StreamIdentity { type_id: u32_at(12), state_size: u64_at(16), seed: u64_at(24) };
                if magic != MAGIC || version != VERSION {
                    return self.fail(LoadError::Foreign(format!(
                        "magic {magic:#x} version {version} is not a sim stream"
                    )));
                }
                if self.check_identity
                    && (got.type_id != self.id.type_id || got.state_size != self.id.state_size)
                {
                    return self.fail(LoadError::Foreign(format!(
                        "stream of device type {:#x} with {} state bytes, this device is type {:#x} with {}",
                        got.type_id, got.state_size, self.id.type_id, self.id.state_size
                    )));
                }
                // Page contents are keyed by the source's seed.
                self.id.seed = got.seed;
                self.phase = LoadPhase::RecordHeader;
            }
            LoadPhase::Fixed { tag: TAG_REGS, .. } => {
                let mut regs = [0u32; NUM_REGS];
                for (i, r) in regs.iter_mut().enumerate() {
                    *r = u32_at(4 * i);
                }
                self.regs = Some(regs);
                self.phase = LoadPhase::RecordHeader;
            }
            LoadPhase::Fixed { tag: TAG_END, .. } => {
                let (records, hash) = (u32_at(0), u64_at(8));
                if self.check_content
                    && (hash != self.hash.value() || records != self.records || u32_at(4) != 0)
                {
                    return self.fail(LoadError::Corrupt(format!(
                        "END record does not match the stream (hash {hash:#x} vs {:#x}, {records} vs {} records)",
                        self.hash.value(),
                        self.records
                    )));
                }
                self.phase = LoadPhase::Done;
            }
            LoadPhase::PagesPrefix { len } => {
                let (first, count) = (u64_at(0), u64::from(u32_at(8)));
                if self.check_content && u32_at(12) != 0 {
                    return self
                        .fail(LoadError::Corrupt("PAGES record with a non-zero reserved word".to_string()));
                }
                let end = first.checked_add(count);
                if count == 0 || end.is_none_or(|e| e > self.id.npages()) {
                    return self.fail(LoadError::Corrupt(format!(
                        "PAGES record for pages {first}+{count} outside the state"
                    )));
                }
                let data: u64 = (first..first + count).map(|p| self.id.page_len(p)).sum();
                if len != 16 + 4 * count + data {
                    return self.fail(LoadError::Corrupt(format!(
                        "PAGES record length {len} does not match {count} pages"
                    )));
                }
                self.phase = LoadPhase::PagesVersions { first, count };
            }
            LoadPhase::PagesVersions { first, count, .. } => {
                let versions: Vec<u32> = (0..count as usize).map(|i| u32_at(4 * i)).collect();
                for (i, v) in versions.iter().enumerate() {
                    let p = first + i as u64;
                    if (p as usize) < HOT_PAGES {
                        self.versions[p as usize] = *v;
                    } else if *v != 0 && self.check_content {
                        return self.fail(LoadError::Corrupt(format!(
                            "page {p} has version {v} but only hot pages change"
                        )));
                    }
                }
                for p in first..first + count {
                    if let Some(w) = self.covered.get_mut((p / 64) as usize) {
                        *w |= 1 << (p % 64);
                    }
                }
                self.phase = LoadPhase::PagesData { first, versions, idx: 0, pos: 0 };
            }
            _ => self.fail(LoadError::Corrupt("record of unknown kind".to_string())),
        }
    }

    /// Finishes loading (RESUMING -> STOP): the restored state, or why the stream is bad.
    pub fn finish(&self) -> Result<Restored, LoadError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if !matches!(self.phase, LoadPhase::Done) {
            if !self.check_content {
                // Validation switched off (defect): restore whatever arrived.
                return Ok(Restored { regs: self.regs.unwrap_or([0; NUM_REGS]), versions: self.versions });
            }
            return Err(LoadError::Truncated(format!("{} bytes received and no END record", self.bytes)));
        }
        let regs = self.regs.ok_or_else(|| LoadError::Corrupt("no REGS record".to_string()))?;
        if self.check_content
            && let Some(p) = self.missing_page()
        {
            return Err(LoadError::Truncated(format!("page {p} of the state was never sent")));
        }
        Ok(Restored { regs, versions: self.versions })
    }
}
