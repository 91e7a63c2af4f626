//! A network namespace joined to this one by a veth pair, for cutting an agent's network: created
//! with `ip netns add` and `ip link add … type veth peer …` (root), addresses on a private /30
//! (`10.200.x.y/30`, host end `.1`, namespace end `.2`) picked so that no interface here uses it,
//! and removed on drop — also when the test fails.

use std::net::Ipv4Addr;
use std::process::Command;

/// Why no namespace could be made.
#[derive(Debug)]
pub enum NetnsError {
    /// `ip netns add` is refused here (not root, or no `CAP_SYS_ADMIN` in a container).
    NotPermitted(String),
    /// `ip` is missing, or another step failed.
    Failed(String),
}

/// Runs `ip ARGS…`; its stderr as the error.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` ({e}): install iproute2 (`make deps`)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A namespace with the agent's end of a veth pair in it; the host end stays here.
pub struct NetNamespace {
    /// The namespace's name (`ip netns exec NAME …`).
    pub name: String,
    /// The veth end in this (the host's) namespace.
    pub host_if: String,
    /// The veth end inside the namespace.
    pub inner_if: String,
    /// The host end's address (`.1` of the /30); the namespace end has `.2`.
    pub host_addr: Ipv4Addr,
}

impl NetNamespace {
    /// Creates the namespace, the veth pair and their addresses, and brings everything up.
    ///
    /// # Errors
    /// [`NetnsError::NotPermitted`] when namespaces cannot be made here.
    pub fn create() -> Result<Self, NetnsError> {
        let tag = format!("{:05x}", rand::random::<u32>() & 0xf_ffff);
        let name = format!("katachi-cut-{tag}");
        let (host_addr, inner_addr) = free_subnet();
        if Command::new("ip").arg("-V").output().is_err() {
            return Err(NetnsError::Failed(
                "`ip` is missing: install iproute2 (`make deps`)".to_owned(),
            ));
        }
        ip(&["netns", "add", &name]).map_err(NetnsError::NotPermitted)?;
        // From here the guard removes what exists, whatever fails next.
        let ns = Self {
            name,
            host_if: format!("kth{tag}"),
            inner_if: format!("kta{tag}"),
            host_addr,
        };
        let host_cidr = format!("{host_addr}/30");
        let inner_cidr = format!("{inner_addr}/30");
        let steps: [&[&str]; 6] = [
            &[
                "link",
                "add",
                &ns.host_if,
                "type",
                "veth",
                "peer",
                "name",
                &ns.inner_if,
                "netns",
                &ns.name,
            ],
            &["addr", "add", &host_cidr, "dev", &ns.host_if],
            &["link", "set", &ns.host_if, "up"],
            &[
                "-n",
                &ns.name,
                "addr",
                "add",
                &inner_cidr,
                "dev",
                &ns.inner_if,
            ],
            &["-n", &ns.name, "link", "set", &ns.inner_if, "up"],
            &["-n", &ns.name, "link", "set", "lo", "up"],
        ];
        for step in steps {
            ip(step).map_err(NetnsError::Failed)?;
        }
        Ok(ns)
    }

    /// Takes the namespace's end of the link down (`false`) or up (`true`): the agent's network
    /// cut and restored.
    pub fn set_link(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.name, "link", "set", &self.inner_if, state]).unwrap();
    }

    /// A command run inside the namespace (`ip netns exec NAME program`).
    pub fn command(&self, program: &std::path::Path) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }
}

impl Drop for NetNamespace {
    fn drop(&mut self) {
        // Deleting the namespace destroys its veth end and so the pair, but lazily: the host end
        // is deleted by name first.
        let _ = ip(&["link", "del", &self.host_if]);
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("netns: could not remove {}: {e}", self.name);
        }
    }
}

/// A `10.200.x.y/30` no interface here uses: its `.1` and `.2`.
fn free_subnet() -> (Ipv4Addr, Ipv4Addr) {
    let used = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for _ in 0..64 {
        let block = rand::random::<u16>() & !3;
        let [hi, lo] = block.to_be_bytes();
        if !used.contains(&format!("10.200.{hi}.")) {
            return (
                Ipv4Addr::new(10, 200, hi, lo + 1),
                Ipv4Addr::new(10, 200, hi, lo + 2),
            );
        }
    }
    panic!("no free 10.200.0.0/16 block for the test's /30");
}
