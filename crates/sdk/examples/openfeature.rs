//! Using Sextant through OpenFeature.
//!
//! ```sh
//! SEXTANT_URL=http://127.0.0.1:8080 SEXTANT_SDK_TOKEN=sxs_… \
//!     cargo run -p sextant-sdk --example openfeature
//! ```
//!
//! Without a reachable server the client starts from
//! `examples/bootstrap.yaml` after a one-second timeout, so the example
//! runs anywhere.

use std::time::Duration;

use open_feature::{EvaluationContext, OpenFeature};
use sextant_sdk::Client;
use sextant_sdk::openfeature::SextantProvider;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("SEXTANT_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let token = std::env::var("SEXTANT_SDK_TOKEN").unwrap_or_else(|_| "sxs_example".into());
    let bootstrap = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/bootstrap.yaml");

    // 1. A Sextant client: snapshot, live updates, offline fallback, events.
    let client = Client::builder(url, token)
        .environment("production")
        .timeout(Duration::from_secs(1))
        .bootstrap_file(bootstrap)
        .build()
        .await?;
    println!("client status: {:?}, serving {:?}", client.status(), client.source());

    // 2. The provider, and its events (ready / stale / configuration changed).
    let provider = SextantProvider::new(client.clone());
    let mut events = provider.events();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            println!("provider event: {event:?}");
        }
    });

    // 3. Register it and evaluate through the OpenFeature API.
    let mut api = OpenFeature::singleton_mut().await;
    api.set_provider(provider).await;
    let flags = api.create_client();
    drop(api);

    for (user, plan) in [("alice", "pro"), ("bob", "free"), ("carol", "free")] {
        let ctx = EvaluationContext::default()
            .with_targeting_key(user)
            .with_custom_field("plan", plan);
        let checkout = flags.get_bool_details("new-checkout", Some(&ctx), None).await;
        let theme = flags.get_string_value("checkout-theme", Some(&ctx), None).await;
        match checkout {
            Ok(d) => println!(
                "{user}: new-checkout={} ({:?}, {:?}), theme={theme:?}",
                d.value, d.reason, d.variant
            ),
            Err(e) => println!("{user}: new-checkout failed: {e:?}"),
        }
        // A business event, sent in batches with the exposures of split units.
        client.track("checkout_viewed", &sextant_sdk::Context::with_key(user), None, None);
    }

    println!("event counters: {:?}", client.event_stats());
    // Flushes events (bounded by the shutdown timeout) and stops syncing.
    client.shutdown().await;
    Ok(())
}
