//! The Seatbelt profile text, pinned: a sample policy's full profile, and hostile folder names
//! that must stay inside their string literal.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{seatbelt_profile, ProfileError, ProfileInput};
use crate::sandbox::policy::WorkspaceAccess;

fn ws(root: &str, allow_env_files: bool) -> WorkspaceAccess {
    WorkspaceAccess {
        root: PathBuf::from(root),
        allow_env_files,
    }
}

fn input<'a>(
    workspaces: &'a [WorkspaceAccess],
    hidden: &'a [PathBuf],
    proxy_port: Option<u16>,
) -> ProfileInput<'a> {
    ProfileInput {
        workspaces,
        executables: BTreeSet::from([Path::new("/usr/bin/git"), Path::new("/bin/cat")]),
        hidden,
        scratch: Path::new("/private/var/folders/xy/T/katachi-run-1/work"),
        proxy_port,
    }
}

const SAMPLE_PROFILE: &str = r#"(version 1)
(deny default)
(allow process-fork)
(allow process-info* (target self))
(allow signal (target same-sandbox))
(allow process-exec
  (literal "/bin/cat")
  (literal "/usr/bin/git"))
(allow sysctl-read
  (sysctl-name-prefix "hw.")
  (sysctl-name-prefix "machdep.cpu.")
  (sysctl-name-prefix "kern.os")
  (sysctl-name-prefix "sysctl.proc_")
  (sysctl-name "kern.argmax")
  (sysctl-name "kern.hostname")
  (sysctl-name "kern.maxfilesperproc")
  (sysctl-name "kern.ngroups")
  (sysctl-name "kern.secure_kernel")
  (sysctl-name "kern.usrstack64")
  (sysctl-name "kern.version")
  (sysctl-name "vm.footprint_suspend"))
(allow mach-lookup
  (global-name "com.apple.system.opendirectoryd.libinfo")
  (global-name "com.apple.system.opendirectoryd.membership")
  (global-name "com.apple.system.notification_center"))
(allow ipc-posix-shm-read-data (ipc-posix-name "apple.shm.notification_center"))
(allow file-read*
  (subpath "/System")
  (subpath "/usr/lib")
  (subpath "/usr/libexec")
  (subpath "/usr/share")
  (subpath "/usr/local/lib")
  (subpath "/usr/local/share")
  (subpath "/usr/local/Cellar")
  (subpath "/usr/local/opt")
  (subpath "/opt/homebrew/lib")
  (subpath "/opt/homebrew/share")
  (subpath "/opt/homebrew/Cellar")
  (subpath "/opt/homebrew/opt")
  (subpath "/Library/Developer/CommandLineTools")
  (subpath "/Applications/Xcode.app/Contents/Developer")
  (subpath "/private/etc/ssl")
  (subpath "/private/var/db/timezone"))
(allow file-map-executable
  (subpath "/System")
  (subpath "/usr/lib")
  (subpath "/usr/libexec")
  (subpath "/usr/share")
  (subpath "/usr/local/lib")
  (subpath "/usr/local/share")
  (subpath "/usr/local/Cellar")
  (subpath "/usr/local/opt")
  (subpath "/opt/homebrew/lib")
  (subpath "/opt/homebrew/share")
  (subpath "/opt/homebrew/Cellar")
  (subpath "/opt/homebrew/opt")
  (subpath "/Library/Developer/CommandLineTools")
  (subpath "/Applications/Xcode.app/Contents/Developer")
  (subpath "/private/etc/ssl")
  (subpath "/private/var/db/timezone")
  (literal "/bin/cat")
  (literal "/usr/bin/git"))
(allow file-read*
  (literal "/private/etc/hosts")
  (literal "/private/etc/passwd")
  (literal "/private/etc/group")
  (literal "/private/etc/localtime")
  (literal "/private/etc/services")
  (literal "/private/etc/protocols")
  (literal "/private/etc/gitconfig")
  (literal "/private/var/run/resolv.conf")
  (literal "/dev/random")
  (literal "/dev/urandom")
  (literal "/bin/cat")
  (literal "/usr/bin/git"))
(allow file-read-metadata
  (literal "/")
  (literal "/Users")
  (literal "/Users/ana")
  (literal "/etc")
  (literal "/private")
  (literal "/private/var")
  (literal "/private/var/folders")
  (literal "/private/var/folders/xy")
  (literal "/private/var/folders/xy/T")
  (literal "/private/var/folders/xy/T/katachi-run-1")
  (literal "/tmp")
  (literal "/var"))
(allow file-read* file-write-data
  (literal "/dev/null")
  (literal "/dev/zero"))
(allow file-read* file-write*
  (subpath "/private/var/folders/xy/T/katachi-run-1/work"))
(allow file-read*
  (require-all (subpath "/Users/ana/app") (require-not (regex "^/Users/ana/app/(.*/)?\\.env[^/]*$")) (require-not (subpath "/Users/ana/app/.katachi"))))
(allow file-write*
  (require-all (subpath "/Users/ana/app") (require-not (regex "^/Users/ana/app/(.*/)?\\.env[^/]*$")) (require-not (subpath "/Users/ana/app/.katachi")) (require-not (literal "/Users/ana/app/.git")) (require-not (subpath "/Users/ana/app/.git/hooks")) (require-not (literal "/Users/ana/app/.git/config"))))
(allow file-read*
  (require-all (subpath "/Users/ana/site")))
(allow file-write*
  (require-all (subpath "/Users/ana/site") (require-not (literal "/Users/ana/site/.git")) (require-not (subpath "/Users/ana/site/.git/hooks")) (require-not (literal "/Users/ana/site/.git/config"))))
(allow network-outbound (remote tcp "localhost:18080"))
"#;

#[test]
fn sample_policy_yields_exactly_the_pinned_profile() {
    let workspaces = [ws("/Users/ana/app", false), ws("/Users/ana/site", true)];
    let hidden = [
        PathBuf::from("/Users/ana/app/.katachi"),
        PathBuf::from("/Users/ana/Library/Application Support/katachi"),
    ];
    let profile = seatbelt_profile(&input(&workspaces, &hidden, Some(18080))).unwrap();
    assert_eq!(profile, SAMPLE_PROFILE);
}

#[test]
fn profile_without_proxy_allows_no_network_at_all() {
    let workspaces = [ws("/Users/ana/app", false)];
    let profile = seatbelt_profile(&input(&workspaces, &[], None)).unwrap();
    assert!(!profile.contains("(allow network"), "{profile}");
    assert!(profile.starts_with("(version 1)\n(deny default)\n"));
}

/// The Scheme reader's view of the profile: the code outside string literals, and each
/// literal's decoded text. A breakout would add code or split a literal.
fn scan(profile: &str) -> (String, Vec<String>) {
    let (mut code, mut strings) = (String::new(), Vec::new());
    let mut chars = profile.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                let mut s = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => s.extend(chars.next()),
                        '"' => break,
                        c => s.push(c),
                    }
                }
                strings.push(s);
            }
            c => code.push(c),
        }
    }
    (code, strings)
}

#[test]
fn hostile_workspace_names_stay_inside_their_literals() {
    let plain = [ws("/Users/ana/plain", false)];
    let (plain_code, _) = scan(&seatbelt_profile(&input(&plain, &[], None)).unwrap());
    for name in [
        r#"/Users/ana/a"b"#,
        r#"/Users/ana/x) (allow default"#,
        r#"/Users/ana/x") (allow default) ("#,
        r"/Users/ana/back\slash\",
        r#"/Users/ana/q\") (allow default"#,
    ] {
        let workspaces = [ws(name, false)];
        let profile = seatbelt_profile(&input(&workspaces, &[], None)).unwrap();
        let (code, strings) = scan(&profile);
        // outside the literals, exactly the profile of a harmless name: no rule added or cut
        assert_eq!(code, plain_code, "{name}: {profile}");
        assert_eq!(code.matches("default").count(), 1, "{profile}");
        // the name comes back whole from the reader (subpath), and as the regex's prefix
        assert!(strings.iter().any(|s| s == name), "{name}: {profile}");
        let regex = strings.iter().find(|s| s.contains("env[^/]")).unwrap();
        assert!(regex.starts_with("^/Users/ana/"), "{regex}");
    }
}

#[test]
fn regex_metacharacters_in_a_path_match_only_themselves() {
    let workspaces = [ws("/Users/ana/c++ (v2) [x]{1}|a$^.*?", false)];
    let profile = seatbelt_profile(&input(&workspaces, &[], None)).unwrap();
    let (_, strings) = scan(&profile);
    let regex = strings.iter().find(|s| s.contains("\\.env")).unwrap();
    assert_eq!(
        regex,
        r"^/Users/ana/c\+\+ \(v2\) \[x\]\{1\}\|a\$\^\.\*\?/(.*/)?\.env[^/]*$"
    );
}

#[test]
fn paths_with_control_characters_are_refused() {
    let workspaces = [ws("/Users/ana/new\nline", false)];
    let err = seatbelt_profile(&input(&workspaces, &[], None)).unwrap_err();
    assert!(matches!(err, ProfileError::UnrepresentablePath(_)), "{err}");
}

#[test]
fn env_files_rule_is_absent_when_the_workspace_allows_them() {
    let workspaces = [ws("/Users/ana/app", true)];
    let profile = seatbelt_profile(&input(&workspaces, &[], None)).unwrap();
    assert!(!profile.contains(".env"), "{profile}");
    assert!(profile.contains("(require-not (subpath \"/Users/ana/app/.git/hooks\"))"));
}
