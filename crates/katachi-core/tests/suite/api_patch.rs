//! `POST /v1/workspaces/{id}/patch` over real loopback HTTP: multi-file unified diffs applied all
//! or nothing, under the API's path rules.

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::api_support::{code, has_temp_files, sha256_hex, ApiServer};

async fn patch(s: &ApiServer, body: Value) -> (StatusCode, Value) {
    let res = s
        .client
        .post(s.ws_url("/patch"))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap())
}

fn read(s: &ApiServer, rel: &str) -> String {
    std::fs::read_to_string(s.ws.join(rel)).unwrap()
}

#[tokio::test]
async fn a_git_patch_modifies_creates_and_deletes_files_and_answers_their_new_hashes() {
    let s = ApiServer::start().await;
    s.put_file("src/lib.rs", b"fn a() {}\nfn b() {}\n");
    s.put_file("old.txt", b"bye\n");
    let diff = "\
diff --git a/src/lib.rs b/src/lib.rs
index 1111111..2222222 100644
--- a/src/lib.rs
+++ b/src/lib.rs
@@ -1,2 +1,3 @@
 fn a() {}
+fn a2() {}
 fn b() {}
diff --git a/src/new.rs b/src/new.rs
new file mode 100644
index 0000000..3333333
--- /dev/null
+++ b/src/new.rs
@@ -0,0 +1 @@
+pub fn new() {}
diff --git a/old.txt b/old.txt
deleted file mode 100644
index 4444444..0000000
--- a/old.txt
+++ /dev/null
@@ -1 +0,0 @@
-bye
";
    let (status, body) = patch(&s, json!({ "patch": diff })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["applied"], true);
    let lib = "fn a() {}\nfn a2() {}\nfn b() {}\n";
    assert_eq!(read(&s, "src/lib.rs"), lib);
    assert_eq!(read(&s, "src/new.rs"), "pub fn new() {}\n");
    assert!(!s.ws.join("old.txt").exists());
    let files = body["files"].as_array().unwrap();
    assert_eq!(files.len(), 3);
    assert_eq!(files[0]["path"], "src/lib.rs");
    assert_eq!(files[0]["change"], "modified");
    assert_eq!(files[0]["sha256"], sha256_hex(lib.as_bytes()).as_str());
    assert_eq!(files[1]["change"], "created");
    assert_eq!(files[2]["change"], "deleted");
    assert!(files[2].get("sha256").is_none());
    // the answered hash is the one a later write expects
    let (status, _) = s
        .write("src/lib.rs", files[0]["sha256"].as_str().unwrap(), b"x")
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_hunk_that_fails_in_the_second_file_leaves_the_first_untouched() {
    let s = ApiServer::start().await;
    s.put_file("one.txt", b"a\nb\n");
    s.put_file("two.txt", b"x\ny\n");
    let diff = "\
--- a/one.txt
+++ b/one.txt
@@ -1,2 +1,2 @@
 a
-b
+B
--- a/two.txt
+++ b/two.txt
@@ -1,2 +1,2 @@
 x
-not what is there
+z
";
    let (status, body) = patch(&s, json!({ "patch": diff })).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(code(&body), "patch.does_not_apply");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("two.txt") && message.contains("hunk #1"),
        "{message}"
    );
    assert_eq!(read(&s, "one.txt"), "a\nb\n", "nothing was written");
    assert!(!has_temp_files(&s.ws));
}

#[tokio::test]
async fn check_says_what_would_change_and_writes_nothing() {
    let s = ApiServer::start().await;
    s.put_file("f.txt", b"1\n");
    let diff = "--- f.txt\n+++ f.txt\n@@ -1 +1 @@\n-1\n+2\n";
    let (status, body) = patch(&s, json!({ "patch": diff, "check": true })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["applied"], false);
    assert_eq!(body["files"][0]["sha256"], sha256_hex(b"2\n").as_str());
    assert_eq!(read(&s, "f.txt"), "1\n");
}

#[tokio::test]
async fn protected_and_escaping_paths_are_refused_before_anything_is_written() {
    let s = ApiServer::start().await;
    s.put_file("ok.txt", b"1\n");
    s.put_file(".git/config", b"[core]\n");
    let first = "--- a/ok.txt\n+++ b/ok.txt\n@@ -1 +1 @@\n-1\n+2\n";
    let cases = [
        (
            "--- a/.git/config\n+++ b/.git/config\n@@ -1 +1 @@\n-[core]\n+[core]\n\thooksPath = x\n",
            "path.protected",
        ),
        (
            "--- /dev/null\n+++ b/.env\n@@ -0,0 +1 @@\n+TOKEN=1\n",
            "path.protected",
        ),
        (
            "--- a/../outside/secret\n+++ b/../outside/secret\n@@ -1 +1 @@\n-TOP-SECRET\n+x\n",
            "path.parent_dir",
        ),
        (
            "--- /dev/null\n+++ /etc/evil\n@@ -0,0 +1 @@\n+x\n",
            "path.absolute",
        ),
    ];
    for (second, expected) in cases {
        let (status, body) = patch(&s, json!({ "patch": format!("{first}{second}") })).await;
        assert!(status.is_client_error(), "{second}: {status} {body}");
        assert_eq!(code(&body), expected, "{second}: {body}");
        assert_eq!(read(&s, "ok.txt"), "1\n", "{second}: first file untouched");
    }
    assert_eq!(read(&s, ".git/config"), "[core]\n");
    assert_eq!(
        std::fs::read_to_string(s.outside.join("secret")).unwrap(),
        "TOP-SECRET\n"
    );
    assert!(!s.ws.join(".env").exists());
}

#[cfg(unix)]
#[tokio::test]
async fn a_symlink_leading_out_of_the_workspace_is_refused() {
    let s = ApiServer::start().await;
    std::os::unix::fs::symlink(s.outside.join("secret"), s.ws.join("link")).unwrap();
    let diff = "--- a/link\n+++ b/link\n@@ -1 +1 @@\n-TOP-SECRET\n+owned\n";
    let (status, body) = patch(&s, json!({ "patch": diff })).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(code(&body), "path.outside_workspace");
    assert_eq!(
        std::fs::read_to_string(s.outside.join("secret")).unwrap(),
        "TOP-SECRET\n"
    );
}

#[tokio::test]
async fn bad_requests_get_specific_codes() {
    let s = ApiServer::start().await;
    s.put_file("f.txt", b"1\n");
    let (status, body) = patch(&s, json!({ "diff": "x" })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code(&body), "request.invalid");
    let (_, body) = patch(&s, json!({ "patch": "hello\n" })).await;
    assert_eq!(code(&body), "patch.invalid", "{body}");
    let twice = "--- a/f.txt\n+++ b/f.txt\n@@ -1 +1 @@\n-1\n+2\n--- a/f.txt\n+++ b/f.txt\n@@ -1 +1 @@\n-2\n+3\n";
    let (_, body) = patch(&s, json!({ "patch": twice })).await;
    assert_eq!(code(&body), "patch.invalid", "{body}");
    let create_existing = "--- /dev/null\n+++ b/f.txt\n@@ -0,0 +1 @@\n+x\n";
    let (status, body) = patch(&s, json!({ "patch": create_existing })).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(code(&body), "patch.does_not_apply", "{body}");
    let missing = "--- a/nope.txt\n+++ b/nope.txt\n@@ -1 +1 @@\n-1\n+2\n";
    let (status, body) = patch(&s, json!({ "patch": missing })).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(code(&body), "path.not_found", "{body}");
    assert_eq!(read(&s, "f.txt"), "1\n");
}

#[cfg(unix)]
#[tokio::test]
async fn a_new_file_in_new_folders_makes_them_and_refused_ones_make_nothing() {
    let s = ApiServer::start().await;
    let diff = "\
--- /dev/null
+++ b/tests/unit/new_test.rs
@@ -0,0 +1 @@
+#[test] fn t() {}
--- /dev/null
+++ b/tests/unit/more.rs
@@ -0,0 +1 @@
+// more
";
    let (status, body) = patch(&s, json!({ "patch": diff })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["files"][0]["resolved_path"], "tests/unit/new_test.rs");
    assert_eq!(read(&s, "tests/unit/new_test.rs"), "#[test] fn t() {}\n");
    assert_eq!(read(&s, "tests/unit/more.rs"), "// more\n");

    // refused by the path rules: no folder is left behind
    std::os::unix::fs::symlink(&s.outside, s.ws.join("out")).unwrap();
    let cases = [
        ("--- /dev/null\n+++ b/.git/hooks/pre-commit\n@@ -0,0 +1 @@\n+x\n", "path.protected", ".git"),
        ("--- /dev/null\n+++ b/out/new/f\n@@ -0,0 +1 @@\n+x\n", "path.outside_workspace", "out/new"),
        ("--- /dev/null\n+++ b/fresh/dir/f\n@@ -0,0 +1 @@\n+x\n--- a/none\n+++ b/none\n@@ -1 +1 @@\n-a\n+b\n", "path.not_found", "fresh"),
    ];
    for (diff, expected, folder) in cases {
        let (status, body) = patch(&s, json!({ "patch": diff })).await;
        assert!(status.is_client_error(), "{diff}: {body}");
        assert_eq!(code(&body), expected, "{diff}: {body}");
        assert!(!s.ws.join(folder).exists(), "{folder} was not made");
    }
    assert!(!s.outside.join("new").exists());
}
