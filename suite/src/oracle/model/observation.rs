//! What an operation returned, as the model and `expect:` see it.

use serde::{Deserialize, Serialize};

use crate::errno::Errno;
use crate::state::state_name;

/// How a read loop on a data fd ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamEnd {
    /// read() returned 0.
    Eof,
    /// read() failed.
    Errno(Errno),
    /// The requested byte count was reached.
    Limit,
    /// One read() was asked for and returned data.
    Once,
    /// The `--max-stream` bound was hit without end of stream.
    Overflow,
}

/// Everything an operation returned that expectations and the oracle may look at.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// None: the call succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno: Option<Errno>,
    /// SET: the data_fd returned (-1 when none); GET: the data_fd field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_fd: Option<i32>,
    /// GET MIG_DEVICE_STATE result; for SET, the GET the engine issues right after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<u32>,
    /// Scalar results: flags, MIG_DATA_SIZE, register and header values, poll revents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<u64>,
    /// Bytes moved by a read or write loop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<StreamEnd>,
    /// Hash of the bytes read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<u64>,
    /// PRECOPY_INFO (initial_bytes, dirty_bytes, flags).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub precopy: Option<(u64, u64, u32)>,
    /// DMA report: (bits set, preset bits lost).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bitmap: Option<(u64, u64)>,
    /// fcntl: (close-on-exec, access mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fd_flags: Option<(bool, u32)>,
    /// Offset into a write where the first error happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_at: Option<u64>,
    /// A `fail_nth:` step: whether the armed fault was injected (None: not armed, or not
    /// known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<bool>,
    /// Human-readable detail for reports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Observation {
    pub fn ok() -> Observation {
        Observation::default()
    }

    pub fn err(e: Errno) -> Observation {
        Observation { errno: Some(e), ..Default::default() }
    }

    /// `ok`, `EINVAL`, `ok, 96 bytes, EOF` for Expected/Actual lines.
    pub fn summary(&self) -> String {
        let mut parts = vec![match self.errno {
            None => "ok".to_string(),
            Some(e) => format!("failed with {e}"),
        }];
        if let Some(fd) = self.data_fd {
            parts.push(if fd >= 0 { format!("data_fd {fd}") } else { "data_fd -1".to_string() });
        }
        if let Some(s) = self.state {
            parts.push(format!("state {}", state_name(s)));
        }
        if let Some(v) = self.value {
            parts.push(format!("value {v:#x}"));
        }
        if let Some(b) = self.bytes {
            parts.push(format!("{b} bytes"));
        }
        if let Some(e) = self.end {
            parts.push(match e {
                StreamEnd::Eof => "then end of stream (read returned 0)".to_string(),
                StreamEnd::Errno(e) => format!("then read failed with {e}"),
                StreamEnd::Limit => "limit reached".to_string(),
                StreamEnd::Once => "one read".to_string(),
                StreamEnd::Overflow => "no end of stream within --max-stream".to_string(),
            });
        }
        if let Some((i, d, f)) = self.precopy {
            parts.push(format!("initial_bytes {i}, dirty_bytes {d}, flags {f:#x}"));
        }
        if let Some((set, lost)) = self.bitmap {
            parts.push(format!("{set} bits set, {lost} preset bits cleared"));
        }
        parts.join(", ")
    }
}
