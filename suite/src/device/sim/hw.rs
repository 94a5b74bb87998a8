//! The simulated devices' "hardware": a small register file on BAR0 with a counter that
//! advances while running, config space, INTx/MSI interrupts counted per vector, device
//! memory pages whose hot window gets dirtied while running, and device DMA into logged
//! IOVA ranges. Time is logical: one tick per device call while running, plus `wait`.

/// Page size of device memory and of the migration stream.
pub const PAGE: u64 = 4096;
/// Pages that change while running (the rest of the state is constant).
pub const HOT_PAGES: usize = 8;
/// Ticks between two hot-page changes.
pub const DIRTY_EVERY: u64 = 8;
/// Registers on BAR0 (32-bit each).
pub const NUM_REGS: usize = 8;
/// BAR0 register offsets.
pub mod reg {
    /// Read-only counter that advances once per tick while running.
    pub const COUNTER: u64 = 0x00;
    /// Read/write scratch register, carried by the stream.
    pub const SCRATCH: u64 = 0x04;
    /// Bit 0: raise an interrupt on every tick.
    pub const IRQ_CTRL: u64 = 0x08;
    /// Read-only device type id.
    pub const ID: u64 = 0x0c;
    /// Read/write configuration register: a write during PRE_COPY is a device reconfiguration
    /// that needs new initial data on the stream (a REINIT after the PRECOPY_INFOv2 opt-in).
    pub const RECONFIG: u64 = 0x10;
}
/// Config-space size.
pub const CONFIG_SIZE: usize = 256;
/// PCI command register offset.
pub const PCI_COMMAND: usize = 0x04;

/// Stateless pseudo-random word of a page's content.
#[inline]
pub fn page_word(seed: u64, page: u64, version: u32, word: u64) -> u64 {
    let mut z = seed
        ^ page.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ u64::from(version).wrapping_mul(0xbf58_476d_1ce4_e5b9)
        ^ word.wrapping_mul(0x94d0_49bb_1331_11eb);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A stable 32-bit id for a device type name.
pub fn type_id(name: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h
}

/// Interrupt state of one index (INTx = 0, MSI = 1).
#[derive(Clone, Debug, Default)]
pub struct IrqLine {
    /// Whether an eventfd is armed (SET_IRQS ... DATA_EVENTFD).
    pub armed: bool,
    pub masked: bool,
    /// Interrupts delivered to the eventfd since it was armed.
    pub count: u64,
}

/// The emulated hardware.
#[derive(Clone, Debug)]
pub struct Hw {
    pub regs: [u32; NUM_REGS],
    pub config: [u8; CONFIG_SIZE],
    pub irqs: [IrqLine; 2],
    /// Current version of each hot page.
    pub versions: [u32; HOT_PAGES],
    pub state_size: u64,
    /// Logged DMA ranges `(iova, len)` and page size, when logging is on.
    pub dma_log: Option<DmaLog>,
}

/// Device DMA logging state.
#[derive(Clone, Debug, Default)]
pub struct DmaLog {
    pub page_size: u64,
    pub ranges: Vec<(u64, u64)>,
    /// Dirty IOVAs (page aligned to `page_size`), bounded.
    pub dirty: std::collections::BTreeSet<u64>,
    /// DMA writes done so far (drives the pseudo-random target).
    pub writes: u64,
}

impl Hw {
    pub fn new(type_name: &str, state_size: u64) -> Hw {
        let mut config = [0u8; CONFIG_SIZE];
        // Vendor 0x1b36 (Red Hat, "QEMU"), device 0x11f0: a made-up test function.
        config[0..2].copy_from_slice(&0x1b36u16.to_le_bytes());
        config[2..4].copy_from_slice(&0x11f0u16.to_le_bytes());
        config[0x0e] = 0; // header type 0
        config[0x3d] = 1; // INTA#
        let mut regs = [0u32; NUM_REGS];
        regs[(reg::ID / 4) as usize] = type_id(type_name);
        Hw {
            regs,
            config,
            irqs: [IrqLine::default(), IrqLine::default()],
            versions: [0; HOT_PAGES],
            state_size,
            dma_log: None,
        }
    }

    pub fn npages(&self) -> u64 {
        self.state_size.div_ceil(PAGE)
    }

    /// One unit of time while the device runs: the counter advances, a hot page changes,
    /// an interrupt fires if enabled, the device does one DMA write.
    pub fn tick(&mut self) {
        self.advance();
        self.irq_tick();
        self.dma_step();
    }

    /// The internal state advances: the counter every tick, one hot page every
    /// [`DIRTY_EVERY`] ticks (a reader that keeps up reaches a temporary end in PRE_COPY).
    pub fn advance(&mut self) {
        let c = self.regs[0].wrapping_add(1);
        self.regs[0] = c;
        let nhot = (HOT_PAGES as u64).min(self.npages());
        if nhot > 0 && u64::from(c) % DIRTY_EVERY == 0 {
            let p = (u64::from(c) / DIRTY_EVERY % nhot) as usize;
            self.versions[p] = self.versions[p].wrapping_add(1);
        }
    }

    /// Raises an interrupt if the device has interrupts enabled in IRQ_CTRL.
    pub fn irq_tick(&mut self) {
        if self.regs[(reg::IRQ_CTRL / 4) as usize] & 1 != 0 {
            self.raise_irq();
        }
    }

    /// One device DMA write into a logged range (marks it dirty in the log).
    pub fn dma_step(&mut self) {
        if let Some(log) = &mut self.dma_log {
            log.writes += 1;
            let idx = (log.writes % log.ranges.len().max(1) as u64) as usize;
            if let Some(&(iova, len)) = log.ranges.get(idx)
                && len > 0
                && log.page_size > 0
            {
                let pages = (len / log.page_size).max(1);
                let target = iova + (log.writes % pages) * log.page_size;
                if log.dirty.len() < 4096 {
                    log.dirty.insert(target);
                }
            }
        }
    }

    /// Delivers an interrupt on the active index (MSI if armed, else INTx).
    pub fn raise_irq(&mut self) {
        let idx = if self.irqs[1].armed { 1 } else { 0 };
        let line = &mut self.irqs[idx];
        if line.armed && !line.masked {
            line.count += 1;
        }
    }

    pub fn read_reg(&self, offset: u64) -> Option<u32> {
        if offset.is_multiple_of(4) && offset < (NUM_REGS as u64) * 4 {
            Some(self.regs[(offset / 4) as usize])
        } else {
            None
        }
    }

    /// Writes a register; read-only registers ignore writes.
    pub fn write_reg(&mut self, offset: u64, value: u32) -> bool {
        if !offset.is_multiple_of(4) || offset >= (NUM_REGS as u64) * 4 {
            return false;
        }
        if offset != reg::COUNTER && offset != reg::ID {
            self.regs[(offset / 4) as usize] = value;
        }
        true
    }

    /// The command register (external, not migrated).
    pub fn command(&self) -> u16 {
        u16::from_le_bytes([self.config[PCI_COMMAND], self.config[PCI_COMMAND + 1]])
    }
}

impl super::stream::StateSource for Hw {
    fn regs(&self) -> [u32; NUM_REGS] {
        self.regs
    }

    fn page_version(&self, page: u64) -> u32 {
        self.versions.get(page as usize).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_advance_the_counter_and_dirty_hot_pages() {
        let mut hw = Hw::new("t", 4 * PAGE);
        for _ in 0..2 * DIRTY_EVERY {
            hw.tick();
        }
        assert_eq!(u64::from(hw.regs[0]), 2 * DIRTY_EVERY);
        assert_eq!(hw.versions.iter().sum::<u32>(), 2);
    }

    #[test]
    fn interrupts_count_only_when_armed_and_enabled() {
        let mut hw = Hw::new("t", 0);
        hw.write_reg(reg::IRQ_CTRL, 1);
        hw.tick();
        assert_eq!(hw.irqs[0].count, 0);
        hw.irqs[0].armed = true;
        hw.tick();
        assert_eq!(hw.irqs[0].count, 1);
    }

    #[test]
    fn counter_and_id_are_read_only() {
        let mut hw = Hw::new("t", 0);
        let id = hw.regs[3];
        hw.write_reg(reg::COUNTER, 77);
        hw.write_reg(reg::ID, 77);
        hw.write_reg(reg::SCRATCH, 5);
        assert_eq!((hw.regs[0], hw.regs[3], hw.regs[1]), (0, id, 5));
    }
}
