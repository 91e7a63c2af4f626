//! macOS components: IOPlatformUUID (via `ioreg`). Not compiled or tested in this project's CI
//! (no macOS target or SDK on the Linux CI machines); kept small and reviewed by hand.

pub(super) fn collect(found: &mut Vec<(String, Vec<u8>)>, unavailable: &mut Vec<String>) {
    let output = std::process::Command::new("/usr/sbin/ioreg")
        .args(["-rd1", "-c", "IOPlatformExpertDevice"])
        .output();
    let Ok(output) = output else {
        unavailable.push("platform_uuid (ioreg failed to run)".to_owned());
        return;
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let uuid = text
        .lines()
        .find(|l| l.contains("\"IOPlatformUUID\""))
        .and_then(|l| l.split('"').nth(3))
        .map(str::trim);
    match uuid {
        Some(u) if !super::is_placeholder(u) => {
            found.push(("platform_uuid".to_owned(), u.as_bytes().to_vec()))
        }
        _ => unavailable.push("platform_uuid (not found in ioreg output)".to_owned()),
    }
}
