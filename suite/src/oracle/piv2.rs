//! The 7.1+ PRECOPY_INFO rules (VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2 and
//! VFIO_PRECOPY_INFO_REINIT, include/uapi/linux/vfio.h of 7.2 l.1269-1280 and l.1527-1535):
//! what one successful PRECOPY_INFO answer may carry, given whether the caller opted in.
//! The progression of initial_bytes after a REINIT (V2-PIV2-009) needs the answers before it
//! and is judged by [`super::model::Model::judge_precopy`].

use super::Violation;
use crate::clauses::id::*;
use crate::uapi::PRECOPY_INFO_REINIT;

/// Judges one successful answer: `opted_in` (a SET of feature 12 went through since the device
/// was opened), the flags the caller passed in and the answer's flags, initial_bytes and
/// dirty_bytes.
pub fn judge_answer(
    opted_in: bool,
    in_flags: u32,
    out_flags: u32,
    initial: u64,
    dirty: u64,
) -> Vec<Violation> {
    let mut v = Vec::new();
    if !opted_in {
        // The flags are reserved (echoed, V2-PIV2-006); only a REINIT the caller did not pass in
        // is the driver's own report.
        if out_flags & PRECOPY_INFO_REINIT != 0 && in_flags & PRECOPY_INFO_REINIT == 0 {
            v.push(Violation::new(
                [V2_PIV2_004],
                "no VFIO_PRECOPY_INFO_REINIT without the PRECOPY_INFOv2 opt-in (flags 0 in, bit 0 clear out)"
                    .to_string(),
                format!("flags {out_flags:#x} (passed in {in_flags:#x})"),
            ));
        }
        return v;
    }
    if out_flags & !PRECOPY_INFO_REINIT != 0 {
        v.push(Violation::new(
            [V2_PIV2_002],
            "after the opt-in, flags is an output: only VFIO_PRECOPY_INFO_REINIT (0x1) may be set"
                .to_string(),
            format!("flags {out_flags:#x} (passed in {in_flags:#x})"),
        ));
    }
    if out_flags & PRECOPY_INFO_REINIT != 0 {
        if initial == 0 {
            v.push(Violation::new(
                [V2_PIV2_007],
                "an answer with VFIO_PRECOPY_INFO_REINIT reports the new initial data (initial_bytes > 0)"
                    .to_string(),
                "REINIT with initial_bytes 0".to_string(),
            ));
        }
        if dirty != 0 {
            v.push(Violation::new(
                [V2_PIV2_003],
                "an answer with VFIO_PRECOPY_INFO_REINIT reports dirty_bytes reset to 0".to_string(),
                format!("REINIT with dirty_bytes {dirty}"),
            ));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clauses(v: &[Violation]) -> Vec<&str> {
        v.iter().flat_map(|x| x.clauses.iter().map(|c| c.as_str())).collect()
    }

    #[test]
    fn without_the_opt_in_only_a_reinit_the_caller_did_not_pass_breaks_a_rule() {
        assert!(judge_answer(false, 0xffff_ffff, 0xffff_ffff, 10, 0).is_empty(), "an echo is allowed");
        assert!(judge_answer(false, 0, 0, 10, 0).is_empty());
        assert_eq!(clauses(&judge_answer(false, 0, 1, 10, 0)), ["V2-PIV2-004"]);
    }

    #[test]
    fn after_the_opt_in_flags_are_output_and_reinit_has_its_meaning() {
        assert!(judge_answer(true, 0xffff_ffff, 0, 10, 3).is_empty());
        assert!(judge_answer(true, 0, 1, 10, 0).is_empty());
        assert_eq!(clauses(&judge_answer(true, 0xffff_fffe, 0xffff_fffe, 10, 0)), ["V2-PIV2-002"]);
        assert_eq!(clauses(&judge_answer(true, 0, 1, 0, 0)), ["V2-PIV2-007"]);
        assert_eq!(clauses(&judge_answer(true, 0, 1, 5, 7)), ["V2-PIV2-003"]);
    }
}
