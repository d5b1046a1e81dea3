//! The public types have these traits in this (live) build; tests/release
//! checks the same list in the release build.

use crate::*;

include!("../tests/support/same_traits.rs");

#[test]
fn traits() {
    same_traits_in_every_build();
}
