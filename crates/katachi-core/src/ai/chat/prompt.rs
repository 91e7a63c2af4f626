//! The system prompt: katachi's instructions to the model, then the workspace memory — the
//! repository's own instruction files and the notes the user saved.

/// The repository files read into the prompt, in this order, when present at the workspace root.
pub const MEMORY_FILES: [&str; 3] = ["AGENTS.md", "CLAUDE.md", "GEMINI.md"];

/// Most bytes of one memory file put into the prompt (the rest is cut, and the cut is said).
pub const MEMORY_FILE_MAX_BYTES: usize = 16 * 1024;

/// Most bytes of all saved notes put into the prompt.
pub const NOTES_MAX_BYTES: usize = 8 * 1024;

/// katachi's own instructions.
const INSTRUCTIONS: &str = "You are katachi's coding assistant. You work on the user's code on their own machine, \
in one workspace folder, only through the tools you are given. Paths are relative to the workspace root.\n\
- Look before you change: list and read files first. To change an existing file, pass the sha256 that read_file \
returned as `expected_sha256` to write_file, or use apply_patch with a unified diff.\n\
- Writes, patches and commands wait for the user's approval. If the user refuses, do not try the same action \
again: ask what they want instead.\n\
- Commands run in a sandbox: only the workspace's allowed commands, files only inside the workspace, no network \
except allowed hosts. When a tool result says `sandbox.denied` or `path.protected`, do not retry it or work \
around it: tell the user what was denied and the `how_to_allow` it gives. You cannot change the sandbox or the \
allowed workspaces.\n\
- Keep answers short and concrete; say what you changed and how you checked it.";

/// The system prompt for a turn in workspace `workspace_name` with its memory.
pub fn system_prompt(
    workspace_name: &str,
    files: &[(&str, String)],
    notes: &[(String, String)],
) -> String {
    let mut prompt = format!("{INSTRUCTIONS}\n\nThe workspace is \"{workspace_name}\".");
    for (name, content) in files {
        let (text, cut) = cut_at(content, MEMORY_FILE_MAX_BYTES);
        prompt.push_str(&format!("\n\n# Workspace memory: {name}\n\n{text}"));
        if cut {
            prompt.push_str(&format!("\n\n[{name} is longer; the rest was left out]"));
        }
    }
    if !notes.is_empty() {
        prompt.push_str("\n\n# Notes the user saved for this workspace\n");
        let mut used = 0;
        for (key, value) in notes {
            let line = format!("\n- {key}: {value}");
            used += line.len();
            if used > NOTES_MAX_BYTES {
                prompt.push_str("\n[more notes were left out]");
                break;
            }
            prompt.push_str(&line);
        }
    }
    prompt
}

/// `text` cut to at most `max` bytes on a character boundary; true when cut.
pub(crate) fn cut_at(text: &str, max: usize) -> (&str, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (&text[..end], true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_files_and_notes_follow_the_instructions_and_long_ones_are_cut_on_a_char_boundary() {
        let long = "é".repeat(MEMORY_FILE_MAX_BYTES);
        let prompt = system_prompt(
            "shop",
            &[
                ("AGENTS.md", "Run `make check`.".to_owned()),
                ("CLAUDE.md", long),
            ],
            &[("style".to_owned(), "tabs".to_owned())],
        );
        assert!(prompt.starts_with("You are katachi's coding assistant."));
        assert!(prompt.contains("The workspace is \"shop\"."));
        assert!(prompt.contains("# Workspace memory: AGENTS.md\n\nRun `make check`."));
        assert!(prompt.contains("[CLAUDE.md is longer; the rest was left out]"));
        assert!(prompt.ends_with("- style: tabs"));
    }
}
