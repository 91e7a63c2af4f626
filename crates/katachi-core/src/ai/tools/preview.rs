//! The previews of the tools that need approval: the real diff of a write or a patch (checked by
//! the API first, so a call that cannot succeed is answered at once).

use axum::body::Body;
use axum::http::Method;
use diffy::patch_set::{ParseOptions, PatchKind, PatchSet};
use serde_json::json;

use super::files::{sha_of, MAX_JSON_BYTES};
use super::specs::{ApplyPatchArgs, WriteFileArgs};
use super::{ApprovalPreview, ToolBox, ToolResult};
use crate::api::{FileChange, PatchedFile};

/// The diff a `write_file` would make; a stale or missing `expected_sha256` is answered at once.
pub(super) async fn preview_write(
    tb: &ToolBox,
    a: WriteFileArgs,
) -> Result<ApprovalPreview, ToolResult> {
    let uri = tb.uri("/file", &[("path", a.path.clone())]);
    let current = tb
        .fetch(
            Method::GET,
            &uri,
            None,
            Body::empty(),
            tb.options.max_file_bytes,
        )
        .await;
    let conflict = |why: &str| {
        ToolResult::error(
            "file.conflict",
            format!(
                "{:?} {why}; read it again with read_file and redo the change",
                a.path
            ),
        )
    };
    let old = match current {
        Ok(reply) => {
            let sha = sha_of(&reply.headers, &reply.body);
            match &a.expected_sha256 {
                None => {
                    return Err(conflict(
                        "already exists and no `expected_sha256` was given",
                    ))
                }
                Some(e) if !e.eq_ignore_ascii_case(&sha) => {
                    return Err(conflict("was changed since it was read"))
                }
                Some(_) => Some(reply.body.to_vec()),
            }
        }
        Err(e) if e.error_code() == Some("path.not_found") => {
            if a.expected_sha256.is_some() {
                return Err(conflict("does not exist (deleted or never existed)"));
            }
            None
        }
        Err(e) => return Err(e),
    };
    let unified_diff = unified(&a.path, old.as_deref(), Some(a.content.as_bytes()));
    // the write rules (protected paths, a missing folder) checked by the API without writing:
    // the same change as a patch, `check: true` (text only; binary writes are checked by the write)
    let changes = old.as_deref() != Some(a.content.as_bytes());
    let text = old
        .as_deref()
        .is_none_or(|o| std::str::from_utf8(o).is_ok());
    if changes && text {
        let body = json!({"patch": unified_diff, "check": true});
        tb.fetch_json(
            Method::POST,
            &tb.uri("/patch", &[]),
            Some(&body),
            MAX_JSON_BYTES,
        )
        .await?;
    }
    Ok(ApprovalPreview::Diff {
        paths: vec![a.path.clone()],
        unified_diff,
    })
}

/// The diff a patch would make: checked by the API first (a patch that does not apply is
/// answered at once), then each file's current content against it patched.
pub(super) async fn preview_patch(
    tb: &ToolBox,
    a: ApplyPatchArgs,
) -> Result<ApprovalPreview, ToolResult> {
    let body = json!({"patch": a.patch, "check": true});
    let checked = tb
        .fetch_json(
            Method::POST,
            &tb.uri("/patch", &[]),
            Some(&body),
            MAX_JSON_BYTES,
        )
        .await?;
    let files: Vec<PatchedFile> = serde_json::from_value(checked["files"].clone())
        .map_err(|e| ToolResult::error("tool.failed", format!("unexpected check answer: {e}")))?;
    let paths = files.iter().map(|f| f.path.clone()).collect();
    // the API checked it; if the real diff cannot be made here the patch itself is shown
    let unified_diff = real_diff(tb, &a.patch, &files)
        .await
        .unwrap_or_else(|| a.patch.clone());
    Ok(ApprovalPreview::Diff {
        paths,
        unified_diff,
    })
}

/// Each file of `patch` (in the order the API answered them) diffed from its current content.
async fn real_diff(tb: &ToolBox, patch: &str, files: &[PatchedFile]) -> Option<String> {
    let options = if patch.lines().any(|l| l.starts_with("diff --git ")) {
        ParseOptions::gitdiff()
    } else {
        ParseOptions::unidiff()
    };
    let sections = PatchSet::parse_bytes(patch.as_bytes(), options)
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    if sections.len() != files.len() {
        return None;
    }
    let mut out = String::new();
    for (file, section) in files.iter().zip(&sections) {
        let PatchKind::Text(hunks) = section.patch() else {
            return None;
        };
        let old = match file.change {
            FileChange::Created => None,
            FileChange::Modified | FileChange::Deleted => {
                let uri = tb.uri("/file", &[("path", file.path.clone())]);
                let reply = tb
                    .fetch(
                        Method::GET,
                        &uri,
                        None,
                        Body::empty(),
                        tb.options.max_file_bytes,
                    )
                    .await
                    .ok()?;
                Some(reply.body.to_vec())
            }
        };
        let new = match file.change {
            FileChange::Deleted => None,
            _ => Some(diffy::apply_bytes(old.as_deref().unwrap_or(b""), hunks).ok()?),
        };
        out.push_str(&unified(&file.path, old.as_deref(), new.as_deref()));
    }
    Some(out)
}

/// `--- a/path` / `+++ b/path` diff of `old` against `new` (`None`: no file).
pub(super) fn unified(path: &str, old: Option<&[u8]>, new: Option<&[u8]>) -> String {
    let (Ok(old_text), Ok(new_text)) = (
        std::str::from_utf8(old.unwrap_or(b"")),
        std::str::from_utf8(new.unwrap_or(b"")),
    ) else {
        return format!(
            "Binary file {path} changes ({} -> {} bytes)\n",
            old.map_or(0, <[u8]>::len),
            new.map_or(0, <[u8]>::len)
        );
    };
    let a = old.map_or_else(|| "/dev/null".to_owned(), |_| format!("a/{path}"));
    let b = new.map_or_else(|| "/dev/null".to_owned(), |_| format!("b/{path}"));
    diffy::DiffOptions::new()
        .set_original_filename(a)
        .set_modified_filename(b)
        .create_patch(old_text, new_text)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_diffs_from_dev_null_and_binary_content_is_named_not_shown() {
        let d = unified("n.txt", None, Some(b"a\n"));
        assert!(d.starts_with("--- /dev/null\n+++ b/n.txt\n"), "{d}");
        assert!(d.contains("+a\n"));
        let d = unified("x.bin", Some(&[0xff, 0]), Some(b"a"));
        assert_eq!(d, "Binary file x.bin changes (2 -> 1 bytes)\n");
    }
}
