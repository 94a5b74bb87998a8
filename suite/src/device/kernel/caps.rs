//! Decoding the capability chain of `VFIO_DEVICE_GET_REGION_INFO`.
//!
//! The buffer comes from a driver under test, so every value is hostile until checked:
//! offsets are bounded by the bytes the kernel could have written, each header is visited
//! at most once (a chain that loops ends), and area counts are bounded by the space left.

use std::collections::BTreeSet;

use vfio_bindings::bindings::vfio as b;

/// Size of `struct vfio_region_info` (the chain starts after it).
pub(super) const REGION_INFO_SIZE: usize = std::mem::size_of::<b::vfio_region_info>();
/// `struct vfio_info_cap_header`: id (u16), version (u16), next (u32).
const CAP_HEADER: usize = 8;
/// `struct vfio_region_info_cap_sparse_mmap` before its areas.
const SPARSE_HEADER: usize = CAP_HEADER + 8;
/// `struct vfio_region_sparse_mmap_area`.
const SPARSE_AREA: usize = 16;
/// `struct vfio_region_info_cap_type`.
const TYPE_CAP: usize = CAP_HEADER + 8;
/// More capabilities than any driver defines: a longer chain is not followed further.
const MAX_CAPS: usize = 64;

/// What the chain says (the first capability of each kind wins).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct RegionCaps {
    pub cap_type: Option<(u32, u32)>,
    /// `Some` when a sparse-mmap capability is present (possibly with no areas).
    pub sparse: Option<Vec<(u64, u64)>>,
}

fn u16_at(buf: &[u8], off: usize) -> Option<u16> {
    let b = buf.get(off..off.checked_add(2)?)?;
    Some(u16::from_ne_bytes([b[0], b[1]]))
}

fn u32_at(buf: &[u8], off: usize) -> Option<u32> {
    let b = buf.get(off..off.checked_add(4)?)?;
    Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

fn u64_at(buf: &[u8], off: usize) -> Option<u64> {
    let b = buf.get(off..off.checked_add(8)?)?;
    Some(u64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
}

/// Walks the chain starting at `first` (the `cap_offset` field) within `buf`, which holds
/// only bytes the kernel may have written (`buf.len()` ≤ the `argsz` given to it).
pub(super) fn parse_region_caps(buf: &[u8], first: u32) -> RegionCaps {
    let mut caps = RegionCaps::default();
    let mut seen = BTreeSet::new();
    let mut off = first as usize;
    while off != 0 && seen.len() < MAX_CAPS {
        // A capability never overlaps the fixed struct, must fit a header, and is visited
        // once: anything else ends the walk.
        if off < REGION_INFO_SIZE || !seen.insert(off) {
            break;
        }
        let (Some(id), Some(next)) = (u16_at(buf, off), u32_at(buf, off + 4)) else {
            break;
        };
        match u32::from(id) {
            b::VFIO_REGION_INFO_CAP_TYPE if caps.cap_type.is_none() => {
                if off + TYPE_CAP <= buf.len()
                    && let (Some(t), Some(s)) = (u32_at(buf, off + 8), u32_at(buf, off + 12))
                {
                    caps.cap_type = Some((t, s));
                }
            }
            b::VFIO_REGION_INFO_CAP_SPARSE_MMAP if caps.sparse.is_none() => {
                if let Some(nr) = u32_at(buf, off + 8)
                    && off + SPARSE_HEADER <= buf.len()
                {
                    let room = (buf.len() - off - SPARSE_HEADER) / SPARSE_AREA;
                    let n = (nr as usize).min(room);
                    let areas = (0..n)
                        .filter_map(|i| {
                            let a = off + SPARSE_HEADER + i * SPARSE_AREA;
                            Some((u64_at(buf, a)?, u64_at(buf, a + 8)?))
                        })
                        .collect();
                    caps.sparse = Some(areas);
                }
            }
            _ => {}
        }
        off = next as usize;
    }
    caps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buf(len: usize) -> Vec<u8> {
        vec![0u8; len]
    }

    fn put16(b: &mut [u8], off: usize, v: u16) {
        b[off..off + 2].copy_from_slice(&v.to_ne_bytes());
    }
    fn put32(b: &mut [u8], off: usize, v: u32) {
        b[off..off + 4].copy_from_slice(&v.to_ne_bytes());
    }
    fn put64(b: &mut [u8], off: usize, v: u64) {
        b[off..off + 8].copy_from_slice(&v.to_ne_bytes());
    }

    fn header(b: &mut [u8], off: usize, id: u32, next: u32) {
        put16(b, off, id as u16);
        put16(b, off + 2, 1);
        put32(b, off + 4, next);
    }

    #[test]
    fn a_well_formed_chain_is_decoded() {
        let mut b = buf(32 + 16 + 16 + 32);
        header(&mut b, 32, b::VFIO_REGION_INFO_CAP_TYPE, 48);
        put32(&mut b, 40, 3);
        put32(&mut b, 44, 1);
        header(&mut b, 48, b::VFIO_REGION_INFO_CAP_SPARSE_MMAP, 0);
        put32(&mut b, 56, 2);
        put64(&mut b, 64, 0x1000);
        put64(&mut b, 72, 0x2000);
        put64(&mut b, 80, 0x8000);
        put64(&mut b, 88, 0x1000);
        let caps = parse_region_caps(&b, 32);
        assert_eq!(caps.cap_type, Some((3, 1)));
        assert_eq!(caps.sparse, Some(vec![(0x1000, 0x2000), (0x8000, 0x1000)]));
    }

    #[test]
    fn a_loop_ends() {
        let mut b = buf(64);
        header(&mut b, 32, 99, 48);
        header(&mut b, 48, 98, 32);
        assert_eq!(parse_region_caps(&b, 32), RegionCaps::default());
        let mut b = buf(48);
        header(&mut b, 32, b::VFIO_REGION_INFO_CAP_TYPE, 32);
        assert_eq!(parse_region_caps(&b, 32).cap_type, Some((0, 0)));
    }

    #[test]
    fn offsets_outside_the_buffer_or_inside_the_struct_are_not_followed() {
        let b = buf(64);
        for first in [1, 8, 31, 60, 64, 65, 4096, u32::MAX, u32::MAX - 3] {
            assert_eq!(parse_region_caps(&b, first), RegionCaps::default(), "first {first}");
        }
        // A type capability whose body is cut off by argsz is ignored.
        let mut b = buf(44);
        header(&mut b, 32, b::VFIO_REGION_INFO_CAP_TYPE, 0);
        assert_eq!(parse_region_caps(&b, 32).cap_type, None);
    }

    #[test]
    fn huge_nr_areas_is_bounded_by_the_buffer() {
        let mut b = buf(32 + 16 + 3 * 16 + 5);
        header(&mut b, 32, b::VFIO_REGION_INFO_CAP_SPARSE_MMAP, 0);
        put32(&mut b, 40, u32::MAX);
        let caps = parse_region_caps(&b, 32);
        assert_eq!(caps.sparse.map(|s| s.len()), Some(3));
    }

    #[test]
    fn a_sparse_cap_without_areas_is_distinguished_from_none() {
        let mut b = buf(48);
        header(&mut b, 32, b::VFIO_REGION_INFO_CAP_SPARSE_MMAP, 0);
        assert_eq!(parse_region_caps(&b, 32).sparse, Some(vec![]));
        assert_eq!(parse_region_caps(&b, 0).sparse, None);
    }

    #[test]
    fn long_chains_stop_at_the_cap() {
        let n = 200;
        let mut b = buf(32 + n * 8);
        for i in 0..n {
            let off = 32 + i * 8;
            let next = if i + 1 < n { off + 8 } else { 0 };
            header(&mut b, off, 77, next as u32);
        }
        header(&mut b, 32 + (n - 1) * 8, b::VFIO_REGION_INFO_CAP_SPARSE_MMAP, 0);
        assert_eq!(parse_region_caps(&b, 32).sparse, None);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut rng = crate::rng::Rng::new(0x1234_5678_9abc_def0);
        for _ in 0..2000 {
            let len = rng.below(300) as usize;
            let mut b = buf(len);
            for byte in b.iter_mut() {
                *byte = rng.below(7) as u8 * 16;
            }
            let _ = parse_region_caps(&b, rng.below(400) as u32);
        }
    }
}
