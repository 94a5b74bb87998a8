//! Symbolizing KCOV PCs against the kernel image (on the host that has the kernel build, after
//! the fuzzing ran, possibly in a VM): which functions a source file defines (its DWARF, read
//! with `readelf`, joined with `nm -n` for their extent), the
//! KCOV blocks of those functions (`objdump -d`: every call of `__sanitizer_cov_trace_pc`,
//! whose return address is the PC KCOV records), and the source line of each block
//! (`addr2line -i`, innermost frame in the file). Needs binutils and DWARF for the file's
//! object (the test kernel builds mtty.o and vfio_main.o with `-g`).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::Command;

use crate::report::coverage::{DriverCoverage, FunctionCoverage, LineCoverage, TailCall};

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
    let out =
        Command::new(tool).args(args).output().map_err(|source| SymbolizeError::Spawn { tool, source })?;
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

/// An out-of-line function the DWARF describes: its compile unit's file, name, entry address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DwarfFunction {
    pub file: String,
    pub name: String,
    pub low_pc: u64,
}

/// Parses `readelf --debug-dump=info`: every `DW_TAG_subprogram` with a `DW_AT_low_pc`, named
/// directly or through its `DW_AT_abstract_origin` / `DW_AT_specification` (clones such as
/// `name.isra.0`), with the file of its compile unit.
pub fn parse_readelf(text: &str) -> Vec<DwarfFunction> {
    struct Die {
        tag: String,
        name: Option<String>,
        origin: Option<u64>,
        low_pc: Option<u64>,
        cu: String,
    }
    let mut dies: Vec<Die> = Vec::new();
    let mut names: std::collections::HashMap<u64, String> = std::collections::HashMap::new();
    let mut cur_off: Option<u64> = None;
    let mut cu = String::new();
    let value = |l: &str| l.rsplit(": ").next().unwrap_or("").trim().to_string();
    let hex = |v: &str| {
        u64::from_str_radix(
            v.trim().trim_start_matches('<').trim_end_matches('>').trim_start_matches("0x"),
            16,
        )
        .ok()
    };
    for line in text.lines() {
        let l = line.trim_start();
        if l.starts_with('<') && l.contains("Abbrev Number") {
            // ` <1><30ca4>: Abbrev Number: 53 (DW_TAG_subprogram)`
            let off = l.split('>').nth(1).and_then(|x| hex(x.trim_start_matches('<')));
            let tag = l.rsplit('(').next().unwrap_or("").trim_end_matches(')').to_string();
            cur_off = off;
            dies.push(Die { tag, name: None, origin: None, low_pc: None, cu: cu.clone() });
            continue;
        }
        let Some(d) = dies.last_mut() else { continue };
        if l.contains("DW_AT_name") {
            let v = value(l);
            if d.tag == "DW_TAG_compile_unit" {
                cu = v.clone();
                d.cu = v.clone();
            }
            if let Some(o) = cur_off {
                names.insert(o, v.clone());
            }
            d.name = Some(v);
        } else if l.contains("DW_AT_abstract_origin") || l.contains("DW_AT_specification") {
            d.origin = hex(&value(l));
        } else if l.contains("DW_AT_low_pc") {
            d.low_pc = hex(&value(l));
        }
    }
    dies.into_iter()
        .filter(|d| d.tag == "DW_TAG_subprogram")
        .filter_map(|d| {
            let name = d.name.or_else(|| d.origin.and_then(|o| names.get(&o).cloned()))?;
            Some(DwarfFunction { file: d.cu, name, low_pc: d.low_pc.filter(|a| *a != 0)? })
        })
        .collect()
}

/// Joins the DWARF functions of files ending with one of `sources` with `nm -n` output: each
/// function is the text symbol at its entry address (or a `.cold` part of it), ending at the
/// next symbol.
pub fn join_nm(nm: &str, dwarf: &[DwarfFunction], sources: &[&str]) -> Vec<Function> {
    let wanted: Vec<&DwarfFunction> =
        dwarf.iter().filter(|d| sources.iter().any(|s| d.file.ends_with(s))).collect();
    let mut syms: Vec<(u64, bool, &str)> = nm
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let addr = u64::from_str_radix(it.next()?, 16).ok()?;
            let kind = it.next()?;
            Some((addr, matches!(kind, "t" | "T" | "w" | "W"), it.next()?))
        })
        .collect();
    syms.sort_by_key(|s| s.0);
    let mut out = Vec::new();
    for (i, (addr, text, name)) in syms.iter().enumerate() {
        if !text {
            continue;
        }
        let d = wanted.iter().find(|d| d.low_pc == *addr).or_else(|| {
            name.ends_with(".cold").then(|| wanted.iter().find(|d| d.name == base_name(name))).flatten()
        });
        let Some(d) = d else { continue };
        let end = syms[i + 1..].iter().map(|s| s.0).find(|a| a > addr).unwrap_or(addr + 0x1000);
        out.push(Function { addr: *addr, end, name: (*name).to_string(), file: d.file.clone() });
    }
    out
}

/// The functions `vmlinux` (or a module) defines in files ending with one of `sources`.
pub fn functions(image: &Path, sources: &[&str]) -> Result<Vec<Function>, SymbolizeError> {
    let dwarf = parse_readelf(&run("readelf", &["--debug-dump=info".into(), image.display().to_string()])?);
    let nm = run("nm", &["-n".into(), "--defined-only".into(), image.display().to_string()])?;
    let f = join_nm(&nm, &dwarf, sources);
    if f.is_empty() {
        return Err(SymbolizeError::NotFound(format!(
            "{} has no function with DWARF in {} (built without -g for it?)",
            image.display(),
            sources.join(", ")
        )));
    }
    Ok(f)
}

/// A source path relative to the kernel tree (`.../linux-source-7.2/drivers/vfio/vfio_main.c`
/// -> `drivers/vfio/vfio_main.c`).
pub fn tree_path(file: &str) -> &str {
    ["/drivers/", "/samples/", "/kernel/", "/mm/", "/fs/", "/lib/", "/include/"]
        .iter()
        .filter_map(|d| file.find(d))
        .min()
        .map_or(file, |i| &file[i + 1..])
}

/// A filter file for `fuzz --kcov-filter`: the link-time `_text` and one function per line.
pub fn filter_file(image: &Path, funcs: &[Function]) -> Result<String, SymbolizeError> {
    let text = run("nm", &["--defined-only".into(), image.display().to_string()])?;
    let base = text
        .lines()
        .find(|l| l.split_whitespace().nth(2) == Some("_text"))
        .and_then(|l| l.split_whitespace().next())
        .ok_or_else(|| SymbolizeError::NotFound(format!("{} has no _text symbol", image.display())))?;
    let mut out = format!(
        "# kernel functions counted by fuzz --coverage kcov (link-time start, end, name, file)\n# text 0x{base}\n"
    );
    for f in funcs {
        out.push_str(&format!("0x{:x} 0x{:x} {} {}\n", f.addr, f.end, f.name, tree_path(&f.file)));
    }
    Ok(out)
}

/// A call of `__sanitizer_cov_trace_pc` in `objdump -d` output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KcovSite {
    /// The address of the next instruction: for a `call`, the return address, which is the PC
    /// KCOV records.
    pub pc: u64,
    /// The address of the call instruction itself (its source line).
    pub at: u64,
    /// A tail call (`jmp`, at a function's end): it pushes no return address, so KCOV records
    /// the return address of the function's caller and never sees this block as itself.
    pub tail: bool,
}

/// Parses `objdump -d` output: every call (and tail call) of `__sanitizer_cov_trace_pc`.
pub fn parse_kcov_calls(text: &str) -> Vec<KcovSite> {
    let mut out = Vec::new();
    let mut pending: Option<(u64, bool)> = None;
    for line in text.lines() {
        let l = line.trim_start();
        let Some((addr, rest)) = l.split_once(':') else { continue };
        let Ok(a) = u64::from_str_radix(addr.trim(), 16) else { continue };
        if rest.trim().is_empty() {
            continue;
        }
        if let Some((at, tail)) = pending.take() {
            out.push(KcovSite { pc: a, at, tail });
        }
        if rest.contains("<__sanitizer_cov_trace_pc>") {
            let insn = rest.split_whitespace().next().unwrap_or("");
            if insn.starts_with("call") {
                pending = Some((a, false));
            } else if insn.starts_with("jmp") {
                pending = Some((a, true));
            }
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
    /// A tail call ([`KcovSite::tail`]): KCOV cannot observe it.
    pub tail: bool,
}

/// The KCOV blocks of `funcs` that belong (innermost frame in `file`) to `wanted` functions.
pub fn blocks(
    image: &Path,
    funcs: &[Function],
    file: &str,
    wanted: &[&str],
) -> Result<Vec<Block>, SymbolizeError> {
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
    args.extend(calls.iter().map(|c| format!("0x{:x}", c.at)));
    let frames = parse_addr2line(&run("addr2line", &args)?);
    let wanted: HashSet<&str> = wanted.iter().copied().collect();
    let mut out = Vec::new();
    for KcovSite { pc, at, tail } in calls {
        let Some(fr) = frames.get(&at) else { continue };
        let Some(inner) = fr.iter().find(|f| f.file.ends_with(file)) else { continue };
        let name = base_name(&inner.function);
        if wanted.is_empty() || wanted.contains(name) {
            out.push(Block { pc, function: name.to_string(), line: inner.line, tail });
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
    let text_of =
        |line: u32| src.get((line as usize).wrapping_sub(1)).map(|s| (*s).to_string()).unwrap_or_default();
    let mut by_fn: BTreeMap<String, BTreeMap<u32, (usize, usize)>> = BTreeMap::new();
    let mut tail_calls = Vec::new();
    for b in blocks {
        if b.tail {
            tail_calls.push(TailCall { function: b.function.clone(), line: b.line, text: text_of(b.line) });
            continue;
        }
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
                    text: text_of(*line),
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
    DriverCoverage { file: file.to_string(), image: image.to_string(), functions, tail_calls }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dwarf_and_nm_give_the_functions_of_a_file_with_their_extent() {
        // The shape of `readelf --debug-dump=info` of the test kernel's vmlinux.
        let readelf = "\
 <0><c>: Abbrev Number: 164 (DW_TAG_compile_unit)
    <13>   DW_AT_name        : (indirect line string, offset: 0x43): /b/linux-source-7.2/samples/vfio-mdev/mtty.c
 <1><100>: Abbrev Number: 53 (DW_TAG_subprogram)
    <101>   DW_AT_name        : (indirect string, offset: 0xc2df): mtty_set_state
    <109>   DW_AT_low_pc      : 0xffffffff81a00040
    <111>   DW_AT_high_pc     : 0x119a
 <1><200>: Abbrev Number: 54 (DW_TAG_subprogram)
    <201>   DW_AT_name        : (indirect string, offset: 0xc300): mtty_data_size
    <205>   DW_AT_inline      : 3	(declared as inline and inlined)
 <1><300>: Abbrev Number: 55 (DW_TAG_subprogram)
    <301>   DW_AT_abstract_origin: <0x200>
    <305>   DW_AT_low_pc      : 0xffffffff81a00000
 <0><1000>: Abbrev Number: 164 (DW_TAG_compile_unit)
    <1013>   DW_AT_name        : (indirect line string, offset: 0x99): /b/linux-source-7.2/drivers/vfio/vfio_main.c
 <1><1100>: Abbrev Number: 53 (DW_TAG_subprogram)
    <1101>   DW_AT_name        : (indirect string, offset: 0xc2df): vfio_mig_get_next_state
    <1109>   DW_AT_low_pc      : 0xffffffff81a00800
";
        let d = parse_readelf(readelf);
        assert_eq!(d.len(), 3, "{d:?}");
        assert_eq!(d[1].name, "mtty_data_size");
        let nm = "\
ffffffff81000000 T _text
ffffffff81a00000 t mtty_data_size.isra.0
ffffffff81a00030 t __pfx_mtty_set_state
ffffffff81a00040 t mtty_set_state
ffffffff81a00300 T vfio_other
ffffffff81a00400 d mtty_fops
ffffffff81a00800 t vfio_mig_get_next_state
ffffffff81a00900 t mtty_set_state.cold
ffffffff81a00950 t unrelated
ffffffff81a00990 t mdev_access
";
        let f = join_nm(nm, &d, &["samples/vfio-mdev/mtty.c"]);
        let got: Vec<(&str, u64, u64)> = f.iter().map(|f| (f.name.as_str(), f.addr, f.end)).collect();
        assert_eq!(
            got,
            vec![
                ("mtty_data_size.isra.0", 0xffff_ffff_81a0_0000, 0xffff_ffff_81a0_0030),
                ("mtty_set_state", 0xffff_ffff_81a0_0040, 0xffff_ffff_81a0_0300),
                ("mtty_set_state.cold", 0xffff_ffff_81a0_0900, 0xffff_ffff_81a0_0950),
            ]
        );
        assert_eq!(join_nm(nm, &d, &["drivers/vfio/vfio_main.c"])[0].end, 0xffff_ffff_81a0_0900);
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
ffffffff81a00056:\tpop    %rbx
ffffffff81a00057:\tjmp    ffffffff81300000 <__sanitizer_cov_trace_pc>
ffffffff81a0005c:\tcall   ffffffff81300200 <__asan_report_store1_noabort>
";
        let site = |pc, at, tail| KcovSite { pc, at, tail };
        assert_eq!(
            parse_kcov_calls(d),
            vec![
                site(0xffff_ffff_81a0_0049, 0xffff_ffff_81a0_0044, false),
                site(0xffff_ffff_81a0_0056, 0xffff_ffff_81a0_0051, false),
                site(0xffff_ffff_81a0_005c, 0xffff_ffff_81a0_0057, true),
            ]
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
        assert_eq!(
            f[&0xffff_ffff_81a0_0051][1],
            Frame {
                function: "mtty_set_state".into(),
                file: "/build/src/samples/vfio-mdev/mtty.c".into(),
                line: 1240
            }
        );
    }

    #[test]
    fn the_view_counts_blocks_per_function_and_line() {
        let block = |pc, function: &str, line, tail| Block { pc, function: function.into(), line, tail };
        let blocks = vec![
            block(1, "mtty_set_state", 3, false),
            block(2, "mtty_set_state", 3, false),
            block(3, "mtty_load_state", 1, false),
            block(4, "mtty_disable_files", 2, true),
        ];
        let reached: HashSet<u64> = [2, 3].into_iter().collect();
        let d =
            driver_coverage("mtty.c", "vmlinux", &blocks, &reached, Some("a\nb\nc\n"), &["mtty_set_state"]);
        assert_eq!(d.totals(), (2, 3));
        assert_eq!(d.functions[0].name, "mtty_set_state");
        assert_eq!(d.functions[0].lines[0].text, "c");
        assert_eq!((d.functions[0].lines[0].blocks, d.functions[0].lines[0].covered), (2, 1));
        // The tail call is in no count, whether reached or not: it is listed apart.
        assert!(d.functions.iter().all(|f| f.name != "mtty_disable_files"));
        assert_eq!(
            d.tail_calls,
            vec![TailCall { function: "mtty_disable_files".into(), line: 2, text: "b".into() }]
        );
    }
}
