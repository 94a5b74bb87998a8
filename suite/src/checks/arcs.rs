//! Generated family: every (cur, new) SET for every state a device can be in, judged by the
//! FSM oracle (success or EINVAL, data_fd or not, state after, state after failure).

use crate::check::{Check, Origin, Requires, Step};
use crate::device::MigrationApi;
use crate::op::{Op, ReadArgs, Segmentation, Source, StreamName, WriteArgs};
use crate::state::{MigFlags, MigState, StateArg};

/// Steps that bring a freshly reset device (RUNNING) to `state`. RESUMING gets a valid
/// stream of the same device so that leaving it must succeed.
pub fn reach(state: MigState) -> Vec<Step> {
    let set = |s: MigState| Step::new(Op::SetState(StateArg::Named(s))).setup();
    match state {
        MigState::Running | MigState::Error => Vec::new(),
        MigState::Resuming => vec![
            set(MigState::StopCopy),
            Step::new(Op::Read(ReadArgs { capture: Some(StreamName("arc".into())), ..ReadArgs::default() }))
                .setup(),
            set(MigState::Resuming),
            Step::new(Op::Write(WriteArgs {
                fd: crate::op::FdRef::Current,
                data: Source::Stream(StreamName("arc".into())),
                mutate: None,
                segment: Segmentation::Whole,
                offset: None,
                keep_going: false,
                from_thread: false,
            }))
            .setup(),
        ],
        s => vec![set(s)],
    }
}

fn target_ident(raw: u32) -> String {
    match MigState::from_raw(raw) {
        Some(s) => s.ident(),
        None => format!("raw_{raw}"),
    }
}

/// The arc family: all 7 reachable states x 8 state values, plus out-of-range values from
/// RUNNING. Checks whose starting state needs flags the device lacks are UNSUPPORTED.
pub fn checks() -> Vec<Check> {
    let mut out = Vec::new();
    for cur in MigState::ALL.into_iter().filter(|s| *s != MigState::Error) {
        let mut targets: Vec<u32> = (0..8).collect();
        if cur == MigState::Running {
            targets.extend([8, 255, 0xffff_ffff]);
        }
        for new in targets {
            let mut steps = reach(cur);
            let arg = MigState::from_raw(new).map_or(StateArg::Raw(new), StateArg::Named);
            steps.push(Step::new(Op::SetState(arg)).oracle());
            let title = format!("SET {} from {cur}", crate::state::state_name(new));
            let mut check = Check {
                id: format!("fsm.arc.{}.{}", cur.ident(), target_ident(new)),
                title,
                clauses: Vec::new(),
                requires: Requires {
                    api: Some(MigrationApi::V2),
                    flags: cur.required_flags().unwrap_or(MigFlags::STOP_COPY),
                    ..Default::default()
                },
                steps,
                origin: Origin::Generated("checks::arcs".to_string()),
                models: Some("the spec: vfio_mig_get_next_state() (6.12)".to_string()),
                citation: Some(
                    "include/uapi/linux/vfio.h l.1163-1209; drivers/vfio/vfio_main.c l.653-861".to_string(),
                ),
                sequence_file: None,
            };
            check.collect_clauses(&[]);
            out.push(check);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_family_has_one_check_per_pair_with_unique_names() {
        let c = checks();
        assert_eq!(c.len(), 7 * 8 + 3);
        let mut ids: Vec<&str> = c.iter().map(|c| c.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), c.len());
        assert!(ids.contains(&"fsm.arc.stop_copy.pre_copy"));
        assert!(ids.contains(&"fsm.arc.running.raw_255"));
    }
}
