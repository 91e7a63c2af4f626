//! The file, search and git tools.

use axum::body::Body;
use axum::http::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::preview::unified;
use super::specs::{
    ApplyPatchArgs, GitDiffArgs, GitStatusArgs, ListDirArgs, ReadFileArgs, SearchArgs,
    WriteFileArgs,
};
use super::{ToolBox, ToolResult};

/// Largest JSON answer read from the API (listings, search results, diffs are cut for the model
/// afterwards).
pub(super) const MAX_JSON_BYTES: usize = 8 << 20;

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

/// The read file's SHA-256: the API's header, or computed (the header is absent for big files).
pub(super) fn sha_of(headers: &axum::http::HeaderMap, body: &[u8]) -> String {
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
