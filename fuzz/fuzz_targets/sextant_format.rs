//! Sextant's declarative format, YAML and JSON: parse never panics;
//! what parses compiles or errors, and evaluates; what parses round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sextant_formats::sextant;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for parsed in [sextant::parse_yaml(text), sextant::parse_json(text)] {
        if let Ok(document) = parsed {
            for env in ["production", "development"] {
                common::compile_and_evaluate(&document, env);
            }
            // Export then re-import gives the same document back.
            if let Ok(json) = sextant::to_json(&document) {
                let again = sextant::parse_json(&json).expect("exported JSON re-imports");
                assert_eq!(again, document, "JSON round-trip changed the document");
            }
        }
    }
});
