//! Mail the relay sends: the e-mail verification link of new password accounts.
//!
//! With `--smtp-url` (`smtp://host:port`, `smtp://host:port?tls=required` for STARTTLS,
//! `smtps://host:port` for TLS from the first byte; `user:password@` for authentication) mails go
//! through that server (lettre, rustls, the system's CA store). Without it (local mode) nothing is
//! mailed: the link is written to the relay's log, and the pages say so.

use lettre::message::Mailbox;
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::{AsyncTransport, Message, Tokio1Executor};

/// How long one SMTP exchange may take.
const SMTP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Errors of the mailer.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// `--smtp-url` is not a URL lettre understands.
    #[error("--smtp-url is not usable (use smtp://host:port, smtp://host:port?tls=required or smtps://host:port): {0}")]
    Url(lettre::transport::smtp::Error),
    /// `--smtp-from` (or a recipient) is not an e-mail address.
    #[error("{what} {value:?} is not an e-mail address: {source}")]
    Address {
        /// Which address.
        what: &'static str,
        /// The value given.
        value: String,
        /// The parser's reason.
        source: lettre::address::AddressError,
    },
    /// The message could not be built (a bug).
    #[error("the mail could not be built: {0}")]
    Build(#[from] lettre::error::Error),
    /// The SMTP server refused the mail or could not be reached.
    #[error("the SMTP server did not take the mail: {0}")]
    Send(lettre::transport::smtp::Error),
}

/// Where mails go.
pub enum Mailer {
    /// An SMTP server.
    Smtp {
        /// The transport (connection settings, credentials).
        transport: Box<AsyncSmtpTransport<Tokio1Executor>>,
        /// The sender.
        from: Mailbox,
    },
    /// No server: links go to the relay's log.
    Log,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // The transport holds the SMTP password: never print it.
            Mailer::Smtp { from, .. } => write!(f, "Mailer::Smtp(from {from})"),
            Mailer::Log => f.write_str("Mailer::Log"),
        }
    }
}

impl Mailer {
    /// A mailer for `smtp_url`; `from` defaults to `katachi@<host of the public URL>`.
    ///
    /// # Errors
    /// [`MailError::Url`] or [`MailError::Address`] for unusable flags.
    pub fn new(
        smtp_url: Option<&str>,
        from: Option<&str>,
        public_url: &str,
    ) -> Result<Self, MailError> {
        let Some(url) = smtp_url else {
            return Ok(Mailer::Log);
        };
        let transport = Box::new(
            AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                .map_err(MailError::Url)?
                .timeout(Some(SMTP_TIMEOUT))
                .build(),
        );
        let host = url::Url::parse(public_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| "localhost".to_owned());
        let from = from.map_or_else(|| format!("katachi <katachi@{host}>"), str::to_owned);
        let from = from
            .parse::<Mailbox>()
            .map_err(|source| MailError::Address {
                what: "--smtp-from",
                value: from.clone(),
                source,
            })?;
        Ok(Mailer::Smtp { transport, from })
    }

    /// Whether links go to the log instead of a mailbox (local mode).
    pub fn is_local(&self) -> bool {
        matches!(self, Mailer::Log)
    }

    /// Sends `to` the link that verifies their address (or logs it in local mode).
    ///
    /// # Errors
    /// [`MailError`] when the server refuses or the address does not parse.
    pub async fn send_verification(&self, to: &str, link: &str) -> Result<(), MailError> {
        match self {
            Mailer::Log => {
                tracing::warn!(
                    "no --smtp-url, so nothing is mailed: the e-mail verification link for {to} is {link}"
                );
                Ok(())
            }
            Mailer::Smtp { transport, from } => {
                let to_box = to.parse::<Mailbox>().map_err(|source| MailError::Address {
                    what: "the recipient",
                    value: to.to_owned(),
                    source,
                })?;
                let text = format!(
                    "Someone (we hope you) created a katachi account with this address.\n\
                     Open this link to confirm it is yours; then the account can connect devices:\n\n\
                     {link}\n\n\
                     The link works once, for 24 hours. If you did not sign up, ignore this mail.\n"
                );
                let message = Message::builder()
                    .from(from.clone())
                    .to(to_box)
                    .subject("Confirm your e-mail address for katachi")
                    .body(text)?;
                transport.send(message).await.map_err(MailError::Send)?;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_and_senders_are_checked_and_passwords_never_printed() {
        let m = Mailer::new(
            Some("smtp://user:hunter2@127.0.0.1:2525"),
            None,
            "https://relay.example",
        )
        .unwrap();
        let shown = format!("{m:?}");
        assert!(
            shown.contains("katachi@relay.example") && !shown.contains("hunter2"),
            "{shown}"
        );
        assert!(matches!(
            Mailer::new(Some("ftp://x"), None, "https://r.example"),
            Err(MailError::Url(_))
        ));
        assert!(matches!(
            Mailer::new(
                Some("smtp://127.0.0.1:25"),
                Some("not an address"),
                "https://r.example"
            ),
            Err(MailError::Address { .. })
        ));
        assert!(Mailer::new(None, None, "https://r.example")
            .unwrap()
            .is_local());
    }
}
