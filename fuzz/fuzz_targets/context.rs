//! Evaluation contexts as OFREP and SDKs send them: `Context::from_json`
//! never panics, and any context it accepts evaluates against a flag set
//! that uses every operator.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sextant_core::{Context, Snapshot};

const FLAGS: &str = include_str!("../../examples/flags.yaml");

fn snapshot() -> &'static (Snapshot, Vec<String>) {
    static S: OnceLock<(Snapshot, Vec<String>)> = OnceLock::new();
    S.get_or_init(|| {
        let doc = sextant_formats::sextant::parse(FLAGS).expect("examples/flags.yaml parses");
        let keys = doc.flags.iter().map(|f| f.key.clone()).collect();
        (Snapshot::compile(&doc, "production", 1).expect("examples/flags.yaml compiles"), keys)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice(data) else {
        return;
    };
    let Ok(ctx) = Context::from_json(value) else {
        return;
    };
    let (snapshot, keys) = snapshot();
    for key in keys {
        let _ = snapshot.evaluate(key, &ctx);
    }
});
