//! Top-level X11 windows of a process, found and closed the way a window manager would.
//!
//! Tests run under a bare Xvfb with no window manager, so top-level windows are the root's direct
//! children. Closing sends `WM_DELETE_WINDOW`, exactly what a window manager does when the user
//! clicks the window's close button.

use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    Atom, AtomEnum, ClientMessageEvent, ConnectionExt, EventMask, MapState, Window,
};
use x11rb::rust_connection::RustConnection;

/// A connection to the X server named by `DISPLAY`, with the atoms the helpers need.
pub struct X11Display {
    /// The connection (pure Rust, no libxcb).
    conn: RustConnection,
    /// Root window of the default screen.
    root: Window,
    /// `_NET_WM_PID`: the pid a client stamps on its windows.
    net_wm_pid: Atom,
    /// `_NET_WM_NAME`: the UTF-8 window title.
    net_wm_name: Atom,
    /// `UTF8_STRING`: type of `_NET_WM_NAME`.
    utf8_string: Atom,
    /// `WM_PROTOCOLS`: type of the close request message.
    wm_protocols: Atom,
    /// `WM_DELETE_WINDOW`: the close request itself.
    wm_delete_window: Atom,
}

/// A visible top-level window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopLevelWindow {
    /// X11 window id.
    pub id: Window,
    /// Its title (`_NET_WM_NAME`).
    pub title: String,
}

impl X11Display {
    /// Connects to the X server named by `DISPLAY`.
    ///
    /// # Errors
    /// Describes why the display cannot be reached.
    pub fn connect() -> Result<Self, String> {
        let (conn, screen) = x11rb::connect(None)
            .map_err(|err| format!("cannot connect to the X display: {err}"))?;
        let root = conn
            .setup()
            .roots
            .get(screen)
            .map(|screen| screen.root)
            .ok_or_else(|| format!("the X server has no screen {screen}"))?;
        let atom = |name: &str| -> Result<Atom, String> {
            let failed =
                |err: &dyn std::fmt::Display| format!("cannot intern X atom {name}: {err}");
            let cookie = conn
                .intern_atom(false, name.as_bytes())
                .map_err(|err| failed(&err))?;
            Ok(cookie.reply().map_err(|err| failed(&err))?.atom)
        };
        Ok(Self {
            net_wm_pid: atom("_NET_WM_PID")?,
            net_wm_name: atom("_NET_WM_NAME")?,
            utf8_string: atom("UTF8_STRING")?,
            wm_protocols: atom("WM_PROTOCOLS")?,
            wm_delete_window: atom("WM_DELETE_WINDOW")?,
            conn,
            root,
        })
    }

    /// The mapped (visible) top-level windows that process `pid` owns.
    ///
    /// # Errors
    /// Describes a failed X request.
    pub fn visible_windows_of(&self, pid: u32) -> Result<Vec<TopLevelWindow>, String> {
        let x_err = |err: &dyn std::fmt::Display| format!("X request failed: {err}");
        let tree = self
            .conn
            .query_tree(self.root)
            .map_err(|err| x_err(&err))?
            .reply()
            .map_err(|err| x_err(&err))?;
        let mut windows = Vec::new();
        for window in tree.children {
            // Windows can vanish between QueryTree and these requests: skip them.
            let Some(owner) = self.property_u32(window, self.net_wm_pid) else {
                continue;
            };
            if owner != pid {
                continue;
            }
            let Ok(Ok(attributes)) = self
                .conn
                .get_window_attributes(window)
                .map(|cookie| cookie.reply())
            else {
                continue;
            };
            if attributes.map_state != MapState::VIEWABLE {
                continue;
            }
            let title = self.title(window).unwrap_or_default();
            windows.push(TopLevelWindow { id: window, title });
        }
        Ok(windows)
    }

    /// Asks `window`'s client to close it (`WM_DELETE_WINDOW`), as a window manager does when the
    /// user clicks the close button.
    ///
    /// # Errors
    /// Describes a failed X request.
    pub fn request_close(&self, window: Window) -> Result<(), String> {
        let message = ClientMessageEvent::new(
            32,
            window,
            self.wm_protocols,
            [self.wm_delete_window, x11rb::CURRENT_TIME, 0, 0, 0],
        );
        self.conn
            .send_event(false, window, EventMask::NO_EVENT, message)
            .map_err(|err| format!("cannot send WM_DELETE_WINDOW: {err}"))?;
        self.conn
            .flush()
            .map_err(|err| format!("cannot flush the X connection: {err}"))
    }

    /// The first 32-bit value of a CARDINAL property, if set.
    fn property_u32(&self, window: Window, property: Atom) -> Option<u32> {
        let reply = self
            .conn
            .get_property(false, window, property, AtomEnum::CARDINAL, 0, 1)
            .ok()?
            .reply()
            .ok()?;
        let first = reply.value32()?.next();
        first
    }

    /// The UTF-8 title of `window`, if set.
    fn title(&self, window: Window) -> Option<String> {
        let reply = self
            .conn
            .get_property(false, window, self.net_wm_name, self.utf8_string, 0, 1024)
            .ok()?
            .reply()
            .ok()?;
        String::from_utf8(reply.value).ok()
    }
}
