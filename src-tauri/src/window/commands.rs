//! The window's Tauri commands: each one a small wrapper over the agent port or a `katachi-core`
//! call, returning [`IpcError`] on failure. Their names are the ones granted in
//! `src-tauri/capabilities/window.json`; nothing else is callable from the window.

use katachi_core::sandbox::SelfTestReport;
use serde::Serialize;
use tauri::{AppHandle, Runtime, State};

use super::ai_settings::{self as ai, AiChoice, AiSettingsView};
use super::connect::{self, ConnectLink};
use super::context::WindowContext;
use super::ipc_error::{IpcCode, IpcError};
use super::local::{self, Activity, ApiKeyState, AppSettings, RelayCheck};
use super::port::{AgentView, SignInRequest, SignInStarted, WorkspaceItem, WorkspacePolicy};
use super::{desktop, View};

/// What the page needs when it starts: the view to show and a link to ask about.
#[derive(Debug, Clone, Serialize)]
pub struct WindowStart {
    /// The view chosen on the command line.
    pub view: View,
    /// A `katachi://` link given at start, validated (the page asks before acting on it).
    pub link: Option<Result<ConnectLink, IpcError>>,
    /// Why the window was opened (shown on top, as text).
    pub reason: Option<String>,
}

/// The page's first call: which view to show and the link given at start (handed out once).
#[tauri::command]
pub fn window_start(context: State<'_, WindowContext>) -> WindowStart {
    context.mark("first call");
    let start = context.take_start();
    WindowStart {
        view: start.view,
        link: start.link.map(|link| connect::parse_link(&link)),
        reason: start.reason,
    }
}

/// The page rendered its first view: logs the time from process start (window open → interactive)
/// and where it went: the process's phases, and how long after its navigation began the page's
/// script ran (`page_ms`, the page's `performance.now()`; ignored unless a plausible figure).
#[tauri::command]
pub fn window_ready(context: State<'_, WindowContext>, page_ms: Option<f64>) -> u128 {
    let millis = context.started.elapsed().as_millis();
    let page = page_ms
        .filter(|ms| ms.is_finite() && (0.0..3_600_000.0).contains(ms))
        .map(|ms| format!("; the page's script ran {ms:.0} ms after its navigation began"))
        .unwrap_or_default();
    // the wall clock too, so a launcher can count what came before `main` (loading the program)
    let wall_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis());
    eprintln!(
        "katachi-app: window interactive after {millis} ms ({}{page}) at unix ms {wall_ms}",
        context.phases()
    );
    millis
}

/// The agent's status now.
#[tauri::command]
pub async fn agent_status(context: State<'_, WindowContext>) -> Result<AgentView, IpcError> {
    context.port.status().await
}

/// Checks that a relay answers over HTTPS with the given CA, before any sign-in.
#[tauri::command]
pub async fn check_relay(relay: String, ca_pem: Option<String>) -> Result<RelayCheck, IpcError> {
    local::check_relay(&relay, non_empty(ca_pem).as_deref()).await
}

/// A started sign-in with the QR code of its verification URL.
#[derive(Debug, Clone, Serialize)]
pub struct SignInView {
    /// What the agent started.
    #[serde(flatten)]
    pub started: SignInStarted,
    /// The QR code (SVG) of the page to approve on.
    pub qr_svg: String,
    /// Whether the browser was opened at the page (else the page shows the link to open).
    pub browser_opened: bool,
}

/// Checks the relay, asks the running agent to sign in there, opens the browser at the approval
/// page (only a page of that relay), and returns the code with its QR code.
#[tauri::command]
pub async fn sign_in<R: Runtime>(
    app: AppHandle<R>,
    context: State<'_, WindowContext>,
    relay: String,
    ca_pem: Option<String>,
) -> Result<SignInView, IpcError> {
    let ca_pem = non_empty(ca_pem);
    let checked = local::check_relay(&relay, ca_pem.as_deref()).await?;
    let started = context
        .port
        .sign_in(SignInRequest {
            relay: checked.relay.clone(),
            ca_pem,
        })
        .await?;
    let page = started
        .verification_uri_complete
        .clone()
        .unwrap_or_else(|| started.verification_uri.clone());
    let relay_url = connect::relay_url(&checked.relay)?;
    let browser_opened = relay_url.is_same_origin(&page) && desktop::open_browser(&app, &page);
    context.remember_page(relay_url.is_same_origin(&page).then(|| page.clone()));
    Ok(SignInView {
        qr_svg: connect::qr_svg(&page)?,
        started,
        browser_opened,
    })
}

/// Opens the browser again at the approval page of the sign-in in progress.
#[tauri::command]
pub fn open_approval_page<R: Runtime>(
    app: AppHandle<R>,
    context: State<'_, WindowContext>,
) -> Result<bool, IpcError> {
    let page = context
        .approval_page()
        .ok_or_else(|| IpcError::invalid("no sign-in is in progress"))?;
    Ok(desktop::open_browser(&app, &page))
}

/// The QR code (SVG) of an approval page, for a fresh code published in the status.
#[tauri::command]
pub fn qr_code(url: String) -> Result<String, IpcError> {
    connect::qr_svg(&url)
}

/// Validates a `katachi://` link (the page then asks the user before filling anything in).
#[tauri::command]
pub fn read_link(link: String) -> Result<ConnectLink, IpcError> {
    connect::parse_link(&link)
}

/// Abandons the sign-in in progress.
#[tauri::command]
pub async fn cancel_sign_in(context: State<'_, WindowContext>) -> Result<(), IpcError> {
    context.remember_page(None);
    context.port.cancel_sign_in().await
}

/// Signs this machine out of its relay.
#[tauri::command]
pub async fn sign_out(context: State<'_, WindowContext>) -> Result<(), IpcError> {
    context.port.sign_out().await
}

/// The allowed folders.
#[tauri::command]
pub async fn list_workspaces(
    context: State<'_, WindowContext>,
) -> Result<Vec<WorkspaceItem>, IpcError> {
    context.port.workspaces().await
}

/// Allows a folder (what the folder picker feeds; tests call it directly).
#[tauri::command]
pub async fn add_workspace(
    context: State<'_, WindowContext>,
    path: String,
) -> Result<Vec<WorkspaceItem>, IpcError> {
    if path.trim().is_empty() {
        return Err(IpcError::invalid("choose a folder to allow"));
    }
    context.port.add_workspace(path).await
}

/// Opens the native folder picker and allows the chosen folder; `None` when the user cancelled.
#[tauri::command]
pub async fn pick_workspace<R: Runtime>(
    app: AppHandle<R>,
    context: State<'_, WindowContext>,
) -> Result<Option<Vec<WorkspaceItem>>, IpcError> {
    match desktop::pick_folder(&app).await? {
        Some(path) => add_workspace(context, path).await.map(Some),
        None => Ok(None),
    }
}

/// Stops allowing a folder.
#[tauri::command]
pub async fn remove_workspace(
    context: State<'_, WindowContext>,
    path: String,
) -> Result<Vec<WorkspaceItem>, IpcError> {
    context.port.remove_workspace(path).await
}

/// Replaces a workspace's allowed commands and hosts.
#[tauri::command]
pub async fn set_workspace_policy(
    context: State<'_, WindowContext>,
    policy: WorkspacePolicy,
) -> Result<Vec<WorkspaceItem>, IpcError> {
    let clean = |list: Vec<String>| -> Vec<String> {
        list.into_iter()
            .map(|item| item.trim().to_owned())
            .filter(|item| !item.is_empty())
            .collect()
    };
    context
        .port
        .set_policy(WorkspacePolicy {
            path: policy.path,
            allowed_commands: clean(policy.allowed_commands),
            allowed_hosts: clean(policy.allowed_hosts),
        })
        .await
}

/// Runs the sandbox's escape checks and returns each attempt's result.
#[tauri::command]
pub async fn sandbox_self_test() -> Result<SelfTestReport, IpcError> {
    local::sandbox_self_test().await
}

/// Recent audit records and bytes out per workspace.
#[tauri::command]
pub async fn activity(context: State<'_, WindowContext>) -> Result<Activity, IpcError> {
    let dirs = context.dirs()?;
    blocking(move || local::activity(&dirs, 50)).await
}

/// The Settings view's state.
#[derive(Debug, Clone, Serialize)]
pub struct SettingsView {
    /// Whether the app starts at login.
    pub autostart: bool,
    /// The window's own settings.
    #[serde(flatten)]
    pub settings: AppSettings,
}

/// The settings now.
#[tauri::command]
pub fn settings<R: Runtime>(
    app: AppHandle<R>,
    context: State<'_, WindowContext>,
) -> Result<SettingsView, IpcError> {
    Ok(SettingsView {
        autostart: desktop::autostart_enabled(&app)?,
        settings: local::load_settings(&local::settings_path(&context.dirs()?))?,
    })
}

/// Turns start at login on or off.
#[tauri::command]
pub fn set_autostart<R: Runtime>(app: AppHandle<R>, enabled: bool) -> Result<bool, IpcError> {
    desktop::set_autostart(&app, enabled)?;
    desktop::autostart_enabled(&app)
}

/// Turns desktop notifications on or off (saved).
#[tauri::command]
pub fn set_notifications(
    context: State<'_, WindowContext>,
    enabled: bool,
) -> Result<AppSettings, IpcError> {
    let path = local::settings_path(&context.dirs()?);
    let mut settings = local::load_settings(&path)?;
    settings.notifications = enabled;
    local::save_settings(&path, settings)?;
    Ok(settings)
}

/// Which providers have an API key stored ("set" / "not set", never the key).
#[tauri::command]
pub async fn api_keys(context: State<'_, WindowContext>) -> Result<Vec<ApiKeyState>, IpcError> {
    let dirs = context.dirs()?;
    blocking(move || local::api_key_states(&dirs)).await
}

/// Stores a provider's API key in the keychain (write-only: it is never sent back).
#[tauri::command]
pub async fn set_api_key(
    context: State<'_, WindowContext>,
    provider: String,
    key: String,
) -> Result<Vec<ApiKeyState>, IpcError> {
    let dirs = context.dirs()?;
    blocking(move || {
        local::set_api_key(&dirs, &provider, key)?;
        local::api_key_states(&dirs)
    })
    .await
}

/// Removes a provider's API key.
#[tauri::command]
pub async fn clear_api_key(
    context: State<'_, WindowContext>,
    provider: String,
) -> Result<Vec<ApiKeyState>, IpcError> {
    let dirs = context.dirs()?;
    blocking(move || {
        local::clear_api_key(&dirs, &provider)?;
        local::api_key_states(&dirs)
    })
    .await
}

/// The AI provider settings: the default, each workspace's own, the provider kinds.
#[tauri::command]
pub async fn ai_settings(context: State<'_, WindowContext>) -> Result<AiSettingsView, IpcError> {
    let dirs = context.dirs()?;
    blocking(move || ai::ai_settings(&dirs)).await
}

/// Checks and saves a provider choice for the default or a workspace (as `katachi ai use`).
#[tauri::command]
pub async fn set_ai_provider(
    context: State<'_, WindowContext>,
    choice: AiChoice,
) -> Result<AiSettingsView, IpcError> {
    let dirs = context.dirs()?;
    blocking(move || ai::set_ai_provider(&dirs, choice)).await
}

/// Makes a workspace use the default provider again (as `katachi ai reset`).
#[tauri::command]
pub async fn reset_ai_provider(
    context: State<'_, WindowContext>,
    workspace: String,
) -> Result<AiSettingsView, IpcError> {
    let dirs = context.dirs()?;
    blocking(move || ai::reset_ai_provider(&dirs, &workspace)).await
}

/// Runs a keychain or store call off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, IpcError> + Send + 'static,
) -> Result<T, IpcError> {
    tauri::async_runtime::spawn_blocking(work)
        .await
        .map_err(|err| IpcError::new(IpcCode::Window, err.to_string()))?
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}
