//! cargo-fuzz target `resume_stream`: see [`vmc::fuzz::resume_stream`].
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| vmc::fuzz::resume_stream(data));
