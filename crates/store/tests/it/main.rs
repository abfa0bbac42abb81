//! Integration tests of the store against a real SQLite file.

/// Scratch databases.
mod support;

/// Schema migrations and refusing a newer database.
mod migrations;

/// Transactional writes, versions, validation.
mod mutations;

/// The hash-chained audit log and its verification.
mod audit;

/// Event batches, the rollup, retention and metric sums in SQL.
mod events;

/// The metric tree, the North Star and initiatives.
mod metrics;

/// Change requests, reviews, learnings, principles, deploys and webhooks.
mod alignment;

/// Deleting events (an approved irreversible change): raw batches and rollups.
mod event_deletion;

/// Several stores on one database: change feed, optimistic versions and
/// leadership across replicas.
mod replicas;

/// Rollout plans, scheduled changes and experiments.
mod rollouts;
