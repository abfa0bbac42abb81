//! sextant_format
