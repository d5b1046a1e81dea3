//! Empty: the checks are in tests/release.rs.
