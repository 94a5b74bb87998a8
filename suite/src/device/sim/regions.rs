//! The parts of a simulated device that are not migration: BAR0 registers, config space and
//! INTx/MSI interrupts, shared by `sim:v2` and `sim:v1`.

use super::hw::{CONFIG_SIZE, Hw, NUM_REGS, PCI_COMMAND};
use super::{REGION_BAR0, REGION_CONFIG};
use crate::device::{DevResult, IrqInfo, RegionInfo};
use crate::errno::Errno;
use crate::op::{Access, IrqAction, IrqData};

/// Region layout shared by the simulated devices: BAR0 registers and config space.
pub(super) fn region_info(index: u32) -> DevResult<RegionInfo> {
    let rw = RegionInfo::FLAG_READ | RegionInfo::FLAG_WRITE;
    match index {
        REGION_BAR0 => Ok(RegionInfo {
            index,
            flags: rw,
            size: (NUM_REGS * 4) as u64,
            offset: u64::from(index) << 40,
            ..Default::default()
        }),
        1..=6 | 8 => Ok(RegionInfo { index, offset: u64::from(index) << 40, ..Default::default() }),
        REGION_CONFIG => Ok(RegionInfo {
            index,
            flags: rw,
            size: CONFIG_SIZE as u64,
            offset: u64::from(index) << 40,
            ..Default::default()
        }),
        _ => Err(Errno::EINVAL),
    }
}

pub(super) enum Rw<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
}

/// BAR0 and config-space accesses.
pub(super) fn region_rw(hw: &mut Hw, index: u32, offset: u64, rw: Rw<'_>, via: Access) -> DevResult<usize> {
    if via == Access::Mmap {
        // Neither BAR0 nor config space is mmappable.
        return Err(Errno::EINVAL);
    }
    match index {
        REGION_BAR0 => match rw {
            Rw::Read(buf) => {
                if buf.len() != 4 {
                    return Err(Errno::EINVAL);
                }
                let v = hw.read_reg(offset).ok_or(Errno::EINVAL)?;
                buf.copy_from_slice(&v.to_le_bytes());
                Ok(4)
            }
            Rw::Write(buf) => {
                let b: [u8; 4] = buf.try_into().map_err(|_| Errno::EINVAL)?;
                if hw.write_reg(offset, u32::from_le_bytes(b)) { Ok(4) } else { Err(Errno::EINVAL) }
            }
        },
        REGION_CONFIG => {
            let off = usize::try_from(offset).map_err(|_| Errno::EINVAL)?;
            let len = match &rw {
                Rw::Read(b) => b.len(),
                Rw::Write(b) => b.len(),
            };
            // An offset near the top of the address space is out of range, not an overflow.
            let end = off.checked_add(len).ok_or(Errno::EINVAL)?;
            match rw {
                Rw::Read(buf) => {
                    let src = hw.config.get(off..end).ok_or(Errno::EINVAL)?;
                    buf.copy_from_slice(src);
                    Ok(buf.len())
                }
                Rw::Write(buf) => {
                    let dst = hw.config.get_mut(off..end).ok_or(Errno::EINVAL)?;
                    // Only the command register (and BARs, ignored) is writable.
                    let writable = off >= PCI_COMMAND && end <= PCI_COMMAND + 2;
                    if writable {
                        dst.copy_from_slice(buf);
                    }
                    Ok(buf.len())
                }
            }
        }
        _ => Err(Errno::EINVAL),
    }
}

pub(super) fn irq_info(index: u32) -> DevResult<IrqInfo> {
    match index {
        0 | 1 => Ok(IrqInfo { index, flags: 1, count: 1 }),
        2..=4 => Ok(IrqInfo { index, flags: 0, count: 0 }),
        _ => Err(Errno::EINVAL),
    }
}

pub(super) fn set_irqs(
    hw: &mut Hw,
    index: u32,
    action: IrqAction,
    start: u32,
    count: u32,
    data: IrqData,
) -> DevResult<()> {
    if index > 1 {
        return Err(Errno::EINVAL);
    }
    if start != 0 || count > 1 {
        return Err(Errno::EINVAL);
    }
    let line = &mut hw.irqs[index as usize];
    match (action, data, count) {
        (IrqAction::Trigger, IrqData::None, 0) => {
            *line = Default::default();
            Ok(())
        }
        (IrqAction::Trigger, IrqData::Eventfd, 1) => {
            *line = super::hw::IrqLine { armed: true, masked: false, count: 0 };
            Ok(())
        }
        (IrqAction::Trigger, IrqData::None | IrqData::Bool(true), 1) => {
            hw.raise_irq();
            Ok(())
        }
        (IrqAction::Mask, _, 1) => {
            line.masked = true;
            Ok(())
        }
        (IrqAction::Unmask, _, 1) => {
            line.masked = false;
            Ok(())
        }
        _ => Err(Errno::EINVAL),
    }
}

pub(super) fn irq_counts(hw: &Hw) -> crate::device::IrqCounts {
    hw.irqs.iter().enumerate().filter(|(_, l)| l.armed).map(|(i, l)| ((i as u32, 0), l.count)).collect()
}
