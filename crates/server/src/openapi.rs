//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::api::{
    audit, changes, deploys, events, experiments, flags, learnings, metrics, ofrep, ops, principles, reviews, rollouts,
    sdk, segments, tokens, webhooks, workspaces,
};
use crate::error::Code;

/// The API description served at `/api/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(title = "Sextant", description = "Sextant control plane: admin API, OFREP, SDK sync, events and metrics."),
    paths(
        workspaces::list_workspaces, workspaces::create_workspace, workspaces::get_workspace,
        workspaces::update_workspace, workspaces::delete_workspace,
        workspaces::list_environments, workspaces::create_environment, workspaces::get_environment,
        workspaces::update_environment, workspaces::delete_environment,
        flags::list_flags, flags::create_flag, flags::get_flag, flags::update_flag, flags::delete_flag,
        flags::set_targeting, flags::toggle,
        segments::list_segments, segments::create_segment, segments::get_segment, segments::update_segment,
        segments::delete_segment,
        tokens::list_tokens, tokens::create_token, tokens::delete_token,
        audit::list_audit, audit::verify_audit,
        ofrep::evaluate_flag, ofrep::evaluate_flags, ofrep::events,
        sdk::snapshot, sdk::stream,
        events::batch,
        metrics::tree, metrics::series, metrics::breakdown,
        metrics::list_metrics, metrics::create_metric, metrics::get_metric, metrics::update_metric,
        metrics::delete_metric, metrics::set_north_star,
        metrics::list_initiatives, metrics::create_initiative, metrics::get_initiative,
        metrics::update_initiative, metrics::delete_initiative,
        ops::healthz, ops::readyz, ops::metrics,
        rollouts::list_plans, rollouts::get_plan, rollouts::put_plan, rollouts::delete_plan,
        rollouts::start_plan, rollouts::pause_plan, rollouts::resume_plan, rollouts::kill,
        rollouts::create_scheduled, rollouts::list_scheduled, rollouts::get_scheduled,
        rollouts::cancel_scheduled, rollouts::list_restores,
        experiments::list_experiments, experiments::create_experiment, experiments::get_experiment,
        experiments::update_experiment, experiments::start_experiment, experiments::results,
        experiments::decide_experiment,
        changes::get_policy, changes::request_policy, changes::list_requests, changes::get_request,
        changes::approve, changes::reject, changes::archive, changes::restore, changes::revert,
        changes::request_event_deletion,
        principles::list_principles, principles::create_principle, principles::list_violations,
        principles::create_violation, principles::resolve_violation,
        reviews::list_reviews, reviews::complete_review, reviews::flag_lifecycle, reviews::stale_flags,
        reviews::report,
        learnings::list_learnings, learnings::create_learning, learnings::list_post_mortems,
        learnings::open_post_mortem, learnings::complete_post_mortem,
        webhooks::list_webhooks, webhooks::create_webhook, webhooks::delete_webhook,
        webhooks::list_deliveries, webhooks::redeliver,
        deploys::record_deploy, deploys::dora,
    ),
    modifiers(&Bearer, &ProblemResponses),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Documents the errors every admin, SDK and event operation can answer, all as
/// `application/problem+json` with the `Problem` schema: the handlers'
/// annotations list the interesting ones, and this adds the rest by what
/// the operation takes (token → 401/403/429; path keys → 404; a body →
/// 400/413/415/422; `If-Match` → 412; a create → 409), so the description
/// matches what the server really sends (checked by schemathesis).
struct ProblemResponses;

impl Modify for ProblemResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::HttpMethod;
        for (path, item) in openapi.paths.paths.iter_mut() {
            let admin = path.starts_with("/api/v1/");
            if !admin && !path.starts_with("/sdk/v1/") && !path.starts_with("/events/v1/") {
                continue;
            }
            let ops = [
                (HttpMethod::Get, item.get.as_mut()),
                (HttpMethod::Post, item.post.as_mut()),
                (HttpMethod::Put, item.put.as_mut()),
                (HttpMethod::Patch, item.patch.as_mut()),
                (HttpMethod::Delete, item.delete.as_mut()),
            ];
            for (method, op) in ops {
                let Some(op) = op else { continue };
                let mut codes = vec![Code::TokenMissing, Code::PermissionDenied, Code::RateLimited];
                if admin {
                    codes.push(Code::QueryInvalid);
                }
                if admin && path.contains('{') {
                    codes.push(Code::WorkspaceNotFound);
                }
                if matches!(method, HttpMethod::Post | HttpMethod::Put | HttpMethod::Patch) {
                    codes.extend([Code::BodyTooLarge, Code::BodyNotJson, Code::ValidationFailed]);
                }
                if matches!(method, HttpMethod::Put | HttpMethod::Delete) && path.contains('{') {
                    codes.push(Code::VersionMismatch);
                }
                if method == HttpMethod::Post {
                    codes.push(Code::WorkspaceExists);
                }
                for code in codes {
                    let (_, status, title) = code.meta();
                    op.responses
                        .responses
                        .entry(status.as_u16().to_string())
                        .or_insert_with(|| RefOr::T(ResponseBuilder::new().description(title).build()));
                }
                // Every error body is problem+json, documented or added.
                for (status, response) in op.responses.responses.iter_mut() {
                    let RefOr::T(response) = response else { continue };
                    if status.starts_with('4') || status.starts_with('5') {
                        response.content.shift_remove("application/json");
                        response
                            .content
                            .insert("application/problem+json".into(), problem_content());
                    }
                }
            }
        }
    }
}

fn problem_content() -> Content {
    ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("Problem")))
        .build()
}
