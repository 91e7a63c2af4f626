//! A copy of the agent's files on another machine (a different fingerprint, injected through the
//! `FingerprintSource` seam) opens nothing, and nothing is overwritten.

use katachi_core::agent_home::HomeError;
use katachi_core::doctor::{diagnose, CheckStatus};
use katachi_core::store::Role;
use katachi_core::vault::BindingError;
use katachi_core::AgentHome;

use super::support::{machine, TestHome};

#[test]
fn copied_store_does_not_open_on_another_machine() {
    let home = TestHome::new();
    {
        let agent = home.open("original");
        let store = agent.store().unwrap();
        let s = store.chat().create_session(None, "t").unwrap();
        store
            .chat()
            .append(s.id, Role::User, "private question")
            .unwrap();
    }
    let path = home.dirs.store_path();
    let before = std::fs::read(&path).unwrap();
    // Two of three components differ: the binding needs two of three.
    let err = AgentHome::open(home.dirs.clone(), &machine("other")).unwrap_err();
    assert!(
        matches!(
            err,
            HomeError::Binding(BindingError::TooFewComponents {
                matched: 1,
                needed: 2,
                total: 3,
                ..
            })
        ),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the file is untouched"
    );
    // Back on the original machine, the data is all there.
    let back = home.open("original");
    assert_eq!(back.store().unwrap().chat().message_count().unwrap(), 1);
}

#[test]
fn sealed_credentials_do_not_open_on_another_machine() {
    let home = TestHome::new();
    let agent = home.open("original");
    agent
        .agent_credentials()
        .write(agent.machine_key(), b"token")
        .unwrap();
    let before = std::fs::read(agent.agent_credentials().path()).unwrap();
    let err = AgentHome::open(home.dirs.clone(), &machine("other")).unwrap_err();
    assert!(
        matches!(
            err,
            HomeError::Binding(BindingError::TooFewComponents { .. })
        ),
        "{err}"
    );
    assert_eq!(
        std::fs::read(agent.agent_credentials().path()).unwrap(),
        before
    );
}

#[test]
fn doctor_names_the_component_that_changed() {
    let home = TestHome::new();
    drop(home.open("original").store().unwrap());
    let report = diagnose(&home.dirs, &machine("other"));
    let fp = report
        .checks
        .iter()
        .find(|c| c.layer == "fingerprint")
        .unwrap();
    assert_eq!(fp.status, CheckStatus::Warn);
    assert!(
        fp.summary.contains("machine_id") && fp.summary.contains("nic:eth0"),
        "{}",
        fp.summary
    );
    let changes = fp.summary.split(';').next().unwrap();
    assert!(
        !changes.contains("cpu"),
        "cpu did not change: {}",
        fp.summary
    );
    let binding = report.checks.iter().find(|c| c.layer == "binding").unwrap();
    assert_eq!(binding.status, CheckStatus::Fail);
    assert!(binding.summary.contains("1 of 3"), "{}", binding.summary);
    let store = report.checks.iter().find(|c| c.layer == "store").unwrap();
    assert_eq!(store.status, CheckStatus::Skipped);
    assert!(!report.healthy());
    assert!(diagnose(&home.dirs, &machine("original")).healthy());
}
