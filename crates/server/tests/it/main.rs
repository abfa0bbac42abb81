//! Integration tests: the real server on an ephemeral port with a real SQLite file.

/// `TestServer::start()`, HTTP and SSE helpers.
mod support;

/// Admin API: CRUD, optimistic concurrency, problem+json errors.
mod admin;

/// The whole role × action matrix and environment scopes.
mod roles;

/// OFREP single and bulk evaluation, ETag/304, 401/403/429, CORS, event stream.
mod ofrep;

/// SDK snapshot and SSE stream with resume; graceful shutdown.
mod sdk;

/// Audit log listing and tamper detection.
mod audit;

/// Health, readiness, metrics and the OpenAPI document.
mod ops;

/// The web dashboard over HTTP: sign-in, CSRF, roles, forms, live stream.
mod dashboard;

/// Event ingestion: per-event validation, idempotency, 429, durability.
mod events;

/// The metric tree, North Star rules, live values, series and breakdown.
mod metrics;

/// Rollout plans and the scheduler, the kill switch, scheduled changes.
mod rollouts;

/// Alignment workflows: hypotheses, approvals, principles, reviews, learnings, webhooks, DORA.
mod alignment;
/// The dashboard in headless Chromium: sign in, create, target, kill, live second tab.
mod browser;

/// Two servers on one PostgreSQL: changes, catch-up and reconnection across replicas.
mod replicas;

/// Experiments: frozen definitions, decisions, analysis of simulated data.
mod experiments;

/// Tokens hashed at rest, body size limits, per-token rate limits.
mod security;

/// One test per bug found by fuzzing, named after what broke.
mod regression;
