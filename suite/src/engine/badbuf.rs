//! `bad_buffer`: a data-fd call with a user buffer the kernel cannot use entirely. The engine
//! observes what came back and lets the model follow it: bytes a read returned count as read
//! (their content unknown), bytes a write got accepted are a piece that cannot be a valid
//! stream, a refused write marks the resume session as having had a failed write. The
//! failure itself (EFAULT) is the caller's error and is not judged.

use super::Engine;
use crate::op::{BadBufferArgs, BadCall};
use crate::oracle::Violation;
use crate::oracle::model::{Observation, Piece, StreamEnd};

impl Engine {
    pub(super) fn bad_buffer(
        &mut self,
        si: usize,
        a: &BadBufferArgs,
    ) -> Result<(Observation, Vec<Violation>), String> {
        let fd = self.fd(si, &a.fd)?;
        let (len, valid) = (a.len as usize, (a.valid as usize).min(a.len as usize));
        let slot = &mut self.slots[si];
        let r = slot.dev.data_bad_buffer(fd, a.call, len, valid);
        let mut obs = match r {
            Ok(n) => Observation { bytes: Some(n as u64), ..Observation::ok() },
            Err(e) => Observation::err(e),
        };
        obs.notes.push(format!("{len}-byte buffer, {valid} bytes of it mapped"));
        let n = obs.bytes.unwrap_or(0);
        let v = match a.call {
            BadCall::Read if n > 0 => {
                *slot.fds.pos.entry(fd).or_default() += n;
                let seen = Observation { bytes: Some(n), end: Some(StreamEnd::Once), ..Observation::ok() };
                slot.model.judge_read(fd, &seen)
            }
            BadCall::Write => {
                if n > 0 {
                    *slot.fds.pos.entry(fd).or_default() += n;
                }
                let piece = Piece::Invalid(
                    "bytes written from a buffer the kernel could not read entirely".to_string(),
                );
                slot.model.judge_write(fd, Some(piece), &obs)
            }
            _ => Vec::new(),
        };
        Ok((obs, v))
    }
}
