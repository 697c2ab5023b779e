//! What ships is what runs: the test doubles (the GitHub fake, the mock model server) live in
//! the dev-only `oxi-testkit` crate, and the crates only they need stay out of the binary.

use std::path::Path;

fn manifest(rel: &str) -> toml::Table {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn names(table: &toml::Table, key: &str) -> Vec<String> {
    table
        .get(key)
        .and_then(toml::Value::as_table)
        .map(|deps| deps.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn the_test_doubles_and_their_http_server_are_dev_dependencies_only() {
    let oxi = manifest("Cargo.toml");
    let shipped = names(&oxi, "dependencies");
    assert!(names(&oxi, "dev-dependencies").contains(&"oxi-testkit".to_owned()));
    // The testkit's own dependencies that oxi does not need at run time.
    for only_test in [
        "oxi-testkit",
        "axum",
        "futures-util",
        "jsonschema",
        "apollo-compiler",
    ] {
        assert!(
            !shipped.contains(&only_test.to_owned()),
            "{only_test} is a shipped dependency"
        );
    }
    let testkit = manifest("crates/oxi-testkit/Cargo.toml");
    assert!(names(&testkit, "dependencies").contains(&"axum".to_owned()));
}
