//! Injectable defects: each one makes a simulated device break specific clauses, so the
//! suite's detection power can be measured (`vfio-mig-conform sim --list-defects`).

use crate::clauses::ClauseId;
use crate::device::MigrationApi;

macro_rules! defects {
    ($( $variant:ident => ($name:literal, $api:ident, [$($clause:ident),+], $summary:literal) ),+ $(,)?) => {
        /// A named defect of a simulated device.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Defect { $( $variant ),+ }

        impl Defect {
            /// Every defect.
            pub const ALL: &'static [Defect] = &[ $( Defect::$variant ),+ ];

            /// The name used in `sim:v2?defect=NAME`.
            pub fn name(self) -> &'static str {
                match self { $( Defect::$variant => $name ),+ }
            }

            /// Which simulated device it applies to.
            pub fn api(self) -> MigrationApi {
                match self { $( Defect::$variant => MigrationApi::$api ),+ }
            }

            /// The clauses a device with this defect violates.
            pub fn clauses(self) -> &'static [ClauseId] {
                match self { $( Defect::$variant => &[$(crate::clauses::id::$clause),+] ),+ }
            }

            /// What the defect does.
            pub fn summary(self) -> &'static str {
                match self { $( Defect::$variant => $summary ),+ }
            }
        }
    };
}

defects! {
    // ---- v2: FSM ----
    StopCopyToPreCopy => ("stop_copy_to_pre_copy_accepted", V2, [V2_STATE_007],
        "accepts STOP_COPY -> PRE_COPY(_P2P) instead of failing with EINVAL"),
    AcceptsUnsupportedState => ("accepts_unsupported_state", V2, [V2_STATE_006],
        "accepts SET of states its flags do not imply (and raw values >= 8, mapped to STOP)"),
    DataFdOnNonSessionArc => ("data_fd_on_non_session_arc", V2, [V2_STATE_005],
        "returns a new data fd on PRE_COPY -> STOP_COPY and STOP_COPY -> STOP"),
    NoDataFdOnStopCopy => ("no_data_fd_on_stop_copy", V2, [V2_STATE_005, V2_SAVE_002],
        "returns no data fd on STOP -> STOP_COPY (the stream is unreachable)"),
    GetReturnsDataFd => ("get_returns_data_fd", V2, [V2_STATE_001],
        "GET MIG_DEVICE_STATE returns data_fd 3 instead of -1"),
    SpontaneousStateChange => ("spontaneous_state_change", V2, [V2_STATE_003],
        "moves from STOP to RUNNING on its own after a few ticks"),
    FailedSetLeavesOffPath => ("failed_set_leaves_off_path_state", V2, [V2_STATE_004],
        "a failed RESUMING -> STOP leaves the device in RUNNING, a state not on the path"),
    NoStopCopyFlag => ("no_stop_copy_flag", V2, [V2_MIG_002],
        "advertises migration flags without VFIO_MIGRATION_STOP_COPY"),
    UnknownFlagAdvertised => ("unknown_flag_advertised", V2, [V2_MIG_004],
        "advertises an undefined migration flag bit (0x8)"),
    FeatureSetOnMigrationAccepted => ("feature_set_on_migration_accepted", V2, [V2_MIG_001, V2_FEAT_003],
        "accepts SET on VFIO_DEVICE_FEATURE_MIGRATION and PROBE(SET) says it is supported"),
    // ---- v2: sessions and streams ----
    NoEofAfterStopCopy => ("no_eof_after_stop_copy", V2, [V2_PRECOPY_008, V2_SAVE_006],
        "at the end of the STOP_COPY stream read() fails with ENOMSG instead of returning 0"),
    EndlessStopCopy => ("endless_stop_copy_stream", V2, [V2_SAVE_006],
        "the STOP_COPY stream never reaches end of stream (hostile: unbounded data)"),
    StaleSavingFdReadable => ("stale_saving_fd_readable", V2, [V2_ARC_STOP_004, V2_ARC_RUN_002],
        "the saving fd keeps delivering a fresh stream after the session ended"),
    ResumeFdWritableAfterRunning => ("resume_fd_writable_after_running", V2, [V2_ARC_STOP_004, DEBATE_POSTCOPY_002],
        "the resume fd still accepts data after RESUMING -> STOP -> RUNNING (post-copy-like)"),
    PreCopyP2pEndsSession => ("pre_copy_p2p_ends_session", V2, [V2_SAVE_001],
        "PRE_COPY -> PRE_COPY_P2P closes the saving fd"),
    AcceptsTruncatedStream => ("accepts_truncated_stream", V2, [V2_ARC_RES_001],
        "RESUMING -> STOP does not check completeness or integrity of the stream"),
    AcceptsForeignStream => ("accepts_foreign_stream", V2, [V2_ARC_RES_001, V2_RESUME_002],
        "accepts a stream from another device type or state size"),
    SegmentationDependent => ("segmentation_dependent_resume", V2, [V2_FD_001],
        "rejects writes smaller than 8 bytes during RESUMING (depends on segmentation)"),
    ResumeRequiresReset => ("resume_requires_reset", V2, [V2_RESUME_003, DEBATE_RESET_001],
        "STOP -> RESUMING fails with EBUSY unless VFIO_DEVICE_RESET came first"),
    StateAdvancesInStop => ("state_advances_in_stop", V2, [V2_ARC_STOP_001, DEBATE_FREEZE_001],
        "the internal counter keeps advancing in STOP and STOP_COPY"),
    IrqInStop => ("irq_in_stop", V2, [V2_ARC_STOP_001],
        "keeps raising interrupts while stopped"),
    ConfigBlockedInResuming => ("config_blocked_in_resuming", V2, [V2_ARC_STOP_002, DEBATE_CONFIG_001],
        "config-space writes and SET_IRQS fail with EBUSY while RESUMING"),
    LoadOverwritesConfig => ("load_overwrites_config", V2, [DEBATE_CONFIG_001],
        "loading the stream at RESUMING -> STOP clears the PCI command register and disarms interrupts"),
    ResetKeepsState => ("reset_keeps_state", V2, [V2_RESET_001, V2_ERR_002],
        "VFIO_DEVICE_RESET does not return the FSM to RUNNING"),
    ResetKeepsFd => ("reset_keeps_fd", V2, [V2_RESET_001],
        "VFIO_DEVICE_RESET returns to RUNNING but the old data fd keeps working"),
    CloseKeepsFd => ("close_keeps_fd", V2, [V2_FD_002],
        "closing the device leaves the saving fd delivering data"),
    DataSizeFailsInResuming => ("data_size_fails_in_resuming", V2, [V2_DATASIZE_002],
        "MIG_DATA_SIZE fails with EINVAL while RESUMING"),
    StreamExceedsDataSize => ("stream_exceeds_data_size", V2, [V2_DATASIZE_004],
        "announces a MIG_DATA_SIZE of 16 bytes and streams far more"),
    DataFdNotStream => ("data_fd_not_stream", V2, [V2_FD_003],
        "data fds accept pread() at an offset instead of failing with ESPIPE"),
    // ---- v2: pre-copy ----
    PreCopyStopsDevice => ("pre_copy_stops_device", V2, [V2_SAVE_004],
        "entering PRE_COPY stops the device: register writes are ignored until it leaves the saving group"),
    PrecopyInfoOutsidePreCopy => ("precopy_info_outside_pre_copy", V2, [V2_PRECOPY_002],
        "VFIO_MIG_GET_PRECOPY_INFO succeeds in STOP_COPY"),
    PrecopyInfoUnsupported => ("precopy_info_unsupported", V2, [V2_PRECOPY_001],
        "advertises PRE_COPY but VFIO_MIG_GET_PRECOPY_INFO fails with ENOTTY"),
    EofAtPrecopyEnd => ("eof_at_precopy_temporary_end", V2, [V2_PRECOPY_007],
        "read() returns 0 instead of ENOMSG at a temporary end of the PRE_COPY stream (as mtty, hisi, qat)"),
    EnomsgInStopCopy => ("enomsg_in_stop_copy", V2, [V2_PRECOPY_008],
        "read() fails with ENOMSG once in the middle of the STOP_COPY stream"),
    InitialBytesGrows => ("initial_bytes_grows", V2, [V2_PRECOPY_003],
        "initial_bytes grows after data is read"),
    DirtyBytesStartsNonzero => ("dirty_bytes_starts_nonzero", V2, [V2_PRECOPY_005],
        "the first PRECOPY_INFO reports dirty_bytes > 0"),
    // ---- v2: DMA logging ----
    SecondDmaStartAccepted => ("second_dma_log_start_accepted", V2, [V2_LOG_005],
        "a second DMA_LOGGING_START while logging is on succeeds"),
    ReportBeforeStartOk => ("report_before_start_ok", V2, [V2_LOG_006],
        "DMA_LOGGING_REPORT succeeds although logging was never started"),
    ReportClearsPresetBits => ("report_clears_preset_bits", V2, [V2_LOG_008],
        "DMA_LOGGING_REPORT overwrites the user bitmap instead of only setting bits"),
    ReportDoesNotClear => ("report_does_not_clear", V2, [V2_LOG_009],
        "DMA_LOGGING_REPORT does not clear the log it reported"),
    DmaInStop => ("dma_in_stop", V2, [V2_ARC_STOP_001],
        "keeps doing DMA (dirtying logged pages) while stopped"),
    LoggingStopsOnStopCopyExit => ("logging_stops_on_stop_copy_exit", V2, [V2_LOG_001],
        "tears DMA logging down on STOP_COPY -> STOP (as pds does)"),
    // ---- v2: hostile values ----
    GetUnknownState => ("get_returns_unknown_state", V2, [V2_STATE_001, V2_STATE_009],
        "GET MIG_DEVICE_STATE returns 9 after a SET to STOP"),
    InvalidDataFd => ("invalid_data_fd", V2, [V2_STATE_005],
        "SET to STOP_COPY returns success with a data_fd that is not an open fd"),
    PollNeverReady => ("poll_never_ready", V2, [V2_PRECOPY_008],
        "poll() on the saving fd never reports readable, even at the end of STOP_COPY"),
    HangOnSet => ("hang_on_set", V2, [V2_STATE_002],
        "SET to STOP_COPY blocks forever (hostile: the watchdog must report TIMEOUT)"),
    // ---- v1 ----
    V1Accepts101 => ("v1_accepts_101", V1, [V1_STATE_010],
        "accepts the invalid device_state 101b"),
    V1PendingNeverZero => ("v1_pending_never_zero", V1, [V1_SAVE_008],
        "pending_bytes never reaches 0 in stop-and-copy"),
    V1PendingMax => ("v1_pending_bytes_max", V1, [V1_SAVE_008],
        "pending_bytes reads u64::MAX (hostile) and never falls"),
    V1ChunkBeyondRegion => ("v1_chunk_beyond_region", V1, [V1_SAVE_005],
        "data_offset + data_size runs past the end of the region"),
    V1DataOffsetInHeader => ("v1_data_offset_in_header", V1, [V1_FIELD_005],
        "data_offset points into the 32-byte header (hostile)"),
    V1StateNotRestored => ("v1_state_not_restored_after_failed_write", V1, [V1_STATE_003],
        "a refused device_state write leaves the device in stop (000b), not the previous state"),
    V1UnalignedDataOffset => ("v1_unaligned_data_offset", V1, [V1_REG_005],
        "data_offset inside the mmapped data section is not page aligned"),
    V1ReservedNonzero => ("v1_reserved_nonzero", V1, [V1_FIELD_001],
        "the reserved header field reads non-zero"),
    V1PendingWritable => ("v1_pending_bytes_writable", V1, [V1_FIELD_002],
        "writes to pending_bytes change it"),
    V1NoPreCopy => ("v1_pre_copy_unsupported", V1, [V1_FLOW_005],
        "writing the pre-copy state 011b fails"),
    V1RequiresDrain => ("v1_requires_drain", V1, [V1_FLOW_006, V1_SAVE_007],
        "pre-copy -> stop-and-copy fails while pending_bytes > 0"),
    V1OffsetChangesInIteration => ("v1_data_offset_changes_within_iteration", V1, [V1_SAVE_004],
        "a second read of data_offset in one iteration returns a different value"),
    V1OverlappingSparse => ("v1_overlapping_sparse_areas", V1, [V1_REG_004],
        "the sparse-mmap capability lists overlapping areas (hostile)"),
    V1MmapOnly => ("v1_mmap_only", V1, [V1_REG_006],
        "pread()/pwrite() of the data section fail; only mmap works"),
    V1ResetNotRunning => ("v1_reset_not_running", V1, [V1_STATE_004],
        "VFIO_DEVICE_RESET leaves device_state in stop (000b)"),
    V1NarrowAccessAccepted => ("v1_narrow_access_accepted", V1, [V1_REG_003],
        "accepts 1- and 2-byte and misaligned accesses to header fields"),
}

impl Defect {
    /// Looks a defect up by name.
    pub fn by_name(name: &str) -> Option<Defect> {
        Defect::ALL.iter().copied().find(|d| d.name() == name)
    }

    /// Defects that make a whole run unsafe to finish without the watchdog (hangs, endless
    /// streams): the in-process detection test skips them; the reliability tests cover them.
    pub fn needs_watchdog(self) -> bool {
        matches!(self, Defect::HangOnSet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_resolvable() {
        let mut names: Vec<&str> = Defect::ALL.iter().map(|d| d.name()).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "duplicate defect names");
        for d in Defect::ALL {
            assert_eq!(Defect::by_name(d.name()), Some(*d));
        }
    }

    #[test]
    fn there_are_at_least_twenty_defects_across_both_apis() {
        assert!(Defect::ALL.len() >= 20);
        assert!(Defect::ALL.iter().any(|d| d.api() == MigrationApi::V1));
        assert!(Defect::ALL.iter().any(|d| d.api() == MigrationApi::V2));
    }
}
