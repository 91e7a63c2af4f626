//! `katachi audit [--limit N]` and `katachi audit verify`: the ledger of what was done through the
//! agent and how many bytes left the machine — the promise that code leaves only through structured
//! calls, made visible — and the check that nobody rewrote it.

use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use katachi_core::api::CallDetail;
use katachi_core::fingerprint::SystemFingerprint;
use katachi_core::store::{AuditError, AuditKey, AuditLog, AuditRecord, WorkspaceEgress};
use katachi_core::{AgentHome, KatachiDirs};
use serde::Serialize;

use crate::cli::{AuditArgs, AuditCommand};
use crate::output::Output;

/// Paths listed per record in text mode before "+N more".
const PATHS_SHOWN: usize = 3;

/// The state of the chain, shown with the ledger so its numbers are read with that in mind.
#[derive(Serialize)]
struct ChainState {
    /// Whether every record, link and the head verify.
    intact: bool,
    /// Records in the log (when intact).
    #[serde(skip_serializing_if = "Option::is_none")]
    records: Option<u64>,
    /// The first broken record (when not intact).
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<i64>,
    /// What is wrong (`audit.edited`, …) (when not intact).
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
    /// The same for people (when not intact).
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

/// `katachi audit --json`.
#[derive(Serialize)]
struct Ledger {
    /// Whether the numbers below can be trusted.
    chain: ChainState,
    /// Per workspace: calls and bytes that left the machine.
    egress: Vec<WorkspaceEgress>,
    /// Sum of `egress[].bytes_out`.
    total_bytes_out: i64,
    /// Sum of `egress[].calls`.
    total_calls: i64,
    /// The newest records, newest first.
    records: Vec<AuditRecord>,
}

pub(crate) fn run(dirs: &KatachiDirs, args: &AuditArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let home = AgentHome::open(dirs.clone(), &SystemFingerprint)
        .context("cannot open the agent's secrets")?;
    let store = home.store()?;
    let key = AuditKey::derive(home.machine_key());
    let log = store.audit(&key);
    match args.command {
        Some(AuditCommand::Verify) => verify(&log, out),
        None => show(&log, args.limit, out),
    }
}

/// Exit 0 and a summary when intact; the first break is the error (exit 1, code and seq).
fn verify(log: &AuditLog<'_>, out: &Output) -> anyhow::Result<ExitCode> {
    let report = log.verify().context("the audit log does not verify")?;
    out.emit(&report, || match (report.records, report.unsealed) {
        (0, _) => "audit log intact: no records yet".to_owned(),
        (n, 0) => format!("audit log intact: {n} records, each sealed and chained to the one before"),
        (n, u) => format!(
            "audit log intact: {n} records, {u} of them written before the chain existed (they are sealed by the next record)"
        ),
    });
    Ok(ExitCode::SUCCESS)
}

fn show(log: &AuditLog<'_>, limit: u32, out: &Output) -> anyhow::Result<ExitCode> {
    let chain = match log.verify() {
        Ok(report) => ChainState {
            intact: true,
            records: Some(report.records),
            seq: None,
            code: None,
            message: None,
        },
        Err(AuditError::Store(e)) => return Err(e.into()),
        Err(e) => ChainState {
            intact: false,
            records: None,
            seq: e.seq(),
            code: Some(e.code()),
            message: Some(e.to_string()),
        },
    };
    let egress = log.egress_by_workspace()?;
    let ledger = Ledger {
        total_bytes_out: egress.iter().map(|e| e.bytes_out).sum(),
        total_calls: egress.iter().map(|e| e.calls).sum(),
        records: log.recent(limit)?,
        egress,
        chain,
    };
    out.emit(&ledger, || ledger_text(&ledger));
    Ok(ExitCode::SUCCESS)
}

fn ledger_text(ledger: &Ledger) -> String {
    let mut lines = vec![match &ledger.chain {
        ChainState {
            intact: true,
            records,
            ..
        } => format!(
            "audit chain: intact ({} records)",
            records.unwrap_or_default()
        ),
        ChainState { message, .. } => format!(
            "audit chain: BROKEN, {}; the numbers below may be false",
            message.as_deref().unwrap_or("run `katachi audit verify`")
        ),
    }];
    if ledger.records.is_empty() && ledger.egress.is_empty() {
        lines.push("no calls recorded yet".to_owned());
        return lines.join("\n");
    }
    lines.push(String::new());
    lines.push(
        "per workspace: calls, and the bytes that left this machine through them:".to_owned(),
    );
    let width = ledger
        .egress
        .iter()
        .map(|e| workspace_label(e).len())
        .max()
        .unwrap_or(0)
        .max("workspace".len());
    let row = |label: &str, calls: String, bytes: String| {
        format!("  {label:<width$}  {calls:>7}  {bytes:>10}")
    };
    lines.push(row("workspace", "calls".into(), "bytes out".into()));
    for e in &ledger.egress {
        lines.push(row(
            &workspace_label(e),
            e.calls.to_string(),
            format_bytes(e.bytes_out),
        ));
    }
    lines.push(row(
        "total",
        ledger.total_calls.to_string(),
        format_bytes(ledger.total_bytes_out),
    ));
    lines.push(String::new());
    lines.push(format!(
        "latest {} record(s), newest first:",
        ledger.records.len()
    ));
    lines.extend(ledger.records.iter().map(record_line));
    lines.join("\n")
}

fn workspace_label(e: &WorkspaceEgress) -> String {
    match (&e.workspace_path, e.workspace_id) {
        (Some(path), _) => path.clone(),
        (None, Some(id)) => format!("workspace #{id}"),
        (None, None) => "(no workspace)".to_owned(),
    }
}

/// `#12  2025-01-01T10:00:00Z  browser alice@example.com (user u-1, session s-9)  file.read  /ws: a.rs [GET 206, range bytes=0-99]  ok  4.0 KiB`
fn record_line(r: &AuditRecord) -> String {
    let when = UNIX_EPOCH + Duration::from_secs(u64::try_from(r.at).unwrap_or(0));
    // calls through the tunnel keep method, status and the caller's name as JSON in `detail`
    let call = CallDetail::parse(&r.detail);
    let name = call.as_ref().and_then(|c| c.user_name.as_deref());
    let who = match (name, &r.user, &r.session) {
        (Some(name), Some(user), Some(session)) => {
            format!("{} {name} (user {user}, session {session})", r.actor)
        }
        (None, Some(user), Some(session)) => format!("{} {user} (session {session})", r.actor),
        (_, Some(user), None) => format!("{} {user}", r.actor),
        _ => r.actor.clone(),
    };
    let mut place = r.workspace_path.clone().unwrap_or_default();
    if !r.paths.is_empty() {
        let mut shown = r
            .paths
            .iter()
            .take(PATHS_SHOWN)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        if r.paths.len() > PATHS_SHOWN {
            shown.push_str(&format!(" +{} more", r.paths.len() - PATHS_SHOWN));
        }
        place = if place.is_empty() {
            shown
        } else {
            format!("{place}: {shown}")
        };
    }
    let detail = match &call {
        Some(call) => format!(" [{}]", call_summary(call)),
        None if r.detail.is_empty() => String::new(),
        None => format!(" [{}]", r.detail),
    };
    // names and paths come from outside: no control character reaches the terminal
    printable(&format!(
        "  #{}  {}  {who}  {}  {place}{detail}  {}  {}",
        r.seq,
        humantime::format_rfc3339_seconds(when),
        r.action,
        r.result,
        format_bytes(r.bytes_out)
    ))
}

/// `GET 206, range bytes=0-99, in 4.0 KiB` for a call through the tunnel.
fn call_summary(call: &CallDetail) -> String {
    let mut parts = vec![match call.status {
        Some(status) => format!("{} {status}", call.method),
        None => format!("{} (no response)", call.method),
    }];
    if let Some(id) = call.workspace_asked {
        parts.push(format!("workspace #{id}"));
    }
    if let Some(range) = &call.range {
        parts.push(format!("range {range}"));
    }
    if let Some(query) = &call.query {
        parts.push(format!("query {query:?}"));
    }
    if let Some(command) = &call.command {
        parts.push(format!("command {command}"));
    }
    if call.bytes_in > 0 {
        parts.push(format!(
            "in {}",
            format_bytes(i64::try_from(call.bytes_in).unwrap_or(i64::MAX))
        ));
    }
    parts.join(", ")
}

/// `text` with control characters shown escaped (`\n`, `\u{1b}`), so a file name or user name
/// from the log cannot move the cursor or rewrite the terminal.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// `512 B`, `4.0 KiB`, `1.2 MiB`, …
fn format_bytes(n: i64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    // precision loss above 2^53 bytes does not matter for one decimal
    #[allow(clippy::cast_precision_loss)]
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_shown_in_binary_units() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(4096), "4.0 KiB");
        assert_eq!(format_bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
    }

    fn tunnel_record(paths: Vec<String>, detail: &CallDetail) -> AuditRecord {
        AuditRecord {
            seq: 4,
            at: 0,
            actor: "browser".into(),
            user: Some("u-1".into()),
            session: Some("s-9".into()),
            action: "file.read".into(),
            workspace_id: Some(1),
            workspace_path: Some("/ws".into()),
            paths,
            detail: serde_json::to_string(detail).unwrap(),
            result: "ok".into(),
            bytes_out: 100,
        }
    }

    #[test]
    fn a_tunnel_call_shows_who_what_where_and_its_http_exchange() {
        let detail = CallDetail {
            method: "GET".into(),
            status: Some(206),
            user_name: Some("alice@example.com".into()),
            range: Some("bytes=0-99".into()),
            ..CallDetail::default()
        };
        let line = record_line(&tunnel_record(vec!["src/a.rs".into()], &detail));
        assert!(
            line.contains("browser alice@example.com (user u-1, session s-9)  file.read  /ws: src/a.rs [GET 206, range bytes=0-99]  ok  100 B"),
            "{line}"
        );
    }

    #[test]
    fn control_characters_from_the_log_never_reach_the_terminal() {
        let detail = CallDetail {
            method: "GET".into(),
            user_name: Some("eve\u{1b}[2J".into()),
            ..CallDetail::default()
        };
        let line = record_line(&tunnel_record(vec!["a\nb".into()], &detail));
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(line.contains("a\\nb"), "{line}");
    }
}
