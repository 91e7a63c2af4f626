//! The tools as the model sees them (name, description, JSON Schema of the arguments) and the
//! argument types they are checked against (unknown fields refused).

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::ToolResult;
use crate::ai::model::ToolSpec;

/// Every tool's name, in the order of [`tool_specs`].
pub const TOOL_NAMES: &[&str] = &[
    "list_dir",
    "read_file",
    "search",
    "write_file",
    "apply_patch",
    "run_command",
    "git_status",
    "git_diff",
];

/// Arguments of `list_dir`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListDirArgs {
    pub(super) path: Option<String>,
    pub(super) depth: Option<u32>,
    pub(super) cursor: Option<String>,
}

/// Arguments of `read_file`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReadFileArgs {
    pub(super) path: String,
    pub(super) start_line: Option<u64>,
    pub(super) end_line: Option<u64>,
}

/// Arguments of `search`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SearchArgs {
    pub(super) query: String,
    pub(super) regex: Option<bool>,
    pub(super) case_sensitive: Option<bool>,
    pub(super) path: Option<String>,
    pub(super) max_results: Option<u32>,
}

/// Arguments of `write_file`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WriteFileArgs {
    pub(super) path: String,
    pub(super) content: String,
    pub(super) expected_sha256: Option<String>,
}

/// Arguments of `apply_patch`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ApplyPatchArgs {
    pub(super) patch: String,
}

/// Arguments of `run_command`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RunCommandArgs {
    pub(super) command: String,
    #[serde(default)]
    pub(super) args: Option<Vec<String>>,
    pub(super) cwd: Option<String>,
    pub(super) timeout_secs: Option<u64>,
}

/// Arguments of `git_status` (none).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GitStatusArgs {}

/// Arguments of `git_diff`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GitDiffArgs {
    pub(super) path: Option<String>,
    pub(super) staged: Option<bool>,
}

/// The tools offered to the model.
pub fn tool_specs() -> Vec<ToolSpec> {
    TOOL_NAMES
        .iter()
        .map(|name| ToolSpec {
            name: (*name).to_owned(),
            description: description(name).to_owned(),
            parameters: parameters(name),
        })
        .collect()
}

fn description(name: &str) -> &'static str {
    match name {
        "list_dir" => "List a folder of the workspace (paths relative to its root; `.gitignore` respected). Returns entries with kind and size; pass `next_cursor` back as `cursor` for the next page.",
        "read_file" => "Read a text file of the workspace, optionally a range of lines (1-based, inclusive). Returns the text and its `sha256`, which `write_file` needs as `expected_sha256` to replace the file.",
        "search" => "Search the workspace's text files for a string (or a regex with `regex: true`). Returns matching lines with their paths and line numbers.",
        "write_file" => "Replace or create a whole file. For an existing file pass `expected_sha256` (from `read_file`); omit it to create a new file (missing folders are made). Fails with `file.conflict` if the file changed since it was read. Needs the user's approval. Prefer `apply_patch` for small edits.",
        "apply_patch" => "Apply a unified diff (`--- a/path`, `+++ b/path`, `@@ -l,n +l,n @@` hunks with 3 lines of context; `--- /dev/null` creates a file, `+++ /dev/null` deletes one) to one or more files, all or nothing. Needs the user's approval.",
        "run_command" => "Run an allowlisted command (a name such as `cargo` or `git`, no shell, no pipes) with arguments in the workspace's sandbox. Returns the exit status and the output (long output keeps its start and end). A refusal says what was denied and how the user can allow it. Needs the user's approval.",
        "git_status" => "The git status of the workspace's repository: branch, HEAD, and each changed path (staged / unstaged).",
        "git_diff" => "The git diff of the workspace against HEAD (or only what is staged with `staged: true`), optionally limited to a path.",
        _ => "",
    }
}

fn parameters(name: &str) -> Value {
    let path = |what: &str| json!({"type": "string", "description": what});
    let (props, required): (Value, &[&str]) = match name {
        "list_dir" => (
            json!({
                "path": path("Folder relative to the workspace root; omit for the root."),
                "depth": {"type": "integer", "minimum": 1, "maximum": 5, "description": "Levels to list (default 1)."},
                "cursor": {"type": "string", "description": "`next_cursor` of the previous page."}
            }),
            &[],
        ),
        "read_file" => (
            json!({
                "path": path("File relative to the workspace root."),
                "start_line": {"type": "integer", "minimum": 1, "description": "First line to return (default 1)."},
                "end_line": {"type": "integer", "minimum": 1, "description": "Last line to return (default: the end)."}
            }),
            &["path"],
        ),
        "search" => (
            json!({
                "query": {"type": "string", "description": "Text to find (or a regex when `regex` is true)."},
                "regex": {"type": "boolean", "description": "Treat `query` as a regular expression."},
                "case_sensitive": {"type": "boolean", "description": "Match case exactly (default: no)."},
                "path": path("Folder or file to search; omit for the whole workspace."),
                "max_results": {"type": "integer", "minimum": 1, "maximum": 500, "description": "Most matches (default 100)."}
            }),
            &["query"],
        ),
        "write_file" => (
            json!({
                "path": path("File relative to the workspace root."),
                "content": {"type": "string", "description": "The whole new content."},
                "expected_sha256": {"type": "string", "description": "`sha256` of the current content from `read_file`; omit only to create a new file."}
            }),
            &["path", "content"],
        ),
        "apply_patch" => (
            json!({"patch": {"type": "string", "description": "The unified diff."}}),
            &["patch"],
        ),
        "run_command" => (
            json!({
                "command": {"type": "string", "description": "An allowlisted command name, e.g. `cargo`."},
                "args": {"type": "array", "items": {"type": "string"}, "description": "Arguments, passed as they are."},
                "cwd": path("Folder to run in, relative to the workspace root (default: the root)."),
                "timeout_secs": {"type": "integer", "minimum": 1, "description": "Wall-time limit (capped by the workspace's policy)."}
            }),
            &["command"],
        ),
        "git_status" => (json!({}), &[]),
        "git_diff" => (
            json!({
                "path": path("File or folder to limit the diff to; omit for all."),
                "staged": {"type": "boolean", "description": "Only what is staged (default: everything against HEAD)."}
            }),
            &[],
        ),
        _ => (json!({}), &[]),
    };
    json!({
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": false
    })
}

/// The arguments of tool `name`, checked; a refusal says which arguments are expected.
pub(super) fn parse<T: DeserializeOwned>(name: &str, args: &Value) -> Result<T, ToolResult> {
    // some models send `null` or `""` for a tool without arguments
    let args = match args {
        Value::Null => json!({}),
        Value::String(s) if s.trim().is_empty() => json!({}),
        other => other.clone(),
    };
    serde_json::from_value(args).map_err(|e| {
        ToolResult::error(
            "tool.invalid_arguments",
            format!(
                "bad arguments for `{name}`: {e}; expected a JSON object matching {}",
                parameters(name)
            ),
        )
    })
}

/// The answer to a tool that does not exist.
pub(super) fn unknown(name: &str) -> ToolResult {
    let name: String = name.chars().take(64).collect();
    ToolResult::error(
        "tool.unknown",
        format!(
            "there is no tool `{name}`; the tools are: {}",
            TOOL_NAMES.join(", ")
        ),
    )
}
