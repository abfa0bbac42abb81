//! Integration tests of the store: every test runs against SQLite and
//! PostgreSQL (see `support::backend_tests!`).

/// Scratch databases and the backend parameterisation.
mod support;

/// Schema migrations and refusing a newer database.
mod migrations;

/// Transactional writes, versions, validation.
mod mutations;

/// The hash-chained audit log and its verification.
mod audit;

/// Several stores on one database: change feed, versions, leadership.
mod replicas;
