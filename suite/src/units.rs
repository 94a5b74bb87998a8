//! Sizes as users write them: `4096`, `0x1000`, `64k`, `16m`, `4g` (binary multiples).

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

#[cfg(test)]
mod tests {
    use super::*;

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
