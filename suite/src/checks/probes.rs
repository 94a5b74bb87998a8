//! What the suite knows about specific device kinds, for the few checks that need a
//! device-specific stimulus: a register that holds migrated internal state, and a way to make
//! the device raise interrupts on its own. Everything else in the suite is device-neutral.

use crate::check::Step;
use crate::device::DeviceInfo;
use crate::op::{Op, RegionArgs, RegionRef};

/// Device kinds with known probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The built-in simulators.
    Sim,
    /// Linux `samples/vfio-mdev/mtty.c`: 16550 UARTs on I/O BARs.
    Mtty,
    Other,
}

impl Kind {
    pub fn of(info: &DeviceInfo) -> Kind {
        match info.driver.as_deref() {
            Some(d) if d.starts_with("sim-") => Kind::Sim,
            Some(d) if d.contains("mtty") => Kind::Mtty,
            _ => Kind::Other,
        }
    }

    /// A register whose value is part of the migrated internal state: (region, offset, width).
    pub fn state_register(self) -> Option<(RegionRef, u64, u8)> {
        match self {
            // BAR0 SCRATCH (32-bit), carried by the REGS record.
            Kind::Sim => Some((RegionRef::Bar0, 4, 4)),
            // UART_SCR of port 0, part of struct serial_port uart_reg[].
            Kind::Mtty => Some((RegionRef::Bar0, 7, 1)),
            Kind::Other => None,
        }
    }

    /// Registers in different parts of the stream, to make two saved streams differ in both
    /// halves (spliced-stream checks).
    pub fn splice_registers(self) -> Vec<(RegionRef, u64, u8)> {
        match self {
            Kind::Sim => vec![(RegionRef::Bar0, 4, 4)],
            // UART_SCR of port 0 (stream bytes 24-59) and of port 1 (60-95, mtty-2).
            Kind::Mtty => vec![(RegionRef::Bar0, 7, 1), (RegionRef::Bar1, 7, 1)],
            Kind::Other => Vec::new(),
        }
    }

    /// Steps that make a running device raise interrupts without further user I/O.
    /// Err: why no such steps are known for this driver.
    pub fn irq_source(self) -> Result<Vec<Step>, String> {
        match self {
            Kind::Sim => Ok(vec![region_write(RegionRef::Bar0, 8, 4, 1)]),
            // Silence while stopped says nothing unless something would have raised an
            // interrupt: mtty raises them only synchronously, inside the user's MMIO write
            // (samples/vfio-mdev/mtty.c, mtty_trigger_interrupt() from handle_bar_write()).
            Kind::Mtty => Err("mtty raises interrupts only inside the user's own MMIO writes \
                (mtty_trigger_interrupt() from handle_bar_write()): nothing stays pending across \
                the stop, so a silent stopped device observes nothing"
                .to_string()),
            Kind::Other => Err(Kind::why_unknown()),
        }
    }

    /// Steps that reconfigure a device in PRE_COPY so that it needs new initial data on the
    /// stream (VFIO_PRECOPY_INFO_REINIT after the opt-in, 7.1+). Empty where no such stimulus is
    /// known (mtty has none; mlx5's comes from its firmware): the REINIT checks then verify
    /// only what every answer must hold.
    pub fn reconfigure(self) -> Vec<Step> {
        match self {
            Kind::Sim => vec![region_write(RegionRef::Bar0, crate::device::sim::hw::reg::RECONFIG, 4, 1)],
            Kind::Mtty | Kind::Other => Vec::new(),
        }
    }

    pub fn why_unknown() -> String {
        "no device-specific probe for this driver (known: sim, mtty)".to_string()
    }
}

/// `region_write` as a setup step.
pub fn region_write(region: RegionRef, offset: u64, width: u8, value: u64) -> Step {
    Step::new(Op::RegionWrite(RegionArgs {
        region,
        offset,
        width,
        value: Some(value),
        via: Default::default(),
        save_as: None,
    }))
    .setup()
}

/// `region_read` saving the value under `save_as`.
pub fn region_read(region: RegionRef, offset: u64, width: u8, save_as: Option<&str>) -> Step {
    Step::new(Op::RegionRead(RegionArgs {
        region,
        offset,
        width,
        value: None,
        via: Default::default(),
        save_as: save_as.map(str::to_string),
    }))
}
