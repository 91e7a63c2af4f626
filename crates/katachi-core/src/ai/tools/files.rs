//! The file, search and git tools, and the previews of writes and patches.

use axum::body::Body;
use axum::http::Method;
use diffy::patch_set::{ParseOptions, PatchKind, PatchSet};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::specs::{
    ApplyPatchArgs, GitDiffArgs, GitStatusArgs, ListDirArgs, ReadFileArgs, SearchArgs,
    WriteFileArgs,
};
use super::{ApprovalPreview, ToolBox, ToolResult};
use crate::api::{FileChange, PatchedFile};

/// Largest JSON answer read from the API (listings, search results, diffs are cut for the model
/// afterwards).
const MAX_JSON_BYTES: usize = 8 << 20;

/// Entries one `list_dir` page asks for.
const LIST_PAGE: usize = 200;

/// Default and largest `max_results` of `search`.
const SEARCH_DEFAULT: u32 = 100;
const SEARCH_MAX: u32 = 500;

/// The header carrying a read file's SHA-256.
const SHA256_HEADER: &str = "x-katachi-sha256";

type Answer = Result<ToolResult, ToolResult>;

pub(super) async fn list_dir(tb: &ToolBox, a: ListDirArgs) -> Answer {
    let mut query = vec![
        ("path", a.path.unwrap_or_default()),
        ("depth", a.depth.unwrap_or(1).clamp(1, 5).to_string()),
        ("limit", LIST_PAGE.to_string()),
    ];
    if let Some(c) = a.cursor {
        query.push(("cursor", c));
    }
    let page = tb
        .fetch_json(Method::GET, &tb.uri("/tree", &query), None, MAX_JSON_BYTES)
        .await?;
    Ok(ToolResult::ok(fit(
        page,
        "entries",
        tb.options.max_result_bytes,
    )))
}

pub(super) async fn read_file(tb: &ToolBox, a: ReadFileArgs) -> Answer {
    let uri = tb.uri("/file", &[("path", a.path.clone())]);
    let cap = tb.options.max_file_bytes;
    let reply = tb
        .fetch(Method::GET, &uri, None, Body::empty(), cap)
        .await
        .map_err(|e| match e.error_code() {
            Some("tool.too_large") => ToolResult::error(
                "tool.too_large",
                format!(
                    "{:?} is larger than the {cap} bytes read_file reads; find what you need with `search`, or `run_command` with `head`, `tail` or `grep`",
                    a.path
                ),
            ),
            _ => e,
        })?;
    let sha256 = sha_of(&reply.headers, &reply.body);
    let Ok(text) = std::str::from_utf8(&reply.body) else {
        return Err(ToolResult::error(
            "tool.binary_file",
            format!(
                "{:?} is not UTF-8 text ({} bytes); it cannot be shown",
                a.path,
                reply.body.len()
            ),
        ));
    };
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let total = lines.len() as u64;
    let start = a.start_line.unwrap_or(1).max(1);
    let end = a.end_line.unwrap_or(total).min(total);
    if start > end && total > 0 {
        return Err(ToolResult::error(
            "tool.invalid_arguments",
            format!("lines {start}..{end} are not in the file, which has {total} lines"),
        ));
    }
    let budget = tb.options.max_result_bytes;
    let mut content = String::new();
    let mut last = start.saturating_sub(1);
    for line in lines
        .iter()
        .skip(usize::try_from(start - 1).unwrap_or(usize::MAX))
        .take(usize::try_from(end.saturating_sub(start) + 1).unwrap_or(usize::MAX))
    {
        if content.len() + line.len() > budget && !content.is_empty() {
            break;
        }
        content.push_str(line);
        last += 1;
    }
    let mut result = json!({
        "path": a.path,
        "sha256": sha256,
        "total_lines": total,
        "start_line": start,
        "end_line": last,
        "content": cut(&content, budget),
    });
    if last < end {
        result["truncated"] = json!(true);
        result["next_start_line"] = json!(last + 1);
    }
    Ok(ToolResult::ok(result))
}

pub(super) async fn search(tb: &ToolBox, a: SearchArgs) -> Answer {
    let mut query = vec![
        ("query", a.query),
        ("regex", a.regex.unwrap_or(false).to_string()),
        (
            "case_sensitive",
            a.case_sensitive.unwrap_or(false).to_string(),
        ),
        (
            "max_results",
            a.max_results
                .unwrap_or(SEARCH_DEFAULT)
                .clamp(1, SEARCH_MAX)
                .to_string(),
        ),
    ];
    if let Some(p) = a.path {
        query.push(("path", p));
    }
    let found = tb
        .fetch_json(
            Method::GET,
            &tb.uri("/search", &query),
            None,
            MAX_JSON_BYTES,
        )
        .await?;
    Ok(ToolResult::ok(fit(
        found,
        "matches",
        tb.options.max_result_bytes,
    )))
}

pub(super) async fn write_file(tb: &ToolBox, a: WriteFileArgs) -> Answer {
    if a.expected_sha256.is_none() && !a.content.is_empty() {
        return create_file(tb, a).await;
    }
    let expected = a.expected_sha256.unwrap_or_else(|| "absent".to_owned());
    let uri = tb.uri("/file", &[("path", a.path), ("expected", expected)]);
    let reply = tb
        .fetch(
            Method::PUT,
            &uri,
            Some("application/octet-stream"),
            Body::from(a.content),
            MAX_JSON_BYTES,
        )
        .await?;
    json_of(&reply.body).map(ToolResult::ok)
}

/// A new file, created as a patch from `/dev/null` so that its missing folders are made too (a
/// plain write needs the folder); refused like a write when the file exists.
async fn create_file(tb: &ToolBox, a: WriteFileArgs) -> Answer {
    let patch = unified(&a.path, None, Some(a.content.as_bytes()));
    let body = json!({"patch": patch, "check": false});
    let done = tb
        .fetch_json(Method::POST, &tb.uri("/patch", &[]), Some(&body), MAX_JSON_BYTES)
        .await
        .map_err(|e| match e.error_code() {
            // the same refusal as a write's: the model reads it, then writes with the hash
            Some("patch.does_not_apply") => ToolResult::error(
                "file.conflict",
                format!(
                    "{:?} already exists; read it with read_file and pass its `sha256` as `expected_sha256`",
                    a.path
                ),
            ),
            _ => e,
        })?;
    let file = &done["files"][0];
    Ok(ToolResult::ok(json!({
        "path": file["path"],
        "resolved_path": file["resolved_path"],
        "sha256": file["sha256"],
        "size": file["size"],
        "created": true,
    })))
}

pub(super) async fn apply_patch(tb: &ToolBox, a: ApplyPatchArgs) -> Answer {
    let body = json!({"patch": a.patch, "check": false});
    let done = tb
        .fetch_json(
            Method::POST,
            &tb.uri("/patch", &[]),
            Some(&body),
            MAX_JSON_BYTES,
        )
        .await?;
    Ok(ToolResult::ok(done))
}

pub(super) async fn git_status(tb: &ToolBox, _a: GitStatusArgs) -> Answer {
    let status = tb
        .fetch_json(
            Method::GET,
            &tb.uri("/git/status", &[]),
            None,
            MAX_JSON_BYTES,
        )
        .await?;
    Ok(ToolResult::ok(fit(
        status,
        "entries",
        tb.options.max_result_bytes,
    )))
}

pub(super) async fn git_diff(tb: &ToolBox, a: GitDiffArgs) -> Answer {
    let mode = if a.staged.unwrap_or(false) {
        "staged"
    } else {
        "head"
    };
    let mut query = vec![("mode", mode.to_owned())];
    if let Some(p) = a.path {
        query.push(("path", p));
    }
    let mut diff = tb
        .fetch_json(
            Method::GET,
            &tb.uri("/git/diff", &query),
            None,
            MAX_JSON_BYTES,
        )
        .await?;
    // each patch cut to the budget first, so one huge file does not hide the others
    let budget = tb.options.max_result_bytes;
    if let Some(files) = diff["files"].as_array_mut() {
        for f in files {
            if let Some(p) = f["patch"].as_str() {
                if p.len() > budget / 2 {
                    f["patch"] = json!(cut(p, budget / 2));
                    f["patch_cut"] = json!(true);
                }
            }
        }
    }
    Ok(ToolResult::ok(fit(diff, "files", budget)))
}

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

/// The read file's SHA-256: the API's header, or computed (the header is absent for big files).
fn sha_of(headers: &axum::http::HeaderMap, body: &[u8]) -> String {
    headers
        .get(SHA256_HEADER)
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| hex::encode(Sha256::digest(body)), str::to_owned)
}

fn json_of(body: &[u8]) -> Result<Value, ToolResult> {
    serde_json::from_slice(body).map_err(|e| {
        ToolResult::error(
            "tool.failed",
            format!("the agent's answer is not JSON: {e}"),
        )
    })
}

/// `text` cut to at most `max` bytes on a character boundary.
pub(super) fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// `value` with trailing items of its array `key` dropped until its JSON fits `budget` bytes;
/// the count dropped is added as `omitted_for_length`.
fn fit(mut value: Value, key: &str, budget: usize) -> Value {
    if value.to_string().len() <= budget {
        return value;
    }
    let mut omitted = 0usize;
    if let Some(items) = value.get_mut(key).and_then(Value::as_array_mut) {
        let mut size: usize = 0;
        let keep = items
            .iter()
            .take_while(|item| {
                size += item.to_string().len() + 1;
                size <= budget.saturating_sub(512)
            })
            .count();
        omitted = items.len() - keep;
        items.truncate(keep);
    }
    value["omitted_for_length"] = json!(omitted);
    value
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

    #[test]
    fn fit_drops_trailing_items_until_the_json_fits_and_says_how_many() {
        let items: Vec<Value> = (0..100)
            .map(|i| json!({"path": format!("f{i:03}")}))
            .collect();
        let v = fit(json!({"matches": items}), "matches", 1024);
        assert!(v.to_string().len() <= 1024, "{}", v.to_string().len());
        let kept = v["matches"].as_array().unwrap().len();
        assert!(kept > 0);
        assert_eq!(v["omitted_for_length"], 100 - kept);
        let small = fit(json!({"matches": [1]}), "matches", 1024);
        assert!(small.get("omitted_for_length").is_none());
    }

    #[test]
    fn cut_never_splits_a_character() {
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("abc", 10), "abc");
    }
}
