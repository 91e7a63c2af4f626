//! The Linux side of the egress proxy: a listening socket made inside the run's network namespace
//! and handed to the agent (see [`crate::sandbox::proxy`] for the design).
//!
//! Before the launch the agent makes a UNIX socketpair ([`ProxyHandover::new`]). In the run's init, right
//! after `unshare`, [`ProxyHandover::send_listener_in_child`] brings `lo` up, binds
//! `127.0.0.1:PORT`, listens, and sends the listening descriptor over the pair (`SCM_RIGHTS`);
//! then it closes its copies. After `spawn` returns (the command has been exec'd, so the message is
//! already queued), [`ProxyHandover::receive_listener`] takes the descriptor without waiting.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The two ends of the handover pair.
pub(crate) struct ProxyHandover {
    agent: OwnedFd,
    child: OwnedFd,
    port: u16,
}

/// The control message buffer of one descriptor, aligned for `cmsghdr`.
#[repr(C, align(8))]
struct CmsgBuf([u8; 64]);

impl ProxyHandover {
    /// Makes the pair (close-on-exec on both ends: the command inherits neither).
    pub(crate) fn new(port: u16) -> std::io::Result<Self> {
        let mut fds = [-1 as RawFd; 2];
        // SAFETY: `fds` is a valid out array of two ints.
        let r = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: socketpair returned two fresh descriptors we now own.
        let (agent, child) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(Self { agent, child, port })
    }

    /// The init's data for its handover step (raw numbers: the init must not run destructors).
    pub(crate) fn child_part(&self) -> ChildHandover {
        ChildHandover {
            child: self.child.as_raw_fd(),
            agent: self.agent.as_raw_fd(),
            port: self.port,
        }
    }

    /// In the agent, after the launch reported: the listening socket the init sent.
    ///
    /// # Errors
    /// When no descriptor arrived (the child failed before sending it).
    pub(crate) fn receive_listener(self) -> std::io::Result<std::net::TcpListener> {
        // the child's end is only needed by the child
        drop(self.child);
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let mut cmsg = CmsgBuf([0; 64]);
        // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg.0.as_mut_ptr().cast();
        msg.msg_controllen = cmsg.0.len();
        // SAFETY: `msg` points at valid buffers; the received descriptor gets close-on-exec.
        let n = unsafe {
            libc::recvmsg(
                self.agent.as_raw_fd(),
                &mut msg,
                libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC,
            )
        };
        if n != 1 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the sandbox did not hand over the proxy socket",
            ));
        }
        // SAFETY: `msg` was filled by recvmsg; CMSG_FIRSTHDR/CMSG_DATA stay inside `cmsg`.
        let fd = unsafe {
            let hdr = libc::CMSG_FIRSTHDR(&msg);
            if hdr.is_null()
                || (*hdr).cmsg_level != libc::SOL_SOCKET
                || (*hdr).cmsg_type != libc::SCM_RIGHTS
            {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the proxy handover carried no descriptor",
                ));
            }
            std::ptr::read_unaligned(libc::CMSG_DATA(hdr).cast::<RawFd>())
        };
        // SAFETY: SCM_RIGHTS installed a fresh descriptor in this process; we own it now.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(std::net::TcpListener::from(owned))
    }
}

/// The child's side of the handover, plain numbers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChildHandover {
    child: RawFd,
    agent: RawFd,
    port: u16,
}

impl ChildHandover {
    /// In the child, inside the new network namespace: `lo` up, a listener on
    /// `127.0.0.1:port`, sent to the agent, then every copy closed. Async-signal-safe.
    pub(crate) fn send_listener_in_child(&self) -> std::io::Result<()> {
        let err = std::io::Error::last_os_error;
        // SAFETY: socket with integer arguments.
        let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if s < 0 {
            return Err(err());
        }
        let result = self.listen_and_send(s);
        // SAFETY: `s` and the pair's ends are ours; closed once here, never used again.
        unsafe {
            libc::close(s);
            libc::close(self.child);
            libc::close(self.agent);
        }
        result
    }

    fn listen_and_send(&self, s: RawFd) -> std::io::Result<()> {
        let err = std::io::Error::last_os_error;
        bring_loopback_up(s)?;
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: self.port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: `addr` is a valid sockaddr_in of the given size.
        let r = unsafe {
            libc::bind(
                s,
                (&addr as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        // SAFETY: listen with integer arguments.
        if r != 0 || unsafe { libc::listen(s, 128) } != 0 {
            return Err(err());
        }
        let mut byte = [b'L'];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let mut cmsg = CmsgBuf([0; 64]);
        // SAFETY: an all-zero msghdr is valid; CMSG_* only compute offsets inside `cmsg`, which is
        // large and aligned enough for one descriptor; everything lives on this stack frame.
        let r = unsafe {
            let space = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = cmsg.0.as_mut_ptr().cast();
            msg.msg_controllen = space;
            let hdr = libc::CMSG_FIRSTHDR(&msg);
            if hdr.is_null() {
                return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
            }
            (*hdr).cmsg_level = libc::SOL_SOCKET;
            (*hdr).cmsg_type = libc::SCM_RIGHTS;
            (*hdr).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(hdr).cast::<RawFd>(), s);
            libc::sendmsg(self.child, &msg, libc::MSG_NOSIGNAL)
        };
        if r != 1 {
            return Err(err());
        }
        Ok(())
    }
}

/// Sets `IFF_UP` on `lo` of the current (new) network namespace. Async-signal-safe.
fn bring_loopback_up(s: RawFd) -> std::io::Result<()> {
    // SAFETY: an all-zero ifreq is valid; the name is NUL-terminated below.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq for SIOCGIFFLAGS/SIOCSIFFLAGS; the flags union member is the
    // one these requests use.
    unsafe {
        if libc::ioctl(s, libc::SIOCGIFFLAGS, &mut req) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(s, libc::SIOCSIFFLAGS, &req) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
