//! What the tray shows for a [`Status`]: a pure function from the status (and the time, for
//! countdowns and "until" clocks) to the icon, the words of the status line and which menu items
//! can be used. The tray only applies a [`TrayView`]; every decision about it is here, tested per
//! state.

use katachi_core::agent::Status;

use super::icon::TrayIcon;

/// A pause at least this long is "stop all remote access": shown as stopped until resumed, not
/// as a clock time (the tray asks for [`super::actions::STOP_ALL_FOR`]).
pub(crate) const STOPPED_IF_PAUSED_FOR_SECS: i64 = 365 * 24 * 3600;

/// What the view depends on besides the status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViewClock {
    /// Now, unix seconds.
    pub now: i64,
    /// The user's local offset from UTC, seconds (read once at start-up, while the process is
    /// single-threaded: `time` refuses to read it later on Linux).
    pub local_offset_secs: i32,
}

/// The account item: one place in the menu, two actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountItem {
    /// "Sign in…": opens the window's Connect view.
    SignIn,
    /// "Sign out": forgets this machine at the relay.
    SignOut,
}

/// The remote-access item: one place in the menu, two actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteItem {
    /// "Pause remote access for 1 hour", usable when `enabled`.
    Pause {
        /// Whether there is anything to pause (the agent is online or trying to be).
        enabled: bool,
    },
    /// "Resume remote access": ends a pause or a stop.
    Resume,
}

/// Everything the tray shows for one status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrayView {
    /// The icon.
    pub icon: TrayIcon,
    /// The first, disabled menu line: the status in words.
    pub status_line: String,
    /// Sign in… or Sign out.
    pub account: AccountItem,
    /// Pause or Resume.
    pub remote: RemoteItem,
    /// Whether "Stop all remote access now" can be used (something is up or trying to be).
    pub stop_all_enabled: bool,
}

impl TrayView {
    /// The view of `status` at `clock`.
    pub fn of(status: &Status, clock: ViewClock) -> Self {
        let online = RemoteItem::Pause { enabled: true };
        let offline = RemoteItem::Pause { enabled: false };
        let (icon, status_line, account, remote) = match status {
            Status::SignedOut { reason } => (
                TrayIcon::SignedOut,
                match reason {
                    Some(reason) => format!("Sign-in needed: {reason}"),
                    None => "Sign-in needed".to_owned(),
                },
                AccountItem::SignIn,
                offline,
            ),
            Status::WaitingForApproval { user_code, .. } => (
                TrayIcon::Waiting,
                format!("Waiting for approval: code {user_code}"),
                AccountItem::SignIn,
                offline,
            ),
            Status::Connecting => (
                TrayIcon::Connecting,
                "Connecting…".to_owned(),
                AccountItem::SignOut,
                online,
            ),
            Status::Connected {
                relay, agent_name, ..
            } => (
                TrayIcon::Connected,
                format!("Connected to {} as {agent_name}", relay_host(relay)),
                AccountItem::SignOut,
                online,
            ),
            Status::Reconnecting { at, reason, .. } => (
                TrayIcon::Reconnecting,
                format!("Reconnecting in {} s: {reason}", (at - clock.now).max(0)),
                AccountItem::SignOut,
                online,
            ),
            Status::Paused { until } => (
                TrayIcon::Paused,
                paused_line(*until, clock),
                AccountItem::SignOut,
                RemoteItem::Resume,
            ),
            Status::Error { message, fix } => (
                TrayIcon::Error,
                format!("Error: {message} — {fix}"),
                AccountItem::SignOut,
                offline,
            ),
        };
        Self {
            icon,
            status_line,
            account,
            remote,
            stop_all_enabled: remote == online,
        }
    }

    /// The tooltip (where the panel shows one): the product and the status line.
    pub fn tooltip(&self) -> String {
        format!("Katachi — {}", self.status_line)
    }

    /// Whether `other`'s menu has the same items, each as usable, as this one's: then only the
    /// status line's words (and the icon) change, and a menu the user has open can stay open.
    pub fn same_menu_items(&self, other: &TrayView) -> bool {
        self.account == other.account
            && self.remote == other.remote
            && self.stop_all_enabled == other.stop_all_enabled
    }
}

/// The longest status line a menu shows, in characters: menus are as wide as their widest line,
/// and a relay's error can be a paragraph (the tooltip and the window show it whole).
pub const MENU_LINE_MAX: usize = 80;

/// `line` as the menu shows it: cut at [`MENU_LINE_MAX`] characters with "…".
pub fn menu_line(line: &str) -> String {
    if line.chars().count() <= MENU_LINE_MAX {
        return line.to_owned();
    }
    let mut cut: String = line.chars().take(MENU_LINE_MAX - 1).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

/// "relay.example.com" (with its port, if any) from the relay's URL.
fn relay_host(relay: &str) -> &str {
    let rest = relay.split_once("://").map_or(relay, |(_, rest)| rest);
    rest.split(['/', '?', '#']).next().unwrap_or(rest)
}

/// "Paused until 15:04" in local time; a stop (a pause of a year or more) says so instead.
fn paused_line(until: i64, clock: ViewClock) -> String {
    if until - clock.now >= STOPPED_IF_PAUSED_FOR_SECS {
        return "Remote access stopped until you resume it".to_owned();
    }
    let local = until + i64::from(clock.local_offset_secs);
    let minute_of_day = local.rem_euclid(24 * 3600) / 60;
    let clock_time = format!("{:02}:{:02}", minute_of_day / 60, minute_of_day % 60);
    if until - clock.now >= 24 * 3600 {
        let days = (until - clock.now) / (24 * 3600);
        format!("Paused for {days} d, until {clock_time}")
    } else {
        format!("Paused until {clock_time}")
    }
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
