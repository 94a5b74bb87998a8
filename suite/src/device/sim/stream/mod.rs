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
//!
//! `save` produces a stream ([`Saver`]); `load` verifies and restores one ([`Loader`]).

mod load;
mod save;

pub use load::{LoadError, Loader, Restored};
pub use save::{Saver, StateSource};

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

fn record_header(tag: u32, len: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + len as usize);
    v.extend_from_slice(&tag.to_le_bytes());
    v.extend_from_slice(&len.to_le_bytes());
    v
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
