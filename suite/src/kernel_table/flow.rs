//! The control flow of `vfio_mig_get_next_state()` after its tables, matched statement by
//! statement against the shapes the kernel has had. Statements are compared as token
//! sequences, so layout and comments do not matter; anything else is an error naming the
//! statement's line.

use super::lex::Token;
use super::parse::Located;
use super::{ErrorKind, Flow, Lines, SkipLoop};

/// `cur_fsm` out of range or needing flags the device lacks: -EINVAL with a WARN_ON.
const CUR_CHECK: &str = "if ( WARN_ON ( cur_fsm >= ARRAY_SIZE ( vfio_from_fsm_table ) || \
    ( state_flags_table [ cur_fsm ] & device -> migration_flags ) != state_flags_table [ cur_fsm ] ) ) \
    return - EINVAL ;";
/// `new_fsm` likewise, without the WARN.
const NEW_CHECK: &str = "if ( new_fsm >= ARRAY_SIZE ( vfio_from_fsm_table ) || \
    ( state_flags_table [ new_fsm ] & device -> migration_flags ) != state_flags_table [ new_fsm ] ) \
    return - EINVAL ;";
const FIRST_STEP: &str = "* next_fsm = vfio_from_fsm_table [ cur_fsm ] [ new_fsm ] ;";
/// The skip loop since a26b499b757c.
const LOOP_STOPS_AT_ERROR: &str = "while ( * next_fsm != VFIO_DEVICE_STATE_ERROR && \
    ( state_flags_table [ * next_fsm ] & device -> migration_flags ) != state_flags_table [ * next_fsm ] ) \
    * next_fsm = vfio_from_fsm_table [ * next_fsm ] [ new_fsm ] ;";
/// The skip loop before it.
const LOOP_UNGUARDED: &str = "while ( ( state_flags_table [ * next_fsm ] & device -> migration_flags ) != \
    state_flags_table [ * next_fsm ] ) * next_fsm = vfio_from_fsm_table [ * next_fsm ] [ new_fsm ] ;";
const RETURN: &str = "return ( * next_fsm != VFIO_DEVICE_STATE_ERROR ) ? 0 : - EINVAL ;";

/// The statement as single-spaced tokens.
fn text(stmt: &[Token<'_>]) -> String {
    stmt.iter().map(|t| t.text).collect::<Vec<_>>().join(" ")
}

/// Whitespace-normalised form of a pattern constant (line continuations add runs of spaces).
fn norm(pattern: &str) -> String {
    pattern.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Matches the statements after the tables, in order, and records their lines.
pub(super) fn recognise<'t, 'a: 't>(
    next: &mut dyn FnMut() -> Option<&'t [Token<'a>]>,
    end: (u32, u32),
    lines: &mut Lines,
) -> Result<Flow, Located> {
    type Shape = (&'static str, &'static str);
    let mut expect =
        |what: &'static str, shapes: &[Shape], known: &'static str| -> Result<(u32, &'static str), Located> {
            let Some(stmt) = next() else {
                return Err((end.0, end.1, ErrorKind::Missing(what)));
            };
            let found = text(stmt);
            for (name, pattern) in shapes {
                if found == norm(pattern) {
                    return Ok((stmt[0].line, *name));
                }
            }
            Err((stmt[0].line, stmt[0].col, ErrorKind::UnknownShape { what, found, known }))
        };
    (lines.cur_check, _) = expect(
        "check of cur_fsm",
        &[("warn", CUR_CHECK)],
        "`if (WARN_ON(cur_fsm >= ARRAY_SIZE(..) || (state_flags_table[cur_fsm] & flags) != ..)) return -EINVAL;`",
    )?;
    (lines.new_check, _) = expect(
        "check of new_fsm",
        &[("plain", NEW_CHECK)],
        "`if (new_fsm >= ARRAY_SIZE(..) || (state_flags_table[new_fsm] & flags) != ..) return -EINVAL;`",
    )?;
    (lines.first_step, _) = expect(
        "first table step",
        &[("plain", FIRST_STEP)],
        "`*next_fsm = vfio_from_fsm_table[cur_fsm][new_fsm];`",
    )?;
    let (line, name) = expect(
        "skip loop",
        &[("stops_at_error", LOOP_STOPS_AT_ERROR), ("unguarded", LOOP_UNGUARDED)],
        "the loop of 6.2 (`while ((state_flags_table[*next_fsm] & flags) != ..) *next_fsm = ..;`) and the \
         one of a26b499b757c (the same with `*next_fsm != VFIO_DEVICE_STATE_ERROR &&` first)",
    )?;
    lines.skip_loop = line;
    let skip_loop = if name == "stops_at_error" { SkipLoop::StopsAtError } else { SkipLoop::Unguarded };
    (lines.ret, _) = expect(
        "return",
        &[("plain", RETURN)],
        "`return (*next_fsm != VFIO_DEVICE_STATE_ERROR) ? 0 : -EINVAL;`",
    )?;
    if let Some(extra) = next() {
        return Err((
            extra[0].line,
            extra[0].col,
            ErrorKind::UnknownShape {
                what: "statement after the return",
                found: text(extra),
                known: "nothing after the final return",
            },
        ));
    }
    Ok(Flow { skip_loop })
}
