//! `oxi::worker::extract_result_block` on arbitrary text (a worker's final message, i.e.
//! model output). Invariants: no panic; a block found is a JSON object; a valid block
//! appended on its own last line is always the one returned ("the last one wins").
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxi::worker::extract_result_block;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(block) = extract_result_block(&text) {
        assert!(block.is_object(), "result block is not an object: {block}");
        assert!(text.contains("OXI_RESULT"));
    }
    let appended = format!("{text}\nOXI_RESULT {{\"oxi_fuzz\":1}}");
    assert_eq!(
        extract_result_block(&appended),
        Some(serde_json::json!({"oxi_fuzz": 1})),
        "an appended block was not the last one found"
    );
});
