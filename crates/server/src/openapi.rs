//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api::{audit, events, experiments, flags, metrics, ofrep, ops, rollouts, sdk, segments, tokens, workspaces};

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
    ),
    modifiers(&Bearer),
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
