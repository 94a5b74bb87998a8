//! Reads and writes on data fds (sizes, return values, the bytes, the stream position every
//! copy of the fd shares) and on device fds (region accesses by region and offset).

use super::{Decoder, Fd, Pending};
use crate::record::event::{FNV_START, Kind, Ret, Transfer, fnv1a};
use crate::record::payload::{MAX_ITEMS, u64_at};
use crate::record::ptrace::{Call, Mem};

impl Decoder {
    /// The (address, length) segments of a read/write family call.
    #[allow(clippy::type_complexity)]
    pub(super) fn segments(
        nr: i64,
        call: Call,
        mem: Mem,
    ) -> Option<(&'static str, bool, Vec<(u64, u64)>, Option<u64>)> {
        let a = call.args;
        let iov = |addr: u64, cnt: u64| -> Vec<(u64, u64)> {
            let cnt = (cnt as usize).min(MAX_ITEMS);
            let raw = mem.read(addr, cnt * 16);
            raw.chunks_exact(16).map(|c| (u64_at(c, 0).unwrap_or(0), u64_at(c, 8).unwrap_or(0))).collect()
        };
        let pos = |p: u64| (p as i64 >= 0).then_some(p);
        Some(match nr {
            libc::SYS_read => ("read", false, vec![(a[1], a[2])], None),
            libc::SYS_write => ("write", true, vec![(a[1], a[2])], None),
            libc::SYS_pread64 => ("pread64", false, vec![(a[1], a[2])], Some(a[3])),
            libc::SYS_pwrite64 => ("pwrite64", true, vec![(a[1], a[2])], Some(a[3])),
            libc::SYS_readv => ("readv", false, iov(a[1], a[2]), None),
            libc::SYS_writev => ("writev", true, iov(a[1], a[2]), None),
            libc::SYS_preadv => ("preadv", false, iov(a[1], a[2]), Some(a[3])),
            libc::SYS_pwritev => ("pwritev", true, iov(a[1], a[2]), Some(a[3])),
            libc::SYS_preadv2 => ("preadv2", false, iov(a[1], a[2]), pos(a[3])),
            libc::SYS_pwritev2 => ("pwritev2", true, iov(a[1], a[2]), pos(a[3])),
            _ => return None,
        })
    }

    pub(super) fn transfer_exit(&mut self, pid: i32, tid: i32, p: Pending, ret: Ret, mem: Mem) {
        let Pending::Transfer { fd, write, call, segs, offset } = p else { return };
        let count: u64 = segs.iter().map(|s| s.1).sum();
        let moved = match ret {
            Ret::Ok(n) => n.max(0) as u64,
            Ret::Err(_) => 0,
        };
        // A failed write keeps the bytes it tried to write (what the destination was given).
        let wanted = if write && !ret.is_ok() { count.min(1 << 20) } else { moved };
        let mut bytes = Vec::with_capacity(wanted.min(1 << 20) as usize);
        let mut left = wanted;
        for (addr, len) in &segs {
            if left == 0 {
                break;
            }
            let take = left.min(*len);
            bytes.extend(mem.read(*addr, take as usize));
            left -= take;
        }
        match self.fd(pid, fd).cloned() {
            Some(Fd::Data { dev, file, .. }) => {
                let label = self.label_of(dev);
                let pos = self.positions.get_mut(file).map_or(0, |p| std::mem::replace(p, *p + moved));
                let hash = format!("{:016x}", fnv1a(FNV_START, &bytes));
                let (kept, hexs) = self.keep(bytes);
                let t = Transfer { dev: label, fd, call, count, ret, pos, hex: hexs, hash, bytes: kept };
                self.push(pid, tid, if write { Kind::Write(t) } else { Kind::Read(t) });
            }
            Some(Fd::Device(dev)) => {
                let Some(off) = offset else { return };
                let (region, roff) = self.region_of(dev, off);
                let value = (matches!(count, 1 | 2 | 4 | 8) && moved == count && bytes.len() as u64 == count)
                    .then(|| {
                        let mut v = [0u8; 8];
                        v[..bytes.len()].copy_from_slice(&bytes);
                        u64::from_le_bytes(v)
                    });
                let label = self.label_of(dev);
                self.push(
                    pid,
                    tid,
                    Kind::Region { dev: label, write, region, offset: roff, count, ret, value },
                );
            }
            None => {}
        }
    }
}
