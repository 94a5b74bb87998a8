//! The data fd a SET returns (drivers/vfio/vfio_main.c, `vfio_ioctl_device_feature_mig_device_state()`:
//! the core installs the driver's file with `fd_install(get_unused_fd_flags(O_CLOEXEC))`).

use crate::clauses::id::*;
use crate::device::FdFlags;
use crate::errno::Errno;
use crate::oracle::Violation;

/// Judges the fd flags read (fcntl) right after a SET returned `fd`.
pub fn judge_new_data_fd(fd: i32, flags: Result<FdFlags, Errno>) -> Vec<Violation> {
    match flags {
        Ok(f) if f.cloexec => Vec::new(),
        Ok(_) => vec![Violation::new(
            [V2_STATE_005],
            "the new data_fd has FD_CLOEXEC (the core opens it O_CLOEXEC)".to_string(),
            format!("data_fd {fd} without FD_CLOEXEC"),
        )],
        Err(e) => vec![Violation::new(
            [V2_STATE_005],
            "the returned data_fd is an open file descriptor".to_string(),
            format!("data_fd {fd}: fcntl failed with {e}"),
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_fd_without_cloexec_breaks_v2_state_005() {
        let v = judge_new_data_fd(5, Ok(FdFlags { cloexec: false, access_mode: 0 }));
        assert_eq!(v[0].clauses, vec![V2_STATE_005]);
        assert!(judge_new_data_fd(5, Ok(FdFlags { cloexec: true, access_mode: 0 })).is_empty());
        assert_eq!(judge_new_data_fd(5, Err(Errno::EBADF)).len(), 1);
    }
}
