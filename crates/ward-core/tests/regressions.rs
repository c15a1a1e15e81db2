//! Regressions found by fuzzing (docs/fuzzing.md); each input lives in fuzz/regressions/.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::path::Path;

fn regression(target: &str, file: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/regressions")
            .join(target)
            .join(file),
    )
    .unwrap()
}

/// F2: a corrupt stored MLS value must be an error, not a panic.
#[test]
fn corrupt_stored_tree_value_is_an_error() {
    let data = regression("core_state", "corrupt-tree-value.state");
    let err = ward_core::Client::from_bytes(&data)
        .map(|_| ())
        .expect_err("corrupt state refused");
    assert!(
        err.to_string().contains("corrupt") || err.to_string().contains("state"),
        "{err}"
    );
}

/// F1: numbers with decimals in unknown content fields survive a round trip exactly.
#[test]
fn float_extra_fields_round_trip_exactly() {
    let data = regression("message_content", "float-not-round-tripped.json");
    let a = ward_core::MessageContent::from_bytes(&data).unwrap();
    let b = ward_core::MessageContent::from_bytes(&a.to_bytes().unwrap()).unwrap();
    assert!(a == b, "content changed in a round trip");
}
