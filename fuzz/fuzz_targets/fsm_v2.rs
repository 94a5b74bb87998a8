//! cargo-fuzz target `fsm_v2`: see [`vmc::fuzz::fsm_v2`].
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| vmc::fuzz::fsm_v2(data));
