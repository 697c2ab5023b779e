//! `oxi::config::parse` (the pure half of `config::load`: TOML, then validation, then
//! `file:line:col` error locations) on arbitrary text. Invariants: no panic; errors format;
//! an accepted config serializes to JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // `load` reads with `read_to_string`, so non-UTF-8 never reaches `parse`.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match oxi::config::parse(text, "oxi.toml") {
        Ok(config) => {
            if let Err(e) = serde_json::to_string(&config) {
                panic!("accepted config does not serialize: {e}");
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
