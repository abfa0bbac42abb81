//! Shared by the import targets: whatever imports must compile or be
//! refused with an error, and whatever compiles must evaluate every flag
//! without panicking, for a plain and an attribute-rich context.

use sextant_core::{Context, Document, Snapshot};

pub fn compile_and_evaluate(document: &Document, environment: &str) {
    let Ok(snapshot) = Snapshot::compile(document, environment, 1) else {
        return;
    };
    let contexts = [
        Context::from_json(serde_json::json!({})),
        Context::from_json(serde_json::json!({
            "targetingKey": "user-1", "email": "a@example.com", "country": "NZ",
            "version": "4.3.0", "age": 42, "beta": true, "ip": "10.1.2.3",
            "tags": ["a", "b"], "org": {"plan": "pro", "seats": 12}
        })),
    ];
    for ctx in contexts.into_iter().flatten() {
        for flag in &document.flags {
            let _ = snapshot.evaluate(&flag.key, &ctx);
        }
        let _ = snapshot.evaluate_all(&ctx).count();
    }
}
