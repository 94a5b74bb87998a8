//! The simulated devices' migration stream: a record format that is generated lazily (a
//! GiB-sized state never sits in memory) and verified incrementally on the resume side
//! (page contents, device type, completeness, a hash over the whole stream), so truncated,
//! corrupted, spliced and foreign streams are detectable whatever the write segmentation.
//!
//! Records: `tag: u32 LE, len: u32 LE, payload[len]`.
//! - HEADER: magic, version, device type id, state size, page-content seed.
//! - PAGES: first page, count, one version per page, then the pages' bytes.
//! - REGS: the device registers.
//! - END: record count and the hash of every byte before the END payload.

use std::collections::VecDeque;

use super::hw::{HOT_PAGES, NUM_REGS, PAGE, page_word};
use crate::hash::StreamHash;

const MAGIC: u64 = 0x3130_4d49_5343_4d56; // "VMCSIM01" little endian
const VERSION: u32 = 1;
const TAG_HEADER: u32 = 0x5244_4801;
const TAG_PAGES: u32 = 0x4547_5002;
const TAG_REGS: u32 = 0x4745_5203;
const TAG_END: u32 = 0x444e_4504;
const HEADER_LEN: u32 = 32;
const REGS_LEN: u32 = (NUM_REGS * 4) as u32;
const END_LEN: u32 = 16;
/// Pages per PAGES record of the initial section.
const PAGES_PER_RECORD: u64 = 16;
/// Bytes of the final section that [`Saver::finish`] appends: the REGS and END records.
pub const FINAL_BYTES: u64 = 8 + REGS_LEN as u64 + 8 + END_LEN as u64;

/// Identity of the state a stream describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamIdentity {
    pub type_id: u32,
    pub state_size: u64,
    pub seed: u64,
}

impl StreamIdentity {
    pub fn npages(&self) -> u64 {
        self.state_size.div_ceil(PAGE)
    }

    pub fn page_len(&self, page: u64) -> u64 {
        (self.state_size - page * PAGE).min(PAGE)
    }
}

/// One pending piece of a saving stream.
#[derive(Clone, Debug)]
enum Chunk {
    /// Literal bytes (record headers, small records).
    Bytes(Vec<u8>, usize),
    /// A run of initial PAGES records for pages `[next, end)`, produced record by record.
    InitialPages { next: u64, end: u64 },
    /// Page bytes for one page of a PAGES record.
    PageData { page: u64, version: u32, pos: u64 },
    /// The device registers, taken when the record is emitted.
    Regs,
    /// The END record, computed from the hash of everything emitted before it.
    End,
    /// A re-send of a hot page that changed: resolved to its current version when the
    /// reader reaches it, so a page dirtied again before it is sent is sent once (as a
    /// device's dirty bitmap does), and a slow reader cannot make the stream grow without
    /// bound.
    Dirty(u64),
    /// Never ends: endless filler (hostile defect).
    Endless,
}

/// What the saver needs to read from the device when it resolves lazy chunks.
pub trait StateSource {
    fn regs(&self) -> [u32; NUM_REGS];
    fn page_version(&self, page: u64) -> u32;
}

/// The saving side: produces the stream on demand.
#[derive(Debug)]
pub struct Saver {
    id: StreamIdentity,
    queue: VecDeque<Chunk>,
    /// Bytes of the initial section still unread (pre-copy `initial_bytes`).
    initial_left: u64,
    /// Bytes of the whole initial section.
    initial_total: u64,
    /// Bytes queued beyond the initial section and not read yet.
    queued_dirty: u64,
    hash: StreamHash,
    records: u32,
    /// Versions of hot pages already queued.
    sent_versions: [u32; HOT_PAGES],
    /// Pages below this were queued by the initial section (only they can be dirty: dirt is
    /// relative to data already produced).
    emitted_until: u64,
    /// Hot pages with a re-send queued and not yet started.
    pending: [bool; HOT_PAGES],
    finished: bool,
}

fn record_header(tag: u32, len: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + len as usize);
    v.extend_from_slice(&tag.to_le_bytes());
    v.extend_from_slice(&len.to_le_bytes());
    v
}

impl Saver {
    /// A new saving session: HEADER and every page are the initial section.
    pub fn new(id: StreamIdentity, src: &dyn StateSource) -> Saver {
        let mut header = record_header(TAG_HEADER, HEADER_LEN);
        header.extend_from_slice(&MAGIC.to_le_bytes());
        header.extend_from_slice(&VERSION.to_le_bytes());
        header.extend_from_slice(&id.type_id.to_le_bytes());
        header.extend_from_slice(&id.state_size.to_le_bytes());
        header.extend_from_slice(&id.seed.to_le_bytes());
        let npages = id.npages();
        let initial = header.len() as u64 + Self::pages_bytes(&id, 0, npages);
        let sent_versions = [0u32; HOT_PAGES];
        let _ = src;
        let mut queue = VecDeque::new();
        queue.push_back(Chunk::Bytes(header, 0));
        queue.push_back(Chunk::InitialPages { next: 0, end: npages });
        Saver {
            id,
            queue,
            initial_left: initial,
            initial_total: initial,
            queued_dirty: 0,
            hash: StreamHash::default(),
            records: 1,
            sent_versions,
            emitted_until: 0,
            pending: [false; HOT_PAGES],
            finished: false,
        }
    }

    /// Bytes the PAGES records for `[first, end)` take.
    fn pages_bytes(id: &StreamIdentity, first: u64, end: u64) -> u64 {
        let mut total = 0;
        let mut p = first;
        while p < end {
            let count = PAGES_PER_RECORD.min(end - p);
            total += 8 + 16 + 4 * count;
            total += (p..p + count).map(|q| id.page_len(q)).sum::<u64>();
            p += count;
        }
        total
    }

    fn pages_record_prefix(&self, first: u64, versions: &[u32]) -> Vec<u8> {
        let data: u64 = (first..first + versions.len() as u64).map(|p| self.id.page_len(p)).sum();
        let len = 16 + 4 * versions.len() as u64 + data;
        let mut v = record_header(TAG_PAGES, u32::try_from(len).unwrap_or(u32::MAX));
        v.extend_from_slice(&first.to_le_bytes());
        v.extend_from_slice(&(versions.len() as u32).to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        for ver in versions {
            v.extend_from_slice(&ver.to_le_bytes());
        }
        v
    }

    /// Queues re-sends of hot pages whose version changed since they were queued.
    pub fn collect_dirty(&mut self, src: &dyn StateSource) {
        if self.finished {
            return;
        }
        let nhot = (HOT_PAGES as u64).min(self.id.npages()).min(self.emitted_until);
        for p in 0..nhot {
            let v = src.page_version(p);
            if v != self.sent_versions[p as usize] && !self.pending[p as usize] {
                self.pending[p as usize] = true;
                self.queued_dirty += 8 + 16 + 4 + self.id.page_len(p);
                self.records += 1;
                self.queue.push_back(Chunk::Dirty(p));
            }
        }
    }

    /// Ends the stream: final dirty pages, registers and END (entering STOP_COPY).
    pub fn finish(&mut self, src: &dyn StateSource) {
        if self.finished {
            return;
        }
        self.collect_dirty(src);
        self.finished = true;
        self.queue.push_back(Chunk::Bytes(record_header(TAG_REGS, REGS_LEN), 0));
        self.queue.push_back(Chunk::Regs);
        self.queue.push_back(Chunk::End);
        self.records += 2;
        self.queued_dirty += FINAL_BYTES;
    }

    /// A device reconfiguration during pre-copy: every page is queued again as new initial
    /// data. With `as_initial` (a REINIT the caller opted in to) the bytes already queued count
    /// as initial bytes too, as mlx5 treats them (they precede the new initial data on the
    /// stream), and dirty_bytes restarts at 0; otherwise the new data is dirty data.
    pub fn reinit(&mut self, as_initial: bool) {
        if self.finished {
            return;
        }
        let bytes = Self::pages_bytes(&self.id, 0, self.id.npages());
        if as_initial {
            self.initial_left += self.queued_dirty + bytes;
            self.initial_total += self.queued_dirty + bytes;
            self.queued_dirty = 0;
        } else {
            self.queued_dirty += bytes;
        }
        self.queue.push_back(Chunk::InitialPages { next: 0, end: self.id.npages() });
        // Dirt is relative to data produced: the new initial pass produces every page again.
        self.emitted_until = 0;
    }

    /// Replaces the end of the stream with endless filler (hostile defect).
    pub fn make_endless(&mut self) {
        self.queue.push_back(Chunk::Endless);
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// `initial_bytes` of PRECOPY_INFO.
    pub fn initial_bytes(&self) -> u64 {
        self.initial_left
    }

    /// Bytes of the whole initial section (HEADER and every page), read or not.
    pub fn initial_total(&self) -> u64 {
        self.initial_total
    }

    /// `dirty_bytes` of PRECOPY_INFO.
    pub fn dirty_bytes(&self) -> u64 {
        self.queued_dirty
    }

    /// Whether every queued byte has been read (a temporary end in PRE_COPY, the end of the
    /// stream once finished).
    pub fn drained(&self) -> bool {
        self.queue.is_empty()
    }

    /// Total bytes a complete stream of this identity has without pre-copy dirt.
    pub fn full_size(id: &StreamIdentity) -> u64 {
        8 + u64::from(HEADER_LEN)
            + Self::pages_bytes(id, 0, id.npages())
            + 8
            + u64::from(REGS_LEN)
            + 8
            + u64::from(END_LEN)
    }

    /// Reads up to `out.len()` bytes; returns 0 when nothing is queued.
    pub fn read(&mut self, out: &mut [u8], src: &dyn StateSource) -> usize {
        let mut n = 0;
        while n < out.len() {
            let Some(front) = self.queue.front_mut() else { break };
            let produced = match front {
                Chunk::Bytes(bytes, pos) => {
                    let take = (bytes.len() - *pos).min(out.len() - n);
                    out[n..n + take].copy_from_slice(&bytes[*pos..*pos + take]);
                    *pos += take;
                    let done = *pos == bytes.len();
                    (take, done)
                }
                Chunk::PageData { page, version, pos } => {
                    let len = self.id.page_len(*page);
                    let take = ((len - *pos) as usize).min(out.len() - n);
                    fill_page(self.id.seed, *page, *version, *pos, &mut out[n..n + take]);
                    *pos += take as u64;
                    (take, *pos == len)
                }
                Chunk::InitialPages { next, end } => {
                    if next >= end {
                        self.queue.pop_front();
                        continue;
                    }
                    let first = *next;
                    let count = PAGES_PER_RECORD.min(*end - first);
                    *next += count;
                    let versions: Vec<u32> = (first..first + count).map(|p| src.page_version(p)).collect();
                    for (i, v) in versions.iter().enumerate() {
                        if let Some(slot) = self.sent_versions.get_mut(first as usize + i) {
                            *slot = *v;
                        }
                    }
                    self.emitted_until = first + count;
                    let prefix = self.pages_record_prefix(first, &versions);
                    let mut pieces = vec![Chunk::Bytes(prefix, 0)];
                    for (i, v) in versions.iter().enumerate() {
                        pieces.push(Chunk::PageData { page: first + i as u64, version: *v, pos: 0 });
                    }
                    self.records += 1;
                    for piece in pieces.into_iter().rev() {
                        self.queue.push_front(piece);
                    }
                    // The InitialPages chunk now follows the pieces of this record.
                    continue;
                }
                Chunk::Dirty(page) => {
                    // Resolve to the page's current version; an in-flight record is never
                    // changed.
                    let p = *page;
                    self.queue.pop_front();
                    let v = src.page_version(p);
                    self.pending[p as usize] = false;
                    self.sent_versions[p as usize] = v;
                    let prefix = self.pages_record_prefix(p, &[v]);
                    self.queue.push_front(Chunk::PageData { page: p, version: v, pos: 0 });
                    self.queue.push_front(Chunk::Bytes(prefix, 0));
                    continue;
                }
                Chunk::Regs => {
                    let mut bytes = Vec::with_capacity(REGS_LEN as usize);
                    for r in src.regs() {
                        bytes.extend_from_slice(&r.to_le_bytes());
                    }
                    *front = Chunk::Bytes(bytes, 0);
                    continue;
                }
                Chunk::End => {
                    let mut bytes = record_header(TAG_END, END_LEN);
                    bytes.extend_from_slice(&self.records.to_le_bytes());
                    bytes.extend_from_slice(&0u32.to_le_bytes());
                    // The hash covers everything before the END record's payload, including
                    // what is already in `out` but not yet hashed, and the END header.
                    let mut h = self.hash.clone();
                    h.update(&out[..n]);
                    h.update(&bytes[..8]);
                    bytes.extend_from_slice(&h.value().to_le_bytes());
                    *front = Chunk::Bytes(bytes, 0);
                    continue;
                }
                Chunk::Endless => {
                    let take = out.len() - n;
                    out[n..].fill(0xa5);
                    (take, false)
                }
            };
            let (take, done) = produced;
            n += take;
            if done {
                self.queue.pop_front();
            }
        }
        self.hash.update(&out[..n]);
        let from_initial = (n as u64).min(self.initial_left);
        self.initial_left -= from_initial;
        self.queued_dirty = self.queued_dirty.saturating_sub(n as u64 - from_initial);
        n
    }
}

/// Fills `out` with the bytes of `page` at `version` starting at byte `pos` of the page.
pub fn fill_page(seed: u64, page: u64, version: u32, pos: u64, out: &mut [u8]) {
    let mut i = 0usize;
    let mut at = pos;
    while i < out.len() {
        let word = page_word(seed, page, version, at / 8).to_le_bytes();
        let off = (at % 8) as usize;
        let take = (8 - off).min(out.len() - i);
        out[i..i + take].copy_from_slice(&word[off..off + take]);
        i += take;
        at += take as u64;
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed([u32; NUM_REGS], [u32; HOT_PAGES]);
    impl StateSource for Fixed {
        fn regs(&self) -> [u32; NUM_REGS] {
            self.0
        }
        fn page_version(&self, page: u64) -> u32 {
            self.1.get(page as usize).copied().unwrap_or(0)
        }
    }

    fn id(size: u64) -> StreamIdentity {
        StreamIdentity { type_id: 7, state_size: size, seed: 42 }
    }

    fn full_stream(size: u64, src: &Fixed) -> Vec<u8> {
        let mut s = Saver::new(id(size), src);
        s.finish(src);
        let mut out = Vec::new();
        let mut buf = vec![0u8; 1000];
        loop {
            let n = s.read(&mut buf, src);
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    #[test]
    fn a_full_stream_restores_regs_and_versions_in_any_segmentation() {
        let src = Fixed([1, 2, 3, 4, 5, 6, 7, 8], [3; HOT_PAGES]);
        let stream = full_stream(3 * PAGE + 123, &src);
        assert_eq!(stream.len() as u64, Saver::full_size(&id(3 * PAGE + 123)));
        for seg in [1usize, 7, 4095, 4097, stream.len()] {
            let mut l = Loader::new(id(3 * PAGE + 123), true, true);
            for piece in stream.chunks(seg) {
                l.write(piece).unwrap();
            }
            let r = l.finish().unwrap();
            assert_eq!(r.regs, src.0);
            assert_eq!(r.versions[0], 3);
        }
    }

    #[test]
    fn truncated_flipped_and_foreign_streams_are_rejected() {
        let src = Fixed([9; NUM_REGS], [0; HOT_PAGES]);
        let stream = full_stream(2 * PAGE, &src);
        for cut in [0, 1, 8, 40, stream.len() / 2, stream.len() - 1] {
            let mut l = Loader::new(id(2 * PAGE), true, true);
            let _ = l.write(&stream[..cut]);
            assert!(l.finish().is_err(), "truncated at {cut} accepted");
        }
        for at in [0, 9, 50, 100, stream.len() - 20, stream.len() - 1] {
            let mut bad = stream.clone();
            bad[at] ^= 0x10;
            let mut l = Loader::new(id(2 * PAGE), true, true);
            let _ = l.write(&bad);
            assert!(l.finish().is_err(), "flip at {at} accepted");
        }
        let mut l = Loader::new(StreamIdentity { type_id: 8, ..id(2 * PAGE) }, true, true);
        assert!(matches!(l.write(&stream), Err(LoadError::Foreign(_))));
    }
}
