//! The signed MCP calls against a real MCP server (rmcp, Streamable HTTP on loopback): tools
//! listed and called with the stored secret sent as a header and never handed back; every
//! signature check applies; another user's server, private addresses and dead servers are refused
//! with their own codes.

use std::time::{Duration, Instant};

use katachi_testkit::McpTestServer;
use reqwest::Client;
use serde_json::{json, Value};

use super::support::*;

const TOOLS: &str = "/api/agent/mcp/tools";
const CALL: &str = "/api/agent/mcp/call";
const SECRET: &str = "Bearer sk-mcp-secret-4242";

/// Adds an MCP server on the MCP page as the browser does; its id.
pub(super) async fn add_server(
    relay: &TestRelay,
    browser: &Client,
    name: &str,
    command: &str,
    url: &str,
    env: &str,
) -> String {
    let page = page_text(browser, relay.at("/settings/mcp")).await;
    let r = browser
        .post(relay.at("/settings/mcp"))
        .header("origin", &relay.url)
        .form(&[
            ("name", name),
            ("command", command),
            ("url", url),
            ("env", env),
            ("csrf", &csrf_of(&page)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    let page = page_text(browser, relay.at("/settings/mcp")).await;
    let row = page
        .split("<tr data-mcp-id=\"")
        .skip(1)
        .find(|row| row.contains(&format!("<td class=\"name\">{name}</td>")))
        .unwrap_or_else(|| panic!("no row for {name} in {page}"));
    row.split('"').next().unwrap().to_owned()
}

async fn call(relay: &TestRelay, agent: &Agent, body: Value) -> (u16, Value) {
    let body = serde_json::to_vec(&body).unwrap();
    let (status, v, _) =
        send_signed(relay, &relay.client(), agent, &Signed::new(CALL, &body)).await;
    (status, v)
}

async fn list(relay: &TestRelay, agent: &Agent) -> (u16, Value, String) {
    let (status, v, _) = send_signed(relay, &relay.client(), agent, &Signed::new(TOOLS, b"")).await;
    let text = v.to_string();
    (status, v, text)
}

fn server<'a>(list: &'a Value, id: &str) -> &'a Value {
    list["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["server_id"] == id)
        .unwrap_or_else(|| panic!("{id} not in {list}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_are_listed_and_called_with_the_secret_as_a_header_that_never_comes_back() {
    let mcp = McpTestServer::start().await.unwrap();
    let relay = TestRelay::start_with(Backend::Postgres, |c| {
        c.mcp.allow_private_addresses = true;
        c.mcp.max_result_bytes = 4096;
    })
    .await;
    let (browser, agent) = registered_agent(&relay, "mcp-user@example.com").await;
    let remote = add_server(
        &relay,
        &browser,
        "tools",
        "",
        mcp.url(),
        &format!("AUTHORIZATION={SECRET}"),
    )
    .await;
    let local = add_server(&relay, &browser, "local", "npx some-server", "", "").await;

    let (status, listed, text) = list(&relay, &agent).await;
    assert_eq!(status, 200, "{listed}");
    let tools = server(&listed, &remote);
    assert_eq!(tools["server_name"], "tools");
    assert!(tools.get("error").is_none(), "{tools}");
    let names: Vec<&str> = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for want in ["echo", "whoami", "fail", "repeat"] {
        assert!(names.contains(&want), "{names:?}");
    }
    let echo = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "echo")
        .unwrap();
    assert_eq!(echo["description"], "Echo the given text back");
    assert_eq!(echo["input_schema"]["properties"]["text"]["type"], "string");
    // a local server is listed as unavailable, with why; the remote one still is
    let stdio = server(&listed, &local);
    assert_eq!(stdio["error"]["code"], "mcp.not_remote");
    assert_eq!(stdio["tools"], json!([]));

    let (status, echoed) = call(
        &relay,
        &agent,
        json!({"server_id": remote, "tool": "echo", "arguments": {"text": "hello over MCP"}}),
    )
    .await;
    assert_eq!(status, 200, "{echoed}");
    assert_eq!(echoed["content"][0]["text"], "hello over MCP");
    assert_eq!(echoed["is_error"], false);

    // the secret reached the server as the Authorization header, and is redacted from its echo
    let (status, whoami) = call(
        &relay,
        &agent,
        json!({"server_id": remote, "tool": "whoami", "arguments": {}}),
    )
    .await;
    assert_eq!(status, 200, "{whoami}");
    assert_eq!(mcp.authorizations(), vec![SECRET.to_owned()]);
    assert_eq!(whoami["content"][0]["text"], "<redacted>");

    let (_, failed) = call(
        &relay,
        &agent,
        json!({"server_id": remote, "tool": "fail", "arguments": {}}),
    )
    .await;
    assert_eq!(failed["is_error"], true, "{failed}");

    let (status, unknown_tool) = call(
        &relay,
        &agent,
        json!({"server_id": remote, "tool": "no_such_tool", "arguments": {}}),
    )
    .await;
    assert!(
        status == 502 && code(&unknown_tool) == "mcp.tool_failed"
            || status == 200 && unknown_tool["is_error"] == true,
        "{status} {unknown_tool}"
    );

    let (status, big) = call(
        &relay,
        &agent,
        json!({"server_id": remote, "tool": "repeat", "arguments": {"count": 10000}}),
    )
    .await;
    assert_eq!((status, code(&big)), (502, "mcp.result_too_large"), "{big}");

    let (status, stdio_call) = call(
        &relay,
        &agent,
        json!({"server_id": local, "tool": "x", "arguments": {}}),
    )
    .await;
    assert_eq!((status, code(&stdio_call)), (409, "mcp.not_remote"));

    for answer in [
        &text,
        &echoed.to_string(),
        &failed.to_string(),
        &big.to_string(),
    ] {
        assert!(!answer.contains("sk-mcp-secret"), "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_calls_are_refused_unsigned_replayed_revoked_and_for_another_users_server() {
    let mcp = McpTestServer::start().await.unwrap();
    let relay = TestRelay::start_with(Backend::Sqlite, |c| {
        c.mcp.allow_private_addresses = true;
    })
    .await;
    let (browser, agent) = registered_agent(&relay, "owner@example.com").await;
    let (other_browser, other_agent) = registered_agent(&relay, "other@example.com").await;
    let mine = add_server(&relay, &browser, "mine", "", mcp.url(), "").await;
    let theirs = add_server(&relay, &other_browser, "theirs", "", mcp.url(), "").await;
    let http = relay.client();

    // unsigned: no signing headers at all
    let r = http
        .post(relay.at(CALL))
        .json(&json!({"server_id": mine, "tool": "echo", "arguments": {"text": "x"}}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    assert_eq!((status, code(&v)), (400, "signature.missing_header"));

    // replayed: the same signed request twice
    let body =
        serde_json::to_vec(&json!({"server_id": mine, "tool": "echo", "arguments": {"text": "x"}}))
            .unwrap();
    let once = Signed::new(CALL, &body);
    assert_eq!(send_signed(&relay, &http, &agent, &once).await.0, 200);
    let (status, v, _) = send_signed(&relay, &http, &agent, &once).await;
    assert_eq!((status, code(&v)), (401, "signature.replayed_nonce"));

    // another user's server looks like no server at all, listing and calling
    let (status, v) = call(
        &relay,
        &agent,
        json!({"server_id": theirs, "tool": "echo", "arguments": {"text": "x"}}),
    )
    .await;
    assert_eq!((status, code(&v)), (404, "mcp.server_unknown"));
    let (_, listed, _) = list(&relay, &agent).await;
    assert_eq!(listed["servers"].as_array().unwrap().len(), 1, "{listed}");
    let (_, other_list, _) = list(&relay, &other_agent).await;
    assert_eq!(other_list["servers"][0]["server_id"], theirs.as_str());

    // revoked: refused even with a good signature
    let state = relay.state.as_ref().unwrap();
    let row = state
        .store
        .agents_of(
            &state
                .store
                .agent_by_token_hash(&sha256_hex(&agent.token))
                .await
                .unwrap()
                .unwrap()
                .user_id,
        )
        .await
        .unwrap();
    let user_id = row[0].user_id.clone();
    assert!(state
        .store
        .revoke_agent(&agent.id, &user_id, now())
        .await
        .unwrap());
    let (status, v, _) = list(&relay, &agent).await;
    assert_eq!((status, code(&v)), (403, "agent.revoked"));
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_addresses_are_refused_unless_the_relay_allows_them() {
    let mcp = McpTestServer::start().await.unwrap();
    let relay = TestRelay::start().await;
    let (browser, agent) = registered_agent(&relay, "ssrf@example.com").await;
    let by_ip = add_server(&relay, &browser, "by ip", "", mcp.url(), "").await;
    let by_name = add_server(
        &relay,
        &browser,
        "by name",
        "",
        &mcp.url().replace("127.0.0.1", "localhost"),
        "",
    )
    .await;
    for id in [&by_ip, &by_name] {
        let (status, v) = call(
            &relay,
            &agent,
            json!({"server_id": id, "tool": "echo", "arguments": {"text": "x"}}),
        )
        .await;
        assert_eq!((status, code(&v)), (403, "mcp.address_refused"), "{v}");
    }
    let (_, listed, _) = list(&relay, &agent).await;
    for s in listed["servers"].as_array().unwrap() {
        assert_eq!(s["error"]["code"], "mcp.address_refused", "{s}");
    }
    assert!(mcp.authorizations().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_fails_fast_with_mcp_unreachable() {
    // a port that was just free: nothing listens there
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let relay = TestRelay::start_with(Backend::Sqlite, |c| {
        c.mcp.allow_private_addresses = true;
    })
    .await;
    let (browser, agent) = registered_agent(&relay, "dead@example.com").await;
    let dead = add_server(
        &relay,
        &browser,
        "dead",
        "",
        &format!("http://127.0.0.1:{port}/mcp"),
        "",
    )
    .await;
    let started = Instant::now();
    let (status, v) = call(
        &relay,
        &agent,
        json!({"server_id": dead, "tool": "echo", "arguments": {"text": "x"}}),
    )
    .await;
    assert_eq!((status, code(&v)), (502, "mcp.unreachable"), "{v}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
