//! AI chat in the workbench, end to end: headless Chromium, a relay served in this process, the real
//! `katachi start` (its own `KATACHI_HOME`, signed in by a user approving its code in the browser),
//! set up with `katachi ai use openai … --base-url` and `katachi ai key set openai` against the fake
//! provider of `katachi-testkit` on loopback (the real OpenAI SSE wire, the production client).
//!
//! One user session walks through what the issue asks of the Chat view:
//! - the model's missing setup shown (a message sent meanwhile is refused with it, its text kept),
//!   then the model's name once set up with the CLI;
//! - tokens shown while the provider still streams, and Stop ending the provider call; Stop ending
//!   an approved command that runs, its output shown live;
//! - a multi-step task: a file read, a patch approved from the page (keyboard) with its coloured
//!   diff and then on disk, an allowed `grep` approved and run in the sandbox with its live output,
//!   the model's report;
//! - the workspace's Permissions ledger listing the session grant, Revoke marking it revoked; a
//!   note for the model saved in the panel, listed, and in the next turn's system prompt;
//! - a denied patch and the model's next answer; a provider error mid-stream and the session usable
//!   after it; markup in the model's words shown as text, live and from the store;
//! - the chat's colours following the page's CSS variables (a dark scheme's values);
//! - the chat's activity at the relay (sessions, tool runs, approvals; none of what was said);
//! - rename and export as Markdown; the agent restarted, the session shown again from its store and
//!   a new turn answered with the old conversation; its history paged with "Load older"; delete;
//! - the API key reaching the provider and nothing else: not the agent's or the CLI's output (debug
//!   logging), the page's HTML, the export, the agent's files, or the relay's database files.
//!
//! It also prints how long the first token takes from the provider's send to the page.
//!
//! # Layout
//! - `world.rs`: the relay, fake provider, agent home, `katachi` runs, the browser, page helpers;
//! - `turns.rs`: the set-up and the turns (stop, approvals, denial, provider error);
//! - `settings.rs`: the Permissions ledger and the notes for the model;
//! - `history.rs`: rename, export, restart and resume, paging, delete.
//!
//! Needs `target/debug/katachi` (`cargo build -p katachi-cli`), `/usr/bin/chromium`,
//! `/usr/bin/chromedriver`, and a D-Bus session with a keyring for the agent's keychain:
//! `scripts/with-session.sh cargo test -p katachi-e2e --test relay_chat`. Screenshots go to
//! `$CARGO_TARGET_TMPDIR/screenshots`, or to `docs/screenshots` when `KATACHI_UPDATE_SCREENSHOTS=1`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod history;
mod settings;
mod turns;
mod world;

use std::time::Duration;

use history::*;
use settings::*;
use turns::*;
use world::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_chats_with_the_agent_in_the_workbench_approves_denies_stops_and_resumes_after_a_restart(
) {
    assert!(
        std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some(),
        "no D-Bus session for the agent's keychain: run under scripts/with-session.sh"
    );
    tokio::time::timeout(TEST_BUDGET, async {
        let mut w = set_up().await;
        stop_mid_stream(&w).await;
        stop_a_running_command(&w).await;
        w.assert_page_keyless("after a stopped turn").await;
        multi_step_task(&w).await;
        permissions_and_notes(&w).await;
        denied_tool(&w).await;
        note_reached_the_model(&w);
        provider_error_mid_stream(&w).await;
        w.assert_page_keyless("after the tool calls").await;
        rename_and_export(&w).await;
        restart_and_resume(&mut w).await;
        page_through_history(&w).await;
        chat_follows_the_page_colours(&w).await;
        delete_session(&w).await;
        activity_reached_the_relay(&w).await;
        w.assert_page_keyless("after the restart").await;

        // The key went to the provider, as its bearer token...
        let requests = w.fake.requests();
        assert!(requests.len() >= 10, "{} provider calls", requests.len());
        for request in &requests {
            assert_eq!(
                request.header("authorization"),
                Some(&*format!("Bearer {KEY}"))
            );
        }
        // ...and nowhere else: the agent's and the CLI's output, the agent's files, the relay's.
        let agent_end = blocking(|| w.agent.terminate(Duration::from_secs(15))).unwrap();
        assert!(agent_end.success());
        w.printed += &w.agent.describe("");
        assert!(
            w.printed.contains("DEBUG") || w.printed.contains("debug"),
            "the agent logged at debug level"
        );
        assert!(!w.printed.contains(KEY), "the key is in the agent's output");
        for (path, bytes) in files_under(&w.home)
            .into_iter()
            .chain(files_under(w.relay.data_dir()))
        {
            assert!(!contains(&bytes, KEY), "the key is in {}", path.display());
        }
        w.browser.close().await.unwrap();
    })
    .await
    .expect("the test ran over its time budget");
}
