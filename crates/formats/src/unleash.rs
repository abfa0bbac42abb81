//! Unleash client features JSON import.
