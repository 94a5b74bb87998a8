//! [`HarnessError`]: why the engine could not run a step or prepare a check. These are problems
//! of the sequence, the environment or the suite, never a verdict on the driver: a check that
//! meets one ends as ERROR (or, for a missing device, UNSUPPORTED). `Display` is the text users
//! see; a device call that failed keeps its errno ([`HarnessError::errno`]).

use crate::errno::Errno;

/// Why the engine could not run a step or prepare a check.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A step names a data fd that no earlier step returned.
    #[error("no data fd `{fd}` on device {device}: no earlier step returned one")]
    NoDataFd { fd: String, device: String },
    /// A v1 step on a device without the v1 migration region.
    #[error("the device has no v1 migration region")]
    NoMigrationRegion,
    /// A write or v1 resume of a stream no earlier step captured (`by`: the step that
    /// captures it, `read` or `v1_save`).
    #[error("no captured stream `{name}`: capture it with a {by} step first")]
    NoCapture { name: String, by: &'static str },
    /// A splice with a stream no earlier step captured.
    #[error("no captured stream `{0}` to splice in")]
    NoSpliceStream(String),
    /// A write without data.
    #[error("no data to write")]
    NoData,
    #[error("hex data `{0}` has an odd number of digits")]
    OddHexDigits(String),
    #[error("`{0}` is not hex")]
    NotHex(String),
    #[error("access width {0} is not 1 to 8 bytes")]
    AccessWidth(usize),
    #[error("a region write needs `value`")]
    RegionWriteNeedsValue,
    #[error("v1_write of {0} needs `value`")]
    V1WriteNeedsValue(&'static str),
    #[error("a {0} byte bitmap is larger than the suite allocates (16 MiB)")]
    BitmapTooLarge(u64),
    /// Appending to a capture (memory or its spill file) failed.
    #[error("cannot keep the captured stream: {0}")]
    KeepCapture(#[source] std::io::Error),
    /// Reading a capture back (its spill file) failed.
    #[error("cannot read the captured stream: {0}")]
    ReadCapture(#[source] std::io::Error),
    /// Building or reading the bytes of a write (literal data, a view of a capture) failed.
    #[error("{0}")]
    WriteData(#[source] std::io::Error),
    #[error("the writer thread panicked")]
    WriterPanicked,
    /// The v1 save/resume loop could not read `device_state` before changing it.
    #[error("cannot read device_state: {0}")]
    V1StateUnreadable(Errno),
    /// The device could not be restored to RUNNING before the check.
    #[error("device {device} could not be reset before the check: {errno}")]
    ResetBefore { device: String, errno: Errno },
    /// GET MIG_DEVICE_STATE failed while preparing the check.
    #[error("GET MIG_DEVICE_STATE on {device} failed with {errno}")]
    GetStateBefore { device: String, errno: Errno },
    /// The check's second device must be of another type, and none is.
    #[error("needs a second device of a type other than {model} (add one with --peer)")]
    NeedsOtherType { model: String },
    /// The check's devices must all be of the first one's type, and too few are.
    #[error("needs {count} devices of type {model} (add them with --peer)")]
    NeedsSameType { count: usize, model: String },
    /// The check needs more devices than the run has.
    #[error("needs {count} devices, {given} given (add more with --peer)")]
    NeedsDevices { count: usize, given: usize },
}

impl HarnessError {
    /// The errno of the device call that failed, if the error comes from one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            HarnessError::V1StateUnreadable(e)
            | HarnessError::ResetBefore { errno: e, .. }
            | HarnessError::GetStateBefore { errno: e, .. } => Some(*e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_error_keeps_its_errno_and_prints_the_old_text() {
        let e = HarnessError::ResetBefore { device: "A".to_string(), errno: Errno::EIO };
        assert_eq!(e.errno(), Some(Errno::EIO));
        assert_eq!(e.to_string(), format!("device A could not be reset before the check: {}", Errno::EIO));
        assert_eq!(HarnessError::NoData.errno(), None);
        assert_eq!(
            HarnessError::NoCapture { name: "s".to_string(), by: "read" }.to_string(),
            "no captured stream `s`: capture it with a read step first"
        );
    }
}
