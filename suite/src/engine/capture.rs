//! Captured migration streams: kept in memory up to a threshold, then spilled to an unlinked
//! temporary file, so replaying a multi-GiB stream never holds it in RAM. Mutations
//! (truncate, bit flip, splice) are applied lazily while replaying.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

use crate::hash::StreamHash;
use crate::op::{Mutation, Segmentation};

/// Bytes kept in memory before a capture spills to disk.
pub const SPILL_THRESHOLD: usize = 64 << 20;

/// Where a capture's bytes come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Provenance {
    /// Bytes `[start, end)` of one saving stream (`session`) of a device of `device_type`;
    /// `eof`: the read reached the end of that stream in STOP_COPY.
    Stream { device_type: Option<String>, session: String, start: u64, end: u64, eof: bool },
    /// Appended reads from different streams.
    Mixed,
    /// Literal bytes given in the sequence.
    Literal,
}

/// One captured stream.
#[derive(Debug)]
pub struct Capture {
    mem: Vec<u8>,
    file: Option<File>,
    len: u64,
    hash: StreamHash,
    pub provenance: Provenance,
}

impl Default for Capture {
    fn default() -> Self {
        Capture {
            mem: Vec::new(),
            file: None,
            len: 0,
            hash: StreamHash::default(),
            provenance: Provenance::Literal,
        }
    }
}

impl Capture {
    pub fn from_bytes(bytes: &[u8]) -> std::io::Result<Capture> {
        let mut c = Capture::default();
        c.append(bytes)?;
        Ok(c)
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn hash(&self) -> u64 {
        self.hash.value()
    }

    pub fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.hash.update(bytes);
        self.append_unhashed(bytes)
    }

    /// Takes the running hash out, for a caller that hashes the bytes it appends with
    /// [`Capture::append_unhashed`] itself and puts the hash back with [`Capture::set_hash`].
    pub(crate) fn take_hash(&mut self) -> StreamHash {
        std::mem::take(&mut self.hash)
    }

    pub(crate) fn set_hash(&mut self, hash: StreamHash) {
        self.hash = hash;
    }

    /// Appends bytes without hashing them (see [`Capture::take_hash`]).
    pub(crate) fn append_unhashed(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.len += bytes.len() as u64;
        if self.file.is_none() && self.mem.len() + bytes.len() > SPILL_THRESHOLD {
            let mut f = tempfile()?;
            f.write_all(&self.mem)?;
            self.mem = Vec::new();
            self.file = Some(f);
        }
        match &mut self.file {
            Some(f) => {
                f.seek(SeekFrom::End(0))?;
                f.write_all(bytes)
            }
            None => {
                self.mem.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    /// Reads bytes at `pos`; returns how many (0 at the end).
    pub fn read_at(&self, pos: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        if pos >= self.len {
            return Ok(0);
        }
        let n = ((self.len - pos) as usize).min(buf.len());
        match &self.file {
            Some(f) => f.read_exact_at(&mut buf[..n], pos)?,
            None => buf[..n].copy_from_slice(&self.mem[pos as usize..pos as usize + n]),
        }
        Ok(n)
    }
}

/// A capture's bytes in one piece without a copy: its memory, or its spill file mapped
/// read-only for as long as this lives.
#[derive(Debug)]
pub enum Contiguous<'a> {
    Mem(&'a [u8]),
    Mapped {
        ptr: std::ptr::NonNull<std::ffi::c_void>,
        len: usize,
        /// Bytes at the start whose pages were given back ([`Contiguous::release_before`]).
        released: std::sync::atomic::AtomicUsize,
        capture: std::marker::PhantomData<&'a Capture>,
    },
}

/// Replayed pages of a mapped capture are given back in steps of this many bytes (a multiple
/// of any page size), so the mapping never holds more than a step beyond what is in use.
const RELEASE_STEP: usize = 8 << 20;

// SAFETY: a `Contiguous` only ever reads its bytes (a shared slice, or a read-only mapping
// that nothing writes while it lives; see `bytes`), so sharing it between threads is as
// sound as sharing a `&[u8]`.
unsafe impl Sync for Contiguous<'_> {}
// SAFETY: as for `Sync`; unmapping (on drop) may happen on any thread.
unsafe impl Send for Contiguous<'_> {}

impl Contiguous<'_> {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Contiguous::Mem(b) => b,
            // SAFETY: `ptr` is a live read-only mapping of `len` bytes of the capture's spill
            // file (unmapped only when `self` drops). The file is an unlinked temporary that
            // only its `Capture` writes, through `&mut Capture`, which the borrow this value
            // holds excludes; so the bytes do not change while the slice lives.
            Contiguous::Mapped { ptr, len, .. } => unsafe {
                std::slice::from_raw_parts(ptr.as_ptr().cast::<u8>(), *len)
            },
        }
    }

    /// Says the bytes before `pos` will not be read again: a mapping drops their pages from
    /// this process (they stay in the page cache), so replaying a multi-GiB capture keeps
    /// the resident set flat.
    pub fn release_before(&self, pos: u64) {
        use std::sync::atomic::Ordering;
        let Contiguous::Mapped { ptr, len, released, .. } = self else { return };
        let upto = (pos.min(*len as u64) as usize) / RELEASE_STEP * RELEASE_STEP;
        let from = released.load(Ordering::Relaxed);
        if upto <= from {
            return;
        }
        // SAFETY: `from..upto` lies inside our mapping (`upto <= len`) and starts on a
        // multiple of RELEASE_STEP from its page-aligned base, so it is page aligned.
        let start = unsafe { std::ptr::NonNull::new_unchecked(ptr.as_ptr().cast::<u8>().add(from).cast()) };
        // SAFETY: MADV_DONTNEED on a shared read-only file mapping only drops its page table
        // entries: the range stays mapped and reading it again faults the same file bytes
        // back in, so slices handed out by `bytes()` stay valid and unchanged.
        let _ =
            unsafe { nix::sys::mman::madvise(start, upto - from, nix::sys::mman::MmapAdvise::MADV_DONTNEED) };
        released.store(upto, Ordering::Relaxed);
    }
}

impl Drop for Contiguous<'_> {
    fn drop(&mut self) {
        if let Contiguous::Mapped { ptr, len, .. } = self {
            // SAFETY: unmapping the mapping made by `Capture::contiguous`; slices from
            // `bytes()` borrow `self` and so cannot outlive it.
            let _ = unsafe { nix::sys::mman::munmap(*ptr, *len) };
        }
    }
}

impl Capture {
    /// The bytes in one piece without copying them (the spill file is mapped read-only).
    pub fn contiguous(&self) -> std::io::Result<Contiguous<'_>> {
        let Some(f) = &self.file else { return Ok(Contiguous::Mem(&self.mem)) };
        let Some(len) = usize::try_from(self.len).ok().and_then(std::num::NonZeroUsize::new) else {
            return Ok(Contiguous::Mem(&[]));
        };
        // SAFETY: a new shared read-only mapping of our own unlinked temporary file, at an
        // address the kernel chooses (it aliases nothing). The file holds exactly `len`
        // bytes and is only ever appended to through `&mut self`, which the returned
        // value's borrow excludes, so the mapping never reaches past its end.
        let ptr = unsafe {
            nix::sys::mman::mmap(
                None,
                len,
                nix::sys::mman::ProtFlags::PROT_READ,
                nix::sys::mman::MapFlags::MAP_SHARED,
                f,
                0,
            )
        }?;
        Ok(Contiguous::Mapped {
            ptr,
            len: len.get(),
            released: std::sync::atomic::AtomicUsize::new(0),
            capture: std::marker::PhantomData,
        })
    }
}

/// An unlinked temporary file.
fn tempfile() -> std::io::Result<File> {
    let dir = std::env::temp_dir();
    for attempt in 0..16u32 {
        let path = dir.join(format!("vfio-mig-conform-capture-{}-{attempt}", std::process::id()));
        match std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path) {
            Ok(f) => {
                let _ = std::fs::remove_file(&path);
                return Ok(f);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free temporary file name"))
}

/// A capture seen through a mutation.
#[derive(Debug)]
pub struct View<'a> {
    base: &'a Capture,
    other: Option<&'a Capture>,
    mutation: Option<Mutation>,
    len: u64,
}

impl<'a> View<'a> {
    pub fn new(base: &'a Capture, mutation: Option<&Mutation>, other: Option<&'a Capture>) -> View<'a> {
        // A relative splice point becomes an absolute one.
        let resolved;
        let mutation = match mutation {
            Some(Mutation::SpliceAt { other: name, num, den }) => {
                resolved = Mutation::Splice {
                    other: name.clone(),
                    at: crate::op::fraction_of(base.len(), *num, *den),
                };
                Some(&resolved)
            }
            m => m,
        };
        let len = match mutation {
            Some(Mutation::Splice { at, .. }) => {
                let at = (*at).min(base.len());
                at + other.map_or(0, Capture::len).saturating_sub(at)
            }
            Some(m) => m.kept_prefix(base.len()).unwrap_or(base.len()),
            None => base.len(),
        };
        let mutation = match mutation {
            Some(Mutation::Splice { other: name, at }) => {
                Some(Mutation::Splice { other: name.clone(), at: (*at).min(base.len()) })
            }
            m => m.cloned(),
        };
        View { base, other, mutation, len }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn read_at(&self, pos: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        if pos >= self.len {
            return Ok(0);
        }
        let want = ((self.len - pos) as usize).min(buf.len());
        let buf = &mut buf[..want];
        let n = match &self.mutation {
            Some(Mutation::Splice { at, .. }) if pos + want as u64 > *at => {
                let mut done = 0;
                if pos < *at {
                    let first = (*at - pos) as usize;
                    done = self.base.read_at(pos, &mut buf[..first])?;
                }
                let rest_pos = pos + done as u64;
                let other = self.other.ok_or_else(|| std::io::Error::other("splice source missing"))?;
                done + other.read_at(rest_pos, &mut buf[done..])?
            }
            _ => self.base.read_at(pos, buf)?,
        };
        let flip = match &self.mutation {
            Some(Mutation::FlipBit { offset, bit }) => Some((*offset, *bit)),
            Some(Mutation::FlipAt { num, den, bit }) => {
                Some((crate::op::fraction_of(self.len, *num, *den), *bit))
            }
            _ => None,
        };
        if let Some((offset, bit)) = flip
            && self.len > 0
        {
            let at = offset % self.len;
            if at >= pos && at < pos + n as u64 {
                buf[(at - pos) as usize] ^= 1 << (bit % 8);
            }
        }
        Ok(n)
    }
}

/// The write sizes a segmentation produces for a stream of `len` bytes.
#[derive(Debug)]
pub struct Segments {
    seg: Segmentation,
    left: u64,
    done: u64,
    i: usize,
    rng: crate::rng::Rng,
}

/// Largest single write the engine issues, also for `whole`.
pub const MAX_WRITE: u64 = 64 << 20;

impl Segments {
    pub fn new(seg: &Segmentation, len: u64) -> Segments {
        let rng = crate::rng::Rng::new(match seg {
            Segmentation::Random { seed, .. } => *seed,
            _ => 1,
        });
        Segments { seg: seg.clone(), left: len, done: 0, i: 0, rng }
    }
}

impl Iterator for Segments {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.left == 0 {
            return None;
        }
        let size = match &self.seg {
            Segmentation::Whole => MAX_WRITE,
            Segmentation::Fixed(n) => u64::from((*n).max(1)),
            // `i` walks the size list round and round (no division per write).
            Segmentation::Cycle(v) => {
                let s = v.get(self.i).copied().unwrap_or(1).max(1);
                self.i = if self.i + 1 >= v.len() { 0 } else { self.i + 1 };
                u64::from(s)
            }
            Segmentation::Head { sizes, head } => {
                if self.done < *head {
                    let s = sizes.get(self.i).copied().unwrap_or(1).max(1);
                    self.i = if self.i + 1 >= sizes.len() { 0 } else { self.i + 1 };
                    u64::from(s).min(*head - self.done)
                } else {
                    MAX_WRITE
                }
            }
            Segmentation::Random { max, .. } => self.rng.range(1, u64::from((*max).max(1))),
        };
        let take = size.min(self.left).min(MAX_WRITE);
        self.left -= take;
        self.done += take;
        Some(take as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(v: &View<'_>) -> Vec<u8> {
        let mut out = vec![0u8; v.len() as usize];
        let mut pos = 0;
        while pos < out.len() {
            let n = v.read_at(pos as u64, &mut out[pos..]).unwrap();
            pos += n;
        }
        out
    }

    #[test]
    fn mutations_apply_lazily() {
        let a = Capture::from_bytes(b"abcdefgh").unwrap();
        let b = Capture::from_bytes(b"ABCDEFGHIJ").unwrap();
        assert_eq!(read_all(&View::new(&a, Some(&Mutation::Truncate(3)), None)), b"abc");
        assert_eq!(read_all(&View::new(&a, Some(&Mutation::DropTail(2)), None)), b"abcdef");
        assert_eq!(
            read_all(&View::new(&a, Some(&Mutation::FlipBit { offset: 9, bit: 5 }), None)),
            b"aBcdefgh"
        );
        assert_eq!(
            read_all(&View::new(
                &a,
                Some(&Mutation::Splice { other: crate::op::StreamName("b".into()), at: 4 }),
                Some(&b)
            )),
            b"abcdEFGHIJ"
        );
        assert!(View::new(&a, Some(&Mutation::Empty), None).is_empty());
    }

    #[test]
    fn segments_cover_the_stream_exactly() {
        for seg in [
            Segmentation::Whole,
            Segmentation::Fixed(7),
            Segmentation::Cycle(vec![1, 2, 4095]),
            Segmentation::Random { seed: 3, max: 50 },
        ] {
            let sizes: Vec<usize> = Segments::new(&seg, 10_000).collect();
            assert_eq!(sizes.iter().sum::<usize>(), 10_000, "{seg:?}");
            assert!(sizes.iter().all(|s| *s > 0));
        }
    }

    #[test]
    fn cycles_repeat_their_sizes_in_order() {
        let sizes: Vec<usize> = Segments::new(&Segmentation::Cycle(vec![2, 3, 5]), 41).collect();
        assert_eq!(sizes, [2, 3, 5, 2, 3, 5, 2, 3, 5, 2, 3, 5, 1]);
        let head = Segmentation::Head { sizes: vec![1, 2], head: 7 };
        let sizes: Vec<usize> = Segments::new(&head, 100).collect();
        assert_eq!(sizes, [1, 2, 1, 2, 1, 93]);
        let sizes: Vec<usize> = Segments::new(&Segmentation::Cycle(Vec::new()), 3).collect();
        assert_eq!(sizes, [1, 1, 1]);
    }

    #[test]
    fn large_captures_spill_to_disk_and_read_back() {
        let mut c = Capture::default();
        let chunk = vec![7u8; 1 << 20];
        for i in 0..65u8 {
            let mut chunk = chunk.clone();
            chunk[0] = i;
            c.append(&chunk).unwrap();
            if i == 0 {
                assert!(matches!(c.contiguous().unwrap(), Contiguous::Mem(b) if b.len() == 1 << 20));
            }
        }
        assert!(c.file.is_some());
        {
            let whole = c.contiguous().unwrap();
            let b = whole.bytes();
            assert_eq!(b.len(), 65 << 20);
            assert!((0..65usize).all(|i| b[i << 20] == i as u8 && b[(i << 20) + 1] == 7));
            // Released pages read back the same bytes.
            whole.release_before(40 << 20);
            assert!((0..65usize).all(|i| b[i << 20] == i as u8 && b[(i << 20) + 1] == 7));
        }
        let mut buf = [0u8; 4];
        assert_eq!(c.read_at(65 * (1 << 20) - 2, &mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], &[7, 7]);
    }
}
