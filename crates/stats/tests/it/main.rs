//! Integration tests of sextant-stats: one binary, one module per topic.

/// Every statistic against SciPy / statsmodels values in `tests/reference.json`.
mod reference;
/// Seeded simulations: sequential false-positive rate, coverage, SRM power.
mod simulation;
