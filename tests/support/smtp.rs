//! A real SMTP server on 127.0.0.1 for the relay's mail: Debian's `python3-aiosmtpd`
//! (`python3 -m aiosmtpd`), delivering every message into a Maildir that the test reads.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::process::SpawnedProcess;

/// How often the mailbox and the port are polled.
const POLL: Duration = Duration::from_millis(50);
/// How long aiosmtpd may take to listen.
const STARTUP: Duration = Duration::from_secs(20);

/// aiosmtpd listening on `127.0.0.1:port`; killed on drop.
pub struct LocalSmtpServer {
    /// The server process.
    process: SpawnedProcess,
    /// Its port.
    port: u16,
    /// The Maildir messages land in (`new/`).
    maildir: PathBuf,
    /// Owns the Maildir.
    _tmp: tempfile::TempDir,
}

impl LocalSmtpServer {
    /// Starts aiosmtpd (Debian's `/usr/bin/python3`, package `python3-aiosmtpd`) and waits until it
    /// accepts connections.
    ///
    /// # Errors
    /// aiosmtpd missing (`apt-get install python3-aiosmtpd`), or not listening in time.
    pub fn start() -> anyhow::Result<Self> {
        let tmp = tempfile::tempdir()?;
        let maildir = tmp.path().join("maildir");
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut command = Command::new("/usr/bin/python3");
        command
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir);
        let mut process = SpawnedProcess::spawn(command).context(
            "cannot start /usr/bin/python3 -m aiosmtpd (apt-get install python3-aiosmtpd)",
        )?;
        let deadline = Instant::now() + STARTUP;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if !process.is_running() || Instant::now() >= deadline {
                bail!("{}", process.describe("aiosmtpd is not listening"));
            }
            std::thread::sleep(POLL);
        }
        Ok(Self {
            process,
            port,
            maildir,
            _tmp: tmp,
        })
    }

    /// `smtp://127.0.0.1:PORT`, for the relay's `--smtp-url`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Waits for a message to `to`; its raw text (headers and body).
    ///
    /// # Errors
    /// No such message within `timeout`.
    pub async fn wait_for_mail_to(
        &mut self,
        to: &str,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(mail) = find_mail(&self.maildir.join("new"), to)? {
                return Ok(mail);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{}",
                    self.process
                        .describe(&format!("no mail to {to} within {timeout:?}"))
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The first message in `dir` addressed to `to`.
fn find_mail(dir: &Path, to: &str) -> anyhow::Result<Option<String>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(None);
    };
    for entry in entries {
        let text = std::fs::read_to_string(entry?.path())?;
        let addressed = text
            .lines()
            .take_while(|l| !l.is_empty())
            .any(|l| l.to_ascii_lowercase().starts_with("to:") && l.contains(to));
        if addressed {
            return Ok(Some(text));
        }
    }
    Ok(None)
}

/// The first `https://` link in a mail body, quoted-printable soft line breaks undone.
pub fn first_link(mail: &str) -> Option<String> {
    let joined = mail.replace("=\r\n", "").replace("=\n", "");
    let start = joined.find("https://")?;
    let link: String = joined[start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    Some(link)
}
