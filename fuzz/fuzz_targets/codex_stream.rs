//! `oxi::worker::codex::normalize` (via `worker::adapter(WorkerKind::Codex)`) on arbitrary
//! stdout, line by line, plus the accumulator, pricing and classification it feeds.
//! Invariants: no panic; a JSON object is never a parse failure; events serialize; message,
//! tool-result and command texts are clipped.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxi::config::WorkerKind;

fuzz_target!(|data: &[u8]| {
    oxi_fuzz::check_stream(WorkerKind::Codex, data);
});
