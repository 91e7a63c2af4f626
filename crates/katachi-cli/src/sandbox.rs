//! `katachi sandbox status|test|run|policy`: show the sandbox layers, run the self-test, run one
//! command under exactly the policy and code path the agent uses, or show and change a workspace's
//! stored overrides.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use katachi_core::fingerprint::SystemFingerprint;
use katachi_core::sandbox::{
    self_test, LimitOverrides, OutputStream, RunRequest, Sandbox, SandboxError, SandboxPolicy,
    Strictness, WorkspaceOverrides,
};
use katachi_core::workspace_admin::PolicyChange;
use katachi_core::{AgentHome, KatachiDirs, Store};

use crate::output::Output;

/// `katachi sandbox` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum SandboxCommand {
    /// List the isolation layers this machine provides.
    Status,
    /// Try a set of escapes on this machine and report each as blocked or not (exit 1 if any got out).
    Test,
    /// Run one command in the sandbox and exit with its status.
    Run(Box<RunArgs>),
    /// Show, add to, or reset the sandbox overrides stored for an allowed workspace.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

/// `katachi sandbox policy` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum PolicyCommand {
    /// Show the overrides stored for a workspace and the policy they give.
    Show {
        /// The allowed workspace (or a folder inside it).
        #[arg(long, value_name = "DIR")]
        workspace: PathBuf,
    },
    /// Add commands and hosts to a workspace's overrides, allow its `.env*` files, set limits.
    Set(Box<PolicySetArgs>),
    /// Remove every override of a workspace (back to the default policy).
    Reset {
        /// The allowed workspace (or a folder inside it).
        #[arg(long, value_name = "DIR")]
        workspace: PathBuf,
    },
}

/// `katachi sandbox policy set` options.
#[derive(Debug, clap::Args)]
pub(crate) struct PolicySetArgs {
    /// The allowed workspace (or a folder inside it).
    #[arg(long, value_name = "DIR")]
    pub workspace: PathBuf,
    /// Allow this command in the workspace; may be repeated.
    #[arg(long = "allow-cmd", value_name = "NAME")]
    pub allow_cmd: Vec<String>,
    /// Allow this host (`host[:port]`, `*.suffix`, an IP literal); may be repeated.
    #[arg(long = "allow-host", value_name = "HOST")]
    pub allow_host: Vec<String>,
    /// Let commands read the workspace's `.env*` files.
    #[arg(long, conflicts_with = "deny_env_files")]
    pub allow_env_files: bool,
    /// Hide the workspace's `.env*` files again (the default).
    #[arg(long)]
    pub deny_env_files: bool,
    /// Allow commands requested from the browser in this workspace although this machine's
    /// sandbox is not enforced (Windows): they then run unconfined. `policy reset` removes it.
    #[arg(long)]
    pub allow_unsandboxed: bool,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Limit flags shared by `run` and `policy set`.
#[derive(Debug, Clone, Copy, clap::Args)]
pub(crate) struct LimitArgs {
    /// Wall-time limit in seconds.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,
    /// Output limit in bytes (stdout + stderr).
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_output: Option<u64>,
    /// Address-space limit per process in MiB.
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_memory_mib: Option<u64>,
    /// Process-count limit.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_processes: Option<u64>,
    /// CPU-time limit per process in seconds.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_cpu: Option<u64>,
}

impl PolicySetArgs {
    /// The change these flags ask for.
    pub(crate) fn change(&self) -> PolicyChange {
        PolicyChange {
            workspace: self.workspace.clone(),
            allow_commands: self.allow_cmd.clone(),
            allow_hosts: self.allow_host.clone(),
            env_files: match (self.allow_env_files, self.deny_env_files) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            },
            allow_unsandboxed: self.allow_unsandboxed,
            limits: self.limits.overrides(),
        }
    }
}

impl LimitArgs {
    fn overrides(&self) -> LimitOverrides {
        LimitOverrides {
            wall_time_secs: self.timeout,
            cpu_time_secs: self.max_cpu,
            memory_mib: self.max_memory_mib,
            processes: self.max_processes,
            output_bytes: self.max_output,
        }
    }
}

/// `katachi sandbox run` options.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// The workspace folder (read-write); may be repeated.
    #[arg(long = "workspace", value_name = "DIR", required = true)]
    pub workspaces: Vec<PathBuf>,
    /// Allow this command (a plain name resolved through the trusted PATH); may be repeated.
    /// The command to run must be one of them.
    #[arg(long = "allow-cmd", value_name = "NAME")]
    pub allow_cmd: Vec<String>,
    /// Allow network access to this host through the egress proxy (`host[:port]`, `*.suffix`, an
    /// IP literal); may be repeated.
    #[arg(long = "allow-host", value_name = "HOST")]
    pub allow_host: Vec<String>,
    /// Let the command read `.env*` files of the workspaces.
    #[arg(long)]
    pub allow_env_files: bool,
    /// The working folder (default: the first workspace).
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Run even when a layer is missing on this machine (a weaker sandbox; say so to the user).
    #[arg(long)]
    pub allow_weaker: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

pub(crate) fn run(
    dirs: &KatachiDirs,
    cmd: SandboxCommand,
    out: &Output,
) -> anyhow::Result<ExitCode> {
    let sandbox = Sandbox::probe();
    match cmd {
        SandboxCommand::Status => {
            let status = sandbox.status();
            out.emit(&status, || {
                let mut lines = vec![format!("sandbox backend: {}", status.backend)];
                // said plainly where commands are not confined (Windows)
                if let Some(message) = &status.message {
                    lines.push(format!("WARNING: {message}"));
                }
                for l in &status.layers {
                    let mark = if l.active { "on " } else { "off" };
                    lines.push(format!("  [{mark}] {}: {}", l.name, l.detail));
                }
                lines.join("\n")
            });
            Ok(ExitCode::SUCCESS)
        }
        SandboxCommand::Test => {
            let report = runtime()?.block_on(self_test(&sandbox))?;
            out.emit(&report, || {
                let mut lines = Vec::new();
                if !report.controls_ok {
                    lines.push("controls FAILED: allowed actions do not work here".to_owned());
                }
                for r in &report.results {
                    let mark = if r.blocked { "blocked" } else { "ESCAPED" };
                    lines.push(format!("  {mark:8} {} ({})", r.attempt, r.detail));
                }
                lines.join("\n")
            });
            Ok(if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        SandboxCommand::Run(args) => run_one(dirs, &sandbox, *args),
        SandboxCommand::Policy(cmd) => crate::sandbox_policy::run(dirs, cmd, out),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run_one(dirs: &KatachiDirs, sandbox: &Sandbox, args: RunArgs) -> anyhow::Result<ExitCode> {
    // the agent's own state is never visible, even inside a workspace
    let mut builder = SandboxPolicy::builder()
        .hide(dirs.data())
        .hide(dirs.config())
        .hide(dirs.runtime_dir())
        .hide(dirs.state());
    // each allowed workspace brings its stored overrides (no store yet: there are none)
    let store = open_existing_store(dirs)?;
    for w in &args.workspaces {
        let overrides = match &store {
            Some(store) => WorkspaceOverrides::for_path(store, w)?.map(|(_, o)| o),
            None => None,
        };
        let mut overrides = overrides.unwrap_or_default();
        if args.allow_env_files {
            overrides.allow_env_files = true;
        }
        builder = overrides.apply_to(builder, w);
    }
    // the flags come last: they win over the stored limits
    let flags = args.limits.overrides();
    builder = builder.map_limits(|l| flags.apply(l));
    for c in &args.allow_cmd {
        builder = builder.allow_command(c.clone());
    }
    for h in &args.allow_host {
        builder = builder.allow_host(h.clone());
    }
    if args.allow_weaker {
        builder = builder.strictness(Strictness::AllowWeaker);
    }
    let policy = builder.build()?;
    let mut words = args.command.into_iter();
    let program = words.next().unwrap_or_default();
    let request = RunRequest {
        command: program.to_string_lossy().into_owned(),
        args: words.collect(),
        cwd: args
            .cwd
            .or_else(|| policy.workspaces().first().map(|w| w.root.clone()))
            .unwrap_or_default(),
    };
    runtime()?.block_on(async {
        let mut child = match sandbox.spawn(&policy, &request) {
            Ok(c) => c,
            Err(SandboxError::Denied(denied)) => {
                print_denial(&denied);
                return Ok(ExitCode::from(126));
            }
            Err(e) => return Err(e.into()),
        };
        let (mut stdout, mut stderr) = (std::io::stdout(), std::io::stderr());
        while let Some(ev) = child.next_output().await {
            // a closed terminal or pipe only loses output; the run still finishes and reports
            let _ = match ev.stream {
                OutputStream::Stdout => stdout.write_all(&ev.data).and_then(|()| stdout.flush()),
                OutputStream::Stderr => stderr.write_all(&ev.data).and_then(|()| stderr.flush()),
            };
        }
        let outcome = child.wait().await;
        for attempt in &outcome.egress {
            eprintln!("katachi: egress {attempt}");
            if let Some(denied) = &attempt.denied {
                if let Ok(json) = serde_json::to_string(denied) {
                    eprintln!("katachi: denial {json}");
                }
            }
        }
        if let Some(denied) = &outcome.denied {
            print_denial(denied);
        }
        let code = outcome.exit.shell_code().clamp(0, 255);
        Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
    })
}

/// Prints the structured reason on stderr (stdout is the command's): for people, then as JSON.
fn print_denial(denied: &katachi_core::sandbox::SandboxDenied) {
    eprintln!("katachi: {denied}");
    if let Ok(json) = serde_json::to_string(denied) {
        eprintln!("katachi: denial {json}");
    }
}

/// The agent's store when it exists (a fresh home has none, so no overrides and no keychain use).
pub(crate) fn open_existing_store(dirs: &KatachiDirs) -> anyhow::Result<Option<Store>> {
    if !dirs.store_path().exists() {
        return Ok(None);
    }
    let home = AgentHome::open(dirs.clone(), &SystemFingerprint)
        .context("cannot open the agent's secrets to read the workspace overrides")?;
    Ok(Some(home.store()?))
}
