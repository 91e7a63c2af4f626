//! Unit tests of `paths`: the lexical rules and query decoding.

use super::*;

fn code(raw: &[u8]) -> ErrorCode {
    RelPath::parse(raw).unwrap_err().code()
}

#[test]
fn relative_paths_are_normalised() {
    assert_eq!(RelPath::parse(b"a//b/./c/").unwrap().as_str(), "a/b/c");
    assert!(RelPath::parse(b"").unwrap().is_root());
    assert!(RelPath::parse(b"./").unwrap().is_root());
}

#[test]
fn a_path_absolute_once_dots_are_dropped_is_refused_so_normalising_is_idempotent() {
    // found by the `rel_path` fuzz target: `./\` normalised to `\`, which parse refuses
    assert_eq!(code(b"./\\"), ErrorCode::PathAbsolute);
    assert_eq!(code(b".//\\etc"), ErrorCode::PathAbsolute);
    for raw in [&b"a//b/./c/"[..], b"src/x.rs", b"a\\b", b"./"] {
        let once = RelPath::parse(raw).unwrap();
        let twice = RelPath::parse(once.as_str().as_bytes()).unwrap();
        assert_eq!(once.as_str(), twice.as_str());
    }
}

#[test]
fn lexical_escapes_are_refused_with_their_codes() {
    assert_eq!(code(b"a/../../etc"), ErrorCode::PathParentDir);
    assert_eq!(code(b".."), ErrorCode::PathParentDir);
    assert_eq!(code(b"/etc/passwd"), ErrorCode::PathAbsolute);
    assert_eq!(code(b"/proc/self/root/etc/passwd"), ErrorCode::PathAbsolute);
    assert_eq!(code(b"a\0b"), ErrorCode::PathNulByte);
    assert_eq!(code(b"a/\xff"), ErrorCode::PathNotUtf8);
    assert_eq!(code(&[b'a'; MAX_PATH_BYTES + 1]), ErrorCode::PathTooLong);
    assert_eq!(
        code(&[b'a'; MAX_COMPONENT_BYTES + 1]),
        ErrorCode::PathTooLong
    );
}

#[test]
fn the_limits_themselves_are_accepted() {
    let name = "a".repeat(MAX_COMPONENT_BYTES);
    assert!(RelPath::parse(name.as_bytes()).is_ok());
    let long = vec![name.as_str(); 16].join("/");
    assert!(long.len() <= MAX_PATH_BYTES);
    assert!(RelPath::parse(long.as_bytes()).is_ok());
}

#[test]
fn query_path_is_decoded_strictly() {
    let p = path_from_query(Some("x=1&path=src%2Fmain.rs")).unwrap();
    assert_eq!(p.unwrap().as_str(), "src/main.rs");
    let p = path_from_query(Some("path=a+b")).unwrap();
    assert_eq!(p.unwrap().as_str(), "a b");
    assert_eq!(
        path_from_query(Some("path=%FF")).unwrap_err().code(),
        ErrorCode::PathNotUtf8
    );
    assert_eq!(
        path_from_query(Some("path=a%00")).unwrap_err().code(),
        ErrorCode::PathNulByte
    );
    assert!(path_from_query(Some("path=a&path=b")).is_err());
    assert!(path_from_query(None).unwrap().is_none());
}

#[test]
fn split_last_and_child_round_trip() {
    let p = RelPath::parse(b"a/b/c").unwrap();
    let (parent, name) = p.split_last().unwrap();
    assert_eq!((parent.as_str(), name), ("a/b", "c"));
    assert_eq!(parent.child(name), p);
    let x = RelPath::parse(b"x").unwrap();
    let (root, name) = x.split_last().unwrap();
    assert!(root.is_root());
    assert_eq!(root.child(name).as_str(), "x");
}
