use super::*;

fn root(dir: &std::path::Path) -> WorkspaceRoot {
    WorkspaceRoot {
        id: 1,
        root: std::fs::canonicalize(dir).unwrap(),
        protected: Default::default(),
    }
}

const TWO_FILES: &str = "\
--- a/one.txt
+++ b/one.txt
@@ -1,2 +1,2 @@
 keep
-old one
+new one
--- a/two.txt
+++ b/two.txt
@@ -1 +1 @@
-old two
+new two
";

#[test]
fn git_prefixes_are_dropped_only_when_both_sides_carry_them() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("one.txt"), "keep\nold one\n").unwrap();
    std::fs::create_dir(tmp.path().join("a")).unwrap();
    std::fs::write(tmp.path().join("a/x"), "1\n").unwrap();
    let ws = root(tmp.path());
    let plan = plan_patch(&ws, TWO_FILES.split("--- a/two").next().unwrap(), 1 << 20).unwrap();
    assert_eq!(plan.result(false).files[0].path, "one.txt");
    // `a/x` on both sides: not git's prefixes, the file `a/x` itself
    let plain = "--- a/x\n+++ a/x\n@@ -1 +1 @@\n-1\n+2\n";
    let plan = plan_patch(&ws, plain, 1 << 20).unwrap();
    assert_eq!(plan.result(false).files[0].path, "a/x");
}

#[test]
fn a_file_changed_meanwhile_restores_the_files_already_committed() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("one.txt"), "keep\nold one\n").unwrap();
    std::fs::write(tmp.path().join("two.txt"), "old two\n").unwrap();
    let ws = root(tmp.path());
    let plan = plan_patch(&ws, TWO_FILES, 1 << 20).unwrap();
    let staged = stage(&ws, &plan).unwrap();
    // another program rewrites the second file between the plan and its commit
    std::fs::write(tmp.path().join("two.txt"), "someone else's\n").unwrap();
    let err = commit(staged).unwrap_err();
    assert_eq!(err.code(), ErrorCode::FileConflict);
    assert!(err.message().contains("restored"), "{}", err.message());
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("one.txt")).unwrap(),
        "keep\nold one\n",
        "the first file was rolled back"
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("two.txt")).unwrap(),
        "someone else's\n"
    );
    let leftovers = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".katachi-tmp-")
        })
        .count();
    assert_eq!(leftovers, 0, "no temp file left behind");
}

#[test]
fn renames_and_binary_patches_are_refused_as_invalid() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("x"), "1\n").unwrap();
    let ws = root(tmp.path());
    let rename = "--- a/x\n+++ b/y\n@@ -1 +1 @@\n-1\n+2\n";
    let err = plan_patch(&ws, rename, 1 << 20).unwrap_err();
    assert_eq!(err.code(), ErrorCode::PatchInvalid, "{}", err.message());
    let err = plan_patch(&ws, "just some words\n", 1 << 20).unwrap_err();
    assert_eq!(err.code(), ErrorCode::PatchInvalid, "{}", err.message());
}

#[cfg(unix)]
#[test]
fn folders_made_for_a_patch_that_fails_at_commit_are_removed() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("two.txt"), "old two\n").unwrap();
    let ws = root(tmp.path());
    let diff = "--- /dev/null\n+++ b/new/deep/x.rs\n@@ -0,0 +1 @@\n+x\n--- a/two.txt\n+++ b/two.txt\n@@ -1 +1 @@\n-old two\n+new two\n";
    let plan = plan_patch(&ws, diff, 1 << 20).unwrap();
    assert!(!tmp.path().join("new").exists(), "planning makes nothing");
    let staged = stage(&ws, &plan).unwrap();
    assert!(
        tmp.path().join("new/deep").is_dir(),
        "staging makes the folders"
    );
    std::fs::write(tmp.path().join("two.txt"), "someone else's\n").unwrap();
    assert_eq!(commit(staged).unwrap_err().code(), ErrorCode::FileConflict);
    assert!(
        !tmp.path().join("new").exists(),
        "the new folders are gone again"
    );
}
