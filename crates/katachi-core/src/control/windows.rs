//! The control pipe on Windows: `\\.\pipe\katachi-control-<hash of the runtime dir>`, with a DACL
//! that grants access to this user's SID only.
//!
//! # Security
//! - The DACL (`D:P(A;;GA;;;<user SID>)`, protected, nothing inherited) lets only the agent's own
//!   user open the pipe; the OS checks it at open time, for every instance.
//! - `reject_remote_clients(true)`: no client over the network (SMB).
//! - `first_pipe_instance(true)` on the first instance: if another process (another agent, or a
//!   squatter) already owns the name, serving fails instead of joining its pipe.

use std::ffi::c_void;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::net::windows::named_pipe::{
    ClientOptions, NamedPipeClient, NamedPipeServer, ServerOptions,
};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

use super::error::ControlError;
use super::protocol::codes;
use super::session::{refuse, serve, Shared};
use crate::dirs::KatachiDirs;

/// `ERROR_FILE_NOT_FOUND`: no pipe of that name (no agent runs).
const ERROR_FILE_NOT_FOUND: i32 = 2;
/// `ERROR_ACCESS_DENIED`: the name is taken (first instance) or the DACL refuses us.
const ERROR_ACCESS_DENIED: i32 = 5;
/// `ERROR_PIPE_BUSY`: every instance is busy; wait a little.
const ERROR_PIPE_BUSY: i32 = 231;

/// The pipe's name for `dirs` (one per agent home).
pub(crate) fn pipe_name(dirs: &KatachiDirs) -> String {
    let digest = Sha256::digest(dirs.runtime_dir().as_os_str().as_encoded_bytes());
    format!(r"\\.\pipe\katachi-control-{}", &hex::encode(digest)[..16])
}

/// A served pipe.
pub(crate) struct Listening {
    /// The pipe's name.
    pub(crate) path: PathBuf,
    /// The accept loop (aborting it closes every instance).
    pub(crate) task: JoinHandle<()>,
}

impl Listening {
    /// Nothing to remove: a pipe ends with its last handle.
    pub(crate) fn remove_socket(&self) {}
}

/// Creates the first pipe instance of `dirs` and starts accepting on the current runtime.
pub(crate) fn listen(
    dirs: &KatachiDirs,
    shared: Arc<Shared>,
    slots: usize,
) -> Result<Listening, ControlError> {
    let name = pipe_name(dirs);
    let first = create_instance(&name, true).map_err(|source| {
        if source.raw_os_error() == Some(ERROR_ACCESS_DENIED) {
            ControlError::AlreadyServing(PathBuf::from(&name))
        } else {
            ControlError::Serve {
                path: PathBuf::from(&name),
                source,
            }
        }
    })?;
    let task = tokio::spawn(accept_loop(name.clone(), first, shared, slots));
    Ok(Listening {
        path: PathBuf::from(name),
        task,
    })
}

/// Opens the pipe of `dirs`; `None` when no agent runs.
pub(crate) async fn connect(dirs: &KatachiDirs) -> Result<Option<NamedPipeClient>, ControlError> {
    let name = pipe_name(dirs);
    for _ in 0..50 {
        match ClientOptions::new().open(&name) {
            Ok(client) => return Ok(Some(client)),
            Err(e) if e.raw_os_error() == Some(ERROR_FILE_NOT_FOUND) => return Ok(None),
            Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(source) => {
                return Err(ControlError::Connect {
                    path: PathBuf::from(name),
                    source,
                })
            }
        }
    }
    Err(ControlError::Connect {
        path: PathBuf::from(name),
        source: io::Error::from_raw_os_error(ERROR_PIPE_BUSY),
    })
}

async fn accept_loop(name: String, mut server: NamedPipeServer, shared: Arc<Shared>, slots: usize) {
    let slots = Arc::new(Semaphore::new(slots));
    let mut connections = JoinSet::new();
    loop {
        if let Err(e) = server.connect().await {
            tracing::warn!("control pipe: accept failed: {e}");
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        // the next instance exists before this one is handed over, so clients never find none
        let next = loop {
            match create_instance(&name, false) {
                Ok(next) => break next,
                Err(e) => {
                    tracing::warn!("control pipe: cannot create an instance: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        let connected = std::mem::replace(&mut server, next);
        while connections.try_join_next().is_some() {}
        let slots = Arc::clone(&slots);
        let shared = Arc::clone(&shared);
        connections.spawn(async move {
            let Ok(_slot) = slots.try_acquire_owned() else {
                refuse(
                    connected,
                    codes::BUSY,
                    "too many clients are connected to the agent; try again",
                )
                .await;
                return;
            };
            serve(connected, shared).await;
        });
    }
}

/// One pipe instance with the owner-only DACL.
fn create_instance(name: &str, first: bool) -> io::Result<NamedPipeServer> {
    let descriptor = OwnerOnlyDescriptor::new()?;
    let mut attributes = windows_sys::Win32::Security::SECURITY_ATTRIBUTES {
        nLength: u32::try_from(std::mem::size_of::<
            windows_sys::Win32::Security::SECURITY_ATTRIBUTES,
        >())
        .unwrap_or(u32::MAX),
        lpSecurityDescriptor: descriptor.0,
        bInheritHandle: 0,
    };
    let mut options = ServerOptions::new();
    options
        .first_pipe_instance(first)
        .reject_remote_clients(true);
    create_with_attributes(&options, name, &mut attributes)
}

#[allow(unsafe_code)]
fn create_with_attributes(
    options: &ServerOptions,
    name: &str,
    attributes: &mut windows_sys::Win32::Security::SECURITY_ATTRIBUTES,
) -> io::Result<NamedPipeServer> {
    let raw: *mut c_void =
        (attributes as *mut windows_sys::Win32::Security::SECURITY_ATTRIBUTES).cast();
    // SAFETY: `raw` points to a valid SECURITY_ATTRIBUTES whose descriptor outlives this call
    // (the caller holds both); the OS copies what it needs when it creates the pipe.
    unsafe { options.create_with_security_attributes_raw(name, raw) }
}

/// A self-relative security descriptor granting all access to this user only, freed on drop.
struct OwnerOnlyDescriptor(*mut c_void);

impl OwnerOnlyDescriptor {
    #[allow(unsafe_code)]
    fn new() -> io::Result<Self> {
        use windows_sys::Win32::Security::Authorization::{
            ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
        };
        let sid = current_user_sid()?;
        // P: protected, nothing inherited; GA: generic all, to this SID and no one else
        let sddl: Vec<u16> = format!("D:P(A;;GA;;;{sid})")
            .encode_utf16()
            .chain(std::iter::once(0))
            .collect();
        let mut descriptor: *mut c_void = std::ptr::null_mut();
        // SAFETY: `sddl` is NUL-terminated UTF-16; `descriptor` receives a LocalAlloc'd buffer
        // that `Drop` frees with LocalFree.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                sddl.as_ptr(),
                SDDL_REVISION_1,
                &mut descriptor,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self(descriptor))
    }
}

impl Drop for OwnerOnlyDescriptor {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: the pointer came from ConvertStringSecurityDescriptorToSecurityDescriptorW,
        // which documents LocalFree as its release; it is freed once.
        unsafe {
            windows_sys::Win32::Foundation::LocalFree(self.0);
        }
    }
}

/// This process's user SID as a string (`S-1-5-21-…`).
#[allow(unsafe_code)]
fn current_user_sid() -> io::Result<String> {
    use windows_sys::Win32::Foundation::{CloseHandle, LocalFree, HANDLE};
    use windows_sys::Win32::Security::Authorization::ConvertSidToStringSidW;
    use windows_sys::Win32::Security::{GetTokenInformation, TokenUser, TOKEN_QUERY, TOKEN_USER};
    use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: the pseudo-handle of the current process needs no closing; `token` receives a
    // handle closed below.
    if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
        return Err(io::Error::last_os_error());
    }
    // u64 words: TOKEN_USER holds pointers and needs their alignment
    let mut buffer = vec![0u64; 64];
    let mut len = 0u32;
    let size = u32::try_from(buffer.len() * 8).unwrap_or(u32::MAX);
    // SAFETY: `buffer` is `size` writable bytes, aligned for TOKEN_USER; `len` receives the size.
    let ok = unsafe {
        GetTokenInformation(token, TokenUser, buffer.as_mut_ptr().cast(), size, &mut len)
    };
    let error = io::Error::last_os_error();
    // SAFETY: `token` was opened above and is closed once.
    unsafe {
        CloseHandle(token);
    }
    if ok == 0 {
        return Err(error);
    }
    // SAFETY: GetTokenInformation(TokenUser) filled the buffer with a TOKEN_USER whose SID
    // pointer points inside the same buffer, alive until the end of this function.
    let sid = unsafe { (*buffer.as_ptr().cast::<TOKEN_USER>()).User.Sid };
    let mut text: *mut u16 = std::ptr::null_mut();
    // SAFETY: `sid` is valid (above); `text` receives a LocalAlloc'd NUL-terminated string.
    if unsafe { ConvertSidToStringSidW(sid, &mut text) } == 0 {
        return Err(io::Error::last_os_error());
    }
    let mut n = 0usize;
    // SAFETY: `text` is NUL-terminated; read up to the NUL, then free it once.
    let sid_text = unsafe {
        while *text.add(n) != 0 {
            n += 1;
        }
        let s = String::from_utf16_lossy(std::slice::from_raw_parts(text, n));
        LocalFree(text.cast());
        s
    };
    Ok(sid_text)
}
