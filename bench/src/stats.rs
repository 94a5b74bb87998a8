//! Medians, spreads and the formatting of durations, rates and sizes.

/// Order statistics of a sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub q1: f64,
    pub q3: f64,
    pub min: f64,
    pub max: f64,
}

/// The `p`-quantile (0..=1) of sorted values, linearly interpolated.
fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = p * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

impl Summary {
    pub fn of(xs: &[f64]) -> Summary {
        let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        Summary {
            n: v.len(),
            median: quantile(&v, 0.5),
            q1: quantile(&v, 0.25),
            q3: quantile(&v, 0.75),
            min: v.first().copied().unwrap_or(f64::NAN),
            max: v.last().copied().unwrap_or(f64::NAN),
        }
    }

    /// Relative interquartile range (IQR / median), as a percentage.
    pub fn iqr_pct(&self) -> f64 {
        100.0 * (self.q3 - self.q1) / self.median
    }
}

/// Median of a sample.
pub fn median(xs: &[f64]) -> f64 {
    Summary::of(xs).median
}

/// Seconds as `812 ns`, `3.41 µs`, `12.0 ms`, `1.93 s`.
pub fn dur(secs: f64) -> String {
    let (v, unit) = if secs < 1e-6 {
        (secs * 1e9, "ns")
    } else if secs < 1e-3 {
        (secs * 1e6, "µs")
    } else if secs < 1.0 {
        (secs * 1e3, "ms")
    } else {
        (secs, "s")
    };
    if v >= 100.0 {
        format!("{v:.0} {unit}")
    } else if v >= 10.0 {
        format!("{v:.1} {unit}")
    } else {
        format!("{v:.2} {unit}")
    }
}

/// Bytes as `16 MiB`, `1 GiB`, `20.1 KiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if v.fract() == 0.0 { format!("{v:.0} {}", UNITS[u]) } else { format!("{v:.1} {}", UNITS[u]) }
}

/// A throughput in MiB/s.
pub fn rate(bytes: u64, secs: f64) -> String {
    format!("{:.0} MiB/s", bytes as f64 / (1 << 20) as f64 / secs)
}

/// `median (IQR q1–q3)` for durations.
pub fn dur_spread(s: &Summary) -> String {
    format!("{} (IQR {}–{})", dur(s.median), dur(s.q1), dur(s.q3))
}

/// Prints rows as a Markdown table (first row is the header).
pub fn table(rows: &[Vec<String>]) {
    let Some(head) = rows.first() else { return };
    let cols = head.len();
    let width: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r.get(c).map_or(0, |s| s.chars().count())).max().unwrap_or(0))
        .collect();
    let line = |r: &Vec<String>| {
        let cells: Vec<String> = (0..cols)
            .map(|c| {
                let s = r.get(c).map_or("", String::as_str);
                format!("{s}{}", " ".repeat(width[c] - s.chars().count()))
            })
            .collect();
        println!("| {} |", cells.join(" | "));
    };
    line(head);
    println!("|{}|", width.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("|"));
    for r in &rows[1..] {
        line(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quartiles_interpolate() {
        let s = Summary::of(&[4.0, 1.0, 3.0, 2.0, 5.0]);
        assert_eq!((s.n, s.median, s.q1, s.q3, s.min, s.max), (5, 3.0, 2.0, 4.0, 1.0, 5.0));
        assert_eq!(median(&[1.0, 2.0]), 1.5);
        assert!(Summary::of(&[]).median.is_nan());
    }

    #[test]
    fn units_read_naturally() {
        assert_eq!(dur(3.4e-6), "3.40 µs");
        assert_eq!(dur(0.012), "12.0 ms");
        assert_eq!(size(16 << 20), "16 MiB");
        assert_eq!(size(20 * 1024 + 123), "20.1 KiB");
    }
}
