//! `katachi workspace add|rm|ls` end to end.

use super::support::Home;

#[test]
fn workspace_add_ls_rm_round_trip() {
    let home = Home::new();
    let ws = home.mkdir("projects/app");
    let add = home.run(&["--json", "workspace", "add", ws.to_str().unwrap()]);
    assert_eq!(add.code, 0, "{}", add.stderr);
    assert_eq!(add.json()["outcome"], "added");
    let canonical = std::fs::canonicalize(&ws).unwrap();
    assert_eq!(add.json()["workspace"]["path"], canonical.to_str().unwrap());

    let again = home.run(&[
        "--json",
        "workspace",
        "add",
        ws.join("..").join("app").to_str().unwrap(),
    ]);
    assert_eq!(again.json()["outcome"], "already_allowed");

    let inner = home.mkdir("projects/app/src");
    let covered = home.run(&["workspace", "add", inner.to_str().unwrap()]);
    assert_eq!(covered.code, 0);
    assert!(
        covered.stdout.contains("inside the allowed workspace"),
        "{}",
        covered.stdout
    );

    let ls = home.run(&["--json", "workspace", "ls"]).json();
    assert_eq!(ls.as_array().unwrap().len(), 1);
    assert_eq!(ls[0]["exists"], true);

    let rm = home.run(&["workspace", "rm", canonical.to_str().unwrap()]);
    assert_eq!(rm.code, 0, "{}", rm.stderr);
    let empty = home.run(&["workspace", "ls"]);
    assert!(
        empty.stdout.contains("no allowed workspaces yet"),
        "{}",
        empty.stdout
    );
}

#[test]
fn parent_folder_absorbs_allowed_children() {
    let home = Home::new();
    let a = home.mkdir("code/a");
    let b = home.mkdir("code/b");
    for p in [&a, &b] {
        assert_eq!(home.run(&["workspace", "add", p.to_str().unwrap()]).code, 0);
    }
    let parent = home
        .run(&[
            "--json",
            "workspace",
            "add",
            a.parent().unwrap().to_str().unwrap(),
        ])
        .json();
    assert_eq!(parent["absorbed"].as_array().unwrap().len(), 2);
    assert_eq!(
        home.run(&["--json", "workspace", "ls"])
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn bad_workspace_paths_get_stable_error_codes() {
    let home = Home::new();
    let file = home.tmp.path().join("notes.txt");
    std::fs::write(&file, "x").unwrap();
    let cases = [
        (
            file.to_str().unwrap().to_owned(),
            "workspace.not_a_directory",
        ),
        (
            home.tmp.path().join("missing").to_str().unwrap().to_owned(),
            "workspace.not_found",
        ),
        ("/".to_owned(), "workspace.filesystem_root"),
        (
            home.data().to_str().unwrap().to_owned(),
            "workspace.protected",
        ),
    ];
    for (path, code) in cases {
        let run = home.run(&["--json", "workspace", "add", &path]);
        assert_eq!(run.code, 1, "{path}");
        assert_eq!(run.json()["error"]["code"], code, "{path}: {}", run.stdout);
    }
    let rm = home.run(&[
        "--json",
        "workspace",
        "rm",
        home.tmp.path().to_str().unwrap(),
    ]);
    assert_eq!(rm.json()["error"]["code"], "workspace.not_allowed");
    let text = home.run(&["workspace", "add", file.to_str().unwrap()]);
    assert!(
        text.stderr.contains("is not a directory"),
        "{}",
        text.stderr
    );
}
