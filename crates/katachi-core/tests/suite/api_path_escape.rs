//! The path-escape battery: every way out of a workspace that the API must refuse, each with its
//! stable error code, over real HTTP. The rules are documented in the `api::paths` module of katachi-core.

use std::os::unix::fs::symlink;

use reqwest::StatusCode;

use super::api_support::{code, encode, encode_bytes, ApiServer};

/// GET `/file?path=<raw query value>` and return status and error code.
async fn read_raw(s: &ApiServer, raw_query_value: &str) -> (StatusCode, String) {
    let (status, body) = s
        .get_json(&s.ws_url(&format!("/file?path={raw_query_value}")))
        .await;
    (status, code(&body).to_owned())
}

async fn read(s: &ApiServer, path: &str) -> (StatusCode, String) {
    read_raw(s, &encode(path)).await
}

#[tokio::test]
async fn parent_dir_components_are_refused() {
    let s = ApiServer::start().await;
    s.put_file("a/b.txt", b"x");
    for p in [
        "../outside/secret",
        "a/../../outside/secret",
        "..",
        "a/../b.txt",
    ] {
        assert_eq!(
            read(&s, p).await,
            (StatusCode::BAD_REQUEST, "path.parent_dir".into()),
            "{p}"
        );
    }
    // percent-encoded dots decode to the same `..`
    assert_eq!(
        read_raw(&s, "%2e%2e%2foutside%2fsecret").await.1,
        "path.parent_dir"
    );
}

#[tokio::test]
async fn absolute_paths_are_refused() {
    let s = ApiServer::start().await;
    let secret = s.outside.join("secret");
    for p in ["/etc/passwd", secret.to_str().unwrap(), "//etc/passwd"] {
        assert_eq!(
            read(&s, p).await,
            (StatusCode::BAD_REQUEST, "path.absolute".into()),
            "{p}"
        );
    }
}

#[tokio::test]
async fn proc_self_root_is_refused_directly_and_through_a_symlink() {
    let s = ApiServer::start().await;
    assert_eq!(
        read(&s, "/proc/self/root/etc/passwd").await.1,
        "path.absolute"
    );
    symlink("/proc/self/root", s.ws.join("root")).unwrap();
    symlink("/proc/self/root/etc/passwd", s.ws.join("passwd")).unwrap();
    for p in ["root/etc/passwd", "passwd", "root"] {
        assert_eq!(
            read(&s, p).await,
            (StatusCode::FORBIDDEN, "path.outside_workspace".into()),
            "{p}"
        );
    }
    let (status, body) = s.get_json(&s.ws_url("/tree?path=root")).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "path.outside_workspace")
    );
}

#[tokio::test]
async fn symlinks_pointing_out_are_refused_for_every_call() {
    let s = ApiServer::start().await;
    symlink(s.outside.join("secret"), s.ws.join("secret-link")).unwrap();
    symlink(&s.outside, s.ws.join("outside-dir")).unwrap();
    // a relative chain that climbs out
    std::fs::create_dir(s.ws.join("d")).unwrap();
    symlink("../../outside/secret", s.ws.join("d/climb")).unwrap();
    // a sibling whose name shares the workspace's prefix (`ws` / `ws-evil`)
    let evil = s.ws.with_file_name("ws-evil");
    std::fs::create_dir(&evil).unwrap();
    std::fs::write(evil.join("secret"), b"TOP-SECRET\n").unwrap();
    symlink(evil.join("secret"), s.ws.join("prefix-trick")).unwrap();

    for p in [
        "secret-link",
        "outside-dir/secret",
        "d/climb",
        "prefix-trick",
    ] {
        assert_eq!(
            read(&s, p).await,
            (StatusCode::FORBIDDEN, "path.outside_workspace".into()),
            "read {p}"
        );
        let (status, body) = s
            .get_json(&s.ws_url(&format!("/stat?path={}", encode(p))))
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::FORBIDDEN, "path.outside_workspace"),
            "stat {p}"
        );
        let (status, body) = s
            .get_json(&s.ws_url(&format!("/search?query=SECRET&path={}", encode(p))))
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::FORBIDDEN, "path.outside_workspace"),
            "search {p}"
        );
        let expected = super::api_support::sha256_hex(b"TOP-SECRET\n");
        let (status, body) = s.write(p, &expected, b"pwned").await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::FORBIDDEN, "path.outside_workspace"),
            "write {p}"
        );
    }
    let (status, body) = s.get_json(&s.ws_url("/tree?path=outside-dir")).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "path.outside_workspace")
    );
    assert_eq!(
        std::fs::read(s.outside.join("secret")).unwrap(),
        b"TOP-SECRET\n"
    );
    assert_eq!(std::fs::read(evil.join("secret")).unwrap(), b"TOP-SECRET\n");

    // a whole-workspace search does not follow the links either
    let (status, body) = s.get_json(&s.ws_url("/search?query=TOP-SECRET")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["matches"].as_array().unwrap().len(), 0, "{body}");
}

#[tokio::test]
async fn symlinks_that_stay_inside_are_followed() {
    let s = ApiServer::start().await;
    s.put_file("src/real.txt", b"inside\n");
    symlink("src/real.txt", s.ws.join("alias")).unwrap();
    symlink("src", s.ws.join("src-link")).unwrap();
    for p in ["alias", "src-link/real.txt"] {
        let res = s
            .client
            .get(s.ws_url(&format!("/file?path={}", encode(p))))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{p}");
        assert_eq!(res.bytes().await.unwrap().as_ref(), b"inside\n");
    }
}

#[tokio::test]
async fn hard_links_are_refused_for_read_write_and_search_but_listed() {
    let s = ApiServer::start().await;
    // same filesystem: the temp folder holds both
    std::fs::hard_link(s.outside.join("secret"), s.ws.join("linked")).unwrap();
    assert_eq!(
        read(&s, "linked").await,
        (StatusCode::FORBIDDEN, "path.hard_link".into())
    );
    let (status, body) = s
        .write(
            "linked",
            &super::api_support::sha256_hex(b"TOP-SECRET\n"),
            b"pwned",
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "path.hard_link")
    );
    assert_eq!(
        std::fs::read(s.outside.join("secret")).unwrap(),
        b"TOP-SECRET\n"
    );
    let (_, body) = s.get_json(&s.ws_url("/search?query=TOP-SECRET")).await;
    assert_eq!(body["matches"].as_array().unwrap().len(), 0);
    assert_eq!(body["files_skipped"], 1);
    let (_, body) = s.get_json(&s.ws_url("/tree")).await;
    assert_eq!(body["entries"][0]["path"], "linked");
    // stat says why, without the content hash
    let (_, body) = s.get_json(&s.ws_url("/stat?path=linked")).await;
    assert_eq!(body["link_count"], 2);
    assert!(body["sha256"].is_null());
}

#[tokio::test]
async fn nul_bytes_are_refused() {
    let s = ApiServer::start().await;
    s.put_file("a", b"x");
    assert_eq!(
        read_raw(&s, "a%00.txt").await,
        (StatusCode::BAD_REQUEST, "path.nul_byte".into())
    );
}

#[tokio::test]
async fn over_long_paths_and_components_are_refused() {
    let s = ApiServer::start().await;
    let long_path = vec!["d"; 2100].join("/");
    assert!(long_path.len() > 4096);
    assert_eq!(
        read(&s, &long_path).await,
        (StatusCode::BAD_REQUEST, "path.too_long".into())
    );
    let long_name = "n".repeat(256);
    assert_eq!(
        read(&s, &long_name).await,
        (StatusCode::BAD_REQUEST, "path.too_long".into())
    );
    // 255 is allowed: it is simply not there
    assert_eq!(read(&s, &"n".repeat(255)).await.1, "path.not_found");
}

#[tokio::test]
async fn non_utf8_names_are_refused_and_skipped() {
    use std::os::unix::ffi::OsStrExt;
    let s = ApiServer::start().await;
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
    std::fs::write(s.ws.join(name), b"latin-1 name").unwrap();
    assert_eq!(
        read_raw(&s, &encode_bytes(b"caf\xe9.txt")).await,
        (StatusCode::BAD_REQUEST, "path.not_utf8".into())
    );
    // a UTF-8 symlink whose target name is not UTF-8
    symlink(name, s.ws.join("to-latin1")).unwrap();
    assert_eq!(read(&s, "to-latin1").await.1, "path.not_utf8");
    let (_, body) = s.get_json(&s.ws_url("/tree")).await;
    assert_eq!(body["skipped_non_utf8"], 1);
    assert_eq!(body["entries"].as_array().unwrap().len(), 1, "{body}");
}

#[tokio::test]
async fn a_dangling_symlink_is_not_written_through() {
    let s = ApiServer::start().await;
    let target = s.outside.join("created-by-api");
    symlink(&target, s.ws.join("dangling")).unwrap();
    let (status, body) = s.write("dangling", "absent", b"pwned").await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "path.dangling_symlink")
    );
    assert!(!target.exists());
}

#[tokio::test]
async fn fifos_are_refused_without_blocking() {
    let s = ApiServer::start().await;
    let fifo = s.ws.join("pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let r = tokio::time::timeout(std::time::Duration::from_secs(10), read(&s, "pipe")).await;
    assert_eq!(
        r.unwrap(),
        (StatusCode::FORBIDDEN, "path.special_file".into())
    );
}

#[tokio::test]
async fn a_workspace_replaced_by_a_symlink_is_unavailable() {
    let s = ApiServer::start().await;
    let moved = s.ws.with_file_name("ws-moved");
    std::fs::rename(&s.ws, &moved).unwrap();
    symlink(&s.outside, &s.ws).unwrap();
    assert_eq!(
        read(&s, "secret").await,
        (StatusCode::CONFLICT, "workspace.unavailable".into())
    );
}

#[tokio::test]
async fn every_file_route_checks_the_path() {
    let s = ApiServer::start().await;
    for route in [
        "/file",
        "/stat",
        "/tree",
        "/search",
        "/git/status",
        "/git/diff",
    ] {
        let url = s.ws_url(&format!("{route}?query=x&path=..%2Foutside"));
        let (status, body) = s.get_json(&url).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, "path.parent_dir"),
            "{route}"
        );
    }
}
