//! `katachi doctor`: renders the core's diagnosis.

use std::process::ExitCode;

use katachi_core::doctor::{diagnose, CheckStatus};
use katachi_core::fingerprint::SystemFingerprint;
use katachi_core::KatachiDirs;

use crate::output::Output;

pub(crate) fn run(dirs: &KatachiDirs, out: &Output) -> anyhow::Result<ExitCode> {
    let report = diagnose(dirs, &SystemFingerprint);
    out.emit(&report, || {
        let mut text = format!("katachi doctor — {}\n", report.data_dir.display());
        for c in &report.checks {
            let mark = match c.status {
                CheckStatus::Ok => "ok  ",
                CheckStatus::Warn => "WARN",
                CheckStatus::Fail => "FAIL",
                CheckStatus::Skipped => " -  ",
            };
            text.push_str(&format!("  {mark} {:<12} {}\n", c.layer, c.summary));
            if let Some(fix) = &c.fix {
                text.push_str(&format!("       {:<12} fix: {fix}\n", ""));
            }
        }
        text.push_str(if report.healthy() {
            "all layers work"
        } else {
            "some layers failed: see FAIL lines above"
        });
        text
    });
    Ok(if report.healthy() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
