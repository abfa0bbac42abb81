//! Integration tests of the Sextant SDK against real HTTP peers.
