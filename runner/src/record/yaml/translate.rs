//! Recorded events -> steps: each VFIO ioctl, config/BAR access and SET_IRQS a VMM made
//! becomes the sequence step that replays it (`Builder::build` and the per-kind helpers).

use super::*;

impl Builder {
    pub(super) fn build(&mut self, events: &[Event], device_ops: DeviceOps) {
        // Processes that opened a device (their exec and exit are worth a comment).
        let vmm_pids: BTreeSet<i32> =
            events.iter().filter(|e| matches!(e.kind, Kind::DeviceOpen { .. })).map(|e| e.pid).collect();
        // Devices opened again after a close: their closes become close_device steps.
        let mut opened: BTreeSet<&str> = BTreeSet::new();
        let mut reopened: BTreeSet<String> = BTreeSet::new();
        let mut closed_before: BTreeSet<&str> = BTreeSet::new();
        for e in events {
            match &e.kind {
                Kind::DeviceOpen { dev, .. } => {
                    if closed_before.contains(dev.as_str()) {
                        reopened.insert(dev.clone());
                    }
                    opened.insert(dev);
                }
                Kind::CloseDevice { dev, .. } => {
                    closed_before.insert(dev);
                }
                _ => {}
            }
        }
        let mut info: Option<(String, BTreeMap<&'static str, usize>)> = None;
        let mut skipped_reads: Option<(String, usize)> = None;
        let mut i = 0;
        while i < events.len() {
            let e = &events[i];
            // Flush summaries when something else comes.
            // Events that add nothing to the sequence do not end a summary.
            let silent = matches!(e.kind, Kind::DataFd { .. } | Kind::Fork { .. })
                || (matches!(e.kind, Kind::Exec { .. } | Kind::Exit { .. }) && !vmm_pids.contains(&e.pid));
            let is_info = silent
                || matches!(e.kind, Kind::DeviceInfo { .. } | Kind::RegionInfo { .. } | Kind::IrqInfo { .. });
            if !is_info && let Some((dev, m)) = info.take() {
                let list: Vec<String> = m
                    .iter()
                    .map(|(k, n)| if *n == 1 { k.to_string() } else { format!("{k} x{n}") })
                    .collect();
                self.comment(format!("{dev}: {} (not replayed)", list.join(", ")));
            }
            let is_skipped_read =
                device_ops != DeviceOps::All && matches!(e.kind, Kind::Region { write: false, .. });
            if !is_skipped_read && let Some((dev, n)) = skipped_reads.take() {
                self.comment(format!("{dev}: {n} config/BAR read(s) left out (--device-ops)"));
            }
            match &e.kind {
                Kind::Exec { exe, argv } if vmm_pids.contains(&e.pid) => {
                    self.comment(format!(
                        "pid {} runs {exe} {}",
                        e.pid,
                        argv.iter().skip(1).cloned().collect::<Vec<_>>().join(" ")
                    ));
                }
                Kind::Exit { status } if vmm_pids.contains(&e.pid) => {
                    self.comment(format!("pid {} exits with status {status}", e.pid));
                }
                Kind::Exec { .. } | Kind::Exit { .. } | Kind::Fork { .. } => {}
                Kind::DeviceOpen { dev, name, path, fd, .. } => {
                    if reopened.contains(dev) && self.closed.contains(dev) {
                        self.closed.remove(dev);
                        self.step(
                            Op::Reopen,
                            dev,
                            false,
                            format!("recorded ({}): {name} opened again via {path} as fd {fd}", who(e)),
                        );
                    } else {
                        self.comment(format!("{dev} = {name}, opened by {} via {path} as fd {fd}", who(e)));
                        if !self.labels.contains(dev) {
                            self.labels.push(dev.clone());
                        }
                    }
                }
                Kind::CloseDevice { dev, fd, explicit } => {
                    let how = if *explicit { "closes" } else { "exits with" };
                    // Only a device opened again later needs the close replayed.
                    let later = events[i + 1..]
                        .iter()
                        .any(|x| matches!(&x.kind, Kind::DeviceOpen { dev: d, .. } if d == dev));
                    if later && reopened.contains(dev) {
                        self.closed.insert(dev.clone());
                        self.step(
                            Op::CloseDevice,
                            dev,
                            false,
                            format!("recorded: pid {} {how} device fd {fd}", e.pid),
                        );
                    } else {
                        self.comment(format!("pid {} {how} {dev}'s device fd {fd}", e.pid));
                    }
                }
                Kind::DeviceInfo { dev, .. } | Kind::RegionInfo { dev, .. } | Kind::IrqInfo { dev, .. } => {
                    let what = match e.kind {
                        Kind::DeviceInfo { .. } => "GET_INFO",
                        Kind::RegionInfo { .. } => "GET_REGION_INFO",
                        _ => "GET_IRQ_INFO",
                    };
                    match &mut info {
                        Some((d, m)) if d == dev => *m.entry(what).or_default() += 1,
                        _ => {
                            if let Some((d, m)) = info.take() {
                                let list: Vec<String> = m.iter().map(|(k, n)| format!("{k} x{n}")).collect();
                                self.comment(format!("{d}: {} (not replayed)", list.join(", ")));
                            }
                            info = Some((dev.clone(), BTreeMap::from([(what, 1)])));
                        }
                    }
                }
                Kind::Feature { dev, ret, flags, argsz, feature } => {
                    self.feature(e, dev, *ret, *flags, *argsz, feature);
                }
                Kind::DataFd { .. } => {}
                Kind::PrecopyInfo { dev, fd, ret, argsz, initial_bytes, dirty_bytes } => {
                    let Some(name) = self.fd_name(e.pid, *fd) else {
                        i += 1;
                        continue;
                    };
                    let note = match ret {
                        Ret::Ok(_) => format!(
                            "recorded ({}): initial_bytes {}, dirty_bytes {}",
                            who(e),
                            initial_bytes.unwrap_or(0),
                            dirty_bytes.unwrap_or(0)
                        ),
                        r => format!("recorded ({}): {}", who(e), r.describe()),
                    };
                    let argsz = (*argsz != uapi::PRECOPY_INFO_SIZE).then_some(*argsz);
                    self.step(
                        Op::PrecopyInfo(PrecopyArgs { fd: FdRef::from(name.as_str()), argsz, flags: 0 }),
                        dev,
                        true,
                        note,
                    );
                }
                Kind::Read(_) => {
                    i = self.reads(events, i);
                    continue;
                }
                Kind::Write(_) => {
                    i = self.writes(events, i);
                    continue;
                }
                Kind::Poll { dev, fd, events: ev, revents, timeout_ms, ret } => {
                    let Some(name) = self.fd_name(e.pid, *fd) else {
                        i += 1;
                        continue;
                    };
                    let t = (*timeout_ms).clamp(0, i64::from(u16::MAX)) as u16;
                    let note = format!(
                        "recorded ({}): events {ev:#x}, revents {}, {}",
                        who(e),
                        revents.map_or("-".to_string(), |r| format!("{r:#x}")),
                        ret.describe()
                    );
                    self.step(Op::Poll { fd: FdRef::from(name.as_str()), timeout_ms: t }, dev, true, note);
                }
                Kind::CloseData { dev, fd, ret } => {
                    let Some(d) = self.fds.remove(&(e.pid, *fd)) else {
                        i += 1;
                        continue;
                    };
                    self.step(
                        Op::CloseFd { fd: FdRef::from(d.name.as_str()) },
                        dev,
                        false,
                        format!("recorded ({}): {}", who(e), ret.describe()),
                    );
                }
                Kind::Reset { dev, ret } => {
                    self.step(
                        Op::Reset,
                        dev,
                        true,
                        format!("recorded ({}): VFIO_DEVICE_RESET {}", who(e), ret.describe()),
                    );
                }
                Kind::SetIrqs { dev, ret, irqs } => self.set_irqs(e, dev, *ret, irqs, device_ops),
                Kind::Region { dev, write, region, offset, count, ret, value } => {
                    if !write && device_ops != DeviceOps::All {
                        match &mut skipped_reads {
                            Some((d, n)) if d == dev => *n += 1,
                            _ => {
                                if let Some((d, n)) = skipped_reads.take() {
                                    self.comment(format!(
                                        "{d}: {n} config/BAR read(s) left out (--device-ops)"
                                    ));
                                }
                                skipped_reads = Some((dev.clone(), 1));
                            }
                        }
                    } else if *write && device_ops == DeviceOps::None {
                    } else {
                        self.region(e, dev, *write, *region, *offset, *count, *ret, *value);
                    }
                }
                Kind::OtherIoctl { dev, fd, request, ret } => {
                    self.comment(format!(
                        "{dev}: ioctl {request:#x} on fd {fd} {} (not replayed)",
                        ret.describe()
                    ));
                }
            }
            i += 1;
        }
        if let Some((dev, m)) = info.take() {
            let list: Vec<String> = m.iter().map(|(k, n)| format!("{k} x{n}")).collect();
            self.comment(format!("{dev}: {} (not replayed)", list.join(", ")));
        }
        if let Some((dev, n)) = skipped_reads.take() {
            self.comment(format!("{dev}: {n} config/BAR read(s) left out (--device-ops)"));
        }
    }

    pub(super) fn feature(&mut self, e: &Event, dev: &str, ret: Ret, flags: u32, argsz: u32, f: &Feature) {
        let w = who(e);
        match f {
            Feature::SetState { state, data_fd } => {
                let s = state_name(*state);
                match MigState::from_raw(*state) {
                    Some(MigState::PreCopy) => self.uses.pre_copy = true,
                    Some(MigState::PreCopyP2p) => {
                        self.uses.pre_copy = true;
                        self.uses.p2p = true;
                    }
                    Some(MigState::RunningP2p) => self.uses.p2p = true,
                    _ => {}
                }
                let note = if *data_fd >= 0 {
                    format!("recorded ({w}): SET {s} returned data fd {data_fd}")
                } else {
                    format!("recorded ({w}): SET {s} {}", ret.describe())
                };
                if ret.is_ok() {
                    self.state.insert(dev.to_string(), *state);
                }
                let name = (*data_fd >= 0).then(|| {
                    let dir = if *state == MigState::Resuming.raw() { Dir::Resume } else { Dir::Save };
                    let n = self.names.entry((dev.to_string(), dir)).or_default();
                    *n += 1;
                    let base = if dir == Dir::Resume { "load" } else { "save" };
                    let name = if *n == 1 { base.to_string() } else { format!("{base}{n}") };
                    self.fds.insert(
                        (e.pid, *data_fd),
                        DataFd { name: name.clone(), key: (e.pid, *data_fd, e.seq) },
                    );
                    self.streams
                        .insert((e.pid, *data_fd, e.seq), (dev.to_string(), name.clone(), Some(Vec::new())));
                    name
                });
                let st = self.step(Op::SetState(state_arg(*state)), dev, true, note);
                st.name_fd = name;
            }
            Feature::GetState { state } => {
                let note = match state {
                    Some(s) => format!("recorded ({w}): GET returned {}", state_name(*s)),
                    None => format!("recorded ({w}): GET {}", ret.describe()),
                };
                self.step(Op::GetState, dev, true, note);
            }
            Feature::Migration { flags } => {
                let note = match flags {
                    Some(f) => format!("recorded ({w}): migration flags {f:#x}"),
                    None => format!("recorded ({w}): {}", ret.describe()),
                };
                self.step(Op::GetFlags, dev, true, note);
            }
            Feature::DataSize { stop_copy_length } => {
                let note = match stop_copy_length {
                    Some(n) => format!("recorded ({w}): stop_copy_length {n}"),
                    None => format!("recorded ({w}): {}", ret.describe()),
                };
                self.step(Op::DataSize, dev, true, note);
            }
            Feature::DmaLogStart { page_size, ranges, page_size_out } => {
                self.uses.dma = true;
                let note = format!(
                    "recorded ({w}): {} ranges, page size {page_size} -> {}; {}",
                    ranges.len(),
                    page_size_out.map_or("-".to_string(), |p| p.to_string()),
                    ret.describe()
                );
                let op = Op::DmaLogStart(DmaStartArgs {
                    page_size: *page_size,
                    ranges: ranges.clone(),
                    count: None,
                });
                self.step(op, dev, true, note);
            }
            Feature::DmaLogStop => {
                self.uses.dma = true;
                self.step(Op::DmaLogStop, dev, true, format!("recorded ({w}): {}", ret.describe()));
            }
            Feature::DmaLogReport { iova, length, page_size } => {
                self.uses.dma = true;
                let op = Op::DmaLogReport(DmaReportArgs {
                    iova: *iova,
                    length: *length,
                    page_size: *page_size,
                    prefill: 0,
                });
                self.step(op, dev, true, format!("recorded ({w}): {}", ret.describe()));
            }
            Feature::PrecopyInfoV2 { .. } | Feature::Other { .. } => {
                if matches!(f, Feature::PrecopyInfoV2 { .. }) {
                    self.uses.precopy_v2 = true;
                }
                let mut ops = Vec::new();
                for (bit, op) in [
                    (uapi::FEATURE_GET, FeatureOp::Get),
                    (uapi::FEATURE_SET, FeatureOp::Set),
                    (uapi::FEATURE_PROBE, FeatureOp::Probe),
                ] {
                    if flags & bit != 0 {
                        ops.push(op);
                    }
                }
                let known = uapi::FEATURE_MASK | uapi::FEATURE_GET | uapi::FEATURE_SET | uapi::FEATURE_PROBE;
                let op = Op::Feature(FeatureArgs {
                    feature: (flags & uapi::FEATURE_MASK) as u16,
                    ops,
                    extra_flags: flags & !known,
                    argsz: Some(argsz),
                    payload: argsz.saturating_sub(uapi::FEATURE_HEADER).min(u32::from(u16::MAX)) as u16,
                });
                self.step(op, dev, true, format!("recorded ({w}): {}", ret.describe()));
            }
        }
    }

    pub(super) fn set_irqs(&mut self, e: &Event, dev: &str, ret: Ret, s: &IrqSet, device_ops: DeviceOps) {
        if device_ops == DeviceOps::None {
            return;
        }
        let index = match s.index {
            0 => IrqIndex::Intx,
            1 => IrqIndex::Msi,
            2 => IrqIndex::Msix,
            3 => IrqIndex::Err,
            4 => IrqIndex::Req,
            n => {
                self.comment(format!(
                    "{dev}: SET_IRQS on index {n} {} (no such index in the op vocabulary)",
                    ret.describe()
                ));
                return;
            }
        };
        let action = if s.flags & IrqSet::ACTION_TRIGGER != 0 {
            IrqAction::Trigger
        } else if s.flags & IrqSet::ACTION_UNMASK != 0 {
            IrqAction::Unmask
        } else if s.flags & IrqSet::ACTION_MASK != 0 {
            IrqAction::Mask
        } else {
            self.comment(format!(
                "{dev}: SET_IRQS with flags {:#x} {} (no ACTION_* flag: not replayable)",
                s.flags,
                ret.describe()
            ));
            return;
        };
        let data = if s.flags & IrqSet::DATA_NONE != 0 {
            IrqData::None
        } else if s.flags & IrqSet::DATA_BOOL != 0 {
            IrqData::Bool(s.data.first().is_some_and(|v| *v != 0))
        } else if s.flags & IrqSet::DATA_EVENTFD != 0 {
            if s.count > 0 && s.data.iter().all(|fd| *fd < 0) {
                self.comment(format!(
                    "{dev}: SET_IRQS {index:?} start {} count {} with eventfd -1 (unassign) {} (not replayable: the op arms eventfds)",
                    s.start,
                    s.count,
                    ret.describe()
                ));
                return;
            }
            IrqData::Eventfd
        } else {
            self.comment(format!(
                "{dev}: SET_IRQS with flags {:#x} {} (no DATA_* flag: not replayable)",
                s.flags,
                ret.describe()
            ));
            return;
        };
        let note =
            format!("recorded ({}): flags {:#x} data {:?}; {}", who(e), s.flags, s.data, ret.describe());
        self.step(
            Op::SetIrqs(IrqArgs { index, action, start: s.start, count: s.count, data }),
            dev,
            false,
            note,
        );
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn region(
        &mut self,
        e: &Event,
        dev: &str,
        write: bool,
        region: u32,
        offset: u64,
        count: u64,
        ret: Ret,
        value: Option<u64>,
    ) {
        let what = if write { "pwrite" } else { "pread" };
        let Some(v) = value.filter(|_| matches!(count, 1 | 2 | 4 | 8)) else {
            self.comment(format!(
                "{dev}: {what} of {count} bytes at region {region} offset {offset:#x} {} (only 1/2/4/8-byte accesses are replayed)",
                ret.describe()
            ));
            return;
        };
        let note = format!("recorded ({}): {what} = {v:#x}, {}", who(e), ret.describe());
        let width = count as u8;
        let op = if region == uapi::PCI_CONFIG_REGION_INDEX && offset <= u64::from(u16::MAX) && count <= 4 {
            let a =
                ConfigArgs { offset: offset as u16, width, value: write.then_some(v as u32), save_as: None };
            if write { Op::ConfigWrite(a) } else { Op::ConfigRead(a) }
        } else {
            let r = match region {
                0 => RegionRef::Bar0,
                1 => RegionRef::Bar1,
                2 => RegionRef::Bar2,
                n => RegionRef::Index(n),
            };
            let a = RegionArgs {
                region: r,
                offset,
                width,
                value: write.then_some(v),
                via: vmc::op::Access::Rw,
                save_as: None,
            };
            if write { Op::RegionWrite(a) } else { Op::RegionRead(a) }
        };
        self.step(op, dev, false, note);
    }
}
