//! The machine a benchmark runs on, and this process's memory.

use std::time::Instant;

fn first_line_with(path: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find(|l| l.starts_with(key))
        .map(|l| l.split_once(':').map_or(l, |(_, v)| v).trim().to_string())
}

/// One line describing the machine: cores, CPU model, memory, kernel, load.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get);
    let cpu = first_line_with("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown CPU".to_string());
    let mem = first_line_with("/proc/meminfo", "MemTotal")
        .and_then(|m| m.split_whitespace().next().and_then(|k| k.parse::<u64>().ok()))
        .map_or_else(|| "? GiB".to_string(), |kib| format!("{:.1} GiB", kib as f64 / (1 << 20) as f64));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let hv = if std::path::Path::new("/sys/hypervisor").exists()
        || first_line_with("/proc/cpuinfo", "flags").is_some_and(|f| f.split(' ').any(|x| x == "hypervisor"))
    {
        ", virtualised"
    } else {
        ""
    };
    format!("{cores} cores ({cpu}{hv}), {mem} RAM, Linux {}, load {}", kernel.trim(), loadavg())
}

/// The 1-minute load average (how busy the machine was: others build on it).
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".to_string())
}

/// `VmHWM` (peak resident set) and `VmRSS` of this process, in KiB.
pub fn rss_kib() -> (u64, u64) {
    let get = |key: &str| {
        first_line_with("/proc/self/status", key)
            .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
            .unwrap_or(0)
    };
    (get("VmHWM"), get("VmRSS"))
}

/// Seconds since `t`.
pub fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// Prints the standard header of a benchmark.
pub fn header(title: &str) {
    println!("# {title}");
    println!();
    println!("machine: {}", machine());
    println!(
        "note: the machine is shared (others compile on it): every figure is a median over alternating repetitions, \
         with its spread; ratios compare samples of the same run"
    );
    println!();
}
