//! cargo-fuzz target `v1_region`: see [`vmc::fuzz::v1_region`].
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| vmc::fuzz::v1_region(data));
