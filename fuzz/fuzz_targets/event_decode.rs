//! Any bytes: decoding a structured-mode CloudEvent never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scimflow_core::decode::{decode_structured, DecodeOptions};

fuzz_target!(|data: &[u8]| {
    let opts = DecodeOptions {
        max_bytes: 64 * 1024,
        accepts_type: &|_| true,
    };
    let _ = decode_structured(data, &opts, None);
});
