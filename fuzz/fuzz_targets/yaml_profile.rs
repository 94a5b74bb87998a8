//! cargo-fuzz target `yaml_profile`: see [`vmc::fuzz::yaml_profile`].
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| vmc::fuzz::yaml_profile(data));
