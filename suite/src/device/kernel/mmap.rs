//! Region accesses through `mmap()` of the device fd.
//!
//! A region can be mapped where its sparse-mmap capability lists an area, or whole when it
//! has `VFIO_REGION_INFO_FLAG_MMAP` and no such capability. Mappings are cached per area and
//! unmapped when the device is closed (a live mapping would keep the device file open) or
//! the backend is dropped. Copies use volatile accesses of the requested width, as a CPU
//! access to device memory would.

use std::ffi::c_void;
use std::num::NonZeroUsize;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;

use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};

use crate::device::RegionInfo;
use crate::errno::Errno;

/// The mmappable area (offset, size within the region) containing `[offset, offset+len)`.
pub(super) fn area_for(info: &RegionInfo, sparse_cap: bool, offset: u64, len: usize) -> Option<(u64, u64)> {
    if info.flags & RegionInfo::FLAG_MMAP == 0 {
        return None;
    }
    let end = offset.checked_add(len as u64)?;
    let whole = [(0, info.size)];
    let areas: &[(u64, u64)] = if sparse_cap { &info.sparse } else { &whole };
    areas.iter().copied().find(|&(a, s)| s > 0 && a <= offset && a.checked_add(s).is_some_and(|e| end <= e))
}

/// One mapped area.
#[derive(Debug)]
pub(super) struct Mapping {
    base: NonNull<c_void>,
    len: usize,
    region: u32,
    /// Offset of the area within the region.
    area: u64,
}

// SAFETY: the mapping belongs to this `Mapping` alone (no references into it escape
// `read`/`write`), so it may move between threads with its owner.
unsafe impl Send for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping the area mapped in `Mappings::get`; no pointer into it outlives
        // a `read`/`write` call.
        let _ = unsafe { munmap(self.base, self.len) };
    }
}

impl Mapping {
    /// Pointer to `len` bytes at `offset` (within the region), if inside this area.
    fn at(&self, offset: u64, len: usize) -> Option<*mut u8> {
        let rel = usize::try_from(offset.checked_sub(self.area)?).ok()?;
        (rel.checked_add(len)? <= self.len).then(|| {
            // SAFETY: `rel + len <= self.len`, so the pointer stays inside the mapping.
            unsafe { self.base.as_ptr().cast::<u8>().add(rel) }
        })
    }

    /// Volatile copy out of the area; one access of the buffer's width when it is 1, 2, 4
    /// or 8 bytes and aligned, else byte by byte.
    pub(super) fn read(&self, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        let p = self.at(offset, buf.len()).ok_or(Errno::EINVAL)?;
        let aligned = (p as usize).is_multiple_of(buf.len().max(1));
        // SAFETY: `p` is valid for `buf.len()` bytes of our live shared mapping (checked by
        // `at`), and the access width matches the alignment test.
        unsafe {
            match buf.len() {
                1 => buf[0] = p.read_volatile(),
                2 if aligned => buf.copy_from_slice(&p.cast::<u16>().read_volatile().to_ne_bytes()),
                4 if aligned => buf.copy_from_slice(&p.cast::<u32>().read_volatile().to_ne_bytes()),
                8 if aligned => buf.copy_from_slice(&p.cast::<u64>().read_volatile().to_ne_bytes()),
                _ => {
                    for (i, b) in buf.iter_mut().enumerate() {
                        *b = p.add(i).read_volatile();
                    }
                }
            }
        }
        Ok(buf.len())
    }

    /// Volatile copy into the area (same widths as `read`).
    pub(super) fn write(&self, offset: u64, buf: &[u8]) -> Result<usize, Errno> {
        let p = self.at(offset, buf.len()).ok_or(Errno::EINVAL)?;
        let aligned = (p as usize).is_multiple_of(buf.len().max(1));
        // SAFETY: as in `read`; the mapping was made writable (the region has FLAG_WRITE) or
        // `Mappings::get` refused it.
        unsafe {
            match buf.len() {
                1 => p.write_volatile(buf[0]),
                2 if aligned => p.cast::<u16>().write_volatile(u16::from_ne_bytes([buf[0], buf[1]])),
                4 if aligned => {
                    p.cast::<u32>().write_volatile(u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]));
                }
                8 if aligned => p.cast::<u64>().write_volatile(u64::from_ne_bytes([
                    buf[0], buf[1], buf[2], buf[3], buf[4], buf[5], buf[6], buf[7],
                ])),
                _ => {
                    for (i, b) in buf.iter().enumerate() {
                        p.add(i).write_volatile(*b);
                    }
                }
            }
        }
        Ok(buf.len())
    }
}

/// Cached mappings of one open device fd.
#[derive(Debug, Default)]
pub(super) struct Mappings {
    maps: Vec<Mapping>,
}

impl Mappings {
    /// Unmaps everything.
    pub(super) fn clear(&mut self) {
        self.maps.clear();
    }

    /// The mapping that holds `[offset, offset+len)` of the region, mapping its area on
    /// first use. EINVAL when no mmappable area contains the range; EACCES when a write is
    /// asked of a region without FLAG_WRITE (or a read without FLAG_READ).
    pub(super) fn get(
        &mut self,
        dev: BorrowedFd<'_>,
        info: &RegionInfo,
        sparse_cap: bool,
        offset: u64,
        len: usize,
        write: bool,
    ) -> Result<&Mapping, Errno> {
        let (area, size) = area_for(info, sparse_cap, offset, len).ok_or(Errno::EINVAL)?;
        let need = if write { RegionInfo::FLAG_WRITE } else { RegionInfo::FLAG_READ };
        if info.flags & need == 0 {
            return Err(Errno::EACCES);
        }
        if let Some(i) = self.maps.iter().position(|m| m.region == info.index && m.area == area) {
            return Ok(&self.maps[i]);
        }
        let len = usize::try_from(size).ok().and_then(NonZeroUsize::new).ok_or(Errno::EINVAL)?;
        let mut prot = ProtFlags::empty();
        if info.flags & RegionInfo::FLAG_READ != 0 {
            prot |= ProtFlags::PROT_READ;
        }
        if info.flags & RegionInfo::FLAG_WRITE != 0 {
            prot |= ProtFlags::PROT_WRITE;
        }
        let file_off = info.offset.wrapping_add(area) as libc::off_t;
        // SAFETY: a new shared mapping of the device fd at an address the kernel picks; it
        // aliases no Rust object, and `Mapping` unmaps it.
        let base =
            unsafe { mmap(None, len, prot, MapFlags::MAP_SHARED, dev, file_off) }.map_err(Errno::from)?;
        self.maps.push(Mapping { base, len: len.get(), region: info.index, area });
        Ok(&self.maps[self.maps.len() - 1])
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    fn region(flags: u32, size: u64, sparse: Vec<(u64, u64)>) -> RegionInfo {
        RegionInfo { index: 0, flags, size, offset: 0, cap_type: None, sparse }
    }

    #[test]
    fn areas_are_chosen_from_the_sparse_list_or_the_whole_region() {
        let rwm = RegionInfo::FLAG_READ | RegionInfo::FLAG_WRITE | RegionInfo::FLAG_MMAP;
        let whole = region(rwm, 0x4000, vec![]);
        assert_eq!(area_for(&whole, false, 0x3ffc, 4), Some((0, 0x4000)));
        assert_eq!(area_for(&whole, false, 0x3ffd, 4), None);
        assert_eq!(area_for(&whole, true, 0, 4), None, "a sparse cap with no areas maps nothing");
        let sparse = region(rwm, 0x4000, vec![(0x1000, 0x1000), (0x3000, 0x1000)]);
        assert_eq!(area_for(&sparse, true, 0x3008, 8), Some((0x3000, 0x1000)));
        assert_eq!(area_for(&sparse, true, 0x1ffc, 8), None, "straddles the end of an area");
        assert_eq!(area_for(&sparse, true, 0, 4), None);
        assert_eq!(area_for(&region(3, 0x4000, vec![]), false, 0, 4), None, "no FLAG_MMAP");
        let hostile = region(rwm, u64::MAX, vec![(u64::MAX - 1, u64::MAX)]);
        assert_eq!(area_for(&hostile, true, u64::MAX - 1, 4), None);
        assert_eq!(area_for(&hostile, false, u64::MAX - 2, 8), None);
    }

    #[test]
    fn a_file_mapping_reads_and_writes_with_widths() {
        let path = std::env::temp_dir().join(format!("vmc-kernel-mmap-{}", std::process::id()));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        f.set_len(8192).unwrap();
        let info =
            region(RegionInfo::FLAG_READ | RegionInfo::FLAG_WRITE | RegionInfo::FLAG_MMAP, 8192, vec![]);
        let mut maps = Mappings::default();
        let m = maps.get(f.as_fd(), &info, false, 16, 8, true).unwrap();
        m.write(16, &0x1122_3344_5566_7788u64.to_ne_bytes()).unwrap();
        m.write(3, &[9, 8, 7]).unwrap();
        let mut b4 = [0u8; 4];
        m.read(20, &mut b4).unwrap();
        assert_eq!(u32::from_ne_bytes(b4), 0x1122_3344);
        let mut b3 = [0u8; 3];
        m.read(3, &mut b3).unwrap();
        assert_eq!(b3, [9, 8, 7]);
        assert_eq!(m.read(8190, &mut b4), Err(Errno::EINVAL));
        assert_eq!(maps.maps.len(), 1);
        let _ = maps.get(f.as_fd(), &info, false, 0, 1, false).unwrap();
        assert_eq!(maps.maps.len(), 1, "the mapping is cached");
        let ro = RegionInfo { flags: RegionInfo::FLAG_READ | RegionInfo::FLAG_MMAP, ..info };
        assert_eq!(maps.get(f.as_fd(), &ro, false, 0, 1, true).err(), Some(Errno::EACCES));
        maps.clear();
        drop(f);
        let _ = std::fs::remove_file(&path);
    }
}
