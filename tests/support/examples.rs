//! Shared by the test programs that run this package's examples.

use std::path::PathBuf;

/// The example `name`, built by `cargo test` alongside the tests.
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let path = dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: run the README's test command, which builds the examples",
        path.display()
    );
    path
}
