//! The v1 migration region's header as the uAPI defines it: `struct vfio_device_migration_info`
//! and its `VFIO_DEVICE_STATE_*` macros (include/uapi/linux/vfio.h of 5.8-5.17; quoted from
//! 5.15, where the struct and the comment above it read the same since 5.8), written here from
//! that text. The oracle (`oracle::v1`) has its own copy; the simulator does not use it.

/// `VFIO_DEVICE_STATE_RUNNING` (`1 << 0`): "If bit 0 is set, it indicates the _RUNNING
/// state. If bit 0 is clear, it indicates the _STOP state."
pub const RUNNING: u32 = 1 << 0;
/// `VFIO_DEVICE_STATE_SAVING` (`1 << 1`).
pub const SAVING: u32 = 1 << 1;
/// `VFIO_DEVICE_STATE_RESUMING` (`1 << 2`).
pub const RESUMING: u32 = 1 << 2;
/// `VFIO_DEVICE_STATE_MASK`: "device_state consists of 3 bits"; "Bits 3 - 31 are reserved".
pub const MASK: u32 = RUNNING | SAVING | RESUMING;

/// `VFIO_DEVICE_STATE_VALID(state)`:
/// `(state & _RESUMING ? (state & VFIO_DEVICE_STATE_MASK) == _RESUMING : 1)`, i.e. 101b and
/// 111b are "Invalid state" and 110b is the "Error state" no user may write.
pub fn valid(state: u32) -> bool {
    if state & RESUMING != 0 { state & MASK == RESUMING } else { true }
}

/// Offsets of the header's fields: `__u32 device_state; __u32 reserved; __u64 pending_bytes;
/// __u64 data_offset; __u64 data_size;`.
pub mod field {
    pub const DEVICE_STATE: u64 = 0;
    pub const RESERVED: u64 = 4;
    pub const PENDING_BYTES: u64 = 8;
    pub const DATA_OFFSET: u64 = 16;
    pub const DATA_SIZE: u64 = 24;

    /// (offset, width) of every field, in order.
    pub const ALL: [(u64, usize); 5] =
        [(DEVICE_STATE, 4), (RESERVED, 4), (PENDING_BYTES, 8), (DATA_OFFSET, 8), (DATA_SIZE, 8)];

    /// The width of the field at exactly `offset`: "Field accesses from this structure are only
    /// supported at their native width and alignment."
    pub fn width_at(offset: u64) -> Option<usize> {
        ALL.iter().find(|(o, _)| *o == offset).map(|(_, w)| *w)
    }
}

/// `sizeof(struct vfio_device_migration_info)`: the header at offset 0 of the region, "always
/// followed by the data section".
pub const HEADER_SIZE: u64 = 32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resuming_may_only_appear_alone() {
        let valid_states: Vec<u32> = (0..8).filter(|&s| valid(s)).collect();
        assert_eq!(valid_states, vec![0b000, 0b001, 0b010, 0b011, 0b100]);
        // Reserved bits do not make a state invalid.
        assert!(valid(0b100 | 1 << 8));
    }

    #[test]
    fn fields_tile_the_header() {
        let end = field::ALL.iter().fold(0, |at, &(o, w)| {
            assert_eq!(o, at, "field at {o} leaves a gap");
            o + w as u64
        });
        assert_eq!(end, HEADER_SIZE);
        assert_eq!(field::width_at(8), Some(8));
        assert_eq!(field::width_at(12), None);
    }
}
