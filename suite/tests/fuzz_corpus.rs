//! The checked-in fuzz corpora (`fuzz/corpus/<target>/`) replayed through the harness
//! functions the cargo-fuzz targets call, so a regression fails `cargo test` on stable.
//!
//! The `seed-*` files are generated from the fixtures and profiles (and, for `resume_stream`,
//! from a seeded search over decoded cases); regenerate them with
//! `VMC_WRITE_CORPUS=1 cargo test -p vmc-suite --test fuzz_corpus`. The `regress-*` files are
//! inputs that once showed a bug (kept by hand), and any other file is an input libFuzzer
//! found worth keeping.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use vmc::device::MigrationApi;
use vmc::fuzz::{DEVICE_LINE, Target, YAML_MARKER};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus")
}

fn slug(path: &str) -> String {
    let stem = path.trim_start_matches("fixtures/").trim_start_matches("profiles/").trim_end_matches(".yaml");
    stem.replace('/', "-")
}

/// The generated seeds: target -> (file name, bytes).
fn seeds() -> BTreeMap<&'static str, Vec<(String, Vec<u8>)>> {
    let mut out: BTreeMap<&'static str, Vec<(String, Vec<u8>)>> = BTreeMap::new();
    for (path, bytes) in vmc::embedded::SEQUENCES {
        let check = vmc::sequence::load_str(path, bytes).unwrap_or_else(|e| panic!("{e}"));
        out.entry("yaml_sequence").or_default().push((format!("seed-{}.yaml", slug(path)), bytes.to_vec()));
        let (target, spec) = match check.requires.api {
            Some(MigrationApi::V1) => ("v1_region", "sim:v1?size=4219".to_string()),
            _ => {
                let flags = vmc::fuzz::yaml::flag_names(check.requires.flags).join(",");
                ("fsm_v2", format!("sim:v2?flags={flags}&dma=on&size=4219"))
            }
        };
        let mut seed = format!("{YAML_MARKER}{DEVICE_LINE}{spec}\n").into_bytes();
        seed.extend_from_slice(bytes);
        out.entry(target).or_default().push((format!("seed-{}.yaml", slug(path)), seed));
    }
    for (path, bytes) in vmc::embedded::PROFILES {
        out.entry("yaml_profile").or_default().push((format!("seed-{}.yaml", slug(path)), bytes.to_vec()));
    }
    out.insert("resume_stream", resume_seeds());
    out
}

/// Inputs of `resume_stream` that decode to one case of each kind (raw bytes, genuine streams
/// in several segmentations, edited and re-sealed streams that are not valid): a deterministic
/// search over pseudo-random inputs.
fn resume_seeds() -> Vec<(String, Vec<u8>)> {
    let mut x: u64 = 0x5eed_f00d;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut found: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let id = |size| vmc::fuzz::stream::Identity {
        type_id: vmc::device::sim::hw::type_id("sim"),
        state_size: size,
    };
    for _ in 0..200_000 {
        if found.len() >= 12 {
            break;
        }
        let len = 8 + (next() % 56) as usize;
        let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let Some(case) = vmc::fuzz::stream::decode(&data) else { continue };
        let class = match vmc::fuzz::stream::validate(&case.bytes, id(case.state_size)) {
            Ok(_) if case.segments.len() == 1 => "valid-whole".to_string(),
            Ok(_) if case.segments.len() > 100 => "valid-tiny-writes".to_string(),
            Ok(_) => "valid-segmented".to_string(),
            Err(e) if e.contains("never sent") => "incomplete-resealed".to_string(),
            Err(e) if e.contains("after REGS") => "record-after-regs".to_string(),
            Err(e) if e.contains("reserved") => "reserved-word".to_string(),
            Err(e) if e.contains("foreign") => "foreign".to_string(),
            Err(e) if e.contains("truncated") => "truncated".to_string(),
            Err(e) if e.contains("content differs") => "flipped-page".to_string(),
            Err(e) if e.contains("END does not match") => "bad-end".to_string(),
            Err(e) if e.contains("first record") => "raw-bytes".to_string(),
            Err(_) => continue,
        };
        found.entry(class).or_insert(data);
    }
    found.into_iter().map(|(k, v)| (format!("seed-{k}.bin"), v)).collect()
}

#[test]
fn generated_seeds_are_checked_in_and_current() {
    let write = std::env::var_os("VMC_WRITE_CORPUS").is_some();
    let mut stale = Vec::new();
    for (target, files) in seeds() {
        let dir = corpus_dir().join(target);
        if write {
            std::fs::create_dir_all(&dir).expect("corpus dir");
            if let Ok(rd) = std::fs::read_dir(&dir) {
                for e in rd.flatten() {
                    if e.file_name().to_string_lossy().starts_with("seed-") {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        }
        for (name, bytes) in files {
            let path = dir.join(&name);
            if write {
                std::fs::write(&path, &bytes).expect("write seed");
            } else if std::fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
                stale.push(path.display().to_string());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "fuzz seeds missing or stale (regenerate with VMC_WRITE_CORPUS=1 cargo test -p vmc-suite --test fuzz_corpus): {stale:?}"
    );
}

#[test]
fn every_corpus_file_replays_through_its_target_without_a_finding() {
    let mut replayed = 0;
    let mut failures = Vec::new();
    for target in Target::ALL {
        let dir = corpus_dir().join(target.name());
        let Ok(rd) = std::fs::read_dir(&dir) else {
            failures.push(format!("{}: no corpus directory", dir.display()));
            continue;
        };
        let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect();
        files.sort();
        assert!(!files.is_empty(), "{}: empty corpus", dir.display());
        for f in files {
            let bytes = std::fs::read(&f).expect("read corpus file");
            replayed += 1;
            if let Err(p) = std::panic::catch_unwind(|| target.run(&bytes)) {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_string()))
                    .unwrap_or_default();
                failures.push(format!("{}: {msg}", f.display()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {replayed} corpus inputs fail:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert!(replayed >= 40, "only {replayed} corpus inputs");
}

#[test]
fn fixture_seeds_decode_to_the_fixtures_steps() {
    for (target, files) in seeds() {
        let api = match target {
            "fsm_v2" => MigrationApi::V2,
            "v1_region" => MigrationApi::V1,
            _ => continue,
        };
        for (name, bytes) in files {
            let case =
                vmc::fuzz::FuzzCase::decode(api, &bytes).unwrap_or_else(|| panic!("{name} does not decode"));
            assert!(!case.ops.is_empty(), "{name}: no operations");
        }
    }
}
