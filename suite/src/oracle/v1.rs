//! The v1 oracle: `device_state` bit semantics and the migration-region save/resume
//! protocol (5.10 include/uapi/linux/vfio.h l.400-622), as pure judgements.

use super::Violation;
use crate::clauses::ClauseId;
use crate::clauses::id::*;

/// `VFIO_DEVICE_STATE_V1_RUNNING`.
pub const RUNNING: u32 = 1 << 0;
/// `VFIO_DEVICE_STATE_V1_SAVING`.
pub const SAVING: u32 = 1 << 1;
/// `VFIO_DEVICE_STATE_V1_RESUMING`.
pub const RESUMING: u32 = 1 << 2;
/// `VFIO_DEVICE_STATE_MASK`.
pub const MASK: u32 = RUNNING | SAVING | RESUMING;
/// The error encoding (SAVING | RESUMING, 110b).
pub const ERROR: u32 = SAVING | RESUMING;
/// Size of `struct vfio_device_migration_info`.
pub const HEADER_SIZE: u64 = 32;

/// Header field offsets in the migration region.
pub mod field {
    pub const DEVICE_STATE: u64 = 0;
    pub const RESERVED: u64 = 4;
    pub const PENDING_BYTES: u64 = 8;
    pub const DATA_OFFSET: u64 = 16;
    pub const DATA_SIZE: u64 = 24;

    /// (name, offset, width) of every header field.
    pub const ALL: [(&str, u64, usize); 5] = [
        ("device_state", DEVICE_STATE, 4),
        ("reserved", RESERVED, 4),
        ("pending_bytes", PENDING_BYTES, 8),
        ("data_offset", DATA_OFFSET, 8),
        ("data_size", DATA_SIZE, 8),
    ];

    /// The field at exactly this offset, with its width.
    pub fn at(offset: u64) -> Option<(&'static str, usize)> {
        ALL.iter().find(|(_, o, _)| *o == offset).map(|(n, _, w)| (*n, *w))
    }
}

/// `VFIO_DEVICE_STATE_VALID()`: RESUMING may only appear alone.
pub fn is_valid(state: u32) -> bool {
    if state & RESUMING != 0 { state & MASK == RESUMING } else { true }
}

/// `VFIO_DEVICE_STATE_IS_ERROR()`.
pub fn is_error(state: u32) -> bool {
    state & MASK == ERROR
}

/// Human name of a v1 state value (reserved bits shown separately).
pub fn name(state: u32) -> String {
    let base = match state & MASK {
        0b000 => "stop".to_string(),
        0b001 => "running".to_string(),
        0b010 => "stop-and-copy".to_string(),
        0b011 => "pre-copy".to_string(),
        0b100 => "resuming".to_string(),
        0b110 => "error".to_string(),
        other => format!("invalid {other:03b}b"),
    };
    let reserved = state & !MASK;
    if reserved == 0 {
        format!("{:03b}b {base}", state & MASK)
    } else {
        format!("{:03b}b {base} (reserved bits {reserved:#x})", state & MASK)
    }
}

/// What the v1 text says about writing `new` while in `cur`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// The driver must accept it; the clause says which flow requires it.
    Required(ClauseId),
    /// Valid encoding that the driver may accept or refuse (V1-STATE-005).
    Allowed,
    /// Invalid target encoding (101b, 110b, 111b): must be refused, state unchanged
    /// (V1-STATE-010).
    Invalid,
}

/// Classifies a write of `new` (reserved bits ignored, as the user read-modify-writes).
pub fn transition(cur: u32, new: u32) -> Transition {
    let (c, n) = (cur & MASK, new & MASK);
    if !is_valid(n) {
        return Transition::Invalid;
    }
    match (c, n) {
        (0b001, 0b000) => Transition::Required(V1_FLOW_002),
        (0b001, 0b010) | (0b010, 0b000) => Transition::Required(V1_FLOW_003),
        (0b001, 0b011) => Transition::Required(V1_FLOW_005),
        (0b011, 0b010) => Transition::Required(V1_FLOW_006),
        // Leaving RESUMING loads the data: it may fail when the data is not a valid stream, so
        // only sequences that delivered one expect 100b -> 001b to succeed.
        (0b001, 0b100) => Transition::Required(V1_FLOW_007),
        _ => Transition::Allowed,
    }
}

/// Judges the state read back after a write of `new` from `prev` that returned `ok`.
pub fn judge_write(prev: u32, new: u32, ok: bool, after: u32) -> Vec<Violation> {
    let mut v = Vec::new();
    let kind = transition(prev, new);
    match (kind, ok) {
        // RESUMING combined with RUNNING (101b, 111b) is also what v1-strict names unsupported.
        (Transition::Invalid, true) if new & (RESUMING | RUNNING) == RESUMING | RUNNING => {
            v.push(Violation::new(
                [V1_STATE_010, V1_STRICT_007],
                format!("write of {} refused (invalid encoding)", name(new)),
                "the write succeeded".to_string(),
            ));
        }
        (Transition::Invalid, true) => v.push(Violation::new(
            [V1_STATE_010],
            format!("write of {} refused (invalid encoding)", name(new)),
            "the write succeeded".to_string(),
        )),
        (Transition::Required(clause), false) => v.push(Violation::new(
            [clause],
            format!("{} -> {} accepted", name(prev), name(new)),
            "the write failed".to_string(),
        )),
        _ => {}
    }
    if ok && !matches!(kind, Transition::Invalid) && after & MASK != new & MASK {
        v.push(Violation::new(
            [V1_STATE_002, V1_STRICT_001],
            format!("device_state reads {} after the write returned", name(new)),
            name(after),
        ));
    }
    if !ok && after & MASK != prev & MASK && !is_error(after) {
        v.push(Violation::new(
            [V1_STATE_003, V1_STRICT_003],
            format!("device_state is the previous state {} or error 110b", name(prev)),
            name(after),
        ));
    }
    if after & !MASK != 0 {
        v.push(Violation::new(
            [V1_STATE_009],
            "reserved device_state bits read as 0".to_string(),
            format!("{:#x}", after & !MASK),
        ));
    }
    v
}

/// Layout facts of a migration region the judges need.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegionLayout {
    pub size: u64,
    /// Sparse-mmap areas as (offset, size).
    pub mmap_areas: Vec<(u64, u64)>,
    pub page_size: u64,
}

impl RegionLayout {
    fn in_mmap_area(&self, offset: u64) -> bool {
        self.mmap_areas.iter().any(|&(o, s)| offset >= o && offset < o.saturating_add(s))
    }
}

/// Judges the migration region's info (V1-REG-001): a region of type 3 / subtype 1 holds the
/// header "to get and set" migration information, so it is readable, writable and larger than
/// the 32-byte header. `flags` are the `VFIO_REGION_INFO_FLAG_*` bits.
pub fn judge_region(flags: u32, size: u64) -> Vec<Violation> {
    let mut v = Vec::new();
    let rw = crate::device::RegionInfo::FLAG_READ | crate::device::RegionInfo::FLAG_WRITE;
    if flags & rw != rw {
        v.push(Violation::new(
            [V1_REG_001],
            "the migration region is readable and writable (REGION_INFO flags READ and WRITE)".to_string(),
            format!("flags {flags:#x}"),
        ));
    }
    if size <= HEADER_SIZE {
        v.push(Violation::new(
            [V1_REG_001],
            format!("the migration region is larger than the {HEADER_SIZE}-byte header"),
            format!("size {size}"),
        ));
    }
    v
}

/// Judges one staged chunk: `data_offset`/`data_size` as read in one iteration.
pub fn judge_chunk(layout: &RegionLayout, data_offset: u64, data_size: u64) -> Vec<Violation> {
    let mut v = Vec::new();
    if data_offset < HEADER_SIZE {
        v.push(Violation::new(
            [V1_FIELD_005],
            format!("data_offset >= {HEADER_SIZE} (the data section follows the header)"),
            format!("data_offset = {data_offset}"),
        ));
    }
    match data_offset.checked_add(data_size) {
        Some(end) if end <= layout.size => {}
        _ => v.push(Violation::new(
            [V1_SAVE_005],
            format!("data_offset + data_size <= region size {}", layout.size),
            format!("data_offset = {data_offset}, data_size = {data_size}"),
        )),
    }
    if layout.in_mmap_area(data_offset)
        && layout.page_size != 0
        && !data_offset.is_multiple_of(layout.page_size)
    {
        v.push(Violation::new(
            [V1_REG_005],
            format!("data_offset inside an mmap area is {}-byte aligned", layout.page_size),
            format!("data_offset = {data_offset:#x}"),
        ));
    }
    v
}

/// Judges the sparse-mmap capability: areas lie inside the region and do not overlap, and
/// none covers the header.
pub fn judge_sparse_areas(layout: &RegionLayout) -> Vec<Violation> {
    let mut v = Vec::new();
    let mut areas = layout.mmap_areas.clone();
    areas.sort_unstable();
    for &(o, s) in &areas {
        if o.checked_add(s).is_none_or(|end| end > layout.size) {
            v.push(Violation::new(
                [V1_REG_004],
                format!("sparse mmap area inside the region (size {})", layout.size),
                format!("area offset {o:#x} size {s:#x}"),
            ));
        }
        if o < HEADER_SIZE {
            v.push(Violation::new(
                [V1_REG_004],
                "sparse mmap areas do not cover the 32-byte header".to_string(),
                format!("area offset {o:#x} size {s:#x}"),
            ));
        }
    }
    for w in areas.windows(2) {
        if w[0].0.saturating_add(w[0].1) > w[1].0 {
            v.push(Violation::new(
                [V1_REG_004],
                "sparse mmap areas do not overlap".to_string(),
                format!("areas [{:#x}, +{:#x}) and [{:#x}, +{:#x}) overlap", w[0].0, w[0].1, w[1].0, w[1].1),
            ));
        }
    }
    v
}

/// Judges a read or write of the region header at `offset` with `width` bytes that
/// succeeded (`ok`), reading `value` (reads only): header fields are accessed one at a time at
/// their natural width (V1-REG-003); the reserved field reads 0 (V1-FIELD-001) and so do the
/// reserved `device_state` bits (V1-STATE-009).
pub fn judge_header_access(
    offset: u64,
    width: u8,
    write: bool,
    ok: bool,
    value: Option<u64>,
) -> Vec<Violation> {
    let mut v = Vec::new();
    if !ok {
        return v;
    }
    let natural = field::at(offset).is_some_and(|(_, fw)| fw == usize::from(width));
    if !natural && offset < HEADER_SIZE {
        v.push(Violation::new(
            [V1_REG_003],
            format!(
                "a {width}-byte {} at header offset {offset} (not one field at its natural width) fails",
                if write { "write" } else { "read" }
            ),
            "the access succeeded".to_string(),
        ));
    }
    if natural && !write {
        let value = value.unwrap_or(0);
        if offset == field::RESERVED && value != 0 {
            v.push(Violation::new(
                [V1_FIELD_001],
                "the reserved header field reads 0".to_string(),
                format!("{value:#x}"),
            ));
        }
        if offset == field::DEVICE_STATE && value as u32 & !MASK != 0 {
            v.push(Violation::new(
                [V1_STATE_009],
                "reserved device_state bits read as 0".to_string(),
                format!("{:#x}", value as u32 & !MASK),
            ));
        }
    }
    v
}

/// In stop-and-copy (`_SAVING` alone) `pending_bytes` must reach 0 in finite time
/// (V1-SAVE-008); in pre-copy the device runs and may dirty state faster than it is read,
/// so the same observation is only a note (returned as `Err`).
pub fn judge_pending_not_draining(
    stop_and_copy: bool,
    pending: u64,
    iterations: u32,
    total: u64,
) -> Result<Violation, String> {
    if stop_and_copy {
        Ok(Violation::new(
            [V1_SAVE_008],
            "pending_bytes reaches 0 in finite time".to_string(),
            format!("still {pending} after {iterations} iterations and {total} bytes"),
        ))
    } else {
        Err(format!("pending_bytes still {pending} after {iterations} iterations outside stop-and-copy"))
    }
}

/// `data_offset`/`data_size` read twice in one iteration stay the same (V1-SAVE-004).
pub fn judge_reread(first: (u64, u64), second: (u64, u64)) -> Option<Violation> {
    (first != second).then(|| {
        Violation::new(
            [V1_SAVE_004],
            format!("data_offset/data_size read again in one iteration stay {:#x}/{}", first.0, first.1),
            format!("{:#x}/{}", second.0, second.1),
        )
    })
}

/// `data_size` 0 while `pending_bytes` is not: nothing is staged although pending_bytes says
/// there is data (V1-SAVE-008).
pub fn judge_nothing_staged(pending: u64) -> Violation {
    Violation::new(
        [V1_SAVE_008],
        "pending_bytes reaches 0 once every staged byte has been read".to_string(),
        format!("pending_bytes {pending} with nothing staged (data_size 0)"),
    )
}

/// The staged data could not be read: through read/write (V1-REG-006) or through the
/// sparse mmap areas (V1-REG-004, `mmap` true).
pub fn judge_staged_read_failed(
    mmap: bool,
    offset: u64,
    size: u64,
    how: &str,
    errno: crate::errno::Errno,
) -> Violation {
    Violation::new(
        [if mmap { V1_REG_004 } else { V1_REG_006 }],
        format!("the staged data at {offset:#x}+{size} can be read ({how})"),
        format!("read failed with {errno}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_read_at_an_unnatural_width_that_succeeds_breaks_v1_reg_003() {
        assert_eq!(
            judge_header_access(field::PENDING_BYTES, 4, false, true, Some(0))[0].clauses,
            vec![V1_REG_003]
        );
        assert!(judge_header_access(field::PENDING_BYTES, 4, false, false, None).is_empty());
        assert!(judge_header_access(field::PENDING_BYTES, 8, false, true, Some(0)).is_empty());
    }

    #[test]
    fn reserved_bits_read_nonzero_break_their_clauses() {
        assert_eq!(
            judge_header_access(field::RESERVED, 4, false, true, Some(1))[0].clauses,
            vec![V1_FIELD_001]
        );
        assert_eq!(
            judge_header_access(field::DEVICE_STATE, 4, false, true, Some(8))[0].clauses,
            vec![V1_STATE_009]
        );
    }

    #[test]
    fn pending_bytes_that_never_drain_fail_only_in_stop_and_copy() {
        assert_eq!(judge_pending_not_draining(true, 5, 10, 100).map(|v| v.clauses), Ok(vec![V1_SAVE_008]));
        assert!(
            matches!(judge_pending_not_draining(false, 5, 10, 100), Err(n) if n.contains("outside stop-and-copy"))
        );
        assert!(judge_reread((32, 8), (32, 8)).is_none());
        assert!(judge_reread((32, 8), (40, 8)).is_some());
    }

    #[test]
    fn validity_follows_the_uapi_macro() {
        let valid: Vec<u32> = (0..8).filter(|&s| is_valid(s)).collect();
        assert_eq!(valid, vec![0, 1, 2, 3, 4]);
        assert!(is_error(0b110));
        assert!(!is_error(0b100));
    }

    #[test]
    fn invalid_targets_must_be_refused_with_state_unchanged() {
        assert_eq!(transition(1, 0b101), Transition::Invalid);
        let v = judge_write(1, 0b101, true, 0b101);
        assert!(v.iter().any(|x| x.clauses.contains(&V1_STATE_010)));
        assert!(judge_write(1, 0b101, false, 1).is_empty());
    }

    #[test]
    fn failed_write_may_leave_previous_state_or_error_only() {
        assert!(judge_write(3, 2, false, 3).is_empty() || transition(3, 2) != Transition::Allowed);
        let v = judge_write(1, 0, false, 2);
        assert!(v.iter().any(|x| x.clauses.contains(&V1_STATE_003)));
        assert!(!judge_write(1, 0, false, 0b110).iter().any(|x| x.clauses[0] == V1_STATE_003));
    }

    #[test]
    fn a_migration_region_without_write_or_room_after_the_header_breaks_v1_reg_001() {
        assert!(judge_region(0xf, 69632).is_empty());
        assert_eq!(judge_region(0xd, 69632)[0].clauses, vec![V1_REG_001]);
        assert_eq!(judge_region(0xf, 32)[0].clauses, vec![V1_REG_001]);
    }

    #[test]
    fn resuming_with_running_accepted_also_breaks_v1_strict_007() {
        assert!(judge_write(1, 0b111, true, 0b111).iter().any(|x| x.clauses.contains(&V1_STRICT_007)));
        assert!(!judge_write(1, 0b110, true, 0b110).iter().any(|x| x.clauses.contains(&V1_STRICT_007)));
    }

    #[test]
    fn chunk_beyond_the_region_or_inside_the_header_is_a_violation() {
        let layout = RegionLayout { size: 8192, mmap_areas: vec![(4096, 4096)], page_size: 4096 };
        assert!(judge_chunk(&layout, 4096, 4096).is_empty());
        assert_eq!(judge_chunk(&layout, 4096, 4097)[0].clauses, vec![V1_SAVE_005]);
        assert_eq!(judge_chunk(&layout, 8, 16)[0].clauses, vec![V1_FIELD_005]);
        assert_eq!(judge_chunk(&layout, 4100, 16)[0].clauses, vec![V1_REG_005]);
    }

    #[test]
    fn overlapping_sparse_areas_are_reported() {
        let layout =
            RegionLayout { size: 16384, mmap_areas: vec![(4096, 8192), (8192, 4096)], page_size: 4096 };
        assert_eq!(judge_sparse_areas(&layout).len(), 1);
    }
}
