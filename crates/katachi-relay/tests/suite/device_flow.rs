//! RFC 8628 device authorization against the real relay, on SQLite and on PostgreSQL.

use super::support::*;

async fn full_flow(backend: Backend) {
    let relay = TestRelay::start_with(backend, |_| {}).await;
    let browser = relay.client();
    sign_up(&relay, &browser, "dev@example.com").await;
    let agent_http = relay.client();
    let dc = request_device_code(&relay, &agent_http).await;
    let user_code = dc["user_code"].as_str().unwrap();
    assert_eq!(user_code.len(), 9);
    assert_eq!(&user_code[4..5], "-");
    assert!(dc["verification_uri_complete"]
        .as_str()
        .unwrap()
        .ends_with(user_code));
    let device_code = dc["device_code"].as_str().unwrap();

    let (status, pending) = poll_token(&relay, &agent_http, device_code).await;
    assert_eq!(
        (status, pending["error"].as_str()),
        (400, Some("authorization_pending"))
    );

    // The approval page shows the device's name, OS and address.
    let page = page_text(
        &browser,
        relay.at(&format!("/device?user_code={user_code}")),
    )
    .await;
    assert!(
        page.contains("build-box") && page.contains("Debian 12") && page.contains("127.0.0.1"),
        "{page}"
    );
    assert_eq!(
        decide(&relay, &browser, user_code, "approve")
            .await
            .status(),
        200
    );

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, tok) = poll_token(&relay, &agent_http, device_code).await;
    assert_eq!(status, 200, "{tok}");
    assert!(tok["agent_id"].as_str().unwrap().starts_with("agt_"));
    assert_eq!(tok["token_type"], "bearer");
    assert_eq!(tok["signing_secret"].as_str().unwrap().len(), 64);

    // Single use.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, again) = poll_token(&relay, &agent_http, device_code).await;
    assert_eq!(
        (status, again["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert!(again["error_description"]
        .as_str()
        .unwrap()
        .contains("already used"));

    let agent = Agent {
        id: tok["agent_id"].as_str().unwrap().into(),
        token: tok["access_token"].as_str().unwrap().into(),
        secret: tok["signing_secret"].as_str().unwrap().into(),
    };
    assert_eq!(heartbeat(&relay, &agent_http, &agent).await.0, 200);
    let mine: serde_json::Value = browser
        .get(relay.at("/api/me/agents"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mine[0]["status"], "online");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_flow_issues_credentials_once_after_approval_on_sqlite() {
    full_flow(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_flow_issues_credentials_once_after_approval_on_postgres() {
    full_flow(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_faster_than_the_interval_gets_slow_down() {
    let relay = TestRelay::start_with(Backend::Sqlite, |c| c.device_poll_interval = 5).await;
    let http = relay.client();
    let dc = request_device_code(&relay, &http).await;
    let code = dc["device_code"].as_str().unwrap();
    assert_eq!(
        poll_token(&relay, &http, code).await.1["error"],
        "authorization_pending"
    );
    let (status, v) = poll_token(&relay, &http, code).await;
    assert_eq!((status, v["error"].as_str()), (400, Some("slow_down")));
    assert!(
        v["error_description"].as_str().unwrap().contains("10 s"),
        "interval grows by 5 s: {v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_expired_unknown_and_malformed_requests_get_their_own_errors() {
    let relay = TestRelay::start_with(Backend::Sqlite, |c| c.device_code_ttl = 2).await;
    let browser = relay.client();
    sign_up(&relay, &browser, "deny@example.com").await;
    let http = relay.client();

    let dc = request_device_code(&relay, &http).await;
    let page = decide(&relay, &browser, dc["user_code"].as_str().unwrap(), "deny")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("Device denied"));
    assert_eq!(
        poll_token(&relay, &http, dc["device_code"].as_str().unwrap())
            .await
            .1["error"],
        "access_denied"
    );

    let expiring = request_device_code(&relay, &http).await;
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    assert_eq!(
        poll_token(&relay, &http, expiring["device_code"].as_str().unwrap())
            .await
            .1["error"],
        "expired_token"
    );

    let (status, v) = poll_token(&relay, &http, "0000").await;
    assert_eq!((status, v["error"].as_str()), (400, Some("invalid_grant")));
    assert!(v["error_description"].as_str().unwrap().contains("unknown"));

    let wrong_grant: serde_json::Value = http
        .post(relay.at("/oauth/token"))
        .form(&[
            ("grant_type", "password"),
            ("device_code", "x"),
            ("client_id", "katachi-agent"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(wrong_grant["error"], "unsupported_grant_type");
    let wrong_client = http
        .post(relay.at("/oauth/device/code"))
        .form(&[("client_id", "someone-else")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_client.status(), 401);
    let long_name = "x".repeat(101);
    let too_long = http
        .post(relay.at("/oauth/device/code"))
        .form(&[
            ("client_id", "katachi-agent"),
            ("device_name", long_name.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(too_long.status(), 400);
    let garbage = http
        .post(relay.at("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("%%%=&&")
        .send()
        .await
        .unwrap();
    assert!(garbage.status().is_client_error());
    // Still serving.
    request_device_code(&relay, &http).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_codes_are_case_and_dash_insensitive_on_entry() {
    let relay = TestRelay::start().await;
    let browser = relay.client();
    sign_up(&relay, &browser, "case@example.com").await;
    let dc = request_device_code(&relay, &relay.client()).await;
    let typed = dc["user_code"]
        .as_str()
        .unwrap()
        .replace('-', " ")
        .to_lowercase();
    let page = page_text(&browser, relay.at("/device")).await;
    let csrf = csrf_of(&page);
    let confirm = browser
        .post(relay.at("/device"))
        .form(&[("user_code", typed.as_str()), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(confirm.status(), 200);
    assert!(confirm
        .text()
        .await
        .unwrap()
        .contains("Connect this device?"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_user_codes_is_limited() {
    let relay = TestRelay::start().await;
    let browser = relay.client();
    sign_up(&relay, &browser, "guess@example.com").await;
    let page = page_text(&browser, relay.at("/device")).await;
    let csrf = csrf_of(&page);
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let r = browser
            .post(relay.at("/device"))
            .form(&[("user_code", "CCCC-CCCC"), ("csrf", &csrf)])
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(&statuses[..9], &[404; 9]);
    assert_eq!(statuses[11], 429, "{statuses:?}");
    // Even a real code is refused while limited.
    let dc = request_device_code(&relay, &relay.client()).await;
    let r = browser
        .post(relay.at("/device"))
        .form(&[
            ("user_code", dc["user_code"].as_str().unwrap()),
            ("csrf", &csrf),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_approval_page_requires_sign_in_and_comes_back_after_it() {
    let relay = TestRelay::start().await;
    let browser = relay.client();
    let r = browser
        .get(relay.at("/device?user_code=CDFG-HJKM"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        "/login?next=%2Fdevice%3Fuser_code%3DCDFG-HJKM"
    );
}

/// RFC 8628 §5.4: the link an attacker sends carries the code, so following it and clicking
/// "Approve" must not connect their device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_click_from_the_complete_link_does_not_approve() {
    let relay = TestRelay::start().await;
    let browser = relay.client();
    sign_up(&relay, &browser, "phished@example.com").await;
    let agent_http = relay.client();
    let dc = request_device_code(&relay, &agent_http).await;
    let user_code = dc["user_code"].as_str().unwrap();
    let device_code = dc["device_code"].as_str().unwrap();

    // The page from the link asks for the code and does not show it anywhere a click could carry.
    let page = page_text(&browser, dc["verification_uri_complete"].as_str().unwrap()).await;
    assert!(page.contains("name=\"confirm_code\""), "{page}");
    assert!(!page.contains(&format!("value=\"{user_code}\" name=\"confirm_code\"")));
    assert!(
        !page.contains(&format!("<strong class=\"code\">{user_code}")),
        "{page}"
    );

    // Clicking "Approve" as the page comes (the field empty or left out) is refused.
    for typed in [None, Some("")] {
        let r = decide_typing(&relay, &browser, user_code, "approve", typed).await;
        assert_eq!(r.status(), 400, "{typed:?}");
        assert!(r
            .text()
            .await
            .unwrap()
            .contains("Type the code your device shows"));
    }
    // A code that is not the device's is refused too.
    let wrong = if user_code == "CCCC-CCCC" {
        "DDDD-DDDD"
    } else {
        "CCCC-CCCC"
    };
    let r = decide_typing(&relay, &browser, user_code, "approve", Some(wrong)).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("is not this device"));

    let (status, pending) = poll_token(&relay, &agent_http, device_code).await;
    assert_eq!(
        (status, pending["error"].as_str()),
        (400, Some("authorization_pending")),
        "the device was connected without the code typed"
    );

    // Typing the code the device shows (any case, any separator) approves.
    let typed = user_code.to_lowercase().replace('-', " ");
    let r = decide_typing(&relay, &browser, user_code, "approve", Some(&typed)).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Device connected"));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, tok) = poll_token(&relay, &agent_http, device_code).await;
    assert_eq!(status, 200, "{tok}");
}

/// A code typed into the entry form is already typed: the confirmation carries it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_typed_into_the_entry_form_approves_from_its_confirmation() {
    let relay = TestRelay::start().await;
    let browser = relay.client();
    sign_up(&relay, &browser, "typist@example.com").await;
    let agent_http = relay.client();
    let dc = request_device_code(&relay, &agent_http).await;
    let user_code = dc["user_code"].as_str().unwrap();
    let csrf = csrf_of(&page_text(&browser, relay.at("/device")).await);
    let confirm = browser
        .post(relay.at("/device"))
        .form(&[("user_code", user_code), ("csrf", &csrf)])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(confirm.contains("You typed the code"), "{confirm}");
    let confirm_code = {
        let marker = "name=\"confirm_code\" value=\"";
        let at = confirm.find(marker).expect("typed code carried") + marker.len();
        confirm[at..at + 8].to_owned()
    };
    let r = browser
        .post(relay.at("/device"))
        .form(&[
            ("user_code", user_code),
            ("confirm_code", &confirm_code),
            ("action", "approve"),
            ("csrf", &csrf),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Device connected"));
}

/// The device asked for its code from another address than the approver's: the page says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_approval_page_warns_when_the_device_asked_from_another_address() {
    let relay = TestRelay::start().await;
    let browser = relay.client();
    sign_up(&relay, &browser, "faraway@example.com").await;

    let elsewhere = client_from(&relay, "127.0.0.2".parse().unwrap());
    let dc = request_device_code(&relay, &elsewhere).await;
    let page = page_text(&browser, dc["verification_uri_complete"].as_str().unwrap()).await;
    assert!(page.contains("id=\"device-ip\">127.0.0.2<"), "{page}");
    assert!(page.contains("id=\"ip-warning\""), "{page}");
    assert!(
        page.contains("asked for its code from the address 127.0.0.2")
            && page.contains("you are connecting from 127.0.0.1"),
        "{page}"
    );

    // A device on the approver's own address gets no warning.
    let here = request_device_code(&relay, &relay.client()).await;
    let page = page_text(
        &browser,
        here["verification_uri_complete"].as_str().unwrap(),
    )
    .await;
    assert!(page.contains("id=\"device-ip\">127.0.0.1<"), "{page}");
    assert!(!page.contains("ip-warning"), "{page}");
}
