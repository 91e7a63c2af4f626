//! `RelPath::parse`: the lexical rules every API path goes through. Arbitrary bytes must never
//! panic, and whatever is accepted must satisfy the rules that keep a path inside its workspace:
//! UTF-8, no NUL, not absolute, no `..`, no empty or `.` component, within the length limits.
//! Normalising is idempotent: parsing the normalised text again gives it back.

#![no_main]

use katachi_core::api::{RelPath, MAX_COMPONENT_BYTES, MAX_PATH_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = RelPath::parse(data) else {
        return;
    };
    let text = path.as_str();
    assert!(text.len() <= MAX_PATH_BYTES, "accepted an over-long path");
    assert!(!text.contains('\0'), "accepted a NUL byte");
    assert!(
        !text.starts_with('/') && !std::path::Path::new(text).is_absolute(),
        "accepted an absolute path"
    );
    let again = RelPath::parse(text.as_bytes()).expect("the normalised path parses again");
    assert_eq!(again.as_str(), text, "normalising is not idempotent");
    for part in text.split('/') {
        assert!(
            path.is_root() || !part.is_empty(),
            "an empty component survived"
        );
        assert!(
            part != "." && part != "..",
            "a dot component survived: {text:?}"
        );
        assert!(
            part.len() <= MAX_COMPONENT_BYTES,
            "accepted an over-long component"
        );
    }
});
