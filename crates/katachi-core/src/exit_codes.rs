//! The exit codes of a long-running agent (`katachi start`, the tray app), for service managers.
//!
//! A service manager restarts a crashed agent, but restarting one that needs the user (a sign-in,
//! a fixed config) only loops. Each code says which case it is, so a systemd unit can say
//! `RestartPreventExitStatus=75 77 78 79` and restart on 1 only. The values follow `sysexits.h`
//! where one fits (`EX_TEMPFAIL` 75, `EX_NOPERM` 77, `EX_CONFIG` 78); 79 is katachi's own.
//!
//! | code | constant            | meaning                                                        | restart? |
//! |------|---------------------|----------------------------------------------------------------|----------|
//! | 0    | [`STOPPED`]         | stopped cleanly (Ctrl-C, SIGTERM, `stop` on the control socket) | no       |
//! | 1    | [`FAILED`]          | an unexpected failure                                          | yes      |
//! | 75   | [`ALREADY_RUNNING`] | another agent runs for this user (the message names its pid)    | no       |
//! | 77   | [`NEEDS_SIGN_IN`]   | not registered, sign-in refused or expired, or the relay asks for a new sign-in | no |
//! | 78   | [`CONFIG_ERROR`]    | a bad relay URL or CA, an unopenable store or keychain          | no       |
//! | 79   | [`REVOKED`]         | the relay revoked or forgot this agent                          | no       |

/// Stopped cleanly: asked to stop (Ctrl-C, SIGTERM, the control socket's `stop`).
pub const STOPPED: u8 = 0;

/// An unexpected failure (a bug, an I/O error): worth a restart.
pub const FAILED: u8 = 1;

/// Another agent already runs for this user (`katachi start` or the app); it keeps running.
pub const ALREADY_RUNNING: u8 = 75;

/// A sign-in is needed: not registered, the sign-in was refused or expired, or the relay said to
/// sign in again. Run `katachi start --relay URL` (or Sign in… in the app).
pub const NEEDS_SIGN_IN: u8 = 77;

/// The configuration cannot work: a bad relay URL or CA file, a store or keychain that does not
/// open. The message names what to fix.
pub const CONFIG_ERROR: u8 = 78;

/// The relay revoked this agent or no longer knows it; sign in again to register it anew.
pub const REVOKED: u8 = 79;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_outside_the_shells_signal_range() {
        let codes = [
            STOPPED,
            FAILED,
            ALREADY_RUNNING,
            NEEDS_SIGN_IN,
            CONFIG_ERROR,
            REVOKED,
        ];
        for (i, a) in codes.iter().enumerate() {
            assert!(*a < 126, "{a} would read as a shell error or signal");
            for b in &codes[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
