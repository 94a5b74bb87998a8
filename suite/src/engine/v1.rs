//! The v1 migration region protocol (Linux 5.8-5.17): header fields, device_state writes, and
//! the save and resume loops over pending_bytes, data_offset and data_size.

use super::capture::{Capture, View};
use super::exec::obs_of;
use super::{Engine, HarnessError};
use crate::device::Device;
use crate::errno::Errno;
use crate::hash::StreamHash;
use crate::op::{Access, RegionArgs, RegionRef, Source, V1FieldArgs};
use crate::oracle::Violation;
use crate::oracle::model::{Observation, StreamEnd};
use crate::oracle::v1 as v1o;

impl Engine {
    pub(super) fn v1_field(
        &mut self,
        si: usize,
        a: &V1FieldArgs,
        write: bool,
    ) -> Result<Observation, HarnessError> {
        let region = self.mig_region(si)?;
        let (off, w) = a.field.offset_width();
        let width = a.width.unwrap_or(w);
        let ra = RegionArgs {
            region: RegionRef::Index(region.index),
            offset: off + u64::from(a.misalign),
            width,
            value: a.value,
            via: Access::Rw,
            save_as: None,
        };
        if write && a.value.is_none() {
            return Err(HarnessError::V1WriteNeedsValue(a.field.name()));
        }
        self.region_access(si, &ra, write)
    }

    /// A header access judged by the v1 oracle: accesses other than a whole field at its
    /// natural width ought to fail (V1-REG-003), reserved reads 0 (V1-FIELD-001), device_state
    /// has no reserved bits set (V1-STATE-009), and (when the step asks for the oracle) a
    /// device_state write is judged as the state change it requests.
    pub(super) fn v1_field_judged(
        &mut self,
        si: usize,
        a: &V1FieldArgs,
        write: bool,
        oracle: bool,
    ) -> Result<(Observation, Vec<Violation>), HarnessError> {
        let (off, w) = a.field.offset_width();
        let offset = off + u64::from(a.misalign);
        let width = a.width.unwrap_or(w);
        let natural = v1o::field::at(offset).is_some_and(|(_, fw)| fw == usize::from(width));
        if write && natural && offset == v1o::field::DEVICE_STATE && oracle {
            let region = self.mig_region(si)?;
            let prev = Self::v1_read_u64(self.slots[si].dev.as_mut(), region.index, 0, 4);
            let obs = self.v1_field(si, a, true)?;
            let after = Self::v1_read_u64(self.slots[si].dev.as_mut(), region.index, 0, 4);
            let v = match (prev, after) {
                (Ok(p), Ok(n)) => {
                    v1o::judge_write(p as u32, a.value.unwrap_or(0) as u32, obs.errno.is_none(), n as u32)
                }
                _ => Vec::new(),
            };
            return Ok((obs, v));
        }
        let obs = self.v1_field(si, a, write)?;
        let v = v1o::judge_header_access(offset, width, write, obs.errno.is_none(), obs.value);
        Ok((obs, v))
    }

    pub(super) fn v1_read_u64(
        dev: &mut dyn Device,
        index: u32,
        offset: u64,
        width: usize,
    ) -> Result<u64, Errno> {
        let mut buf = [0u8; 8];
        dev.region_read(index, offset, &mut buf[..width], Access::Rw)?;
        Ok(u64::from_le_bytes(buf))
    }

    pub(super) fn v1_set_state(
        &mut self,
        si: usize,
        value: u32,
    ) -> Result<(Observation, Vec<Violation>), HarnessError> {
        let region = self.mig_region(si)?;
        let dev = self.slots[si].dev.as_mut();
        let prev =
            Self::v1_read_u64(dev, region.index, 0, 4).map_err(HarnessError::V1StateUnreadable)? as u32;
        let new = (prev & !v1o::MASK) | value;
        let r = dev.region_write(region.index, 0, &new.to_le_bytes(), Access::Rw);
        let after = Self::v1_read_u64(dev, region.index, 0, 4).unwrap_or(u64::MAX) as u32;
        let mut obs = obs_of(&r);
        obs.value = Some(u64::from(after));
        obs.notes.push(format!(
            "{} -> {} requested, now {}",
            v1o::name(prev),
            v1o::name(new),
            v1o::name(after)
        ));
        let v = v1o::judge_write(prev, new, r.is_ok(), after);
        Ok((obs, v))
    }

    pub(super) fn v1_save(
        &mut self,
        si: usize,
        a: &crate::op::V1SaveArgs,
    ) -> Result<(Observation, Vec<Violation>), HarnessError> {
        let region = self.mig_region(si)?;
        let layout =
            v1o::RegionLayout { size: region.size, mmap_areas: region.sparse.clone(), page_size: 4096 };
        let mut violations = v1o::judge_region(region.flags, region.size);
        violations.extend(v1o::judge_sparse_areas(&layout));
        let mut capture = match &a.capture {
            Some(n) if a.append => Some(self.streams.remove(&n.0).unwrap_or_default()),
            Some(_) => Some(Capture::default()),
            None => None,
        };
        let cap = a.max_iterations.unwrap_or(100_000);
        let dev = self.slots[si].dev.as_mut();
        let idx = region.index;
        // Only stop-and-copy must reach pending_bytes 0 (V1-SAVE-008): in pre-copy the device
        // runs and may keep dirtying state faster than it is read.
        let stop_and_copy = Self::v1_read_u64(dev, idx, v1o::field::DEVICE_STATE, 4)
            .is_ok_and(|s| s as u32 & v1o::MASK == v1o::SAVING);
        let mut hash = StreamHash::default();
        let mut total = 0u64;
        let mut obs = Observation::ok();
        let mut iterations = 0u32;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            for _ in 0..a.extra_pending_reads {
                let _ = Self::v1_read_u64(dev, idx, v1o::field::PENDING_BYTES, 8);
            }
            let pending = match Self::v1_read_u64(dev, idx, v1o::field::PENDING_BYTES, 8) {
                Ok(p) => p,
                Err(e) => {
                    obs.errno = Some(e);
                    obs.notes.push(format!("pending_bytes read failed with {e}"));
                    break;
                }
            };
            if pending == 0 {
                obs.end = Some(StreamEnd::Eof);
                break;
            }
            if iterations >= cap || total >= self.opts.max_stream {
                match v1o::judge_pending_not_draining(stop_and_copy, pending, iterations, total) {
                    Ok(v) => {
                        violations.push(v);
                        obs.end = Some(StreamEnd::Overflow);
                    }
                    Err(note) => {
                        obs.notes.push(note);
                        obs.end = Some(StreamEnd::Limit);
                    }
                }
                break;
            }
            iterations += 1;
            let read = |dev: &mut dyn Device, f| Self::v1_read_u64(dev, idx, f, 8);
            let (Ok(off), Ok(size)) = (read(dev, v1o::field::DATA_OFFSET), read(dev, v1o::field::DATA_SIZE))
            else {
                obs.errno = Some(Errno::EIO);
                obs.notes.push("data_offset/data_size read failed".to_string());
                break;
            };
            if let (Ok(off2), Ok(size2)) =
                (read(dev, v1o::field::DATA_OFFSET), read(dev, v1o::field::DATA_SIZE))
            {
                violations.extend(v1o::judge_reread((off, size), (off2, size2)));
            }
            let chunk_v = v1o::judge_chunk(&layout, off, size);
            if !chunk_v.is_empty() {
                violations.extend(chunk_v);
                break;
            }
            if size == 0 {
                obs.notes.push(format!("data_size 0 with pending_bytes {pending}: stop (as QEMU does)"));
                if !a.once {
                    violations.push(v1o::judge_nothing_staged(pending));
                }
                break;
            }
            let mut done = 0u64;
            while done < size {
                let n = ((size - done) as usize).min(buf.len());
                match dev.region_read(idx, off + done, &mut buf[..n], a.via) {
                    Ok(got) if got > 0 => {
                        hash.update(&buf[..got]);
                        if let Some(c) = &mut capture {
                            c.append(&buf[..got]).map_err(HarnessError::KeepCapture)?;
                        }
                        done += got as u64;
                    }
                    Ok(_) => break,
                    Err(e) => {
                        let how = format!("{:?}", a.via);
                        violations.push(v1o::judge_staged_read_failed(
                            a.via != Access::Rw,
                            off,
                            size,
                            &how,
                            e,
                        ));
                        obs.errno = Some(e);
                        break;
                    }
                }
            }
            total += done;
            if obs.errno.is_some() || a.once {
                break;
            }
        }
        obs.bytes = Some(total);
        obs.hash = Some(hash.value());
        obs.value = Some(u64::from(iterations));
        if let (Some(name), Some(c)) = (&a.capture, capture) {
            self.streams.insert(name.0.clone(), c);
        }
        Ok((obs, violations))
    }

    pub(super) fn v1_resume(
        &mut self,
        si: usize,
        a: &crate::op::V1ResumeArgs,
    ) -> Result<(Observation, Vec<Violation>), HarnessError> {
        let region = self.mig_region(si)?;
        let literal = self.source_capture(&a.data)?;
        let base = match (&a.data, &literal) {
            (Source::Stream(name), _) => self
                .streams
                .get(&name.0)
                .ok_or_else(|| HarnessError::NoCapture { name: name.to_string(), by: "v1_save" })?,
            (_, Some(c)) => c,
            _ => return Err(HarnessError::NoData),
        };
        let other = match &a.mutate {
            Some(crate::op::Mutation::Splice { other, .. } | crate::op::Mutation::SpliceAt { other, .. }) => {
                self.streams.get(&other.0)
            }
            _ => None,
        };
        let view = View::new(base, a.mutate.as_ref(), other);
        let layout =
            v1o::RegionLayout { size: region.size, mmap_areas: region.sparse.clone(), page_size: 4096 };
        let dev = self.slots[si].dev.as_mut();
        let idx = region.index;
        let mut violations = Vec::new();
        let mut obs = Observation::ok();
        let mut pos = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        while pos < view.len() {
            let off = match Self::v1_read_u64(dev, idx, v1o::field::DATA_OFFSET, 8) {
                Ok(o) => o,
                Err(e) => {
                    obs.errno = Some(e);
                    break;
                }
            };
            let room = region.size.saturating_sub(off);
            let chunk_v = v1o::judge_chunk(&layout, off, 0);
            if !chunk_v.is_empty() || room == 0 {
                violations.extend(chunk_v);
                break;
            }
            let n = (view.len() - pos).min(room).min(buf.len() as u64) as usize;
            let got = view.read_at(pos, &mut buf[..n]).map_err(HarnessError::WriteData)?;
            if let Err(e) = dev.region_write(idx, off, &buf[..got], a.via) {
                obs.errno = Some(e);
                obs.error_at = Some(pos);
                break;
            }
            if let Err(e) =
                dev.region_write(idx, v1o::field::DATA_SIZE, &(got as u64).to_le_bytes(), Access::Rw)
            {
                obs.errno = Some(e);
                obs.error_at = Some(pos);
                break;
            }
            if a.scribble {
                let junk = vec![0xa5u8; got];
                let _ = dev.region_write(idx, off, &junk, a.via);
            }
            pos += got as u64;
        }
        obs.bytes = Some(pos);
        Ok((obs, violations))
    }
}
