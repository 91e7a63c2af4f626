//! The tray as a desktop panel sees it: the StatusNotifierItem a process exports on the session bus
//! and its `com.canonical.dbusmenu` menu, read and clicked over D-Bus.
//!
//! On Linux, Tauri's tray (libayatana-appindicator) exports both objects even when no panel runs, so
//! the real tray can be tested headless under `dbus-run-session`.

use std::collections::VecDeque;
use std::time::Duration;

use dbus::arg::{PropMap, RefArg, Variant};
use dbus::blocking::stdintf::org_freedesktop_dbus::Properties;
use dbus::blocking::Connection;
use dbus::Path;

/// Timeout of each single D-Bus call.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Interface of a tray icon (the KDE/freedesktop StatusNotifierItem spec).
const SNI_INTERFACE: &str = "org.kde.StatusNotifierItem";
/// Interface of an exported menu (libdbusmenu).
const DBUSMENU_INTERFACE: &str = "com.canonical.dbusmenu";
/// Deepest object path walked when looking for the tray object.
const MAX_DEPTH: usize = 8;

/// A tray icon exported by a process: where it lives on the bus and what it says about itself.
#[derive(Debug, Clone)]
pub struct TrayItem {
    /// Unique bus name of the connection that exports the item (e.g. `:1.9`).
    pub bus_name: String,
    /// Object path of the StatusNotifierItem.
    pub item_path: String,
    /// Object path of its dbusmenu (the item's `Menu` property).
    pub menu_path: String,
    /// The item's `Status` property: `Active`, `Passive` or `NeedsAttention`.
    pub status: String,
    /// The item's `IconName` property; appindicator puts the path of a PNG it wrote there.
    pub icon_name: String,
}

/// One entry of a tray menu as a panel would render it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MenuEntry {
    /// dbusmenu id, to click the entry with [`click_menu_entry`].
    pub id: i32,
    /// Label shown (empty for a separator).
    pub label: String,
    /// Whether the entry can be clicked (dbusmenu's default is enabled).
    pub enabled: bool,
    /// Whether the entry is a separator line.
    pub separator: bool,
}

/// Opens a new connection to the session bus named by `DBUS_SESSION_BUS_ADDRESS`.
///
/// # Errors
/// Describes the failure, e.g. when the test does not run under `dbus-run-session`.
pub fn session_bus() -> Result<Connection, String> {
    Connection::new_session()
        .map_err(|err| format!("cannot connect to the D-Bus session bus: {err}"))
}

/// The bus name a panel's tray host owns.
pub const WATCHER_NAME: &str = "org.kde.StatusNotifierWatcher";

/// Makes this test process the session bus's tray host (once per process): it owns
/// [`WATCHER_NAME`] and accepts every item that registers, as a panel does, so an app sees a
/// desktop that shows tray icons. Items are read with [`find_tray_item`], not through it.
///
/// # Errors
/// The bus cannot be reached, or another process owns the name already.
pub fn serve_status_notifier_watcher() -> Result<(), String> {
    static SERVED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    SERVED
        .get_or_init(|| {
            let (ready, started) = std::sync::mpsc::channel();
            std::thread::Builder::new()
                .name("tray-host".to_owned())
                .spawn(move || {
                    let bus = match own_watcher_name() {
                        Ok(bus) => bus,
                        Err(err) => {
                            let _ = ready.send(Err(err));
                            return;
                        }
                    };
                    let _ = ready.send(Ok(()));
                    loop {
                        if bus.process(Duration::from_secs(1)).is_err() {
                            return;
                        }
                    }
                })
                .map_err(|err| format!("cannot start the tray host thread: {err}"))?;
            started
                .recv_timeout(CALL_TIMEOUT)
                .map_err(|err| format!("the tray host did not start: {err}"))?
        })
        .clone()
}

/// A session-bus connection that owns [`WATCHER_NAME`] and answers the watcher's calls.
fn own_watcher_name() -> Result<Connection, String> {
    use dbus::channel::{MatchingReceiver, Sender};
    use dbus::message::MatchRule;

    let bus = session_bus()?;
    let reply = bus
        .request_name(WATCHER_NAME, false, false, true)
        .map_err(|err| format!("cannot own {WATCHER_NAME}: {err}"))?;
    if reply != dbus::blocking::stdintf::org_freedesktop_dbus::RequestNameReply::PrimaryOwner {
        return Err(format!(
            "{WATCHER_NAME} is owned by another process ({reply:?})"
        ));
    }
    bus.start_receive(
        MatchRule::new_method_call(),
        Box::new(|call, bus| {
            let answer = call.method_return();
            // the one property an item asks for: yes, a host shows the items
            let answer = match call.member().as_deref() {
                Some("Get") => answer.append1(Variant(true)),
                Some("GetAll") => answer.append1(PropMap::new()),
                _ => answer,
            };
            let _ = bus.send(answer);
            true
        }),
    );
    Ok(bus)
}

/// Finds the StatusNotifierItem exported by process `pid`, or `None` if it has none (yet).
///
/// # Errors
/// Returns an error only if the bus itself cannot be queried.
pub fn find_tray_item(bus: &Connection, pid: u32) -> Result<Option<TrayItem>, String> {
    let daemon = bus.with_proxy(
        "org.freedesktop.DBus",
        "/org/freedesktop/DBus",
        CALL_TIMEOUT,
    );
    let (names,): (Vec<String>,) = daemon
        .method_call("org.freedesktop.DBus", "ListNames", ())
        .map_err(|err| format!("ListNames failed: {err}"))?;
    for name in names.iter().filter(|name| name.starts_with(':')) {
        // Connections can close between ListNames and this call: skip those.
        let Ok((owner_pid,)) = daemon.method_call::<(u32,), _, _, _>(
            "org.freedesktop.DBus",
            "GetConnectionUnixProcessID",
            (name.as_str(),),
        ) else {
            continue;
        };
        if owner_pid != pid {
            continue;
        }
        if let Some(item_path) = find_object_with_interface(bus, name, "/", SNI_INTERFACE, 0) {
            let item = bus.with_proxy(name.as_str(), item_path.as_str(), CALL_TIMEOUT);
            let menu: Path<'static> = item
                .get(SNI_INTERFACE, "Menu")
                .map_err(|err| format!("cannot read the tray item's Menu property: {err}"))?;
            let status: String = item.get(SNI_INTERFACE, "Status").unwrap_or_default();
            let icon_name: String = item.get(SNI_INTERFACE, "IconName").unwrap_or_default();
            return Ok(Some(TrayItem {
                bus_name: name.clone(),
                item_path,
                menu_path: menu.to_string(),
                status,
                icon_name,
            }));
        }
    }
    Ok(None)
}

/// Reads the top level of the tray's menu, in display order.
///
/// # Errors
/// Describes a failed `GetLayout` call or a reply that is not a dbusmenu layout.
pub fn read_menu(bus: &Connection, tray: &TrayItem) -> Result<Vec<MenuEntry>, String> {
    let menu = bus.with_proxy(
        tray.bus_name.as_str(),
        tray.menu_path.as_str(),
        CALL_TIMEOUT,
    );
    type Layout = (i32, PropMap, Vec<Variant<Box<dyn RefArg>>>);
    let (_revision, (_root_id, _root_props, children)): (u32, Layout) = menu
        .method_call(
            DBUSMENU_INTERFACE,
            "GetLayout",
            (0_i32, 1_i32, Vec::<String>::new()),
        )
        .map_err(|err| format!("GetLayout on {} failed: {err}", tray.menu_path))?;
    children
        .iter()
        .map(|child| menu_entry(&*child.0))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| {
            format!("GetLayout returned an entry that is not (ia{{sv}}av): {children:?}")
        })
}

/// Clicks menu entry `id` as a panel does when the user picks it, and waits for the app's answer.
///
/// # Errors
/// Describes a failed `Event` call. An entry that ends the app ("Quit") may end it before it
/// answers: the call then fails with "recipient disconnected without replying" although the click
/// was delivered, so such tests judge by the exit status instead.
pub fn click_menu_entry(bus: &Connection, tray: &TrayItem, id: i32) -> Result<(), String> {
    let menu = bus.with_proxy(
        tray.bus_name.as_str(),
        tray.menu_path.as_str(),
        CALL_TIMEOUT,
    );
    menu.method_call::<(), _, _, _>(
        DBUSMENU_INTERFACE,
        "Event",
        (id, "clicked", Variant(0_i32), 0_u32),
    )
    .map_err(|err| format!("clicking menu entry {id} failed: {err}"))
}

/// Decodes one `(ia{sv}av)` layout node into a [`MenuEntry`].
fn menu_entry(node: &dyn RefArg) -> Option<MenuEntry> {
    let mut fields = node.as_iter()?;
    let id = i32::try_from(fields.next()?.as_i64()?).ok()?;
    let mut properties = fields.next()?.as_iter()?;
    let mut entry = MenuEntry {
        id,
        label: String::new(),
        enabled: true,
        separator: false,
    };
    // A dict reads as key, value, key, value, ...; each value is a variant.
    while let (Some(key), Some(value)) = (properties.next(), properties.next()) {
        match key.as_str()? {
            "label" => entry.label = value.as_str()?.to_owned(),
            "enabled" => entry.enabled = value.as_i64()? != 0,
            "type" => entry.separator = value.as_str()? == "separator",
            _ => {}
        }
    }
    Some(entry)
}

/// Walks the object tree of `bus_name` from `path` (via `Introspect`) to the first object that
/// implements `interface`.
fn find_object_with_interface(
    bus: &Connection,
    bus_name: &str,
    path: &str,
    interface: &str,
    depth: usize,
) -> Option<String> {
    let mut queue = VecDeque::from([(path.to_owned(), depth)]);
    while let Some((path, depth)) = queue.pop_front() {
        let proxy = bus.with_proxy(bus_name, path.as_str(), CALL_TIMEOUT);
        let Ok((xml,)) = proxy.method_call::<(String,), _, _, _>(
            "org.freedesktop.DBus.Introspectable",
            "Introspect",
            (),
        ) else {
            continue;
        };
        if xml.contains(&format!("<interface name=\"{interface}\">")) {
            return Some(path);
        }
        if depth >= MAX_DEPTH {
            continue;
        }
        for child in child_node_names(&xml) {
            let child_path = if path == "/" {
                format!("/{child}")
            } else {
                format!("{path}/{child}")
            };
            queue.push_back((child_path, depth + 1));
        }
    }
    None
}

/// Names of the child nodes listed in introspection XML (`<node name="x"/>`).
fn child_node_names(xml: &str) -> Vec<&str> {
    xml.split("<node name=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect()
}

/// Waits until no process owns `name` on the session bus (an app of an earlier test may still be
/// leaving it: a new single-instance app that finds the name owned hands its arguments to the old
/// one and exits).
///
/// # Errors
/// No session bus, or the name still owned after `timeout`.
pub fn wait_for_bus_name_released(name: &str, timeout: Duration) -> Result<(), String> {
    let conn = dbus::blocking::Connection::new_session()
        .map_err(|e| format!("no D-Bus session bus: {e}"))?;
    let bus = conn.with_proxy(
        "org.freedesktop.DBus",
        "/org/freedesktop/DBus",
        Duration::from_secs(2),
    );
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let (owned,): (bool,) = bus
            .method_call("org.freedesktop.DBus", "NameHasOwner", (name,))
            .map_err(|e| format!("cannot ask the bus about {name}: {e}"))?;
        if !owned {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(format!(
                "{name} is still owned on the session bus after {timeout:?} (an app of an earlier test did not exit)"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
