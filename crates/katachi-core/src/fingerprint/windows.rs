//! Windows components: MachineGuid from the registry (via `reg query`). Not compiled or tested in
//! this project's CI (no Windows target on the Linux CI machines); kept small and reviewed by hand.

pub(super) fn collect(found: &mut Vec<(String, Vec<u8>)>, unavailable: &mut Vec<String>) {
    let output = std::process::Command::new("reg")
        .args([
            "query",
            r"HKLM\SOFTWARE\Microsoft\Cryptography",
            "/v",
            "MachineGuid",
        ])
        .output();
    let Ok(output) = output else {
        unavailable.push("machine_guid (reg failed to run)".to_owned());
        return;
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let guid = text
        .lines()
        .find(|l| l.contains("MachineGuid"))
        .and_then(|l| l.split_whitespace().last());
    match guid {
        Some(g) if !super::is_placeholder(g) => {
            found.push(("machine_guid".to_owned(), g.as_bytes().to_vec()))
        }
        _ => unavailable.push("machine_guid (not found in the registry)".to_owned()),
    }
}
