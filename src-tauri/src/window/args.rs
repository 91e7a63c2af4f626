//! The window process's command line: `katachi-app --window [--view <view>] [katachi://…]`.
//!
//! Parsing never fails the process: an unknown view is reported and the default view is shown; a
//! `katachi://` argument (how desktops hand a clicked link to the app) is kept for the Connect
//! view to validate and ask about.

use serde::Serialize;

/// The flag that selects window mode.
pub const WINDOW_FLAG: &str = "--window";
/// The flag that selects the view to show.
pub const VIEW_FLAG: &str = "--view";

/// A view of the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum View {
    /// Relay URL, reachability, sign-in with the user code.
    Connect,
    /// The agent's live state.
    #[default]
    Status,
    /// Allowed folders and their policy.
    Workspaces,
    /// Sandbox layers and the self-test.
    Sandbox,
    /// Audit records and bytes out.
    Activity,
    /// Start at login, notifications, API keys.
    Settings,
}

impl View {
    /// Every view, in the order of the window's navigation.
    pub const ALL: [Self; 6] = [
        Self::Connect,
        Self::Status,
        Self::Workspaces,
        Self::Sandbox,
        Self::Activity,
        Self::Settings,
    ];

    /// The view's name on the command line and in the UI (`connect`, `status`…).
    pub fn name(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Status => "status",
            Self::Workspaces => "workspaces",
            Self::Sandbox => "sandbox",
            Self::Activity => "activity",
            Self::Settings => "settings",
        }
    }

    /// The view called `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|view| view.name() == name)
    }
}

/// What the window process was asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WindowArgs {
    /// The view to show first.
    pub view: View,
    /// A `katachi://` link the desktop passed (not validated yet).
    pub link: Option<String>,
    /// Arguments that were not understood (reported on stderr, otherwise ignored).
    pub ignored: Vec<String>,
}

/// Whether `args` (without the program name) ask for the window process: `--window`, or a
/// `katachi://` link (a desktop runs the app with the clicked link as its argument).
pub fn is_window_mode(args: &[String]) -> bool {
    args.iter()
        .any(|arg| arg == WINDOW_FLAG || arg.starts_with("katachi:"))
}

/// Reads the window's arguments from `args` (without the program name).
pub fn parse(args: &[String]) -> WindowArgs {
    let mut parsed = WindowArgs::default();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg == WINDOW_FLAG {
            continue;
        }
        let view = if arg == VIEW_FLAG {
            rest.next().map(String::as_str)
        } else {
            arg.strip_prefix("--view=")
        };
        match view {
            Some(name) => match View::from_name(name) {
                Some(view) => parsed.view = view,
                None => parsed.ignored.push(format!("{VIEW_FLAG} {name}")),
            },
            None if arg.starts_with("katachi:") => {
                parsed.link = Some(arg.clone());
                parsed.view = View::Connect;
            }
            None => parsed.ignored.push(arg.clone()),
        }
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn window_mode_is_chosen_by_the_window_flag_or_a_katachi_link() {
        assert!(is_window_mode(&args(&["--window"])));
        assert!(is_window_mode(&args(&["--view", "status", "--window"])));
        assert!(!is_window_mode(&args(&[])));
        assert!(!is_window_mode(&args(&["--windows"])));
        assert!(is_window_mode(&args(&[
            "katachi://connect?relay=https://r.example"
        ])));
    }

    #[test]
    fn each_view_is_selected_by_its_name_in_both_spellings() {
        for view in View::ALL {
            assert_eq!(
                parse(&args(&["--window", "--view", view.name()])).view,
                view
            );
            let joined = format!("--view={}", view.name());
            assert_eq!(parse(&args(&["--window", &joined])).view, view);
        }
    }

    #[test]
    fn an_unknown_view_falls_back_to_status_and_is_reported() {
        let parsed = parse(&args(&["--window", "--view", "nope", "--bogus"]));
        assert_eq!(parsed.view, View::Status);
        assert_eq!(parsed.ignored, ["--view nope", "--bogus"]);
    }

    #[test]
    fn a_katachi_link_opens_the_connect_view_with_the_link_kept() {
        let link = "katachi://connect?relay=https://relay.example:8443";
        let parsed = parse(&args(&["--window", link]));
        assert_eq!(parsed.view, View::Connect);
        assert_eq!(parsed.link.as_deref(), Some(link));
    }
}
