//! Import and export of flag files.
