//! The tray icon of each agent state: one PNG per state, each with its own shape as well as its
//! own colour (drawn by `scripts/make-tray-icons.sh`, embedded at compile time).

use tauri::image::Image;

/// Which picture the tray shows. Shapes differ, not only colours, so the state reads on a
/// monochrome panel and for colour-blind users.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TrayIcon {
    /// Filled green disc: the tunnel is up.
    Connected,
    /// Dashed ring: the first dial (or the dial after a pause or a network change) is under way.
    Connecting,
    /// Open ring with an arrow: the tunnel dropped, the next attempt is scheduled.
    Reconnecting,
    /// Slashed grey circle: no credentials, a sign-in is needed.
    SignedOut,
    /// Hourglass: a sign-in waits for the user's approval in the browser.
    Waiting,
    /// Two bars: remote access is paused (or stopped until resumed).
    Paused,
    /// Red triangle with "!": the agent stopped and needs the user.
    Error,
}

impl TrayIcon {
    /// Every icon, for callers (and tests) that need to go through all of them.
    pub const ALL: [Self; 7] = [
        Self::Connected,
        Self::Connecting,
        Self::Reconnecting,
        Self::SignedOut,
        Self::Waiting,
        Self::Paused,
        Self::Error,
    ];

    /// The icon's RGBA pixels (embedded at compile time from `icons/tray-*.png`).
    pub fn image(self) -> Image<'static> {
        match self {
            Self::Connected => tauri::include_image!("../icons/tray-connected.png"),
            Self::Connecting => tauri::include_image!("../icons/tray-connecting.png"),
            Self::Reconnecting => tauri::include_image!("../icons/tray-reconnecting.png"),
            Self::SignedOut => tauri::include_image!("../icons/tray-signed-out.png"),
            Self::Waiting => tauri::include_image!("../icons/tray-waiting.png"),
            Self::Paused => tauri::include_image!("../icons/tray-paused.png"),
            Self::Error => tauri::include_image!("../icons/tray-error.png"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::TrayIcon;

    /// The icon's shape: which pixels are more than half opaque, colour ignored.
    fn alpha_mask(icon: TrayIcon) -> Vec<bool> {
        icon.image()
            .rgba()
            .chunks_exact(4)
            .map(|pixel| pixel[3] > 127)
            .collect()
    }

    #[test]
    fn each_state_has_its_own_icon() {
        let pixels: HashSet<Vec<u8>> = TrayIcon::ALL
            .iter()
            .map(|icon| icon.image().rgba().to_vec())
            .collect();
        assert_eq!(pixels.len(), TrayIcon::ALL.len());
    }

    #[test]
    fn icons_differ_in_shape_not_only_in_colour() {
        let masks: Vec<(TrayIcon, Vec<bool>)> =
            TrayIcon::ALL.iter().map(|&i| (i, alpha_mask(i))).collect();
        for (i, (a, mask_a)) in masks.iter().enumerate() {
            for (b, mask_b) in &masks[i + 1..] {
                let differing = mask_a.iter().zip(mask_b).filter(|(x, y)| x != y).count();
                // at least 5% of the pixels: a shape a glance tells apart, not a stray pixel
                assert!(
                    differing * 20 >= mask_a.len(),
                    "{a:?} and {b:?} differ in only {differing} of {} pixels of their shape",
                    mask_a.len()
                );
            }
        }
    }

    #[test]
    fn icons_are_square_small_and_not_blank() {
        for icon in TrayIcon::ALL {
            let image = icon.image();
            assert_eq!(image.width(), image.height(), "{icon:?}");
            assert!(
                (32..=64).contains(&image.width()),
                "{icon:?}: {} px",
                image.width()
            );
            let opaque = alpha_mask(icon).iter().filter(|&&o| o).count();
            assert!(opaque > 200, "{icon:?} has only {opaque} opaque pixels");
        }
    }
}
