//! Sextant's declarative format.
