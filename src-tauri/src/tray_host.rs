//! Whether the desktop shows tray icons at all.
//!
//! On Linux a tray icon is a StatusNotifierItem that a panel (the "tray host") displays; the
//! panel announces itself by owning `org.kde.StatusNotifierWatcher` on the session bus. Without
//! one (GNOME without the AppIndicator extension, a bare window manager) the icon is invisible,
//! so the app opens its window at start and says why. macOS and Windows always have a tray.

/// The bus name a tray host owns (the freedesktop StatusNotifierItem spec kept KDE's name).
pub const WATCHER_NAME: &str = "org.kde.StatusNotifierWatcher";

/// Why the app opened its window by itself: shown in the window and printed on stderr.
pub const NO_TRAY_HOST: &str = "no tray host on this desktop (no org.kde.StatusNotifierWatcher \
on the session bus), so Katachi opened its window instead; on GNOME, install the AppIndicator \
extension to get the tray icon";

/// Whether a tray host is there. A bus that cannot be asked counts as none: the window opens,
/// which is the safe side (the user sees the app either way).
#[cfg(target_os = "linux")]
pub fn tray_host_present() -> bool {
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

/// Whether a tray host is there: always, outside Linux.
#[cfg(not(target_os = "linux"))]
pub fn tray_host_present() -> bool {
    true
}
