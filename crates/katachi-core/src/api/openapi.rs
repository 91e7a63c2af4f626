//! The OpenAPI 3.1 description of the agent API, generated from the handlers and types with
//! `utoipa`, and checked in as `docs/openapi.json`.
//!
//! A unit test compares the checked-in file with the generated one and fails when it is stale;
//! regenerate it with `KATACHI_UPDATE_OPENAPI=1 cargo test -p katachi-core --lib openapi`.

use utoipa::OpenApi;

use super::{error, git, patch, read, run, search, stat, status, tree, workspaces, write};
use crate::ai::chat::api_doc as chat;

/// The API's OpenAPI document (derived; see [`openapi_json`]).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "katachi agent API",
        version = "1",
        description = "The structured API of a katachi agent, reached by the browser only through the relay and the agent's tunnel. Every path is relative to an allowed workspace and checked before use; errors are `{\"error\":{\"code\",\"message\"}}` with stable dotted codes (see the ErrorCode schema). Every call through the tunnel is written to the agent's audit log first; while that log cannot be written, any call is refused with 503 `audit.unavailable`.",
        license(name = "Apache-2.0")
    ),
    paths(
        status::get_status,
        workspaces::list_workspaces,
        tree::list_tree,
        read::read_file,
        stat::stat_path,
        write::write_file,
        patch::patch_files,
        search::search,
        git::git_status,
        git::git_diff,
        run::run_command,
        run::list_commands,
        chat::list_sessions,
        chat::create_session,
        chat::model_of,
        chat::list_grants,
        chat::revoke_grant,
        chat::show_session,
        chat::rename_session,
        chat::delete_session,
        chat::start_turn,
        chat::stop_turn,
        chat::export_session,
        chat::list_approvals,
        chat::decide_approval,
        chat::list_notes,
        chat::save_note,
        chat::forget_note,
    ),
    components(schemas(
        error::ErrorBody,
        error::ErrorDetail,
        error::ErrorCode,
        git::DiffMode,
        run::RunOutputEvent,
    )),
    tags(
        (name = "agent", description = "The agent itself"),
        (name = "workspaces", description = "The allowed workspace folders"),
        (name = "files", description = "Listing, reading and writing files in a workspace"),
        (name = "search", description = "Text search in a workspace"),
        (name = "git", description = "Repository status and diffs"),
        (name = "run", description = "Allowlisted commands run in the sandbox, output streamed as NDJSON"),
        (name = "chat", description = "AI chat sessions on a workspace: turns streamed as NDJSON, the model's writes, patches and commands approved by the user, history in the agent's store"),
    )
)]
pub struct ApiDoc;

/// The OpenAPI document as pretty JSON with a trailing newline (the form of `docs/openapi.json`).
///
/// # Errors
/// A serialisation failure (not expected: the document is plain data).
pub fn openapi_json() -> Result<String, serde_json::Error> {
    let mut text = serde_json::to_string_pretty(&ApiDoc::openapi())?;
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/openapi.json` in the repository.
    fn checked_in_path() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json")
    }

    #[test]
    fn checked_in_openapi_json_is_current() {
        let generated = openapi_json().unwrap();
        let path = checked_in_path();
        if std::env::var_os("KATACHI_UPDATE_OPENAPI").is_some_and(|v| v == "1") {
            std::fs::write(&path, &generated).unwrap();
            return;
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "docs/openapi.json is stale: regenerate it with \
             `KATACHI_UPDATE_OPENAPI=1 cargo test -p katachi-core --lib openapi` and commit it"
        );
    }

    #[test]
    fn every_route_of_the_router_is_described() {
        let doc = ApiDoc::openapi();
        let described: Vec<&str> = doc.paths.paths.keys().map(String::as_str).collect();
        for route in [
            "/v1/status",
            "/v1/workspaces",
            "/v1/workspaces/{id}/tree",
            "/v1/workspaces/{id}/file",
            "/v1/workspaces/{id}/stat",
            "/v1/workspaces/{id}/search",
            "/v1/workspaces/{id}/git/status",
            "/v1/workspaces/{id}/git/diff",
            "/v1/workspaces/{id}/run",
            "/v1/workspaces/{id}/run/commands",
        ] {
            assert!(
                described.contains(&route),
                "{route} is not in the OpenAPI document"
            );
        }
    }

    #[test]
    fn error_codes_are_listed_in_the_document() {
        let json = openapi_json().unwrap();
        for code in ["path.outside_workspace", "file.conflict", "file.too_large"] {
            assert!(json.contains(code), "{code} missing");
        }
    }
}
