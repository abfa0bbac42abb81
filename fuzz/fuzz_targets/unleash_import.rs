//! Unleash client-features import: never panics; imported flags compile or
//! are refused, and evaluate.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sextant_formats::unleash;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(document) = unleash::import(text, "production") {
        common::compile_and_evaluate(&document, "production");
    }
    if let Ok(value) = serde_json::from_str(text) {
        let _ = unleash::context_from_unleash_at(&value, 1_700_000_000);
    }
});
