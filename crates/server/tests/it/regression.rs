//! One test per bug found by fuzzing (scripts/api-fuzz, scripts/fuzz), named after what broke.

use crate::support::TestServer;

#[tokio::test]
async fn a_scheduled_change_id_that_is_not_an_i64_gets_a_problem_json_404_not_plain_text() {
    let s = TestServer::start().await;
    for id in ["9223372036854775808", "abc", "-"] {
        let path = format!("/api/v1/workspaces/default/scheduled-changes/{id}");
        s.get(&path).await.assert_problem(404, "scheduled_change_not_found");
        s.call(reqwest::Method::DELETE, &path, crate::support::ADMIN, None)
            .await
            .assert_problem(404, "scheduled_change_not_found");
    }
}

#[tokio::test]
async fn the_openapi_document_lists_403_for_event_batches_sent_with_an_admin_token() {
    let s = TestServer::start().await;
    let doc = s.get("/api/openapi.json").await.body;
    let responses = &doc["paths"]["/events/v1/batch"]["post"]["responses"];
    assert!(
        responses["403"]["content"]["application/problem+json"].is_object(),
        "{responses}"
    );
    // And what an error operation answers is problem+json, never bare JSON.
    let get_flag = &doc["paths"]["/api/v1/workspaces/{ws}/flags/{key}"]["get"]["responses"];
    assert!(get_flag["404"]["content"]["application/json"].is_null(), "{get_flag}");
    assert!(
        get_flag["401"]["content"]["application/problem+json"].is_object(),
        "{get_flag}"
    );
}

/// Found while writing the `event_batch` fuzz target's oracle: event properties
/// holding `\u0000`, a lone surrogate or a number beyond a double were
/// accepted, and PostgreSQL's rollup (`events::jsonb`) then failed on that
/// batch every time, so no later event was ever rolled up either.
#[tokio::test]
async fn issue_13_event_properties_postgresql_cannot_hold_are_refused_and_do_not_stall_the_rollup() {
    let mut databases = vec![None];
    if let Some(url) = crate::support::postgres_database().await {
        databases.push(Some(url));
    }
    for database in databases {
        let s = TestServer::start_on(database.as_deref(), sextant_server::Config::default()).await;
        let token = s.server_token("production").await;
        let now = chrono::Utc::now().to_rfc3339();
        // Sent as text: serde_json itself cannot hold two of these properties.
        let track = |properties: &str| {
            format!(
                r#"{{"kind":"track","event":"checkout","targeting_key":"u1","timestamp":"{now}","properties":{properties}}}"#
            )
        };
        let body = format!(
            r#"{{"batch_id":"poison","events":[{},{},{},{}]}}"#,
            track(r#"{"note":"a\u0000b"}"#),
            track(r#"{"x":"\ud800"}"#),
            track(r#"{"n":1e999999}"#),
            track(r#"{"plan":"pro"}"#),
        );
        let r = s
            .req(reqwest::Method::POST, "/events/v1/batch", &token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let r = crate::support::Reply::from(r).await;
        assert_eq!(r.status, 202, "{database:?}: {:?}", r.body);
        assert_eq!(r.body["accepted"], 1, "{database:?}: {:?}", r.body);
        let fields: Vec<&str> = r.body["rejected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(
            fields,
            ["/events/0/properties", "/events/1/properties", "/events/2/properties"],
            "{database:?}"
        );
        let progress = s.state.store.rollup_events(100).await;
        assert!(progress.is_ok(), "{database:?}: the rollup failed: {progress:?}");
        s.stop().await;
    }
}
