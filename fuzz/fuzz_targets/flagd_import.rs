//! flagd flag JSON import, strict and lenient: never panics; imported flags
//! (JSONLogic targeting included) compile or are refused, and evaluate.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sextant_formats::flagd;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(document) = flagd::import(text, "production") {
        common::compile_and_evaluate(&document, "production");
    }
    if let Ok(imported) = flagd::import_lenient(text, "production") {
        common::compile_and_evaluate(&imported.document, "production");
    }
});
