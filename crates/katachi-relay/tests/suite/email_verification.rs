//! Password accounts approve devices only with a verified address; verification links are single
//! use and expire. (The mailed link through a real SMTP server: `tests/relay_browser.rs`.)

use super::support::*;

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unverified_account_cannot_approve_devices_and_is_told_where_the_link_went() {
    let relay = TestRelay::start().await;
    let browser = relay.client();
    sign_up_unverified(&relay, &browser, "fresh@example.com").await;
    let agent_http = relay.client();
    let dc = request_device_code(&relay, &agent_http).await;
    let user_code = dc["user_code"].as_str().unwrap();

    let r = browser
        .get(dc["verification_uri_complete"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let page = r.text().await.unwrap();
    assert!(page.contains("Verify your e-mail address first"), "{page}");
    // No SMTP configured: the page says the link is in the relay's log.
    assert!(
        page.contains("local mode") && page.contains("written to the relay"),
        "{page}"
    );
    assert!(page.contains("action=\"/verify-email/resend\""), "{page}");

    // A crafted approval post is refused too.
    let csrf = csrf_of(&page);
    let r = browser
        .post(relay.at("/device"))
        .form(&[
            ("user_code", user_code),
            ("confirm_code", user_code),
            ("action", "approve"),
            ("csrf", &csrf),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let (status, pending) =
        poll_token(&relay, &agent_http, dc["device_code"].as_str().unwrap()).await;
    assert_eq!(
        (status, pending["error"].as_str()),
        (400, Some("authorization_pending"))
    );

    // Re-sending a link is offered and works (local mode: to the log).
    let r = browser
        .post(relay.at("/verify-email/resend"))
        .form(&[("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("A new link is on its way"));

    // Once verified, the same account approves.
    verify_email(&relay, "fresh@example.com").await;
    assert_eq!(
        decide(&relay, &browser, user_code, "approve")
            .await
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verification_link_works_once_by_its_confirm_button_not_by_being_opened_and_not_after_it_expires(
) {
    let relay = TestRelay::start().await;
    let browser = relay.client();
    sign_up_unverified(&relay, &browser, "links@example.com").await;
    let store = &relay.state.as_ref().unwrap().store;
    let user = store
        .user_by_email("links@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.email_verified_at, 0);
    assert!(!user.may_approve_devices());

    let expired = "e".repeat(64);
    store
        .create_email_verification(
            &sha256_hex(&expired),
            &user.id,
            "links@example.com",
            now() - 100,
            now() - 1,
        )
        .await
        .unwrap();
    let r = browser
        .get(relay.at(&format!("/verify-email/{expired}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let token = "a".repeat(64);
    store
        .create_email_verification(
            &sha256_hex(&token),
            &user.id,
            "links@example.com",
            now(),
            now() + 3600,
        )
        .await
        .unwrap();
    // Opening the link (as a prefetching mail scanner would) only asks to confirm: nothing used.
    let link = relay.at(&format!("/verify-email/{token}"));
    for _ in 0..2 {
        let r = browser.get(&link).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let page = r.text().await.unwrap();
        assert!(page.contains("id=\"confirm-verify\""), "{page}");
        assert!(page.contains("links@example.com"), "{page}");
    }
    let user_now = store.user_by_id(&user.id).await.unwrap().unwrap();
    assert!(!user_now.may_approve_devices(), "opening the link verified");
    // A post without the page's CSRF token (another site's form) uses nothing either.
    let forged = relay
        .client()
        .post(&link)
        .form(&[("csrf", "0".repeat(64))])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    // The page's button uses it.
    let page = browser
        .get(&link)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = browser
        .post(&link)
        .form(&[("csrf", csrf_of(&page))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("E-mail address verified"));
    assert!(store
        .user_by_id(&user.id)
        .await
        .unwrap()
        .unwrap()
        .may_approve_devices());
    let again = browser.get(&link).send().await.unwrap();
    assert_eq!(again.status(), 400, "a link works once");
    let again = browser
        .post(&link)
        .form(&[("csrf", csrf_of(&page))])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 400, "a link works once");
    let junk = browser
        .get(relay.at("/verify-email/not-a-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(junk.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_server_that_is_down_does_not_stop_sign_up_and_resending_says_so() {
    // Nothing listens on port 1: the mail cannot be delivered.
    let relay = TestRelay::start_with(Backend::Sqlite, |c| {
        c.smtp_url = Some("smtp://127.0.0.1:1".into())
    })
    .await;
    let browser = relay.client();
    sign_up_unverified(&relay, &browser, "nomail@example.com").await;
    let page = page_text(&browser, relay.at("/device")).await;
    assert!(
        page.contains("We sent a verification link to nomail@example.com"),
        "{page}"
    );
    let r = browser
        .post(relay.at("/verify-email/resend"))
        .form(&[("csrf", csrf_of(&page))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("could not be sent right now"));
}
