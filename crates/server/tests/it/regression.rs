//! One test per bug found by fuzzing (scripts/api-fuzz), named after what broke.

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
