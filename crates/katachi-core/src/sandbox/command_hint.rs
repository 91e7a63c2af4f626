//! How an `exec` denial tells the user to allow a command, in words that hold: a command that
//! works as written (`katachi sandbox policy set … --allow-cmd NAME`, quoted for the shell), the
//! plain name to send instead of a path, or why the program cannot be allowed at all.

use std::path::Path;

use super::command_path::command_key;
use super::denied::{policy_set_command, shell_word};
use super::policy::{resolve_command, SandboxPolicy};

impl SandboxPolicy {
    /// How to allow `name`, in words that hold: a command that works as written, or why none can.
    pub(crate) fn exec_hint(&self, name: &str) -> String {
        let is_path = name.contains('/') || (cfg!(windows) && name.contains('\\'));
        let base = Path::new(name).file_name().and_then(|b| b.to_str());
        match (is_path, base) {
            // only plain names can be allowed: name the program the path would be
            (true, Some(base)) => match self.commands.get(command_key(base).as_ref()) {
                Some(c) => format!(
                    "commands are sent by name, not by path: send `{base}` (allowed here: it runs {})",
                    c.path.display()
                ),
                None => match resolve_command(base, &self.workspaces, &self.hidden) {
                    Ok(_) => format!(
                        "commands are sent by name, not by path: send `{base}` once it is allowed; {}",
                        self.allow_cmd_text(base)
                    ),
                    Err(e) => format!("commands are sent by name, and `{base}` cannot be allowed: {e}"),
                },
            },
            (true, None) => "commands are sent by plain name (e.g. `git`), not by path".to_owned(),
            (false, _) => match resolve_command(name, &self.workspaces, &self.hidden) {
                Ok(_) => self.allow_cmd_text(name),
                Err(e) => format!("it cannot be allowed: {e}"),
            },
        }
    }

    /// The command that allows `name` in this policy's workspace, for the browser as for the CLI.
    fn allow_cmd_text(&self, name: &str) -> String {
        let flag = format!("--allow-cmd {}", shell_word(name));
        match self.workspaces.first() {
            // the lasting way; `--allow-cmd` alone is one run's
            Some(ws) => format!(
                "on the agent's machine run `{}` (or add {flag} to one katachi sandbox run)",
                policy_set_command(&ws.root, &flag)
            ),
            None => format!("add {flag} to the katachi sandbox run command"),
        }
    }
}
