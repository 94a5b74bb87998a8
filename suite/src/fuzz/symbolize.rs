//! Symbolizing KCOV PCs against the kernel image (on the host that has the kernel build, after
//! the fuzzing ran, possibly in a VM): which functions a source file defines (`nm -l`), the
//! KCOV blocks of those functions (`objdump -d`: every call of `__sanitizer_cov_trace_pc`,
//! whose return address is the PC KCOV records), and the source line of each block
//! (`addr2line -i`, innermost frame in the file). Needs binutils and DWARF for the file's
//! object (the test kernel builds mtty.o and vfio_main.o with `-g`).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::process::Command;

use crate::report::coverage::{DriverCoverage, FunctionCoverage, LineCoverage};

/// mtty's migration code (samples/vfio-mdev/mtty.c): the FSM step and SET/GET, the save and
/// resume file operations, the precopy ioctl, the load/save helpers, data size and the DMA
/// logging stubs.
pub const MTTY_MIGRATION_FUNCTIONS: &[&str] = &[
    "mtty_data_size",
    "mtty_disable_file",
    "mtty_disable_files",
    "mtty_state_mutex_unlock",
    "mtty_release_migf",
    "mtty_precopy_ioctl",
    "mtty_save_read",
    "mtty_save_state",
    "mtty_load_state",
    "mtty_save_device_data",
    "mtty_resume_write",
    "mtty_resume_device_data",
    "mtty_step_state",
    "mtty_set_state",
    "mtty_get_state",
    "mtty_get_data_size",
    "mtty_log_start",
    "mtty_log_stop",
    "mtty_log_read_and_clear",
];

/// What went wrong symbolizing.
#[derive(Debug, thiserror::Error)]
pub enum SymbolizeError {
    #[error("cannot run {tool}: {source} (binutils installed?)")]
    Spawn { tool: &'static str, source: std::io::Error },
    #[error("{tool} failed: {stderr}")]
    Failed { tool: &'static str, stderr: String },
    #[error("{0}")]
    NotFound(String),
}

fn run(tool: &'static str, args: &[String]) -> Result<String, SymbolizeError> {
    let out = Command::new(tool).args(args).output().map_err(|source| SymbolizeError::Spawn { tool, source })?;
    if !out.status.success() {
        return Err(SymbolizeError::Failed {
            tool,
            stderr: String::from_utf8_lossy(&out.stderr).lines().take(3).collect::<Vec<_>>().join("; "),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A function of the image: link address, size (to the next symbol), name, source file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    pub addr: u64,
    pub end: u64,
    pub name: String,
    pub file: String,
}

/// `name.isra.0` / `name.constprop.0` / `name.cold` -> `name`.
pub fn base_name(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}

/// Parses `nm -n -l --defined-only` output: text symbols, each ending at the next symbol, with
/// the file when DWARF names one; keeps those whose file ends with one of `sources`.
pub fn parse_nm(text: &str, sources: &[&str]) -> Vec<Function> {
    let mut syms: Vec<(u64, bool, String, String)> = Vec::new();
    for line in text.lines() {
        let (head, file) = match line.split_once('\t') {
            Some((h, f)) => (h, f.rsplit_once(':').map_or(f, |(f, _)| f).to_string()),
            None => (line, String::new()),
        };
        let mut it = head.split_whitespace();
        let (Some(addr), Some(kind), Some(name)) = (it.next(), it.next(), it.next()) else { continue };
        let Ok(addr) = u64::from_str_radix(addr, 16) else { continue };
        syms.push((addr, matches!(kind, "t" | "T" | "w" | "W"), name.to_string(), file));
    }
    syms.sort_by_key(|s| s.0);
    let mut out = Vec::new();
    for (i, (addr, text, name, file)) in syms.iter().enumerate() {
        if !text || !sources.iter().any(|s| file.ends_with(s)) {
            continue;
        }
        let end = syms[i + 1..].iter().map(|s| s.0).find(|a| a > addr).unwrap_or(addr + 0x1000);
        out.push(Function { addr: *addr, end, name: name.clone(), file: file.clone() });
    }
    out
}

/// The functions `vmlinux` (or a module) defines in files ending with one of `sources`.
pub fn functions(image: &Path, sources: &[&str]) -> Result<Vec<Function>, SymbolizeError> {
    let text = run("nm", &["-n".into(), "-l".into(), "--defined-only".into(), image.display().to_string()])?;
    let f = parse_nm(&text, sources);
    if f.is_empty() {
        return Err(SymbolizeError::NotFound(format!(
            "{} has no function with DWARF in {} (built without -g for it?)",
            image.display(),
            sources.join(", ")
        )));
    }
    Ok(f)
}

/// A filter file for `fuzz --kcov-filter`: the link-time `_text` and one function per line.
pub fn filter_file(image: &Path, funcs: &[Function]) -> Result<String, SymbolizeError> {
    let text = run("nm", &["--defined-only".into(), image.display().to_string()])?;
    let base = text
        .lines()
        .find(|l| l.split_whitespace().nth(2) == Some("_text"))
        .and_then(|l| l.split_whitespace().next())
        .ok_or_else(|| SymbolizeError::NotFound(format!("{} has no _text symbol", image.display())))?;
    let mut out = format!("# kernel functions counted by fuzz --coverage kcov, from {}\n# text 0x{base}\n", image.display());
    let mut seen = BTreeSet::new();
    for f in funcs {
        if seen.insert(f.name.clone()) {
            out.push_str(&format!("{} {}\n", f.name, f.file));
        }
    }
    Ok(out)
}

/// Parses `objdump -d` output: the return address of every call of
/// `__sanitizer_cov_trace_pc` (the PC KCOV records) with the call's own address.
pub fn parse_kcov_calls(text: &str) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut pending: Option<u64> = None;
    for line in text.lines() {
        let l = line.trim_start();
        let Some((addr, rest)) = l.split_once(':') else { continue };
        let Ok(a) = u64::from_str_radix(addr.trim(), 16) else { continue };
        if rest.trim().is_empty() {
            continue;
        }
        if let Some(call) = pending.take() {
            out.push((a, call));
        }
        if rest.contains("<__sanitizer_cov_trace_pc>") && (rest.contains("call") || rest.contains("jmp")) {
            pending = Some(a);
        }
    }
    out
}

/// One frame of `addr2line -f -i`: function, file, line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub function: String,
    pub file: String,
    pub line: u32,
}

/// Parses `addr2line -a -f -i` output into the frames of each address (innermost first).
pub fn parse_addr2line(text: &str) -> BTreeMap<u64, Vec<Frame>> {
    let mut out: BTreeMap<u64, Vec<Frame>> = BTreeMap::new();
    let mut cur: Option<u64> = None;
    let mut lines = text.lines().peekable();
    while let Some(l) = lines.next() {
        if let Some(hex) = l.strip_prefix("0x")
            && let Ok(a) = u64::from_str_radix(hex.trim(), 16)
        {
            cur = Some(a);
            out.entry(a).or_default();
            continue;
        }
        let Some(a) = cur else { continue };
        let function = l.trim().to_string();
        let Some(loc) = lines.next() else { break };
        let loc = loc.split(" (discriminator").next().unwrap_or(loc);
        let (file, line) = loc.rsplit_once(':').unwrap_or((loc, "0"));
        out.entry(a).or_default().push(Frame {
            function,
            file: file.to_string(),
            line: line.trim().parse().unwrap_or(0),
        });
    }
    out
}

/// A KCOV block of the image: the PC KCOV records, and where it is in the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub pc: u64,
    /// The innermost function of `file` the block is in (inlined code counts for the function
    /// it was written in).
    pub function: String,
    pub line: u32,
}

/// The KCOV blocks of `funcs` that belong (innermost frame in `file`) to `wanted` functions.
pub fn blocks(image: &Path, funcs: &[Function], file: &str, wanted: &[&str]) -> Result<Vec<Block>, SymbolizeError> {
    let mut calls = Vec::new();
    for f in funcs.iter().filter(|f| f.file.ends_with(file)) {
        let text = run(
            "objdump",
            &[
                "-d".into(),
                "--no-show-raw-insn".into(),
                format!("--start-address=0x{:x}", f.addr),
                format!("--stop-address=0x{:x}", f.end),
                image.display().to_string(),
            ],
        )?;
        calls.extend(parse_kcov_calls(&text));
    }
    if calls.is_empty() {
        return Err(SymbolizeError::NotFound(format!(
            "no call of __sanitizer_cov_trace_pc in the functions of {file} (kernel without KCOV?)"
        )));
    }
    let mut args = vec!["-a".to_string(), "-f".into(), "-i".into(), "-e".into(), image.display().to_string()];
    args.extend(calls.iter().map(|(_, call)| format!("0x{call:x}")));
    let frames = parse_addr2line(&run("addr2line", &args)?);
    let wanted: HashSet<&str> = wanted.iter().copied().collect();
    let mut out = Vec::new();
    for (pc, call) in calls {
        let Some(fr) = frames.get(&call) else { continue };
        let Some(inner) = fr.iter().find(|f| f.file.ends_with(file)) else { continue };
        let name = base_name(&inner.function);
        if wanted.is_empty() || wanted.contains(name) {
            out.push(Block { pc, function: name.to_string(), line: inner.line });
        }
    }
    Ok(out)
}

/// Builds the coverage view of `blocks` given the PCs reached; `source`: the file's text, for
/// the lines. Functions come in the order of `order` (then by name).
pub fn driver_coverage(
    file: &str,
    image: &str,
    blocks: &[Block],
    reached: &HashSet<u64>,
    source: Option<&str>,
    order: &[&str],
) -> DriverCoverage {
    let src: Vec<&str> = source.map(|s| s.lines().collect()).unwrap_or_default();
    let mut by_fn: BTreeMap<String, BTreeMap<u32, (usize, usize)>> = BTreeMap::new();
    for b in blocks {
        let e = by_fn.entry(b.function.clone()).or_default().entry(b.line).or_default();
        e.0 += 1;
        e.1 += usize::from(reached.contains(&b.pc));
    }
    let mut names: Vec<String> = by_fn.keys().cloned().collect();
    names.sort_by_key(|n| (order.iter().position(|o| o == n).unwrap_or(usize::MAX), n.clone()));
    let functions = names
        .into_iter()
        .map(|name| {
            let lines: Vec<LineCoverage> = by_fn[&name]
                .iter()
                .map(|(line, (b, c))| LineCoverage {
                    line: *line,
                    blocks: *b,
                    covered: *c,
                    text: src.get((*line as usize).wrapping_sub(1)).map(|s| (*s).to_string()).unwrap_or_default(),
                })
                .collect();
            FunctionCoverage {
                blocks: lines.iter().map(|l| l.blocks).sum(),
                covered: lines.iter().map(|l| l.covered).sum(),
                name,
                lines,
            }
        })
        .collect();
    DriverCoverage { file: file.to_string(), image: image.to_string(), functions }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nm_output_gives_the_functions_of_a_file_with_their_extent() {
        let nm = "\
ffffffff81000000 T _text
ffffffff81a00000 t mtty_data_size\t/build/src/samples/vfio-mdev/mtty.c:781
ffffffff81a00040 t mtty_set_state.isra.0\t/build/src/samples/vfio-mdev/mtty.c:1221
ffffffff81a00400 d mtty_fops\t/build/src/samples/vfio-mdev/mtty.c:1900
ffffffff81a00300 T vfio_other\t/build/src/drivers/vfio/group.c:12
ffffffff81a00800 t vfio_mig_get_next_state\t/build/src/drivers/vfio/vfio_main.c:1000
ffffffff81a00900 t unrelated
";
        let f = parse_nm(nm, &["samples/vfio-mdev/mtty.c"]);
        assert_eq!(f.len(), 2);
        assert_eq!((f[0].name.as_str(), f[0].addr, f[0].end), ("mtty_data_size", 0xffff_ffff_81a0_0000, 0xffff_ffff_81a0_0040));
        // mtty_set_state ends where the next symbol (vfio_other) starts.
        assert_eq!(f[1].end, 0xffff_ffff_81a0_0300);
        assert_eq!(base_name(&f[1].name), "mtty_set_state");
        assert_eq!(parse_nm(nm, &["drivers/vfio/vfio_main.c"])[0].end, 0xffff_ffff_81a0_0900);
    }

    #[test]
    fn objdump_calls_of_the_kcov_hook_give_the_return_address() {
        let d = "\
ffffffff81a00040 <mtty_set_state>:
ffffffff81a00040:\tendbr64
ffffffff81a00044:\tcall   ffffffff81300000 <__sanitizer_cov_trace_pc>
ffffffff81a00049:\tmov    %rdi,%rbx
ffffffff81a0004c:\tcall   ffffffff81300100 <__asan_load8_noabort>
ffffffff81a00051:\tcall   ffffffff81300000 <__sanitizer_cov_trace_pc>
ffffffff81a00056:\tret
";
        assert_eq!(
            parse_kcov_calls(d),
            vec![(0xffff_ffff_81a0_0049, 0xffff_ffff_81a0_0044), (0xffff_ffff_81a0_0056, 0xffff_ffff_81a0_0051)]
        );
    }

    #[test]
    fn addr2line_frames_are_grouped_by_address_innermost_first() {
        let a = "\
0xffffffff81a00044
mtty_data_size
/build/src/samples/vfio-mdev/mtty.c:782
mtty_set_state
/build/src/samples/vfio-mdev/mtty.c:1230 (discriminator 2)
0xffffffff81a00051
mutex_lock
/build/src/include/linux/mutex.h:170
mtty_set_state
/build/src/samples/vfio-mdev/mtty.c:1240
";
        let f = parse_addr2line(a);
        assert_eq!(f.len(), 2);
        assert_eq!(f[&0xffff_ffff_81a0_0044][0].function, "mtty_data_size");
        assert_eq!(f[&0xffff_ffff_81a0_0044][1].line, 1230);
        assert_eq!(f[&0xffff_ffff_81a0_0051][1], Frame {
            function: "mtty_set_state".into(),
            file: "/build/src/samples/vfio-mdev/mtty.c".into(),
            line: 1240
        });
    }

    #[test]
    fn the_view_counts_blocks_per_function_and_line() {
        let blocks = vec![
            Block { pc: 1, function: "mtty_set_state".into(), line: 3 },
            Block { pc: 2, function: "mtty_set_state".into(), line: 3 },
            Block { pc: 3, function: "mtty_load_state".into(), line: 1 },
        ];
        let reached: HashSet<u64> = [2, 3].into_iter().collect();
        let d = driver_coverage("mtty.c", "vmlinux", &blocks, &reached, Some("a\nb\nc\n"), &["mtty_set_state"]);
        assert_eq!(d.totals(), (2, 3));
        assert_eq!(d.functions[0].name, "mtty_set_state");
        assert_eq!(d.functions[0].lines[0].text, "c");
        assert_eq!((d.functions[0].lines[0].blocks, d.functions[0].lines[0].covered), (2, 1));
    }
}
