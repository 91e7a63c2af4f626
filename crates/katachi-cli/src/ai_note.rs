//! `katachi ai note set|ls|rm`: the notes for the model of a workspace (key → text), the same ones
//! the browser's Chat view edits. Every chat turn's system prompt carries them beside the
//! repository's AGENTS.md / CLAUDE.md / GEMINI.md; a running agent uses a change from its next turn.
//! Keys and values are checked as the agent API checks them (`ai::chat::memory_routes`).

use std::path::PathBuf;

use anyhow::bail;
use katachi_core::ai::chat::memory_routes::{check_key, check_value};
use katachi_core::ai::settings_scope;
use katachi_core::store::Store;
use serde::Serialize;

use crate::output::Output;

/// `katachi ai note` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum NoteCommand {
    /// Save a note for the model (replacing any note of that KEY).
    Set {
        /// 1 to 64 characters of A-Z a-z 0-9 _ . -
        key: String,
        /// The note (at most 8 KiB).
        value: String,
        /// The allowed workspace folder.
        #[arg(long, value_name = "PATH")]
        workspace: PathBuf,
    },
    /// List the notes (of every workspace, or one with --workspace).
    Ls {
        /// Only this allowed workspace folder.
        #[arg(long, value_name = "PATH")]
        workspace: Option<PathBuf>,
    },
    /// Delete a note.
    Rm {
        /// The note's key.
        key: String,
        /// The allowed workspace folder.
        #[arg(long, value_name = "PATH")]
        workspace: PathBuf,
    },
}

/// A note as `ls` prints it.
#[derive(Debug, Serialize)]
struct ListedNote {
    /// The workspace folder.
    workspace: String,
    /// The note's key.
    key: String,
    /// Its text.
    value: String,
}

pub(crate) fn run(store: &Store, cmd: NoteCommand, out: &Output) -> anyhow::Result<()> {
    match cmd {
        NoteCommand::Set {
            key,
            value,
            workspace,
        } => {
            check_key(&key)?;
            check_value(&value)?;
            let ws = settings_scope::workspace_at(store, &workspace)?;
            store.memory().remember(ws.id, &key, &value)?;
            out.emit(
                &serde_json::json!({ "workspace": ws.path, "key": key, "saved": true }),
                || format!("saved the note {key:?} for {}", ws.path),
            );
        }
        NoteCommand::Ls { workspace } => {
            let workspaces = match &workspace {
                Some(path) => vec![settings_scope::workspace_at(store, path)?],
                None => store.workspaces().list()?,
            };
            let mut notes = Vec::new();
            for ws in workspaces {
                for (key, value) in store.memory().all(ws.id)? {
                    notes.push(ListedNote {
                        workspace: ws.path.clone(),
                        key,
                        value,
                    });
                }
            }
            out.emit(&notes, || {
                if notes.is_empty() {
                    return "no notes (save one with `katachi ai note set KEY VALUE --workspace PATH`)"
                        .to_owned();
                }
                notes
                    .iter()
                    .map(|n| format!("{}: {}: {}", n.workspace, n.key, n.value))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        NoteCommand::Rm { key, workspace } => {
            check_key(&key)?;
            let ws = settings_scope::workspace_at(store, &workspace)?;
            if !store.memory().forget(ws.id, &key)? {
                bail!(
                    "{} has no note {key:?} (`katachi ai note ls` lists them)",
                    ws.path
                );
            }
            out.emit(
                &serde_json::json!({ "workspace": ws.path, "key": key, "removed": true }),
                || format!("deleted the note {key:?} of {}", ws.path),
            );
        }
    }
    Ok(())
}
