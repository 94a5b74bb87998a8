//! Which clauses exist on a kernel: the catalog's `kernels` ranges against the release a device
//! runs on (`uname -r` for kernel devices, `kernel=` for simulated ones).

use crate::clauses::{ClauseId, parse_release};

pub use crate::units::release_of;

/// Whether the clause holds on `release` (a clause without a range holds everywhere).
pub fn holds_on(clause: ClauseId, release: (u32, u32)) -> bool {
    let Some(k) = &clause.clause().kernels else { return true };
    let since = parse_release(&k.since).unwrap_or((0, 0));
    let until = k.until.as_deref().and_then(parse_release).unwrap_or((u32::MAX, u32::MAX));
    since <= release && release <= until
}

/// Why a check observing `clauses` cannot run on a device whose kernel is `kernel`: every one of
/// its clauses lies outside `kernel`'s release. None when one of them holds there, when the check
/// names no clause, or when the kernel string is not a release (nothing is known).
pub fn absent_on(clauses: &[ClauseId], kernel: &str) -> Option<String> {
    let release = release_of(kernel)?;
    if clauses.is_empty() || clauses.iter().any(|&c| holds_on(c, release)) {
        return None;
    }
    let ranges: Vec<String> = clauses
        .iter()
        .map(|c| match &c.clause().kernels {
            Some(k) => format!("{c} ({k})"),
            None => c.to_string(),
        })
        .collect();
    Some(format!(
        "not in this kernel's uAPI: {} {} not exist on kernel {kernel}",
        ranges.join(", "),
        if clauses.len() == 1 { "does" } else { "do" }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clauses::id::*;

    #[test]
    fn releases_are_read_from_uname_strings_and_sim_kernels() {
        assert_eq!(release_of("6.12.117+deb12-amd64"), Some((6, 12)));
        assert_eq!(release_of("7.2.13"), Some((7, 2)));
        assert_eq!(release_of("6.12 (simulated)"), Some((6, 12)));
        assert_eq!(release_of("5.18"), Some((5, 18)));
        assert_eq!(release_of("vfio-mig-conform 0.1.0"), None);
        assert_eq!(release_of("7"), None);
        assert_eq!(release_of(""), None);
    }

    #[test]
    fn a_7_1_clause_is_absent_on_6_12_and_present_on_7_2() {
        let why = absent_on(&[V2_PIV2_002], "6.12.117+deb12-amd64").expect("absent on 6.12");
        assert!(why.contains("V2-PIV2-002 (7.1+)") && why.contains("6.12.117+deb12-amd64"), "{why}");
        assert_eq!(absent_on(&[V2_PIV2_002], "7.2.13"), None);
        assert_eq!(absent_on(&[V2_PIV2_002], "vfio-mig-conform 0.1.0"), None);
    }

    #[test]
    fn a_check_runs_when_any_of_its_clauses_holds() {
        assert_eq!(absent_on(&[V2_PIV2_004, V2_PRECOPY_010], "6.12.1"), None);
        assert!(absent_on(&[V2_PIV2_004, V2_PIV2_002], "6.12.1").is_some_and(|w| w.contains(" do not ")));
        assert_eq!(absent_on(&[], "6.12.1"), None);
    }

    #[test]
    fn until_bounds_a_range() {
        let v1 = crate::clauses::catalog()
            .all()
            .iter()
            .find(|c| c.kernels.as_ref().is_some_and(|k| k.until.is_some()))
            .and_then(|c| ClauseId::parse(&c.id))
            .expect("a clause with an until (the v1 region)");
        assert!(holds_on(v1, (5, 10)));
        assert!(!holds_on(v1, (6, 12)));
    }
}
