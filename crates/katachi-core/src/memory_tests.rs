use super::*;

const SMAPS: &str = "\
55d4a0000000-55d4a0400000 r--p 00000000 fe:01 1234 /usr/bin/katachi
Size:               4096 kB
Rss:                1200 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
55d4a0400000-55d4a1000000 r-xp 00400000 fe:01 1234 /usr/bin/katachi
Size:              12288 kB
Rss:                9000 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
55d4a1000000-55d4a1100000 r--p 01000000 fe:01 1234 /usr/bin/katachi
Rss:                 900 kB
Private_Dirty:       900 kB
Anonymous:           900 kB
55d4a1100000-55d4a1200000 rw-p 01100000 fe:01 1234 /usr/bin/katachi
Rss:                 100 kB
Private_Dirty:       100 kB
Anonymous:           100 kB
7f0000000000-7f0000100000 r-xp 00000000 fe:01 99 /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                 800 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
7f0000100000-7f0000200000 r--p 00000000 fe:01 98 /usr/share/locale/locale-archive
Rss:                 300 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
7f0000200000-7f0000300000 r--s 00000000 fe:01 97 /usr/lib/libshared.so
Rss:                 300 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
7f0000300000-7f0000400000 r-xp 00000000 fe:01 96 /usr/lib/libgone.so.1 (deleted)
Rss:                  40 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
7f0000400000-7f0000500000 r-xp 00000000 fe:01 95 /usr/lib/libnofigures.so
Rss:                  40 kB
7f0000500000-7f0000600000 r-xp 00000000 fe:01 94 /usr/lib/libcold.so
Rss:                   0 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
7f0000600000-7f0000700000 rw-p 00000000 00:00 0
Rss:                 500 kB
Private_Dirty:       500 kB
Anonymous:           500 kB
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0                          [vdso]
Rss:                   8 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
";

#[test]
fn only_clean_read_only_pages_of_the_program_and_shared_objects_are_released() {
    let found = releasable(SMAPS, "/usr/bin/katachi");
    assert_eq!(
        found,
        vec![
            Mapping {
                start: 0x55d4a0000000,
                end: 0x55d4a0400000,
                rss_kib: 1200,
            },
            Mapping {
                start: 0x55d4a0400000,
                end: 0x55d4a1000000,
                rss_kib: 9000,
            },
            Mapping {
                start: 0x7f0000000000,
                end: 0x7f0000100000,
                rss_kib: 800,
            },
        ],
        "relocated read-only data, writable data, data files, shared mappings, deleted files, \
         mappings without figures, empty ones, anonymous memory and the vdso are kept"
    );
}

#[test]
fn garbage_in_smaps_releases_nothing_and_does_not_panic() {
    for text in [
        "",
        "not a mapping\nRss: 12 kB\n",
        "zzzz-0000 r-xp 0 0 1 /usr/lib/liba.so\nRss: 4 kB\nAnonymous: 0 kB\nPrivate_Dirty: 0 kB\n",
        "2000-1000 r-xp 0 0 1 /usr/lib/liba.so\nRss: 4 kB\nAnonymous: 0 kB\nPrivate_Dirty: 0 kB\n",
        "1000-2000 r-xp 0 0 1 /usr/lib/liba.so\nRss: x kB\nAnonymous: 0 kB\nPrivate_Dirty: 0 kB\n",
        "1000-2000 r-xp 0 0 1 /usr/lib/liba.so\nRss: 4 kB\nAnonymous: -1 kB\nPrivate_Dirty: 0 kB\n",
        "1000-2000 rx 0 0 1 /usr/lib/liba.so\nRss: 4 kB\nAnonymous: 0 kB\nPrivate_Dirty: 0 kB\n",
    ] {
        assert_eq!(releasable(text, "/usr/bin/katachi"), vec![], "{text:?}");
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use super::*;

    /// The tests that release the process's pages take turns: one releasing while the other
    /// measures would make the other's before/after figures meaningless.
    static RELEASING: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// Maps `file` privately (read and write), and returns the mapping.
    fn map(file: &std::fs::File, len: usize) -> *mut u8 {
        use std::os::fd::AsRawFd;
        // SAFETY: a fresh private mapping of an open file; checked against MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED, "mmap failed");
        ptr.cast()
    }

    /// The resident KiB of the mapping that starts at `ptr`, from /proc/self/smaps.
    fn resident_kib(ptr: *mut u8) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let start = format!("{:x}-", ptr as usize);
        let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&start)).skip(1);
        lines
            .find_map(|l| l.strip_prefix("Rss:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    }

    #[test]
    fn released_pages_read_back_the_same_and_copied_on_write_pages_are_kept() {
        let _turn = RELEASING.lock().unwrap_or_else(|e| e.into_inner());
        const LEN: usize = 16 * 4096;
        let dir = tempfile::tempdir().unwrap();
        let clean_path = dir.path().join("libclean.so");
        let written_path = dir.path().join("libwritten.so");
        let content: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
        for path in [&clean_path, &written_path] {
            std::fs::write(path, &content).unwrap();
            // written back: a page still dirty in the page cache counts as Private_Dirty, and is
            // (rightly) not released
            std::fs::File::open(path).unwrap().sync_all().unwrap();
        }
        let clean_file = std::fs::File::open(&clean_path).unwrap();
        let written_file = std::fs::File::open(&written_path).unwrap();
        let clean = map(&clean_file, LEN);
        let written = map(&written_file, LEN);
        // SAFETY: both mappings are LEN bytes, alive until munmap below, and used by this thread
        // only.
        unsafe {
            let mut sum = 0u64;
            for i in (0..LEN).step_by(4096) {
                sum += u64::from(std::ptr::read_volatile(clean.add(i)));
            }
            assert!(sum > 0);
            // one page copied on write, as the loader does to relocated read-only data
            std::ptr::write_volatile(written.add(4096), 0xEE);
            assert_eq!(
                libc::mprotect(clean.cast(), LEN, libc::PROT_READ),
                0,
                "mprotect"
            );
            assert_eq!(
                libc::mprotect(written.cast(), LEN, libc::PROT_READ),
                0,
                "mprotect"
            );
        }
        assert!(resident_kib(clean) > 0, "the clean mapping was touched");

        let released = release_idle_pages();
        assert!(released.skipped.is_none(), "{released:?}");
        assert!(released.mappings >= 1, "{released:?}");
        assert_eq!(
            resident_kib(clean),
            0,
            "the clean mapping's pages were released"
        );
        assert!(
            resident_kib(written) > 0,
            "the mapping with a copied page was left alone"
        );
        // SAFETY: as above.
        unsafe {
            for (i, want) in content.iter().enumerate() {
                assert_eq!(std::ptr::read_volatile(clean.add(i)), *want, "byte {i}");
            }
            assert_eq!(std::ptr::read_volatile(written.add(4096)), 0xEE);
            assert_eq!(std::ptr::read_volatile(written.add(4097)), content[4097]);
            libc::munmap(clean.cast(), LEN);
            libc::munmap(written.cast(), LEN);
        }
    }

    #[test]
    fn releasing_the_programs_pages_lowers_its_resident_size_and_it_keeps_running() {
        let _turn = RELEASING.lock().unwrap_or_else(|e| e.into_inner());
        // The resident pages of the program's and its libraries' clean mappings. Not VmRSS: the
        // other tests in this process allocate at the same time.
        let image_kib = || {
            let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
            let exe = std::fs::read_link("/proc/self/exe").unwrap();
            releasable(&smaps, &exe.to_string_lossy())
                .iter()
                .map(|m| m.rss_kib)
                .sum::<u64>()
        };
        let before = image_kib();
        let released = release_idle_pages();
        let after = image_kib();
        assert!(released.skipped.is_none(), "{released:?}");
        assert!(
            released.mappings >= 1 && released.file_kib > 0 && released.rss_before_kib > 0,
            "{released:?}"
        );
        assert!(
            after < before,
            "the clean image pages went from {before} to {after} KiB: {released:?}"
        );
        // code released a moment ago runs again (faults back in from the page cache)
        let digest = {
            use sha2::Digest;
            sha2::Sha256::digest(b"still here")
        };
        assert_eq!(digest.len(), 32);
    }
}

#[tokio::test(start_paused = true)]
async fn pages_are_released_once_per_connection_that_settles_and_the_task_ends_with_the_agent() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = {
        let calls = Arc::clone(&calls);
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            Released::default()
        }
    };
    let (tx, rx) = watch::channel(Status::Connecting);
    let task = tokio::spawn(release_on_settle(rx, counted));
    let connected = |since, agent_name: &str| Status::Connected {
        since,
        relay: "https://relay.test".into(),
        agent_name: agent_name.into(),
    };
    let released = || calls.load(Ordering::SeqCst);

    tx.send(connected(1, "laptop")).unwrap();
    tokio::time::sleep(SETTLE / 2).await;
    assert_eq!(released(), 0, "not before the connection settled");
    // a connection that drops before it settles releases nothing
    tx.send(Status::Connecting).unwrap();
    tokio::time::sleep(SETTLE).await;
    assert_eq!(released(), 0, "not while connecting");

    tx.send(connected(2, "laptop")).unwrap();
    tokio::time::sleep(SETTLE / 2).await;
    // a change that keeps the same connection does not restart the wait
    tx.send(connected(2, "renamed")).unwrap();
    tokio::time::sleep(SETTLE / 2 + Duration::from_millis(10)).await;
    assert_eq!(released(), 1, "once the connection settled");
    tokio::time::sleep(SETTLE * 10).await;
    assert_eq!(released(), 1, "once per connection: no periodic wake-up");

    tx.send(Status::Connecting).unwrap();
    tx.send(connected(3, "renamed")).unwrap();
    tokio::time::sleep(SETTLE + Duration::from_millis(10)).await;
    assert_eq!(released(), 2, "again after a reconnect");

    drop(tx);
    tokio::time::timeout(Duration::from_secs(1), task)
        .await
        .expect("ends when the agent's status closes")
        .unwrap();
}
