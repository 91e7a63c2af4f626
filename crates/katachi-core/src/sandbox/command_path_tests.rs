use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::*;

/// An environment with these variables only (the process environment is never touched).
fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
    let vars: Vec<(String, OsString)> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
        .collect();
    move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

fn paths(list: &[&str]) -> Vec<PathBuf> {
    list.iter().map(PathBuf::from).collect()
}

/// A file system holding exactly these files.
fn files(list: &[PathBuf]) -> impl Fn(&Path) -> bool {
    let set: BTreeSet<PathBuf> = list.iter().cloned().collect();
    move |p| set.contains(p)
}

#[test]
fn unix_folders_and_path_are_exactly_the_fixed_trusted_path() {
    if cfg!(windows) {
        return;
    }
    assert_eq!(
        trusted_folders(),
        paths(&[
            "/usr/local/bin",
            "/usr/bin",
            "/bin",
            "/usr/local/sbin",
            "/usr/sbin",
            "/sbin"
        ])
    );
    assert_eq!(trusted_path_env(), OsString::from(TRUSTED_PATH));
    assert!(is_trusted_command("cat"));
    assert!(!is_trusted_command("../bin/cat"));
}

#[test]
fn unix_command_not_found_names_the_trusted_path() {
    if cfg!(windows) {
        return;
    }
    let e = find_command("no-such-program-katachi").unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("command \"no-such-program-katachi\" was not found in the trusted PATH ({TRUSTED_PATH})")
    );
}

#[test]
fn windows_folders_are_system32_the_windows_folder_and_git_for_windows() {
    let folders = windows_trusted_folders(env(&[
        ("SystemRoot", r"D:\WINDOWS"),
        ("ProgramFiles", r"D:\Program Files"),
        ("PATH", r"C:\Users\me\bin;."),
    ]));
    assert_eq!(
        folders,
        paths(&[
            r"D:\WINDOWS\System32",
            r"D:\WINDOWS",
            r"D:\Program Files\Git\cmd",
            r"D:\Program Files\Git\usr\bin",
        ])
    );
}

#[test]
fn windows_program_files_prefers_the_64_bit_folder() {
    let folders = windows_trusted_folders(env(&[
        ("SystemRoot", r"C:\Windows"),
        ("ProgramFiles", r"C:\Program Files (x86)"),
        ("ProgramW6432", r"C:\Program Files"),
    ]));
    assert_eq!(folders[2], PathBuf::from(r"C:\Program Files\Git\cmd"));
}

#[test]
fn windows_without_usable_values_falls_back_to_c_windows_and_leaves_git_out() {
    let empty = windows_trusted_folders(env(&[]));
    assert_eq!(empty, paths(&[r"C:\Windows\System32", r"C:\Windows"]));
    for bad in [
        r"Windows",          // relative: the current folder
        r".\Windows",        // relative
        r"\Windows",         // rooted on the current drive
        r"C:Windows",        // drive-relative
        r"C:\",              // the drive root
        r"\\server\share\W", // UNC
        r"\\?\C:\Windows",   // verbatim
        r"C:\Windows\..\Users\me",
        r"C:\Windows;C:\Users\me\bin", // would add a folder to PATH
        "C:\\Win\"dows",
        "C:\\Win\ndows",
        "C:/Windows",
    ] {
        let folders = windows_trusted_folders(env(&[("SystemRoot", bad), ("ProgramFiles", bad)]));
        assert_eq!(folders, empty, "{bad}");
    }
}

#[test]
fn windows_trailing_backslashes_are_dropped() {
    let folders = windows_trusted_folders(env(&[("SystemRoot", r"C:\Windows\\")]));
    assert_eq!(folders[0], PathBuf::from(r"C:\Windows\System32"));
    assert_eq!(
        windows_system_root(&env(&[("SystemRoot", r"E:\Win\")])),
        r"E:\Win"
    );
}

#[test]
fn windows_path_value_joins_the_folders_with_semicolons() {
    let folders = paths(&[r"C:\Windows\System32", r"C:\Windows"]);
    assert_eq!(
        join_windows_path(&folders),
        OsString::from(r"C:\Windows\System32;C:\Windows")
    );
    assert_eq!(join_windows_path(&[]), OsString::new());
}

#[test]
fn windows_names_with_paths_drives_streams_or_forbidden_characters_are_refused() {
    for bad in [
        "",
        r"..\git",
        r"C:\git",
        "bin/git",
        "c:git",
        "git.exe:stream",
        "git*",
        "gi?t",
        "a<b",
        "a>b",
        "a|b",
        "a\"b",
        "git\0",
        "git\t",
        "git.",
        "git ",
        ".",
        "..",
    ] {
        let e = check_windows_command_name(bad).unwrap_err();
        assert!(matches!(e, PolicyError::BadCommandName(_)), "{bad:?}: {e}");
    }
}

#[test]
fn windows_device_names_are_refused_in_any_case_and_with_any_extension() {
    for bad in [
        "CON", "con", "Nul", "nul.exe", "NUL .txt", "aux", "prn", "COM1", "com9.com", "LPT1",
        "lpt9", "CONIN$", "conout$", "COM¹",
    ] {
        let e = check_windows_command_name(bad).unwrap_err();
        assert!(
            matches!(e, PolicyError::ReservedCommandName(_)),
            "{bad:?}: {e}"
        );
    }
    for good in ["git", "console", "nuls", "com10", "python3.12", "7z"] {
        assert!(check_windows_command_name(good).is_ok(), "{good}");
    }
}

#[test]
fn windows_names_are_tried_as_com_then_exe_unless_they_have_a_program_extension() {
    assert_eq!(windows_file_names("git").unwrap(), ["git.com", "git.exe"]);
    assert_eq!(
        windows_file_names("python3.12").unwrap(),
        ["python3.12.com", "python3.12.exe"]
    );
    assert_eq!(windows_file_names("git.exe").unwrap(), ["git.exe"]);
    assert_eq!(windows_file_names("Git.EXE").unwrap(), ["Git.EXE"]);
    assert_eq!(windows_file_names("more.com").unwrap(), ["more.com"]);
}

#[test]
fn windows_batch_files_are_refused_saying_they_would_run_through_cmd() {
    for bad in ["build.bat", "build.cmd", "BUILD.CMD", "x.Bat"] {
        let e = windows_file_names(bad).unwrap_err();
        assert!(matches!(e, PolicyError::BatchFile { .. }), "{bad}: {e}");
        assert!(e.to_string().contains("cmd.exe"), "{e}");
    }
}

#[test]
fn windows_search_takes_the_first_folder_then_the_first_extension() {
    let folders = paths(&[r"C:\Windows\System32", r"C:\Program Files\Git\usr\bin"]);
    let sort_sys = folders[0].join("sort.exe");
    let sort_git = folders[1].join("sort.exe");
    let tree_com = folders[1].join("tree.com");
    let tree_exe = folders[1].join("tree.exe");
    let fs = files(&[
        sort_sys.clone(),
        sort_git,
        tree_com.clone(),
        tree_exe.clone(),
    ]);
    assert_eq!(
        find_windows_command("sort", &folders, &fs).unwrap(),
        sort_sys
    );
    assert_eq!(
        find_windows_command("tree", &folders, &fs).unwrap(),
        tree_com
    );
    assert_eq!(
        find_windows_command("tree.exe", &folders, &fs).unwrap(),
        tree_exe
    );
}

#[test]
fn windows_a_batch_file_in_a_trusted_folder_is_explained_not_run() {
    let folders = paths(&[r"C:\Program Files\Git\cmd"]);
    let batch = folders[0].join("start-ssh-agent.cmd");
    let fs = files(std::slice::from_ref(&batch));
    let e = find_windows_command("start-ssh-agent", &folders, &fs).unwrap_err();
    match e {
        PolicyError::BatchFile { name, file } => {
            assert_eq!(name, "start-ssh-agent");
            assert_eq!(file, batch.display().to_string());
        }
        other => panic!("{other}"),
    }
}

#[test]
fn windows_command_not_found_names_every_folder_searched() {
    let folders = paths(&[r"C:\Windows\System32", r"C:\Windows"]);
    let e = find_windows_command("git", &folders, files(&[])).unwrap_err();
    assert!(matches!(e, PolicyError::CommandNotFound { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        r#"command "git" was not found in the trusted PATH (C:\Windows\System32;C:\Windows)"#
    );
}

#[test]
fn windows_bad_names_are_refused_before_any_folder_is_looked_at() {
    let folders = paths(&[r"C:\Windows\System32"]);
    let looked = std::cell::Cell::new(false);
    let e = find_windows_command(r"..\evil", &folders, |_| {
        looked.set(true);
        true
    })
    .unwrap_err();
    assert!(matches!(e, PolicyError::BadCommandName(_)), "{e}");
    assert!(!looked.get());
}

#[test]
fn windows_command_keys_ignore_case() {
    assert_eq!(windows_command_key("Git"), windows_command_key("GIT"));
    assert_eq!(windows_command_key("Git.EXE"), "git.exe");
}

#[test]
fn unix_command_keys_keep_case() {
    if cfg!(windows) {
        return;
    }
    assert_eq!(command_key("Git"), "Git");
}

#[test]
fn verbatim_disk_paths_lose_their_prefix_only_when_the_plain_form_is_the_same_file() {
    let strip = |p: &str| strip_verbatim_disk_prefix(Path::new(p));
    assert_eq!(
        strip(r"\\?\C:\Program Files\Git\cmd\git.exe"),
        Some(PathBuf::from(r"C:\Program Files\Git\cmd\git.exe"))
    );
    assert_eq!(strip(r"C:\Windows\System32\where.exe"), None);
    assert_eq!(strip(r"\\?\UNC\server\share\git.exe"), None);
    assert_eq!(strip(r"\\?\GLOBALROOT\Device\x.exe"), None);
    assert_eq!(strip(r"\\?\C:\tools\git.\x.exe"), None);
    assert_eq!(strip(r"\\?\C:\tools\nul\x.exe"), None);
    let long = format!(r"\\?\C:\{}\x.exe", "a".repeat(300));
    assert_eq!(strip(&long), None);
}

#[test]
fn windows_drive_roots_and_system_folders_are_never_workspaces() {
    let vars = env(&[
        ("SystemRoot", r"D:\WINNT"),
        ("ProgramFiles", r"D:\Apps"),
        ("ProgramData", r"D:\Data"),
    ]);
    for refused in [
        r"C:\",
        r"\\?\E:\",
        r"d:",
        r"D:\WINNT",
        r"\\?\d:\winnt\",
        r"D:\Apps",
        r"D:\Data",
        r"D:\Program Files (x86)",
        r"D:\Users",
    ] {
        assert!(is_windows_system_folder(refused, &vars), "{refused}");
    }
    for allowed in [
        r"D:\WINNT\..\src",
        r"D:\Users\alice\code",
        r"\\?\D:\Apps\mine",
        r"C:\src\project",
    ] {
        assert!(!is_windows_system_folder(allowed, &vars), "{allowed}");
    }
    // without the variables, the defaults still hold
    assert!(is_windows_system_folder(r"C:\Windows", env(&[])));
    assert!(is_windows_system_folder(r"c:\program files", env(&[])));
}
