//! `katachi ai use|show|reset|key|note`: which AI provider and model each workspace uses, and the
//! providers' API keys (kept in the OS keychain, sealed with the machine key). Settings live in
//! the store and keys in the keychain, so a running agent uses a change from its next turn.
//! `katachi ai note` (the notes for the model) is in `ai_note`.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use katachi_core::ai::settings::AiSettings;
use katachi_core::ai::settings_scope::{self, key_stored, SettingsScope};
use katachi_core::fingerprint::SystemFingerprint;
use katachi_core::{AgentHome, KatachiDirs, SecretBytes};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::output::Output;

/// `katachi ai` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum AiCommand {
    /// Choose the provider and model (for every workspace, or one with --workspace).
    Use {
        /// `openai` (also OpenAI-compatible servers: Ollama, llama.cpp, vLLM with --base-url) or `anthropic`.
        provider: String,
        /// The provider's model name (e.g. gpt-4.1, claude-sonnet-4-5, qwen2.5-coder).
        model: String,
        /// Another endpoint than the provider's own: https://…, or http:// to this machine only.
        #[arg(long, value_name = "URL")]
        base_url: Option<String>,
        /// The keychain entry of the API key, when not the provider's name (e.g. `ollama`).
        #[arg(long, value_name = "NAME")]
        key_name: Option<String>,
        /// Only for this allowed workspace folder.
        #[arg(long, value_name = "PATH")]
        workspace: Option<PathBuf>,
    },
    /// Show the default and each workspace's provider and model, and which keys are stored.
    Show,
    /// Make a workspace use the default provider again.
    Reset {
        /// The allowed workspace folder.
        #[arg(long, value_name = "PATH")]
        workspace: PathBuf,
    },
    /// Store or remove an API key (read from stdin, or typed without echo on a terminal).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Save, list or delete the notes for the model (put into every chat's instructions).
    #[command(subcommand)]
    Note(crate::ai_note::NoteCommand),
}

/// `katachi ai key` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum KeyCommand {
    /// Store the key of NAME (`openai`, `anthropic`, or a --key-name).
    Set {
        /// The key's name.
        name: String,
    },
    /// Remove the key of NAME.
    Rm {
        /// The key's name.
        name: String,
    },
}

/// What `katachi ai show` prints per row.
#[derive(Debug, Serialize)]
struct ShownSettings {
    /// `default` or the workspace folder.
    scope: String,
    /// The settings, `None` when the workspace uses the default.
    settings: Option<AiSettings>,
    /// Whether the key it names is stored.
    key_stored: Option<bool>,
}

pub(crate) fn run(dirs: &KatachiDirs, cmd: AiCommand, out: &Output) -> anyhow::Result<ExitCode> {
    let home = AgentHome::open(dirs.clone(), &SystemFingerprint)
        .context("cannot open the agent's secrets")?;
    let store = home.store().context("cannot open the agent's store")?;
    match cmd {
        AiCommand::Use {
            provider,
            model,
            base_url,
            key_name,
            workspace,
        } => {
            let settings =
                AiSettings::check(&provider, &model, base_url.as_deref(), key_name.as_deref())?;
            let (scope_name, scope) = match &workspace {
                Some(path) => {
                    let ws = settings_scope::workspace_at(&store, path)?;
                    (ws.path, SettingsScope::Workspace(ws.id))
                }
                None => ("every workspace".to_owned(), SettingsScope::Default),
            };
            settings_scope::set(&store, scope, &settings)?;
            let key_stored = key_stored(&home, &settings.key_name);
            out.emit(&settings, || {
                let mut text = format!(
                    "{scope_name} now uses {} {}{}",
                    settings.provider,
                    settings.model,
                    settings
                        .base_url
                        .as_ref()
                        .map(|u| format!(" at {u}"))
                        .unwrap_or_default()
                );
                if key_stored == Some(false) {
                    text.push_str(&format!(
                        "\nno API key named {0:?} is stored yet: run `katachi ai key set {0}` (not needed for a local server without keys)",
                        settings.key_name
                    ));
                }
                text
            });
        }
        AiCommand::Show => {
            let overview = settings_scope::overview(&store)?;
            let mut rows = vec![ShownSettings {
                scope: "default".to_owned(),
                key_stored: overview
                    .default
                    .as_ref()
                    .and_then(|s| key_stored(&home, &s.key_name)),
                settings: overview.default,
            }];
            for ws in overview.workspaces {
                rows.push(ShownSettings {
                    scope: ws.path,
                    key_stored: ws.own.as_ref().and_then(|s| key_stored(&home, &s.key_name)),
                    settings: ws.own,
                });
            }
            out.emit(&rows, || {
                rows.iter()
                    .map(|r| match &r.settings {
                        Some(s) => format!(
                            "{}: {} {}{} (key {:?}: {})",
                            r.scope,
                            s.provider,
                            s.model,
                            s.base_url
                                .as_ref()
                                .map(|u| format!(" at {u}"))
                                .unwrap_or_default(),
                            s.key_name,
                            match r.key_stored {
                                Some(true) => "stored",
                                Some(false) => "not stored",
                                None => "cannot be read",
                            }
                        ),
                        None if r.scope == "default" => {
                            "default: none set (run `katachi ai use openai gpt-4.1`)".to_owned()
                        }
                        None => format!("{}: uses the default", r.scope),
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        AiCommand::Reset { workspace } => {
            let ws = settings_scope::workspace_at(&store, &workspace)?;
            let (cleared, path) = (settings_scope::reset(&store, ws.id)?, ws.path);
            out.emit(
                &serde_json::json!({ "workspace": path, "cleared": cleared }),
                || {
                    if cleared {
                        format!("{path} uses the default provider again")
                    } else {
                        format!("{path} already uses the default provider")
                    }
                },
            );
        }
        AiCommand::Key(KeyCommand::Set { name }) => {
            katachi_core::vault::check_key_name(&name)?;
            let key = read_key(&name)?;
            home.api_keys().set(&name, &key)?;
            out.emit(&serde_json::json!({ "key": name, "stored": true }), || {
                format!(
                    "stored the API key {name:?} in the keychain (sealed with this machine's key)"
                )
            });
        }
        AiCommand::Note(cmd) => crate::ai_note::run(&store, cmd, out)?,
        AiCommand::Key(KeyCommand::Rm { name }) => {
            let removed = home.api_keys().delete(&name)?;
            out.emit(
                &serde_json::json!({ "key": name, "removed": removed }),
                || {
                    if removed {
                        format!("removed the API key {name:?}")
                    } else {
                        format!("no API key {name:?} was stored")
                    }
                },
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads an API key: typed with echo off on a terminal, else the whole of stdin (one line).
fn read_key(name: &str) -> anyhow::Result<SecretBytes> {
    let stdin = std::io::stdin();
    let mut text = Zeroizing::new(String::new());
    if stdin.is_terminal() {
        eprint!("API key for {name} (not shown): ");
        std::io::stderr().flush().ok();
        let echo = EchoOff::new(&stdin);
        stdin.read_line(&mut text).context("cannot read the key")?;
        drop(echo);
        eprintln!();
    } else {
        stdin
            .lock()
            .take(64 * 1024)
            .read_to_string(&mut text)
            .context("cannot read the key from stdin")?;
    }
    let key = text.trim();
    if key.contains('\n') {
        bail!("the key has several lines; give one key");
    }
    if key.is_empty() {
        bail!("no key was given: type it, or pipe it in (`katachi ai key set {name} < keyfile`)");
    }
    Ok(SecretBytes::new(key.as_bytes().to_vec()))
}

/// The terminal's echo, off until dropped.
struct EchoOff {
    #[cfg(unix)]
    restore: Option<rustix::termios::Termios>,
}

impl EchoOff {
    #[cfg(unix)]
    fn new(stdin: &std::io::Stdin) -> Self {
        use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions};
        let Ok(before) = tcgetattr(stdin) else {
            return Self { restore: None };
        };
        let mut quiet = before.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        if tcsetattr(stdin, OptionalActions::Now, &quiet).is_err() {
            return Self { restore: None };
        }
        Self {
            restore: Some(before),
        }
    }

    #[cfg(not(unix))]
    fn new(_stdin: &std::io::Stdin) -> Self {
        Self {}
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(before) = self.restore.take() {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin(),
                rustix::termios::OptionalActions::Now,
                &before,
            );
        }
    }
}
