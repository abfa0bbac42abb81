//! Integration tests of the importers against public conformance data,
//! read in place from `../shared/conformance/`.

mod flagd_testbed;
mod sextant_format;
mod unleash_spec;
