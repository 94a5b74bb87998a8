//! cargo-fuzz target `yaml_sequence`: see [`vmc::fuzz::yaml_sequence`].
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| vmc::fuzz::yaml_sequence(data));
