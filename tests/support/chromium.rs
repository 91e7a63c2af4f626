//! Debian's headless Chromium driven over WebDriver: `chromedriver` started on a free loopback port,
//! a fresh profile per browser, every command and wait bounded in time.
//!
//! The relay serves its own local CA's certificate; the session asks for `acceptInsecureCerts`
//! (a W3C capability) rather than passing `--ignore-certificate-errors`, so the flags stay exactly
//! [`CHROMIUM_FLAGS`] plus the profile dir.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian packages `chromium`,
//! `chromium-driver`). Dropping a [`Browser`] that was not closed kills its chromedriver and the
//! Chromium processes of its own profile, by pid.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

use crate::process::SpawnedProcess;

/// The Chromium binary (Debian's launcher script).
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// The matching WebDriver server.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Flags for a quiet, headless, reproducible Chromium (a `--user-data-dir` is added per browser).
pub const CHROMIUM_FLAGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];
/// Budget for chromedriver to answer `/status` and for the session to start.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(45);
/// Budget for one WebDriver command (page loads are capped at 30 s by the session itself).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(45);
/// How often waits poll the page.
const POLL: Duration = Duration::from_millis(100);

/// One headless Chromium with its own profile, driven by its own chromedriver.
pub struct Browser {
    /// The WebDriver session.
    client: Option<Client>,
    /// The chromedriver process (killed on drop).
    driver: SpawnedProcess,
    /// The profile dir; its path also identifies this browser's Chromium processes.
    profile: tempfile::TempDir,
}

/// Runs a WebDriver command with the per-command budget.
async fn bounded<T, E: std::fmt::Display>(
    what: &str,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(COMMAND_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => bail!("{what}: {e}"),
        Err(_) => bail!("{what}: no answer within {COMMAND_TIMEOUT:?}"),
    }
}

fn free_loopback_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Browser {
    /// Starts chromedriver and a fresh headless Chromium session (window 1280×800).
    ///
    /// # Errors
    /// Chromium or chromedriver missing (install `chromium chromium-driver`), or a session that
    /// does not start in time; the message carries chromedriver's output.
    pub async fn launch() -> anyhow::Result<Self> {
        for binary in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(binary).exists() {
                bail!("{binary} is missing: apt-get install chromium chromium-driver");
            }
        }
        let profile = tempfile::Builder::new()
            .prefix("katachi-chromium-")
            .tempdir()?;
        let port = free_loopback_port()?;
        let mut command = Command::new(CHROMEDRIVER);
        command
            .arg(format!("--port={port}"))
            // Chromium's caches and crash reports land in the temp profile, not in the real $HOME.
            .env("HOME", profile.path())
            .env("XDG_CONFIG_HOME", profile.path().join("config"))
            .env("XDG_CACHE_HOME", profile.path().join("cache"));
        let mut driver = SpawnedProcess::spawn(command)
            .with_context(|| format!("cannot start {CHROMEDRIVER}"))?;
        let webdriver = format!("http://127.0.0.1:{port}");
        if let Err(e) = wait_for_driver(&webdriver).await {
            bail!(driver.describe(&format!("chromedriver not ready: {e}")));
        }
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| (*f).to_owned()).collect();
        args.push(format!(
            "--user-data-dir={}",
            profile.path().join("data").display()
        ));
        let capabilities = json!({
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "pageLoadStrategy": "normal",
            "timeouts": { "pageLoad": 30_000, "script": 10_000, "implicit": 0 },
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        });
        let Value::Object(capabilities) = capabilities else {
            bail!("capabilities are not an object");
        };
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(capabilities);
        let client = match tokio::time::timeout(STARTUP_TIMEOUT, builder.connect(&webdriver)).await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => bail!(driver.describe(&format!("no Chromium session: {e}"))),
            Err(_) => bail!(driver.describe("no Chromium session within the start-up budget")),
        };
        let browser = Self {
            client: Some(client),
            driver,
            profile,
        };
        bounded(
            "set window size",
            browser.client()?.set_window_size(1280, 800),
        )
        .await?;
        Ok(browser)
    }

    fn client(&self) -> anyhow::Result<&Client> {
        self.client.as_ref().context("the browser was closed")
    }

    /// Opens `url` and waits for it to load.
    ///
    /// # Errors
    /// Navigation failures or timeouts.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        bounded(&format!("open {url}"), self.client()?.goto(url)).await
    }

    /// The current URL.
    ///
    /// # Errors
    /// WebDriver failures.
    pub async fn current_url(&self) -> anyhow::Result<url::Url> {
        bounded("current url", self.client()?.current_url()).await
    }

    /// The page's HTML as the browser holds it.
    ///
    /// # Errors
    /// WebDriver failures.
    pub async fn source(&self) -> anyhow::Result<String> {
        bounded("page source", self.client()?.source()).await
    }

    /// Names of the cookies the browser holds for the current page (HttpOnly ones included).
    ///
    /// # Errors
    /// WebDriver failures.
    pub async fn cookie_names(&self) -> anyhow::Result<Vec<String>> {
        let cookies = bounded("cookies", self.client()?.get_all_cookies()).await?;
        Ok(cookies.iter().map(|c| c.name().to_owned()).collect())
    }

    /// The cookies the browser would send to the current page, as a `Cookie` header value (for
    /// an HTTP client acting in this browser's session).
    ///
    /// # Errors
    /// WebDriver failures.
    pub async fn cookie_header(&self) -> anyhow::Result<String> {
        let cookies = bounded("cookies", self.client()?.get_all_cookies()).await?;
        Ok(cookies
            .iter()
            .map(|c| format!("{}={}", c.name(), c.value()))
            .collect::<Vec<_>>()
            .join("; "))
    }

    /// Runs `script` in the page (`return …` gives its value).
    ///
    /// # Errors
    /// Script or WebDriver failures.
    pub async fn execute(&self, script: &str) -> anyhow::Result<Value> {
        bounded("execute script", self.client()?.execute(script, Vec::new())).await
    }

    /// The page's visible text (at most 600 characters), for failure messages.
    pub async fn visible_text(&self) -> String {
        match self
            .execute("return document.body ? document.body.innerText.slice(0, 600) : '';")
            .await
        {
            Ok(Value::String(text)) => text,
            Ok(other) => other.to_string(),
            Err(e) => format!("<unreadable: {e}>"),
        }
    }

    /// Waits up to `timeout` for an element matching `css`.
    ///
    /// # Errors
    /// None appeared in time; the message names the page.
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> anyhow::Result<Element> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = bounded("find", self.client()?.find(Locator::Css(css))).await;
            if let Ok(element) = found {
                return Ok(element);
            }
            if Instant::now() >= deadline {
                let url = self.current_url().await.map(|u| u.to_string());
                let page = self.visible_text().await;
                bail!("no `{css}` within {timeout:?} on {url:?}; the page reads: {page}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits up to `timeout` for the text of `css` to equal `expected` (trimmed).
    ///
    /// # Errors
    /// Another text at the deadline (named in the message).
    pub async fn wait_for_text(
        &self,
        css: &str,
        expected: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        loop {
            if let Ok(element) = bounded("find", self.client()?.find(Locator::Css(css))).await {
                if let Ok(text) = bounded("text", element.text()).await {
                    if text.trim() == expected {
                        return Ok(());
                    }
                    last = text;
                }
            }
            if Instant::now() >= deadline {
                let page = self.visible_text().await;
                bail!("`{css}` shows {last:?}, not {expected:?}, after {timeout:?}; the page reads: {page}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The text of the first element matching `css`.
    ///
    /// # Errors
    /// No such element.
    pub async fn text(&self, css: &str) -> anyhow::Result<String> {
        let element = self.wait_for(css, Duration::from_secs(5)).await?;
        bounded("text", element.text()).await
    }

    /// Types `value` into the field matching `css` (after clearing it).
    ///
    /// # Errors
    /// No such field.
    pub async fn fill(&self, css: &str, value: &str) -> anyhow::Result<()> {
        let element = self.wait_for(css, Duration::from_secs(5)).await?;
        bounded("clear", element.clear()).await?;
        bounded("type", element.send_keys(value)).await
    }

    /// Clicks the element matching `css`.
    ///
    /// # Errors
    /// No such element, or not clickable.
    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        let element = self.wait_for(css, Duration::from_secs(5)).await?;
        bounded(&format!("click {css}"), element.click()).await
    }

    /// Sends `keys` to the element matching `css` without clearing it (`"\u{E007}"` is Enter): a
    /// keyboard user's press on a focused button or field.
    ///
    /// # Errors
    /// No such element.
    pub async fn send_keys(&self, css: &str, keys: &str) -> anyhow::Result<()> {
        let element = self.wait_for(css, Duration::from_secs(5)).await?;
        bounded(&format!("keys to {css}"), element.send_keys(keys)).await
    }

    /// Runs `script` every 100 ms until it returns something other than `null` or `false`, for
    /// at most `timeout`; that value. `what` names the awaited state in the failure.
    ///
    /// # Errors
    /// The deadline passed (the message has the last value and the page's text), or the script failed.
    pub async fn wait_for_value(
        &self,
        script: &str,
        timeout: Duration,
        what: &str,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.execute(script).await?;
            if !matches!(value, Value::Null | Value::Bool(false)) {
                return Ok(value);
            }
            if Instant::now() >= deadline {
                let page = self.visible_text().await;
                bail!("{what}: not within {timeout:?} (last {value}); the page reads: {page}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Saves a PNG screenshot of the viewport to `path` (creating its folder).
    ///
    /// # Errors
    /// WebDriver or file failures.
    pub async fn screenshot_to(&self, path: &Path) -> anyhow::Result<()> {
        let png = bounded("screenshot", self.client()?.screenshot()).await?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))
    }

    /// Signs a new user up on the relay at `relay_url` through its sign-up form and waits for
    /// "My agents".
    pub async fn sign_up(
        &self,
        relay_url: &str,
        email: &str,
        password: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        self.goto(&format!("{relay_url}/signup")).await?;
        self.fill("input[name=email]", email).await?;
        self.fill("input[name=password]", password).await?;
        self.click("form button[type=submit]").await?;
        self.wait_for_text("main h1", "My agents", timeout).await?;
        Ok(())
    }

    /// Ends the session (chromedriver quits Chromium) and stops chromedriver.
    ///
    /// # Errors
    /// The session did not end cleanly (the processes are killed anyway).
    pub async fn close(mut self) -> anyhow::Result<()> {
        let result = match self.client.take() {
            Some(client) => bounded("close session", client.close()).await,
            None => Ok(()),
        };
        let _ = self.driver.terminate(Duration::from_secs(5));
        result
    }

    /// Profile dir of this browser.
    pub fn profile_dir(&self) -> &Path {
        self.profile.path()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if self.client.is_some() {
            // Not closed (a failed test): kill this profile's Chromium processes, then chromedriver.
            for pid in processes_mentioning(self.profile.path()) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            let _ = self.driver.kill();
        }
    }
}

/// Pids of processes whose command line mentions `dir` (this browser's own Chromium processes).
fn processes_mentioning(dir: &Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().into_owned();
    crate::process::pids_where(|pid| {
        std::fs::read(PathBuf::from(format!("/proc/{pid}/cmdline")))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
    })
}

/// Polls chromedriver's `/status` until it reports ready.
async fn wait_for_driver(webdriver: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Ok(response) = http.get(format!("{webdriver}/status")).send().await {
            if let Ok(status) = response.json::<Value>().await {
                if status["value"]["ready"] == true {
                    return Ok(());
                }
            }
        }
        if Instant::now() >= deadline {
            bail!("{webdriver}/status not ready within {STARTUP_TIMEOUT:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}
