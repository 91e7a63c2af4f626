//! An X11 desktop of the test's own with a real system tray, to see the tray icon and its menu as
//! a user does: a private Xvfb display, `trayer` (an XEmbed system tray, Debian's package) docked at
//! its top right, clicks sent through the XTEST extension and pictures read back from the screen.
//!
//! Where no panel owns the StatusNotifierWatcher name, libappindicator shows the icon through
//! XEmbed, so an app started on this display with a session bus of its own puts its icon in
//! `trayer`, and a click on it pops up the very GTK menu a panel would.
//!
//! The display is private so that the tray never shows up on the display other tests share (a
//! tray there would change what those tests' apps see).

use std::io::BufWriter;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    AtomEnum, ConnectionExt, ImageFormat, MapState, Window, BUTTON_PRESS_EVENT,
    BUTTON_RELEASE_EVENT, KEY_PRESS_EVENT, KEY_RELEASE_EVENT, MOTION_NOTIFY_EVENT,
};
use x11rb::protocol::xtest::ConnectionExt as _;
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;

use crate::process::{wait_until, SpawnedProcess};

/// Budget for Xvfb and trayer to come up.
const START: Duration = Duration::from_secs(20);
/// Displays tried for the private Xvfb (xvfb-run -a counts down from 99).
const DISPLAYS: std::ops::Range<u32> = 180..260;
/// X keycode of Escape with Xvfb's default keymap (evdev-like: 9).
const ESCAPE_KEYCODE: u8 = 9;
/// Space left around the tray and its menu in a picture.
const MARGIN: i16 = 12;

/// A rectangle on the screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    /// Left edge.
    pub x: i16,
    /// Top edge.
    pub y: i16,
    /// Width.
    pub width: u16,
    /// Height.
    pub height: u16,
}

impl Rect {
    /// The smallest rectangle holding both, grown by `margin` and kept on a `screen`-sized screen.
    fn union(self, other: Rect, margin: i16, screen: (u16, u16)) -> Rect {
        let left = self.x.min(other.x).saturating_sub(margin).max(0);
        let top = self.y.min(other.y).saturating_sub(margin).max(0);
        let right = (i32::from(self.x) + i32::from(self.width))
            .max(i32::from(other.x) + i32::from(other.width))
            .saturating_add(i32::from(margin))
            .min(i32::from(screen.0));
        let bottom = (i32::from(self.y) + i32::from(self.height))
            .max(i32::from(other.y) + i32::from(other.height))
            .saturating_add(i32::from(margin))
            .min(i32::from(screen.1));
        let size = |from: i16, to: i32| u16::try_from(to - i32::from(from)).unwrap_or(0);
        Rect {
            x: left,
            y: top,
            width: size(left, right),
            height: size(top, bottom),
        }
    }
}

/// A private Xvfb display with `trayer` docked at its top right.
pub struct TrayDesktop {
    /// `trayer`; dropped (killed) before the display.
    tray: SpawnedProcess,
    /// The X server.
    xvfb: SpawnedProcess,
    /// `:N`.
    name: String,
    /// A connection for reading windows and sending input.
    conn: RustConnection,
    /// The root window.
    root: Window,
    /// The screen's size.
    size: (u16, u16),
}

impl TrayDesktop {
    /// Starts Xvfb on a free display and `trayer` on it, and waits until the tray owns the
    /// system tray selection.
    ///
    /// # Errors
    /// Xvfb or trayer missing or not coming up within the budget (with their output).
    pub fn start() -> Result<Self, String> {
        let (xvfb, name) = start_xvfb()?;
        let (conn, screen) = x11rb::connect(Some(&name))
            .map_err(|err| format!("cannot connect to Xvfb at {name}: {err}"))?;
        let (root, size) = conn
            .setup()
            .roots
            .get(screen)
            .map(|s| (s.root, (s.width_in_pixels, s.height_in_pixels)))
            .ok_or_else(|| format!("Xvfb at {name} has no screen {screen}"))?;
        let mut command = Command::new("trayer");
        command.env("DISPLAY", &name).args([
            "--edge",
            "top",
            "--align",
            "right",
            "--widthtype",
            "request",
            "--height",
            "32",
            "--transparent",
            "false",
            "--tint",
            "0xdcdcdc",
            "--SetDockType",
            "true",
        ]);
        let mut tray = SpawnedProcess::spawn(command).map_err(|err| {
            format!("cannot start trayer ({err}); install Debian's trayer package")
        })?;
        let selection = format!("_NET_SYSTEM_TRAY_S{screen}");
        let owned = wait_until(START, || {
            let atom = conn
                .intern_atom(false, selection.as_bytes())
                .ok()?
                .reply()
                .ok()?
                .atom;
            let owner = conn.get_selection_owner(atom).ok()?.reply().ok()?.owner;
            (owner != x11rb::NONE).then_some(())
        });
        if owned.is_none() {
            return Err(tray.describe(&format!("did not own {selection} within {START:?}")));
        }
        Ok(Self {
            tray,
            xvfb,
            name,
            conn,
            root,
            size,
        })
    }

    /// The display's name, for `DISPLAY`.
    pub fn display(&self) -> &str {
        &self.name
    }

    /// Where the tray shows icons: its panel, once it holds at least one icon (it grows by one
    /// icon's width per icon from nothing).
    ///
    /// # Errors
    /// No icon in the tray within `timeout`.
    pub fn wait_for_icon(&mut self, timeout: Duration) -> Result<Rect, String> {
        let found = wait_until(timeout, || {
            self.top_levels()
                .into_iter()
                .find(|(window, rect, override_redirect)| {
                    !override_redirect && rect.width >= 16 && self.is_trayer(*window)
                })
                .map(|(_, rect, _)| rect)
        });
        found.ok_or_else(|| {
            let what = format!("showed no icon within {timeout:?}");
            self.tray.describe(&what)
        })
    }

    /// Clicks the middle of `rect` with the left button, as the user does on the icon.
    ///
    /// # Errors
    /// A failed X request.
    pub fn click(&self, rect: Rect) -> Result<(), String> {
        let x = rect.x + i16::try_from(rect.width / 2).unwrap_or(0);
        let y = rect.y + i16::try_from(rect.height / 2).unwrap_or(0);
        let failed = |err: &dyn std::fmt::Display| format!("XTEST input failed: {err}");
        let root = self.root;
        let conn = &self.conn;
        conn.xtest_fake_input(MOTION_NOTIFY_EVENT, 0, x11rb::CURRENT_TIME, root, x, y, 0)
            .map_err(|e| failed(&e))?;
        conn.xtest_fake_input(BUTTON_PRESS_EVENT, 1, x11rb::CURRENT_TIME, root, 0, 0, 0)
            .map_err(|e| failed(&e))?;
        conn.xtest_fake_input(BUTTON_RELEASE_EVENT, 1, x11rb::CURRENT_TIME, root, 0, 0, 0)
            .map_err(|e| failed(&e))?;
        conn.sync().map_err(|e| failed(&e))
    }

    /// Presses Escape (closes an open menu).
    ///
    /// # Errors
    /// A failed X request.
    pub fn press_escape(&self) -> Result<(), String> {
        let failed = |err: &dyn std::fmt::Display| format!("XTEST input failed: {err}");
        let (root, conn) = (self.root, &self.conn);
        for event in [KEY_PRESS_EVENT, KEY_RELEASE_EVENT] {
            conn.xtest_fake_input(event, ESCAPE_KEYCODE, x11rb::CURRENT_TIME, root, 0, 0, 0)
                .map_err(|e| failed(&e))?;
        }
        conn.sync().map_err(|e| failed(&e))
    }

    /// The popup menu shown now (a mapped override-redirect window of menu size), waited for.
    ///
    /// # Errors
    /// No menu within `timeout`.
    pub fn wait_for_menu(&mut self, timeout: Duration) -> Result<Rect, String> {
        let found = wait_until(timeout, || self.menu());
        found.ok_or_else(|| format!("no menu popped up within {timeout:?}"))
    }

    /// Waits until no menu is shown.
    ///
    /// # Errors
    /// A menu still shown after `timeout`.
    pub fn wait_for_no_menu(&mut self, timeout: Duration) -> Result<(), String> {
        wait_until(timeout, || self.menu().is_none().then_some(()))
            .ok_or_else(|| format!("the menu was still shown after {timeout:?}"))
    }

    /// Saves the part of the screen holding `icon` and `menu` as a PNG at `path`.
    ///
    /// # Errors
    /// A failed X request or file write.
    pub fn save_picture(&self, icon: Rect, menu: Rect, path: &Path) -> Result<(), String> {
        let area = icon.union(menu, MARGIN, self.size);
        let image = self
            .conn
            .get_image(
                ImageFormat::Z_PIXMAP,
                self.root,
                area.x,
                area.y,
                area.width,
                area.height,
                !0,
            )
            .map_err(|err| format!("GetImage failed: {err}"))?
            .reply()
            .map_err(|err| format!("GetImage failed: {err}"))?;
        let pixels = usize::from(area.width) * usize::from(area.height);
        if image.depth != 24 || image.data.len() < pixels * 4 {
            return Err(format!(
                "unexpected screen image: depth {}, {} bytes for {pixels} pixels",
                image.depth,
                image.data.len()
            ));
        }
        // Xvfb's 24-bit visual is 32 bits per pixel, little-endian BGRX.
        let rgb: Vec<u8> = image
            .data
            .chunks_exact(4)
            .take(pixels)
            .flat_map(|bgrx| [bgrx[2], bgrx[1], bgrx[0]])
            .collect();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
        }
        let file = std::fs::File::create(path)
            .map_err(|err| format!("cannot create {}: {err}", path.display()))?;
        let mut encoder = png::Encoder::new(
            BufWriter::new(file),
            u32::from(area.width),
            u32::from(area.height),
        );
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder
            .write_header()
            .and_then(|mut writer| writer.write_image_data(&rgb))
            .map_err(|err| format!("cannot write {}: {err}", path.display()))
    }

    /// The first mapped override-redirect window of menu size (GTK maps its popup menus so).
    fn menu(&self) -> Option<Rect> {
        self.top_levels()
            .into_iter()
            .find(|(_, rect, override_redirect)| {
                *override_redirect && rect.width >= 80 && rect.height >= 60
            })
            .map(|(_, rect, _)| rect)
    }

    /// The root's mapped children: (window, where, override-redirect).
    fn top_levels(&self) -> Vec<(Window, Rect, bool)> {
        let Some(tree) = self
            .conn
            .query_tree(self.root)
            .ok()
            .and_then(|c| c.reply().ok())
        else {
            return Vec::new();
        };
        tree.children
            .into_iter()
            .filter_map(|window| {
                // Windows can vanish between the requests: skip those.
                let attributes = self.conn.get_window_attributes(window).ok()?.reply().ok()?;
                if attributes.map_state != MapState::VIEWABLE {
                    return None;
                }
                let geometry = self.conn.get_geometry(window).ok()?.reply().ok()?;
                let rect = Rect {
                    x: geometry.x,
                    y: geometry.y,
                    width: geometry.width,
                    height: geometry.height,
                };
                Some((window, rect, attributes.override_redirect))
            })
            .collect()
    }

    /// Whether `window`'s class is trayer's.
    fn is_trayer(&self, window: Window) -> bool {
        self.conn
            .get_property(false, window, AtomEnum::WM_CLASS, AtomEnum::STRING, 0, 64)
            .ok()
            .and_then(|c| c.reply().ok())
            .is_some_and(|reply| {
                String::from_utf8_lossy(&reply.value)
                    .to_ascii_lowercase()
                    .contains("trayer")
            })
    }
}

impl Drop for TrayDesktop {
    fn drop(&mut self) {
        // trayer first: it must not outlive its display (SpawnedProcess kills on drop anyway).
        let _ = self.tray.kill();
        let _ = self.xvfb.kill();
    }
}

/// Starts Xvfb on the first free display of [`DISPLAYS`]; the process and `:N`.
fn start_xvfb() -> Result<(SpawnedProcess, String), String> {
    let mut last = String::from("no free display");
    for number in DISPLAYS {
        let socket = format!("/tmp/.X11-unix/X{number}");
        if Path::new(&format!("/tmp/.X{number}-lock")).exists() || Path::new(&socket).exists() {
            continue;
        }
        let name = format!(":{number}");
        let mut command = Command::new("Xvfb");
        command.args([&name, "-screen", "0", "1024x600x24", "-nolisten", "tcp"]);
        let mut xvfb = SpawnedProcess::spawn(command)
            .map_err(|err| format!("cannot start Xvfb ({err}); install Debian's xvfb package"))?;
        let up = wait_until(START, || {
            if !xvfb.is_running() {
                return Some(false);
            }
            Path::new(&socket).exists().then_some(true)
        });
        match up {
            Some(true) => return Ok((xvfb, name)),
            // Another server took the display between the check and the start: next one.
            Some(false) => last = xvfb.describe(&format!("could not serve {name}")),
            None => return Err(xvfb.describe(&format!("did not serve {name} within {START:?}"))),
        }
    }
    Err(last)
}
