//! Injectable defects: each one makes a simulated device break specific clauses, so the
//! suite's detection power can be measured (`vfio-mig-conform sim --list-defects`).
//!
//! Two sets: the defects written together with the checks (`seen`), and a held-out set
//! ([`Defect::held_out`]) written from the uAPI text alone by someone who had not read the
//! checks, each quoting the header sentence it breaks ([`Defect::quote`]). Detection on the
//! held-out set is reported on its own in docs/detection.md.

use crate::clauses::ClauseId;
use crate::device::MigrationApi;

macro_rules! defects {
    (
        seen { $( $variant:ident => ($name:literal, $api:ident, [$($clause:ident),+], $summary:literal) ),+ $(,)? }
        held_out { $( $hvariant:ident => ($hname:literal, $hapi:ident, [$($hclause:ident),+], $hsummary:literal, $quote:literal) ),+ $(,)? }
    ) => {
        /// A named defect of a simulated device.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Defect { $( $variant, )+ $( $hvariant, )+ }

        impl Defect {
            /// Every defect: the ones the checks were written with, then the held-out set.
            pub const ALL: &'static [Defect] = &[ $( Defect::$variant, )+ $( Defect::$hvariant, )+ ];

            /// The held-out defects only (see [`Defect::held_out`]).
            pub const HELD_OUT: &'static [Defect] = &[ $( Defect::$hvariant ),+ ];

            /// The name used in `sim:v2?defect=NAME`.
            pub fn name(self) -> &'static str {
                match self { $( Defect::$variant => $name, )+ $( Defect::$hvariant => $hname, )+ }
            }

            /// Which simulated device it applies to.
            pub fn api(self) -> MigrationApi {
                match self {
                    $( Defect::$variant => MigrationApi::$api, )+
                    $( Defect::$hvariant => MigrationApi::$hapi, )+
                }
            }

            /// The clauses a device with this defect violates.
            pub fn clauses(self) -> &'static [ClauseId] {
                match self {
                    $( Defect::$variant => &[$(crate::clauses::id::$clause),+], )+
                    $( Defect::$hvariant => &[$(crate::clauses::id::$hclause),+], )+
                }
            }

            /// What the defect does.
            pub fn summary(self) -> &'static str {
                match self { $( Defect::$variant => $summary, )+ $( Defect::$hvariant => $hsummary, )+ }
            }

            /// Whether the defect belongs to the held-out set: written from the uAPI text alone
            /// by someone who had not read the checks, fixtures or oracle, so that detection
            /// measured on it is not detection of defects written together with their checks.
            pub fn held_out(self) -> bool {
                match self { $( Defect::$variant => false, )+ $( Defect::$hvariant => true, )+ }
            }

            /// For held-out defects, the uAPI sentence the defect breaks (v2: vfio.h of 6.12,
            /// v1: vfio.h of 5.8-5.17).
            pub fn quote(self) -> Option<&'static str> {
                match self { $( Defect::$variant => None, )+ $( Defect::$hvariant => Some($quote), )+ }
            }
        }
    };
}

defects! {
    seen {
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
    DataSizeEnotty => ("data_size_enotty", V2, [V2_DATASIZE_003],
        "MIG_DATA_SIZE fails with ENOTTY although MIGRATION succeeds (a driver without migration_get_data_size)"),
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
    // ---- v2: PRECOPY_INFOv2 and REINIT (7.1+; the simulator has them with kernel=7.1 or later) ----
    Piv2GetAccepted => ("piv2_get_accepted", V2, [V2_PIV2_001],
        "GET (and PROBE of GET) of VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2 succeeds although the opt-in is SET-only"),
    Piv2FlagsEchoed => ("piv2_flags_echoed", V2, [V2_PIV2_002],
        "after the PRECOPY_INFOv2 opt-in PRECOPY_INFO still echoes the caller's flags (flags not zeroed on entry)"),
    ReinitWithoutOptIn => ("reinit_without_opt_in", V2, [V2_PIV2_004],
        "reports VFIO_PRECOPY_INFO_REINIT after a reconfiguration although the caller never opted in"),
    ReinitKeepsDirtyBytes => ("reinit_keeps_dirty_bytes", V2, [V2_PIV2_003],
        "an answer with REINIT still reports 4 KiB of dirty bytes instead of resetting dirty_bytes to 0"),
    ReinitZeroInitialBytes => ("reinit_zero_initial_bytes", V2, [V2_PIV2_007],
        "reports REINIT but counts the new initial data as dirty bytes: initial_bytes 0 in the REINIT answer"),
    ReinitInitialBytesGrows => ("reinit_initial_bytes_grows", V2, [V2_PIV2_009],
        "after a REINIT initial_bytes grows by 4 KiB with every query instead of progressing towards 0"),
    // ---- v2: debugfs ----
    DebugfsStateStale => ("debugfs_state_stale", V2, [V2_DEBUGFS_001],
        "debugfs migration/state shows the state before the last SET (a cached copy, not migration_get_state)"),
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
    V1Accepts101 => ("v1_accepts_101", V1, [V1_STATE_010, V1_STRICT_007],
        "accepts the invalid device_state 101b"),
    V1PendingNeverZero => ("v1_pending_never_zero", V1, [V1_SAVE_008],
        "pending_bytes never reaches 0 in stop-and-copy"),
    V1PendingMax => ("v1_pending_bytes_max", V1, [V1_SAVE_008],
        "pending_bytes reads u64::MAX (hostile) and never falls"),
    V1ChunkBeyondRegion => ("v1_chunk_beyond_region", V1, [V1_SAVE_005],
        "data_offset + data_size runs past the end of the region"),
    V1DataOffsetInHeader => ("v1_data_offset_in_header", V1, [V1_FIELD_005],
        "data_offset points into the 32-byte header (hostile)"),
    V1StateNotRestored => ("v1_state_not_restored_after_failed_write", V1, [V1_STATE_003, V1_STRICT_003],
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
    V1StateReadsStale => ("v1_state_reads_previous_after_write", V1, [V1_STATE_002, V1_STRICT_001],
        "the first device_state read after a successful write still returns the previous state (the transition completes after write() returned)"),
    V1ReservedStateBits => ("v1_reserved_state_bits_set", V1, [V1_STATE_009],
        "device_state reads with reserved bit 3 set"),
    V1RegionNotWritable => ("v1_region_not_writable", V1, [V1_REG_001],
        "the migration region's REGION_INFO lacks VFIO_REGION_INFO_FLAG_WRITE (writes still work)"),
    V1SavingGathersNothing => ("v1_saving_gathers_nothing", V1, [V1_STATE_007],
        "_SAVING gathers no device state: pending_bytes reads 0 and the saved stream is empty"),
    }
    // ==== HELD OUT ====================================================================
    // Written from the uAPI text alone (include/uapi/linux/vfio.h of 6.12 for v2, of
    // 5.8-5.17 for v1) without reading the checks, fixtures, oracle or engine: detection on
    // this set is reported separately in docs/detection.md ("Held-out defects"). Do not add
    // checks aimed at these defects; write new ones into the block above instead.
    // Each entry: (name, api, [clauses], summary, the sentence of the header it breaks).
    held_out {
    // ---- v2: FSM and SET/GET ----
    GetReportsTargetAfterFailedSet => ("get_reports_target_after_failed_set", V2,
        [V2_STATE_001, V2_STATE_004],
        "after a failed SET, GET MIG_DEVICE_STATE reports the requested state while the device stays where it was",
        "If this function fails then current device_state may be the original operating state or some other state along the combination transition path."),
    SetErrorAccepted => ("set_error_accepted", V2, [V2_STATE_006],
        "SET MIG_DEVICE_STATE to ERROR succeeds and moves the device into ERROR",
        "ERROR cannot be specified as a device state, however any transition request can be failed with an errno return and may then move the device_state into ERROR."),
    SameStateSetRestartsSession => ("same_state_set_restarts_session", V2, [V2_STATE_005, V2_SAVE_001],
        "a SET to the saving state the device is already in opens a new session and returns a new data fd, ending the old one",
        "Moving between these states alters what is streamed in session, but does not terminate or otherwise affect the associated fd."),
    StopCompletesLate => ("stop_completes_late", V2, [V2_STATE_002, V2_ARC_STOP_001],
        "RUNNING(_P2P) -> STOP returns before the device has stopped: it keeps running (counter, interrupts, DMA) for 3 more ticks",
        "The kernel migration driver must fully transition the device to the new state value before the operation returns to the user."),
    // ---- v2: P2P ----
    P2pBlocksMmio => ("p2p_blocks_mmio", V2, [V2_P2P_003],
        "BAR0 writes fail with EBUSY in RUNNING_P2P and PRE_COPY_P2P (the driver treats P2P quiescence as 'no access')",
        "RUNNING_P2P - RUNNING, except the device cannot do peer to peer DMA"),
    StopToRunningP2pStaysStopped => ("stop_to_running_p2p_stays_stopped", V2, [V2_ARC_P2P_001],
        "after STOP -> RUNNING_P2P the device stays stopped until it reaches RUNNING (the restart is wired to the RUNNING arc only)",
        "While in RUNNING_P2P the device is partially running in the P2P quiescent state defined below."),
    PreCopyP2pExitStaysQuiesced => ("pre_copy_p2p_exit_stays_quiesced", V2, [V2_SAVE_005],
        "after PRE_COPY_P2P -> PRE_COPY the device does not run again (its state stops advancing) until it leaves the saving group",
        "This arc allows returning the device to a full RUNNING behavior while continuing all the behaviors of PRE_COPY."),
    // ---- v2: sessions and streams ----
    NoFdOnPreCopyP2p => ("no_fd_on_pre_copy_p2p", V2, [V2_SAVE_002, V2_STATE_005],
        "RUNNING_P2P -> PRE_COPY_P2P succeeds and opens a session but returns data_fd -1",
        "These arcs begin the process of saving the device state and will return a new data_fd."),
    // Closest clauses: no clause names the primitive arc PRE_COPY_P2P -> STOP_COPY itself.
    PreCopyP2pToStopCopyRefused => ("pre_copy_p2p_to_stop_copy_refused", V2, [V2_MIG_003, V2_SAVE_006],
        "PRE_COPY_P2P -> STOP_COPY fails with EINVAL (only PRE_COPY -> STOP_COPY was implemented)",
        "While in the STOP_COPY state the device has the same behavior as STOP with the addition that the data transfers session continues to stream the migration state."),
    StopCopyRestartsStream => ("stop_copy_restarts_stream", V2, [V2_SAVE_001, V2_SAVE_006],
        "PRE_COPY -> STOP_COPY restarts the stream from its beginning on the same fd, so pre-copy data already read plus the rest is not one valid stream",
        "The data stream fed into the data_fd should be taken from the data transfer output of a single FD during saving from a compatible device."),
    StopCopyDropsLastByte => ("stop_copy_drops_last_byte", V2, [V2_SAVE_006],
        "the STOP_COPY stream ends one byte early (off-by-one in the length of the last chunk)",
        "End of stream on the FD indicates the entire device state has been transferred."),
    PrematureEofInStopCopy => ("premature_eof_in_stop_copy", V2, [V2_SAVE_006, V2_PRECOPY_008],
        "the second read() in STOP_COPY returns 0 (end of stream) although data remains, and later reads return the rest",
        "Once in STOP_COPY the migration data FD has a permanent end of stream signaled in the usual way by read() always returning 0 and poll always returning readable."),
    ResumeWriteTruncatesLarge => ("resume_write_truncates_large", V2, [V2_FD_001, V2_ARC_RES_001],
        "write() on the resume fd consumes at most 4096 bytes but returns the full length (the rest is dropped)",
        "The user is not required to preserve buffer segmentation when writing the data stream during the RESUMING operation."),
    ResumeSessionSurvivesStop => ("resume_session_survives_stop", V2, [V2_ARC_RES_001, V2_FD_002],
        "RESUMING -> STOP succeeds but leaves the resume fd accepting writes until the device leaves STOP",
        "Leaving RESUMING terminates a data transfer session and indicates the device should complete processing of the data delivered by write()."),
    EmptyResumeAccepted => ("empty_resume_accepted", V2, [V2_ARC_RES_001],
        "RESUMING -> STOP succeeds when nothing was written ('no data, nothing to load') and keeps the old device state",
        "If the user provided data is found to be incomplete, inconsistent, or otherwise invalid, the migration driver must fail the SET_STATE ioctl and optionally go to the ERROR state as described below."),
    ResumingToRunningSkipsValidation => ("resuming_to_running_skips_validation", V2,
        [DEBATE_POSTCOPY_001, V2_ARC_RES_001],
        "a direct SET RESUMING -> RUNNING takes a shortcut that loads what it can and succeeds even for an incomplete or invalid stream",
        "If the user provided data is found to be incomplete, inconsistent, or otherwise invalid, the migration driver must fail the SET_STATE ioctl and optionally go to the ERROR state as described below."),
    ResumeDropsRegisters => ("resume_drops_registers", V2, [V2_ARC_RES_001, DEBATE_RESET_001],
        "RESUMING -> STOP validates the stream but does not load the device registers from it",
        "The kernel migration driver should complete the incorporation of data written to the data transfer FD into the device internal state and perform final validity and consistency checking of the new device state."),
    // ---- v2: pre-copy ----
    InitialBytesCountsUp => ("initial_bytes_counts_up", V2, [V2_PRECOPY_003],
        "PRECOPY_INFO initial_bytes reports the initial bytes already read (starts at 0 and grows) instead of those remaining",
        "This field should have a non-zero initial value and decrease as migration data is read from the device."),
    InitialBytesNeverZero => ("initial_bytes_never_zero", V2, [V2_PRECOPY_003, V2_PRECOPY_007],
        "initial_bytes never counts the 40-byte stream header as read, so it stays at 40 after all initial data was read",
        "During pre-copy the migration data FD has a temporary \"end of stream\" that is reached when both initial_bytes and dirty_byte are zero."),
    DirtyBytesNeverReported => ("dirty_bytes_never_reported", V2, [V2_PRECOPY_005, V2_PRECOPY_007],
        "PRECOPY_INFO dirty_bytes is always 0 although the device dirties its state and read() returns the re-sent data",
        "The dirty_bytes field tracks device state changes relative to data previously retrieved."),
    PrecopyInfoFieldsSwapped => ("precopy_info_fields_swapped", V2, [V2_PRECOPY_003, V2_PRECOPY_005],
        "PRECOPY_INFO writes initial_bytes into dirty_bytes and dirty_bytes into initial_bytes (struct layout mix-up)",
        "This field starts at zero and may increase as the internal device state is modified or decrease as that modified state is read from the device."),
    EnomsgBeforeFirstChunk => ("enomsg_before_first_chunk", V2, [V2_PRECOPY_007],
        "the first read() of a PRE_COPY session fails with ENOMSG (buffer not prepared yet) while initial_bytes is non-zero",
        "During pre-copy the migration data FD has a temporary \"end of stream\" that is reached when both initial_bytes and dirty_byte are zero."),
    PrecopyInfoEnottyOutsidePreCopy => ("precopy_info_enotty_outside_pre_copy", V2, [V2_PRECOPY_002],
        "VFIO_MIG_GET_PRECOPY_INFO fails with ENOTTY instead of EINVAL once the saving fd is in STOP_COPY",
        "This ioctl is valid only in PRE_COPY states and kernel driver should return -EINVAL from any other migration state."),
    PrecopyInfoOnResumeFd => ("precopy_info_on_resume_fd", V2, [V2_PRECOPY_002],
        "VFIO_MIG_GET_PRECOPY_INFO on the resume fd succeeds with zero sizes (the fds share one ioctl handler)",
        "This ioctl is valid only in PRE_COPY states and kernel driver should return -EINVAL from any other migration state."),
    DataSizeReportsZero => ("data_size_reports_zero", V2, [V2_DATASIZE_001],
        "MIG_DATA_SIZE returns stop_copy_length 0 (the estimate is never filled in)",
        "Upon VFIO_DEVICE_FEATURE_GET read back the estimated data length that will be required to complete stop copy."),
    // ---- v2: DMA logging ----
    DmaStopLeavesLogging => ("dma_stop_leaves_logging", V2, [V2_LOG_006],
        "DMA_LOGGING_STOP returns 0 but logging stays on: REPORT keeps succeeding and a new START fails",
        "If DMA logging is not enabled, an error will be returned."),
    DmaRangesLimit16 => ("dma_log_ranges_limit_16", V2, [V2_LOG_003],
        "DMA_LOGGING_START fails with E2BIG for more than 16 ranges (the hardware tracker's limit, not merged)",
        "The core kernel code guarantees to support by minimum num_ranges that fit into a single kernel page."),
    ReportPageSizeMustMatch => ("report_page_size_must_match_start", V2, [V2_LOG_007],
        "DMA_LOGGING_REPORT fails with EINVAL unless its page_size equals the one START selected",
        "The input page_size can be any power of two value and does not have to match the value given to VFIO_DEVICE_FEATURE_DMA_LOGGING_START."),
    ReportBitOffByOne => ("report_bit_off_by_one", V2, [V2_LOG_009, V2_LOG_010],
        "DMA_LOGGING_REPORT sets the bit of the page after each dirty page (bit index off by one)",
        "bitmap is a pointer to an array of u64s that will hold the output bitmap with 1 bit reporting a page_size unit of IOVA."),
    ReportClearsWholeLog => ("report_clears_whole_log", V2, [V2_LOG_009],
        "DMA_LOGGING_REPORT of one IOVA range clears the dirty log of every range",
        "During querying the log is cleared for the IOVA range."),
    // ---- v1 ----
    V1PendingMissesFinalSection => ("v1_pending_misses_final_section", V1, [V1_FIELD_002, V1_SAVE_008],
        "in stop-and-copy pending_bytes (and the chunks sized by it) leave out the final 64-byte device-state section: pending_bytes reaches 0 and the section is never saved",
        "The number of pending bytes still to be migrated from the vendor driver."),
    V1PendingReadStagesData => ("v1_pending_read_stages_data", V1, [V1_SAVE_001],
        "reading pending_bytes stages the next chunk, so a repeated read drops the staged chunk and pending_bytes falls",
        "Repeated read on pending_bytes at this stage should have no side effects."),
    V1DataSizeOffByOne => ("v1_data_size_off_by_one", V1, [V1_SAVE_003, V1_SAVE_005],
        "data_size reads one byte more than the staged chunk (the extra byte is stale window content)",
        "Read data_size, which is the amount of data in bytes available through the migration region."),
    V1ResumeConsumesOnePage => ("v1_resume_consumes_one_page", V1, [V1_RES_002, V1_RES_003],
        "a data_size write in _RESUMING consumes at most 4096 bytes of the window and drops the rest",
        "Vendor driver must return this write operations on consuming data."),
    V1DataOffsetZeroInResuming => ("v1_data_offset_zero_in_resuming", V1, [V1_FIELD_005],
        "data_offset reads 0 in _RESUMING (it is only set up for saving)",
        "The structure vfio_device_migration_info is always followed by the data section in the region, so data_offset will always be nonzero."),
    V1ReservedWriteRejected => ("v1_reserved_write_rejected", V1, [V1_FIELD_001],
        "writes to the reserved header field fail with EINVAL",
        "Reads on this field return zero and writes are ignored."),
    V1StopCompletesLate => ("v1_stop_completes_late", V1, [V1_STATE_006, DEBATE_FREEZE_003],
        "a device_state write clearing _RUNNING returns before the device stopped: it runs for 3 more accesses",
        "When the device state is changed to _STOP, driver should stop the device before write() returns."),
    V1StopCopyKeepsRunning => ("v1_stop_copy_from_pre_copy_keeps_running", V1, [V1_FLOW_004],
        "pre-copy (011b) -> stop-and-copy (010b) does not stop the device",
        "On state transition from pre-copy to stop-and-copy, the driver must stop the device, save the device state and send it to the user application through the migration region."),
    V1StopCopyRestartsStream => ("v1_stop_copy_restarts_stream", V1, [V1_FLOW_004, V1_FLOW_006],
        "pre-copy -> stop-and-copy restarts the saved stream from the beginning, so pre-copy data already read plus the rest is not one valid stream",
        "The user must not be required to consume all migration data before the device transitions to a new state, including the stop-and-copy state."),
    }
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
