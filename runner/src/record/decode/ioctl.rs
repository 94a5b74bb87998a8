//! VFIO ioctls on device and data fds: which ones are followed to their exit and what each
//! carried (read from the tracee at entry and exit), and the data fds a SET returns.

use super::{Decoder, Fd, MAX_FEATURE, Pending};
use crate::record::event::{Dir, Feature, Kind, Ret};
use crate::record::payload::{MAX_ITEMS, decode_feature, decode_irq_set, req, u32_at, u64_at};
use crate::record::ptrace::{Call, Mem, Want};

impl Decoder {
    pub(super) fn ioctl_entry(&mut self, pid: i32, call: Call, mem: Mem) -> Want<Pending> {
        let fd = call.args[0] as i32;
        let request = call.args[1] as u32;
        let arg = call.args[2];
        match (request, self.fd(pid, fd)) {
            (req::GROUP_GET_DEVICE_FD, _) => {
                Want::Exit(Pending::GetDeviceFd { group_fd: fd, name: mem.read_cstr(arg, 256) })
            }
            (req::DEVICE_BIND_IOMMUFD, None) => Want::Exit(Pending::Bind { fd }),
            (_, Some(Fd::Device(_) | Fd::Data { .. })) => {
                let entry = match request {
                    req::DEVICE_FEATURE => {
                        let argsz = mem.read_u32(arg).unwrap_or(0) as usize;
                        mem.read(arg, argsz.clamp(8, MAX_FEATURE))
                    }
                    req::DEVICE_SET_IRQS => {
                        let argsz = mem.read_u32(arg).unwrap_or(0) as usize;
                        mem.read(arg, argsz.clamp(20, 20 + 8 * MAX_ITEMS))
                    }
                    req::DEVICE_GET_REGION_INFO | req::DEVICE_GET_IRQ_INFO | req::MIG_GET_PRECOPY_INFO => {
                        mem.read(arg, 16)
                    }
                    _ => Vec::new(),
                };
                Want::Exit(Pending::Ioctl { fd, request, arg, entry })
            }
            _ => Want::Nothing,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn ioctl_exit(
        &mut self,
        pid: i32,
        tid: i32,
        fd: i32,
        request: u32,
        arg: u64,
        entry: &[u8],
        ret: Ret,
        mem: Mem,
    ) {
        let (dev, data_dir) = match self.fd(pid, fd) {
            Some(Fd::Device(d)) => (*d, None),
            Some(Fd::Data { dev, dir, .. }) => (*dev, Some(*dir)),
            None => return,
        };
        let label = self.label_of(dev);
        if data_dir.is_some() {
            if request == req::MIG_GET_PRECOPY_INFO {
                let out = mem.read(arg, 24);
                let ok = ret.is_ok();
                self.push(
                    pid,
                    tid,
                    Kind::PrecopyInfo {
                        dev: label,
                        fd,
                        ret,
                        argsz: u32_at(entry, 0).unwrap_or(0),
                        initial_bytes: u64_at(&out, 8).filter(|_| ok),
                        dirty_bytes: u64_at(&out, 16).filter(|_| ok),
                    },
                );
            } else {
                self.push(pid, tid, Kind::OtherIoctl { dev: label, fd, request: u64::from(request), ret });
            }
            return;
        }
        let ok = ret.is_ok();
        match request {
            req::DEVICE_GET_INFO => {
                let out = mem.read(arg, 16);
                self.push(
                    pid,
                    tid,
                    Kind::DeviceInfo {
                        dev: label,
                        ret,
                        flags: u32_at(&out, 4).unwrap_or(0),
                        num_regions: u32_at(&out, 8).unwrap_or(0),
                        num_irqs: u32_at(&out, 12).unwrap_or(0),
                    },
                );
            }
            req::DEVICE_GET_REGION_INFO => {
                let out = mem.read(arg, 32);
                let index = u32_at(entry, 8).unwrap_or(u32::MAX);
                let size = u64_at(&out, 16).unwrap_or(0);
                let offset = u64_at(&out, 24).unwrap_or(0);
                if ok && let Some(d) = self.devices.get_mut(dev) {
                    d.regions.insert(index, (offset, size));
                }
                self.push(
                    pid,
                    tid,
                    Kind::RegionInfo {
                        dev: label,
                        ret,
                        index,
                        flags: u32_at(&out, 4).unwrap_or(0),
                        size,
                        offset,
                    },
                );
            }
            req::DEVICE_GET_IRQ_INFO => {
                let out = mem.read(arg, 16);
                self.push(
                    pid,
                    tid,
                    Kind::IrqInfo {
                        dev: label,
                        ret,
                        index: u32_at(entry, 8).unwrap_or(u32::MAX),
                        flags: u32_at(&out, 4).unwrap_or(0),
                        count: u32_at(&out, 12).unwrap_or(0),
                    },
                );
            }
            req::DEVICE_SET_IRQS => {
                if let Some(irqs) = decode_irq_set(entry) {
                    self.push(pid, tid, Kind::SetIrqs { dev: label, ret, irqs });
                }
            }
            req::DEVICE_RESET => self.push(pid, tid, Kind::Reset { dev: label, ret }),
            req::DEVICE_FEATURE => {
                let argsz = u32_at(entry, 0).unwrap_or(0);
                let flags = u32_at(entry, 4).unwrap_or(0);
                let out = if ok { mem.read(arg, entry.len()) } else { entry.to_vec() };
                let feature = decode_feature(flags, entry, &out, ok, mem);
                let new_fd = match &feature {
                    Feature::SetState { state, data_fd } if ok && *data_fd >= 0 => Some((
                        *data_fd,
                        if *state == vmc::state::MigState::Resuming.raw() { Dir::Resume } else { Dir::Save },
                    )),
                    _ => None,
                };
                self.push(pid, tid, Kind::Feature { dev: label.clone(), ret, flags, argsz, feature });
                if let Some((nfd, dir)) = new_fd {
                    let file = self.positions.len();
                    self.positions.push(0);
                    self.set_fd(pid, nfd, Fd::Data { dev, dir, file });
                    self.push(pid, tid, Kind::DataFd { dev: label, fd: nfd, dir });
                }
            }
            _ => self.push(pid, tid, Kind::OtherIoctl { dev: label, fd, request: u64::from(request), ret }),
        }
    }
}
