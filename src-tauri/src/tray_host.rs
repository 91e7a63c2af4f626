//! Whether the desktop shows tray icons at all.
//!
//! On Linux the icon reaches the user one of two ways:
//! - as a StatusNotifierItem, which a panel (the "tray host") displays; the panel announces itself
//!   by owning `org.kde.StatusNotifierWatcher` on the session bus;
//! - where no panel does that, libappindicator falls back to an XEmbed icon (`GtkStatusIcon`),
//!   which an X11 system tray displays (XFCE's, i3bar's, trayer, stalonetray…); such a tray
//!   announces itself by owning the X selection `_NET_SYSTEM_TRAY_S<screen>` (the freedesktop
//!   System Tray spec). GTK draws XEmbed icons only on X11, so under Wayland only the first counts.
//!
//! Without either (GNOME without the AppIndicator extension, a bare window manager) the icon is
//! invisible, so the app opens its window at start and says why. macOS and Windows always have a
//! tray.

/// The bus name a tray host owns (the freedesktop StatusNotifierItem spec kept KDE's name).
pub const WATCHER_NAME: &str = "org.kde.StatusNotifierWatcher";

/// Why the app opened its window by itself: shown in the window and printed on stderr.
pub const NO_TRAY_HOST: &str = "no tray host on this desktop (no org.kde.StatusNotifierWatcher \
on the session bus and no X11 system tray), so Katachi opened its window instead; on GNOME, \
install the AppIndicator extension to get the tray icon";

/// Whether a tray host is there. A bus or display that cannot be asked counts as none: the window
/// opens, which is the safe side (the user sees the app either way).
#[cfg(target_os = "linux")]
pub fn tray_host_present() -> bool {
    status_notifier_host_present() || (gtk_draws_on_x11() && xembed_tray_present())
}

/// Whether a tray host is there: always, outside Linux.
#[cfg(not(target_os = "linux"))]
pub fn tray_host_present() -> bool {
    true
}

/// Whether a panel owns the StatusNotifierWatcher name on the session bus.
#[cfg(target_os = "linux")]
fn status_notifier_host_present() -> bool {
    use std::time::Duration;
    let Ok(bus) = dbus::blocking::Connection::new_session() else {
        return false;
    };
    let daemon = bus.with_proxy(
        "org.freedesktop.DBus",
        "/org/freedesktop/DBus",
        Duration::from_secs(2),
    );
    daemon
        .method_call::<(bool,), _, _, _>("org.freedesktop.DBus", "NameHasOwner", (WATCHER_NAME,))
        .is_ok_and(|(owned,)| owned)
}

/// Whether GTK in this process draws on X11: GDK picks Wayland when `WAYLAND_DISPLAY` is set,
/// unless `GDK_BACKEND` names x11 first.
#[cfg(target_os = "linux")]
fn gtk_draws_on_x11() -> bool {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let forced_x11 = var("GDK_BACKEND")
        .and_then(|b| b.to_str().map(|b| b.trim_start().starts_with("x11")))
        .unwrap_or(false);
    var("DISPLAY").is_some() && (forced_x11 || var("WAYLAND_DISPLAY").is_none())
}

/// Whether an X11 system tray owns `_NET_SYSTEM_TRAY_S<screen>` on the default screen.
#[cfg(target_os = "linux")]
fn xembed_tray_present() -> bool {
    use x11rb::protocol::xproto::ConnectionExt as _;
    use x11rb::NONE;

    let Ok((conn, screen)) = x11rb::connect(None) else {
        return false;
    };
    let name = format!("_NET_SYSTEM_TRAY_S{screen}");
    let owner = conn
        .intern_atom(true, name.as_bytes())
        .ok()
        .and_then(|cookie| cookie.reply().ok())
        .map(|reply| reply.atom)
        .filter(|&atom| atom != NONE)
        .and_then(|atom| conn.get_selection_owner(atom).ok())
        .and_then(|cookie| cookie.reply().ok())
        .map(|reply| reply.owner);
    owner.is_some_and(|owner| owner != NONE)
}
