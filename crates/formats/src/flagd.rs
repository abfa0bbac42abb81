//! flagd flag JSON import.
