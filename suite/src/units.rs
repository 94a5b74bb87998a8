//! Units as users write and read them: sizes (`4096`, `0x1000`, `64k`, `16m`, `4g`, binary
//! multiples), kernel releases, and dates in UTC.

/// Parses a size: a number (decimal or 0x hex) with an optional `k`, `m` or `g` suffix
/// (KiB, MiB, GiB). None when it is not one or overflows.
pub fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim().to_ascii_lowercase();
    let (num, mult) = match v.chars().last()? {
        'k' => (&v[..v.len() - 1], 1u64 << 10),
        'm' => (&v[..v.len() - 1], 1 << 20),
        'g' => (&v[..v.len() - 1], 1 << 30),
        _ => (v.as_str(), 1),
    };
    crate::state::parse_u64(num)?.checked_mul(mult)
}

/// The `major.minor` of a kernel release string: `6.12.117+deb12-amd64` -> (6, 12),
/// `7.2.13` -> (7, 2), `6.12 (simulated)` -> (6, 12). None for anything that does not start
/// with `N.N` (the suite's own version on a simulated device without `kernel=`).
pub fn release_of(text: &str) -> Option<(u32, u32)> {
    let digits = |s: &str| -> Option<(u32, usize)> {
        let n = s.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 6 {
            return None;
        }
        Some((s[..n].parse().ok()?, n))
    };
    let text = text.trim();
    let (major, n) = digits(text)?;
    let rest = text[n..].strip_prefix('.')?;
    let (minor, _) = digits(rest)?;
    Some((major, minor))
}

/// A time in seconds since the epoch as (year, month, day, hour, minute, second) in UTC,
/// proleptic Gregorian (Howard Hinnant's `civil_from_days`).
pub fn utc_civil(secs: u64) -> (i64, i64, i64, u64, u64, u64) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem / 3600, rem / 60 % 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_utc_count_leap_days_and_centuries() {
        assert_eq!(utc_civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(utc_civil(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(utc_civil(4_107_542_399), (2100, 2, 28, 23, 59, 59));
        assert_eq!(utc_civil(1_795_228_329), (2026, 11, 21, 2, 32, 9));
    }

    #[test]
    fn sizes_take_binary_suffixes_and_refuse_overflow() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("64k"), Some(64 << 10));
        assert_eq!(parse_size("16M"), Some(16 << 20));
        assert_eq!(parse_size("4g"), Some(4 << 30));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("99999999999999g"), None);
    }
}
