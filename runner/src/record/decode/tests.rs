use super::*;
use crate::record::event::{Feature, IrqSet};
use crate::record::payload::{decode_feature, decode_irq_set, req};
use vmc::uapi;

fn mem() -> Mem {
    Mem { tid: std::process::id() as i32 }
}

#[test]
fn labels_run_a_to_z_then_repeat_with_a_number() {
    assert_eq!(label(0), "A");
    assert_eq!(label(3), "D");
    assert_eq!(label(25), "Z");
    assert_eq!(label(26), "A1");
}

#[test]
fn a_set_of_mig_device_state_decodes_state_and_returned_fd() {
    let flags = uapi::FEATURE_SET | uapi::FEATURE_MIG_DEVICE_STATE;
    let mut entry = Vec::new();
    entry.extend(16u32.to_le_bytes());
    entry.extend(flags.to_le_bytes());
    entry.extend(6u32.to_le_bytes());
    entry.extend((-1i32).to_le_bytes());
    let mut out = entry.clone();
    out[12..16].copy_from_slice(&27i32.to_le_bytes());
    assert_eq!(decode_feature(flags, &entry, &out, true, mem()), Feature::SetState { state: 6, data_fd: 27 });
    // A failed SET returns no fd, whatever the buffer holds.
    assert_eq!(
        decode_feature(flags, &entry, &out, false, mem()),
        Feature::SetState { state: 6, data_fd: -1 }
    );
}

#[test]
fn gets_and_probes_decode_their_payloads() {
    let get = |idx: u32, payload: &[u8]| {
        let flags = uapi::FEATURE_GET | idx;
        let mut b = Vec::new();
        b.extend((8 + payload.len() as u32).to_le_bytes());
        b.extend(flags.to_le_bytes());
        b.extend(payload);
        decode_feature(flags, &b, &b, true, mem())
    };
    assert_eq!(get(uapi::FEATURE_MIGRATION, &7u64.to_le_bytes()), Feature::Migration { flags: Some(7) });
    assert_eq!(
        get(uapi::FEATURE_MIG_DATA_SIZE, &96u64.to_le_bytes()),
        Feature::DataSize { stop_copy_length: Some(96) }
    );
    assert_eq!(
        get(uapi::FEATURE_MIG_DEVICE_STATE, &[3, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]),
        Feature::GetState { state: Some(3) }
    );
    let probe = uapi::FEATURE_PROBE | uapi::FEATURE_SET | uapi::FEATURE_DMA_LOGGING_START;
    assert_eq!(decode_feature(probe, &[], &[], true, mem()), Feature::Other { index: 6 });
}

#[test]
fn dma_logging_start_reads_its_ranges_from_the_tracee() {
    // The "tracee" is this process: the ranges array lives in our memory.
    let ranges: [u64; 4] = [0, 0x10_0000, 0x100_0000, 0x2000];
    let flags = uapi::FEATURE_SET | uapi::FEATURE_DMA_LOGGING_START;
    let mut b = Vec::new();
    b.extend(32u32.to_le_bytes());
    b.extend(flags.to_le_bytes());
    b.extend(4096u64.to_le_bytes());
    b.extend(2u32.to_le_bytes());
    b.extend(0u32.to_le_bytes());
    b.extend((ranges.as_ptr() as u64).to_le_bytes());
    let f = decode_feature(flags, &b, &b, true, mem());
    assert_eq!(
        f,
        Feature::DmaLogStart {
            page_size: 4096,
            ranges: vec![(0, 0x10_0000), (0x100_0000, 0x2000)],
            page_size_out: Some(4096)
        }
    );
}

#[test]
fn irq_sets_decode_eventfds_bools_and_none() {
    let mut b = Vec::new();
    for v in [28u32, IrqSet::DATA_EVENTFD | IrqSet::ACTION_TRIGGER, 1, 0, 2] {
        b.extend(v.to_le_bytes());
    }
    b.extend(12i32.to_le_bytes());
    b.extend((-1i32).to_le_bytes());
    let s = decode_irq_set(&b).unwrap();
    assert_eq!((s.index, s.start, s.count), (1, 0, 2));
    assert_eq!(s.data, vec![12, -1]);
    let mut b = Vec::new();
    for v in [20u32, IrqSet::DATA_NONE | IrqSet::ACTION_TRIGGER, 0, 0, 0] {
        b.extend(v.to_le_bytes());
    }
    assert!(decode_irq_set(&b).unwrap().data.is_empty());
    assert!(decode_irq_set(&b[..12]).is_none());
}

/// Feeds the decoder synthetic calls whose pointers point into this process.
struct Fake {
    d: Decoder,
    pid: i32,
}

impl Fake {
    fn call(&mut self, nr: i64, args: [u64; 6], ret: i64) {
        let call = Call { nr, args };
        if let Want::Exit(p) = self.d.entry(self.pid, self.pid, call, mem()) {
            self.d.exit(self.pid, self.pid, p, ret, mem());
        }
    }
}

fn set_state_buf(state: u32, fd: i32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(16u32.to_le_bytes());
    b.extend((uapi::FEATURE_SET | uapi::FEATURE_MIG_DEVICE_STATE).to_le_bytes());
    b.extend(state.to_le_bytes());
    b.extend(fd.to_le_bytes());
    b
}

#[test]
fn device_and_data_fds_are_tracked_per_process_and_forgotten_when_closed() {
    let pid = std::process::id() as i32;
    let mut f = Fake { d: Decoder::new(1 << 20, None), pid };
    let name = c"c0000000-0000-4000-8000-000000000000";
    // A read on fd 20 before it is a device fd is not decoded.
    let mut buf = [0u8; 8];
    f.call(libc::SYS_read, [20, buf.as_mut_ptr() as u64, 8, 0, 0, 0], 8);
    assert!(f.d.events.is_empty());
    f.call(libc::SYS_ioctl, [5, u64::from(req::GROUP_GET_DEVICE_FD), name.as_ptr() as u64, 0, 0, 0], 20);
    assert!(matches!(&f.d.events[0].kind, Kind::DeviceOpen { dev, fd: 20, .. } if dev == "A"));
    // SET PRE_COPY returns data fd 27 (the exit sees the kernel's answer in memory).
    let mut b = set_state_buf(6, 27);
    f.call(libc::SYS_ioctl, [20, u64::from(req::DEVICE_FEATURE), b.as_mut_ptr() as u64, 0, 0, 0], 0);
    assert!(matches!(
        &f.d.events[1].kind,
        Kind::Feature { feature: Feature::SetState { state: 6, data_fd: 27 }, .. }
    ));
    assert!(matches!(&f.d.events[2].kind, Kind::DataFd { fd: 27, dir: Dir::Save, .. }));
    // A read of 24 bytes from the data fd, then one that finds ENOMSG.
    let data: Vec<u8> = (0..24).collect();
    f.call(libc::SYS_read, [27, data.as_ptr() as u64, 96, 0, 0, 0], 24);
    f.call(libc::SYS_read, [27, data.as_ptr() as u64, 96, 0, 0, 0], -i64::from(libc::ENOMSG));
    let Kind::Read(t) = &f.d.events[3].kind else { panic!("{:?}", f.d.events[3]) };
    assert_eq!((t.count, t.ret, t.pos), (96, Ret::Ok(24), 0));
    assert_eq!(t.bytes.as_deref(), Some(&data[..]));
    let Kind::Read(t) = &f.d.events[4].kind else { panic!() };
    assert_eq!((t.ret, t.pos), (Ret::Err(libc::ENOMSG), 24));
    // A config-space pread (region 7 at 7 << 40) of 2 bytes.
    let cmd = [0x07u8, 0x01];
    f.call(libc::SYS_pread64, [20, cmd.as_ptr() as u64, 2, (7 << 40) + 4, 0, 0], 2);
    assert!(matches!(
        f.d.events[5].kind,
        Kind::Region { write: false, region: 7, offset: 4, count: 2, value: Some(0x0107), .. }
    ));
    // Closing the data fd ends it: a later read on 27 is not decoded.
    f.call(libc::SYS_close, [27, 0, 0, 0, 0, 0], 0);
    assert!(matches!(f.d.events[6].kind, Kind::CloseData { fd: 27, .. }));
    f.call(libc::SYS_read, [27, data.as_ptr() as u64, 96, 0, 0, 0], 4);
    assert_eq!(f.d.events.len(), 7);
    // Another process has its own fd table.
    let other = Fake { d: Decoder::new(0, None), pid: pid + 1 };
    assert!(other.d.fd(pid + 1, 20).is_none());
    // Fork copies the table; exit reports the device fd as closed.
    f.d.fork(pid, 4242);
    assert!(matches!(f.d.fd(4242, 20), Some(Fd::Device(0))));
    f.d.exit_process(4242, 0);
    let n = f.d.events.len();
    assert!(matches!(&f.d.events[n - 2].kind, Kind::CloseDevice { explicit: false, .. }));
    assert!(matches!(&f.d.events[n - 1].kind, Kind::Exit { status: 0 }));
}

#[test]
fn a_data_fd_copied_by_dup_or_fcntl_is_followed_and_other_fcntls_are_not_decoded() {
    // Arrange: device A on fd 20 with data fd 27 (SET PRE_COPY).
    let pid = std::process::id() as i32;
    let mut f = Fake { d: Decoder::new(1 << 20, None), pid };
    let name = c"c0000000-0000-4000-8000-000000000000";
    f.call(libc::SYS_ioctl, [5, u64::from(req::GROUP_GET_DEVICE_FD), name.as_ptr() as u64, 0, 0, 0], 20);
    let mut b = set_state_buf(6, 27);
    f.call(libc::SYS_ioctl, [20, u64::from(req::DEVICE_FEATURE), b.as_mut_ptr() as u64, 0, 0, 0], 0);
    f.d.take_new_fds();
    // Act: dup(27) -> 30, fcntl(27, F_DUPFD_CLOEXEC, 40) -> 41, fcntl(27, F_GETFL), then
    // the original closed and reads on both copies.
    f.call(libc::SYS_dup, [27, 0, 0, 0, 0, 0], 30);
    f.call(libc::SYS_fcntl, [27, libc::F_DUPFD_CLOEXEC as u64, 40, 0, 0, 0], 41);
    f.call(libc::SYS_fcntl, [27, libc::F_GETFL as u64, 0, 0, 0, 0], 2);
    f.call(libc::SYS_fcntl, [33, libc::F_DUPFD as u64, 0, 0, 0, 0], 34);
    let fresh = f.d.take_new_fds();
    f.call(libc::SYS_close, [27, 0, 0, 0, 0, 0], 0);
    let data = [0u8; 24];
    f.call(libc::SYS_read, [30, data.as_ptr() as u64, 24, 0, 0, 0], 24);
    f.call(libc::SYS_read, [41, data.as_ptr() as u64, 24, 0, 0, 0], -i64::from(libc::ENOMSG));
    // Assert: both copies are data fds of A that the tracer filters; fd 34 (a copy of an
    // fd that is not ours) is not; the reads on the copies are recorded, in stream order.
    assert_eq!(fresh, vec![(pid, 30), (pid, 41)]);
    assert!(matches!(f.d.fd(pid, 30), Some(Fd::Data { .. })));
    assert!(f.d.fd(pid, 34).is_none());
    let reads: Vec<_> =
        f.d.events
            .iter()
            .filter_map(|e| match &e.kind {
                Kind::Read(t) => Some((t.ret, t.pos)),
                _ => None,
            })
            .collect();
    assert_eq!(reads, vec![(Ret::Ok(24), 0), (Ret::Err(libc::ENOMSG), 24)]);
}

#[test]
fn region_info_replaces_the_offset_shift_guess() {
    let mut d = Decoder::new(0, None);
    let i = d.device("x", "/dev/vfio/1", 1);
    assert_eq!(d.region_of(i, (2 << 40) + 3), (2, 3));
    d.devices[i].regions.insert(5, (0x1000, 0x100));
    assert_eq!(d.region_of(i, 0x1010), (5, 0x10));
}

/// `fd` of this process as a device fd of a Fake whose pid is this process.
fn device_on(f: &mut Fake, fd: i32) {
    let name = c"c0000000-0000-4000-8000-000000000000";
    f.call(
        libc::SYS_ioctl,
        [5, u64::from(req::GROUP_GET_DEVICE_FD), name.as_ptr() as u64, 0, 0, 0],
        i64::from(fd),
    );
}

#[test]
fn close_range_closes_the_tracked_fds_in_its_range_unless_it_only_marks_them_close_on_exec() {
    // Arrange: device A on fd 20 with data fds 27 and 29.
    let pid = std::process::id() as i32;
    let mut f = Fake { d: Decoder::new(1 << 20, None), pid };
    device_on(&mut f, 20);
    for data_fd in [27, 29] {
        let mut b = set_state_buf(6, data_fd);
        f.call(libc::SYS_ioctl, [20, u64::from(req::DEVICE_FEATURE), b.as_mut_ptr() as u64, 0, 0, 0], 0);
    }
    let before = f.d.events.len();
    // Act: a CLOEXEC-only close_range over all, a failed one, then close_range(21, 28).
    let cloexec = u64::from(libc::CLOSE_RANGE_CLOEXEC);
    f.call(libc::SYS_close_range, [0, u64::from(u32::MAX), cloexec, 0, 0, 0], 0);
    f.call(libc::SYS_close_range, [21, 28, 0, 0, 0, 0], -i64::from(libc::EINVAL));
    let unchanged = f.d.events.len();
    f.call(libc::SYS_close_range, [21, 28, 0, 0, 0, 0], 0);
    // Assert: only the last closed something: data fd 27; 20 and 29 are still tracked.
    assert_eq!(unchanged, before);
    assert!(matches!(&f.d.events[before..], [e] if matches!(e.kind, Kind::CloseData { fd: 27, .. })));
    assert!(f.d.fd(pid, 27).is_none());
    assert!(matches!(f.d.fd(pid, 20), Some(Fd::Device(0))));
    assert!(matches!(f.d.fd(pid, 29), Some(Fd::Data { .. })));
}

#[test]
fn an_exec_keeps_the_tracked_fds_that_survive_it_and_closes_the_others() {
    // Arrange: three real fds of this process become device fds: one stays open, one is
    // closed and one is replaced by another file, as an exec would leave them.
    use std::os::fd::{AsRawFd, IntoRawFd};
    let pid = std::process::id() as i32;
    let mut f = Fake { d: Decoder::new(1 << 20, None), pid };
    let stays = std::fs::File::open("/dev/null").unwrap();
    let closed = std::fs::File::open("/dev/null").unwrap().into_raw_fd();
    let replaced = std::fs::File::open("/dev/null").unwrap();
    for fd in [stays.as_raw_fd(), closed, replaced.as_raw_fd()] {
        device_on(&mut f, fd);
    }
    // SAFETY: `closed` is an fd this test owns (into_raw_fd) and nothing else uses.
    assert_eq!(unsafe { libc::close(closed) }, 0);
    let zero = std::fs::File::open("/dev/zero").unwrap();
    // SAFETY: both fds are open and owned by this test; dup2 replaces `replaced`'s file.
    assert!(unsafe { libc::dup2(zero.as_raw_fd(), replaced.as_raw_fd()) } >= 0);
    let before = f.d.events.len();
    // Act
    f.d.exec(pid);
    // Assert: the survivor is still a device fd; the other two are reported closed.
    assert!(matches!(f.d.fd(pid, stays.as_raw_fd()), Some(Fd::Device(0))));
    assert!(f.d.fd(pid, closed).is_none());
    assert!(f.d.fd(pid, replaced.as_raw_fd()).is_none());
    let mut gone: Vec<i32> = f.d.events[before..]
        .iter()
        .filter_map(|e| match e.kind {
            Kind::CloseDevice { fd, explicit: false, .. } => Some(fd),
            _ => None,
        })
        .collect();
    gone.sort_unstable();
    let mut want = vec![closed, replaced.as_raw_fd()];
    want.sort_unstable();
    assert_eq!(gone, want);
    assert!(matches!(f.d.events.last().map(|e| &e.kind), Some(Kind::Exec { .. })));
}
