//! Interrupt eventfds the backend creates for `VFIO_DEVICE_SET_IRQS` and counts.
//!
//! One eventfd per (IRQ index, vector). Counts only grow: replacing or closing an eventfd
//! first reads what it holds, so `irq_counts()` deltas stay meaningful across re-arming.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;

use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::device::IrqCounts;

/// The most vectors any PCI function has (MSI-X); larger counts get no eventfds beyond it.
pub(super) const MAX_VECTORS: u32 = 2048;

#[derive(Debug, Default)]
pub(super) struct Irqs {
    fds: BTreeMap<(u32, u32), EventFd>,
    counts: BTreeMap<(u32, u32), u64>,
}

/// Reads an eventfd without blocking: its counter, or 0.
fn take(fd: &EventFd) -> u64 {
    fd.read().unwrap_or(0)
}

impl Irqs {
    /// Up to `n` new non-blocking, close-on-exec eventfds (at most [`MAX_VECTORS`]); fewer
    /// when the process runs out of fds.
    pub(super) fn create(n: u32) -> Vec<EventFd> {
        (0..n.min(MAX_VECTORS))
            .map_while(|_| EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK).ok())
            .collect()
    }

    fn retire(&mut self, key: (u32, u32)) {
        if let Some(old) = self.fds.remove(&key) {
            *self.counts.entry(key).or_default() += take(&old);
        }
    }

    /// The device now signals `fds` for vectors `start..`; older eventfds there are retired.
    pub(super) fn install(&mut self, index: u32, start: u32, fds: Vec<EventFd>) {
        for (i, fd) in fds.into_iter().enumerate() {
            let key = (index, start.saturating_add(i as u32));
            self.retire(key);
            self.counts.entry(key).or_default();
            self.fds.insert(key, fd);
        }
    }

    /// The device no longer signals anything for `index`.
    pub(super) fn disable(&mut self, index: u32) {
        let keys: Vec<_> = self.fds.keys().copied().filter(|k| k.0 == index).collect();
        for k in keys {
            self.retire(k);
        }
    }

    /// Closes every eventfd (the device was closed), keeping the counts.
    pub(super) fn clear(&mut self) {
        let keys: Vec<_> = self.fds.keys().copied().collect();
        for k in keys {
            self.retire(k);
        }
    }

    /// Interrupts so far per (index, vector) that ever had an eventfd.
    pub(super) fn counts(&mut self) -> IrqCounts {
        for (k, fd) in &self.fds {
            *self.counts.entry(*k).or_default() += take(fd);
        }
        self.counts.iter().map(|(k, c)| (*k, *c)).collect()
    }

    pub(super) fn raw_fds(&self) -> impl Iterator<Item = i32> + '_ {
        self.fds.values().map(AsRawFd::as_raw_fd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_survive_replacement_and_disable() {
        let mut irqs = Irqs::default();
        let fds = Irqs::create(2);
        fds[0].write(3).unwrap();
        irqs.install(0, 0, fds);
        assert_eq!(irqs.counts(), vec![((0, 0), 3), ((0, 1), 0)]);
        let again = Irqs::create(1);
        irqs.fds[&(0, 0)].write(2).unwrap();
        irqs.install(0, 0, again);
        irqs.fds[&(0, 0)].write(1).unwrap();
        assert_eq!(irqs.counts(), vec![((0, 0), 6), ((0, 1), 0)]);
        irqs.disable(0);
        assert_eq!(irqs.raw_fds().count(), 0);
        assert_eq!(irqs.counts(), vec![((0, 0), 6), ((0, 1), 0)]);
    }
}
