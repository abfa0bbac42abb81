//! flagd_testbed
