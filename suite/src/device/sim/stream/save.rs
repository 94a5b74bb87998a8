//! The saving side of the simulated stream: [`Saver`] produces the records lazily, from the
//! device's registers and page versions at the moment each byte is read.

use std::collections::VecDeque;

use super::*;

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
