use std::time::Duration;

use open_feature::provider::{FeatureProvider, ProviderStatus};
use open_feature::{EvaluationContext, EvaluationErrorCode, EvaluationReason, OpenFeature};
use sextant_sdk::Client;
use sextant_sdk::openfeature::{ProviderEvent, SextantProvider};

use crate::support::{TestServer, pro_flag};

async fn next(events: &mut sextant_sdk::openfeature::ProviderEvents) -> ProviderEvent {
    tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("no provider event within 10 s")
        .expect("events ended")
}

#[tokio::test]
async fn the_provider_evaluates_in_process_and_reports_ready_changed_and_stale() {
    let server = TestServer::start().await;
    server.create_flag(pro_flag("a", "production")).await;
    let token = server.server_token("production").await;
    let client = Client::builder(server.url(), &token)
        .reconnect_backoff(Duration::from_secs(60), Duration::from_secs(60))
        .events(false)
        .build()
        .await
        .unwrap();
    let provider = SextantProvider::new(client);
    assert_eq!(provider.status(), ProviderStatus::Ready);
    let mut events = provider.events();
    assert_eq!(next(&mut events).await, ProviderEvent::Ready);

    let pro = EvaluationContext::default()
        .with_targeting_key("u1")
        .with_custom_field("plan", "pro");
    let details = provider.resolve_bool_value("a", &pro).await.unwrap();
    assert!(details.value);
    assert_eq!(details.variant.as_deref(), Some("on"));
    assert_eq!(details.reason, Some(EvaluationReason::TargetingMatch));
    let missing = provider.resolve_bool_value("nope", &pro).await.unwrap_err();
    assert_eq!(missing.code, EvaluationErrorCode::FlagNotFound);
    let mismatch = provider.resolve_string_value("a", &pro).await.unwrap_err();
    assert_eq!(mismatch.code, EvaluationErrorCode::TypeMismatch);

    server.toggle("a", "production", false).await;
    assert_eq!(
        next(&mut events).await,
        ProviderEvent::ConfigurationChanged {
            flags_changed: vec!["a".into()]
        }
    );
    assert_eq!(
        provider.resolve_bool_value("a", &pro).await.unwrap().reason,
        Some(EvaluationReason::Disabled)
    );

    server.stop().await;
    assert_eq!(next(&mut events).await, ProviderEvent::Stale);
    assert_eq!(provider.status(), ProviderStatus::STALE);
}

#[tokio::test]
async fn the_provider_works_through_the_open_feature_api() {
    let server = TestServer::start().await;
    server.create_flag(pro_flag("a", "production")).await;
    let token = server.server_token("production").await;
    let client = Client::builder(server.url(), &token)
        .events(false)
        .build()
        .await
        .unwrap();

    // A named provider: tests sharing a process do not share a global.
    let mut api = OpenFeature::singleton_mut().await;
    api.set_named_provider("sextant-it", SextantProvider::new(client)).await;
    let flags = api.create_named_client("sextant-it");
    drop(api);
    let pro = EvaluationContext::default()
        .with_targeting_key("u1")
        .with_custom_field("plan", "pro");
    let free = EvaluationContext::default().with_targeting_key("u2");
    assert_eq!(flags.get_bool_value("a", Some(&pro), None).await, Ok(true));
    assert_eq!(flags.get_bool_value("a", Some(&free), None).await, Ok(false));
}
