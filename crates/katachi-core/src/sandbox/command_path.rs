//! Where allowed commands come from: a fixed list of trusted folders per OS, searched by plain
//! name when a policy is built. The same folders are the `PATH` the command itself gets.
//!
//! Never searched: the caller's `PATH`, the current folder, a workspace — a repository cannot
//! plant a fake `git`.
//!
//! # Unix
//! [`TRUSTED_PATH`], in order; a command is the first regular file with an execute bit.
//!
//! # Windows
//! The folders come from the system ([`windows_trusted_folders`]), in order:
//! 1. `%SystemRoot%\System32` and 2. `%SystemRoot%` (where Windows' own default `PATH` begins);
//! 3. `%ProgramFiles%\Git\cmd` (Git for Windows' `git.exe`) and 4. `%ProgramFiles%\Git\usr\bin`
//!    (its `cat`, `diff`, `grep`, `ls`, …), where `%ProgramFiles%` is `ProgramW6432` when set (the
//!    64-bit folder, also seen from a 32-bit agent), else `ProgramFiles`.
//!
//! These are trusted because only administrators can write them by default. Left out on purpose:
//! per-user installs (`%LOCALAPPDATA%\Programs\Git`, scoop, user-scope winget), which any program
//! of the user can write, a command katachi runs included; `Program Files (x86)`; PowerShell's
//! folder. An environment value that is not a local absolute folder (`C:\…`, not the drive root,
//! no `..`, no `;`) is ignored: `SystemRoot` falls back to `C:\Windows`, the Git folders are left
//! out.
//!
//! A name is tried as `NAME.com`, then `NAME.exe` in each folder (the order of Windows' own
//! `PATHEXT`); a name that already ends in `.exe` or `.com` (any case) is tried as it is. File
//! names match case-insensitively, as the file system does, and a policy files its commands under
//! the lowercased name. Batch files (`.bat`, `.cmd`) are refused: they run through `cmd.exe`, whose
//! parsing of the command line differs from every other program's and can turn an argument into a
//! second command. Refused names: with `\`, `/` or `:`, with a character Windows forbids in file
//! names, ending in a dot or a space (Windows strips those), or a reserved device name (`CON`,
//! `NUL`, `COM1`, …, with or without an extension).

use std::borrow::Cow;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::policy::{PolicyError, TRUSTED_PATH};

/// Extensions of Windows programs that start directly, in `PATHEXT` order.
const WINDOWS_PROGRAM_EXTENSIONS: &[&str] = &["com", "exe"];

/// Extensions of Windows batch files: they would run through `cmd.exe`.
const WINDOWS_BATCH_EXTENSIONS: &[&str] = &["bat", "cmd"];

/// Device names Windows reserves in every folder (with any extension).
const WINDOWS_RESERVED_NAMES: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "COM0", "COM1", "COM2", "COM3", "COM4",
    "COM5", "COM6", "COM7", "COM8", "COM9", "COM¹", "COM²", "COM³", "LPT0", "LPT1", "LPT2", "LPT3",
    "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9", "LPT¹", "LPT²", "LPT³",
];

/// Characters Windows forbids in a file name (besides control characters), and `\`, `/`, `:`.
const WINDOWS_FORBIDDEN_CHARS: &[char] = &['\\', '/', ':', '<', '>', '"', '|', '?', '*'];

/// Where Windows lives when `SystemRoot` is missing or unusable.
const WINDOWS_DEFAULT_SYSTEM_ROOT: &str = r"C:\Windows";

/// The folders searched for allowed commands on this OS, in order.
pub fn trusted_folders() -> Vec<PathBuf> {
    if cfg!(windows) {
        windows_trusted_folders(|name| std::env::var_os(name))
    } else {
        TRUSTED_PATH.split(':').map(PathBuf::from).collect()
    }
}

/// The `PATH` a command gets: the trusted folders, joined as this OS joins them.
pub fn trusted_path_env() -> OsString {
    if cfg!(windows) {
        join_windows_path(&trusted_folders())
    } else {
        TRUSTED_PATH.into()
    }
}

/// Whether `name` is a program in the trusted folders (the API leaves out missing defaults).
pub fn is_trusted_command(name: &str) -> bool {
    find_command(name).is_ok()
}

/// Finds the program `name` (a plain name) in the trusted folders.
///
/// # Errors
/// [`PolicyError::BadCommandName`] for a path or an unusable name (Windows also
/// [`PolicyError::ReservedCommandName`] and, for batch files, [`PolicyError::BatchFile`]);
/// [`PolicyError::CommandNotFound`] naming the folders searched.
pub(crate) fn find_command(name: &str) -> Result<PathBuf, PolicyError> {
    if cfg!(windows) {
        return find_windows_command(name, &trusted_folders(), |p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file())
        });
    }
    if name.is_empty() || name.contains(['/', '\0']) || name == "." || name == ".." {
        return Err(PolicyError::BadCommandName(name.to_owned()));
    }
    trusted_folders()
        .into_iter()
        .map(|dir| dir.join(name))
        .find(|p| is_executable_file(p))
        .ok_or_else(|| not_found(name))
}

/// The error for a command found nowhere, naming the folders searched.
pub(crate) fn not_found(name: &str) -> PolicyError {
    PolicyError::CommandNotFound {
        name: name.to_owned(),
        searched: trusted_path_env().to_string_lossy().into_owned(),
    }
}

/// The key a policy files an allowed command under: the name as given on Unix, lowercased on
/// Windows (where `GIT` and `git` are the same program).
pub(crate) fn command_key(name: &str) -> Cow<'_, str> {
    if cfg!(windows) {
        Cow::Owned(windows_command_key(name))
    } else {
        Cow::Borrowed(name)
    }
}

/// The path a resolved command is started and shown with: on Windows without the `\\?\` prefix
/// that canonicalization adds, where the plain form means the same file.
pub(crate) fn spawnable_path(path: PathBuf) -> PathBuf {
    if cfg!(windows) {
        strip_verbatim_disk_prefix(&path).unwrap_or(path)
    } else {
        path
    }
}

#[cfg(unix)]
fn is_executable_file(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// No execute bit outside Unix: any regular file may be a program.
#[cfg(not(unix))]
fn is_executable_file(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file())
}

// ---- Windows, as plain functions of their inputs (unit-tested on Linux) ----

/// The trusted command folders of a Windows machine whose environment `var` reads (see the module
/// docs for the list and why).
pub(crate) fn windows_trusted_folders(var: impl Fn(&str) -> Option<OsString>) -> Vec<PathBuf> {
    let root = windows_system_root(&var);
    let mut folders = vec![format!(r"{root}\System32"), root];
    let program_files = local_absolute_folder(var("ProgramW6432"))
        .or_else(|| local_absolute_folder(var("ProgramFiles")));
    if let Some(pf) = program_files {
        folders.push(format!(r"{pf}\Git\cmd"));
        folders.push(format!(r"{pf}\Git\usr\bin"));
    }
    folders.into_iter().map(PathBuf::from).collect()
}

/// The Windows folder (`SystemRoot`, checked), or `C:\Windows` when it is missing or unusable.
pub(crate) fn windows_system_root(var: &impl Fn(&str) -> Option<OsString>) -> String {
    local_absolute_folder(var("SystemRoot"))
        .unwrap_or_else(|| WINDOWS_DEFAULT_SYSTEM_ROOT.to_owned())
}

/// `value` without trailing `\` when it is a local absolute folder below a drive root (`C:\X…`):
/// never relative (the current folder), UNC or `\\?\`, `..`, or with a `;`/`"` that would split
/// or quote a `PATH`.
fn local_absolute_folder(value: Option<OsString>) -> Option<String> {
    let value = value?.into_string().ok()?;
    let trimmed = value.trim_end_matches('\\');
    let mut chars = trimmed.chars();
    let drive = chars.next()?;
    let rest = chars.as_str().strip_prefix(r":\")?;
    let usable = drive.is_ascii_alphabetic()
        && !rest.is_empty()
        && !rest.contains(['/', ';', '"', ':'])
        && !rest.chars().any(char::is_control)
        && rest
            .split('\\')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    usable.then(|| trimmed.to_owned())
}

/// `PATH` text from folders: joined with `;` (the folders never hold one: see
/// [`windows_trusted_folders`]).
pub(crate) fn join_windows_path(folders: &[PathBuf]) -> OsString {
    let mut path = OsString::new();
    for (i, folder) in folders.iter().enumerate() {
        if i > 0 {
            path.push(";");
        }
        path.push(folder.as_os_str());
    }
    path
}

/// Checks that `name` is a plain Windows program name.
///
/// # Errors
/// [`PolicyError::BadCommandName`] for a path, a drive, a stream (`:`), a character Windows forbids
/// or a trailing dot or space; [`PolicyError::ReservedCommandName`] for a device name.
pub(crate) fn check_windows_command_name(name: &str) -> Result<(), PolicyError> {
    let bad = name.is_empty()
        || name.contains(WINDOWS_FORBIDDEN_CHARS)
        || name.chars().any(char::is_control)
        || name.ends_with(['.', ' ']);
    if bad {
        return Err(PolicyError::BadCommandName(name.to_owned()));
    }
    if is_reserved_device_name(name) {
        return Err(PolicyError::ReservedCommandName(name.to_owned()));
    }
    Ok(())
}

/// Whether Windows opens a device for this file name: `NUL`, `nul.exe`, `Nul .txt` (the part
/// before the first dot counts, trailing spaces ignored).
fn is_reserved_device_name(file_name: &str) -> bool {
    let stem = file_name
        .split('.')
        .next()
        .unwrap_or(file_name)
        .trim_end_matches(' ')
        .to_lowercase();
    WINDOWS_RESERVED_NAMES
        .iter()
        .any(|r| r.to_lowercase() == stem)
}

/// The file names tried for `name` in each folder, in order.
///
/// # Errors
/// Those of [`check_windows_command_name`], and [`PolicyError::BatchFile`] for a `.bat`/`.cmd` name.
pub(crate) fn windows_file_names(name: &str) -> Result<Vec<String>, PolicyError> {
    check_windows_command_name(name)?;
    let extension = name
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase());
    match extension.as_deref() {
        Some(ext) if WINDOWS_PROGRAM_EXTENSIONS.contains(&ext) => Ok(vec![name.to_owned()]),
        Some(ext) if WINDOWS_BATCH_EXTENSIONS.contains(&ext) => Err(PolicyError::BatchFile {
            name: name.to_owned(),
            file: name.to_owned(),
        }),
        // `python3.12` has a dot but no program extension: it is `python3.12.exe`
        _ => Ok(WINDOWS_PROGRAM_EXTENSIONS
            .iter()
            .map(|ext| format!("{name}.{ext}"))
            .collect()),
    }
}

/// Finds `name` in `folders` (folder by folder, each extension in turn), telling a batch file of
/// that name apart from a missing command.
///
/// # Errors
/// Those of [`windows_file_names`]; [`PolicyError::BatchFile`] when only `NAME.bat`/`NAME.cmd`
/// exists; [`PolicyError::CommandNotFound`] naming `folders`.
pub(crate) fn find_windows_command(
    name: &str,
    folders: &[PathBuf],
    is_file: impl Fn(&Path) -> bool,
) -> Result<PathBuf, PolicyError> {
    let files = windows_file_names(name)?;
    let candidates = |files: &[String]| {
        folders
            .iter()
            .flat_map(|dir| files.iter().map(move |f| dir.join(f)))
            .find(|p| is_file(p))
    };
    if let Some(found) = candidates(&files) {
        return Ok(found);
    }
    let batch: Vec<String> = WINDOWS_BATCH_EXTENSIONS
        .iter()
        .map(|ext| format!("{name}.{ext}"))
        .collect();
    if let Some(file) = candidates(&batch) {
        return Err(PolicyError::BatchFile {
            name: name.to_owned(),
            file: file.display().to_string(),
        });
    }
    Err(PolicyError::CommandNotFound {
        name: name.to_owned(),
        searched: join_windows_path(folders).to_string_lossy().into_owned(),
    })
}

/// The key of a Windows command name: lowercased, as the file system compares names.
pub(crate) fn windows_command_key(name: &str) -> String {
    name.to_lowercase()
}

/// `C:\x` for `\\?\C:\x` (what `canonicalize` returns on Windows), when the plain form names the
/// same file: shorter than `MAX_PATH` and no component Win32 would read differently (trailing dot
/// or space, a device name). `None` for anything else (UNC, device paths, plain paths).
pub(crate) fn strip_verbatim_disk_prefix(path: &Path) -> Option<PathBuf> {
    const MAX_PATH: usize = 260;
    let text = path.to_str()?;
    let plain = text.strip_prefix(r"\\?\")?;
    let mut chars = plain.chars();
    let is_disk =
        chars.next().is_some_and(|c| c.is_ascii_alphabetic()) && chars.as_str().starts_with(r":\");
    let rewritten = plain.split('\\').skip(1).any(|part| {
        part.ends_with(['.', ' ']) || part.contains('/') || is_reserved_device_name(part)
    });
    (is_disk && !rewritten && plain.len() < MAX_PATH).then(|| PathBuf::from(plain))
}

/// Whether `root` (a canonical path, `\\?\` form or plain) is a Windows folder that may never be
/// a workspace: a drive root, the Windows folder, the program folders, `ProgramData`, or the
/// folder holding every user's profile. Compared case-insensitively, as Windows does.
pub(crate) fn is_windows_system_folder(root: &str, var: impl Fn(&str) -> Option<OsString>) -> bool {
    let plain = root.strip_prefix(r"\\?\").unwrap_or(root);
    let norm = |p: &str| p.trim_end_matches('\\').to_lowercase();
    let candidate = norm(plain);
    // `C:` or `C:\` alone: a whole drive
    let mut chars = candidate.chars();
    if chars.next().is_some_and(|c| c.is_ascii_alphabetic()) && chars.as_str() == ":" {
        return true;
    }
    let system_root = windows_system_root(&var);
    let drive = system_root.get(..2).unwrap_or("C:").to_owned();
    let mut refused = vec![
        system_root,
        format!(r"{drive}\Program Files"),
        format!(r"{drive}\Program Files (x86)"),
        format!(r"{drive}\ProgramData"),
        format!(r"{drive}\Users"),
    ];
    for name in [
        "ProgramFiles",
        "ProgramFiles(x86)",
        "ProgramW6432",
        "ProgramData",
    ] {
        refused.extend(local_absolute_folder(var(name)));
    }
    refused.iter().any(|r| norm(r) == candidate)
}

#[cfg(test)]
#[path = "command_path_tests.rs"]
mod tests;
