//! `run --watch` (issue 18): the configuration and certificates follow their files. In Kubernetes
//! nobody sends SIGHUP: a ConfigMap or Secret update (and cert-manager's rotation) writes a new
//! timestamped directory and renames a `..data` symlink over the old one; an editor writes a new file
//! and renames it over the old; a copy may be caught half-written.
//!
//! The watch is one thread, off the event loops. It watches the *directories* the files live in
//! ([`dirs_for`]: each file's own directory and that of every symlink hop and of its final target),
//! so a swapped symlink, a rename over the file and an in-place write all wake it. What changed is
//! decided by content, not by event: [`Fingerprint`] keeps a hash of each file's bytes (or that it
//! could not be read), and only a file whose hash differs from the last one seen counts. After the
//! first event the thread waits for [`QUIET`] without events (at most [`MAX_DELAY`], for a writer that
//! never stops), then compares; a change is handed to the signal loop (`run.rs`) as a reload, which
//! is exactly the SIGHUP reload: the same validation, logs and metrics, the trigger named `watch`.
//! A file caught half-written is a failed reload (the running configuration stays); its completion
//! changes the hash again, and that reload applies. Every [`POLL`] the files are also compared without
//! an event, for file systems that send none (network mounts, an exhausted inotify watch limit).
//!
//! The set of files is the configuration file and every certificate, key and CA file the running
//! configuration loaded ([`files_of`]); an applied reload that names other files moves the watch to
//! them. The system trust store is not watched (it changes with the image, not at run time).

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use parking_lot::Mutex;
use serde_json::json;

use crate::config::{Config, TlsIdentity};

/// How long the files must stay without events before they are compared.
pub const QUIET: Duration = Duration::from_millis(250);
/// The longest a stream of events delays the comparison.
pub const MAX_DELAY: Duration = Duration::from_secs(2);
/// The comparison made without an event.
pub const POLL: Duration = Duration::from_secs(10);
/// Symlink hops followed from a watched path (a loop stops here).
const MAX_HOPS: usize = 16;

/// What woke the comparison that found a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeenBy {
    /// A file-system event (inotify).
    Event,
    /// The [`POLL`] comparison.
    Poll,
}

impl SeenBy {
    pub fn as_str(self) -> &'static str {
        match self {
            SeenBy::Event => "event",
            SeenBy::Poll => "poll",
        }
    }
}

/// The files of `config`, read from `config_path`: the file itself, then the internal and external
/// certificate and key files and the CA bundles, each once, in that order.
pub fn files_of(config_path: &Path, config: &Config) -> Vec<PathBuf> {
    let mut files = vec![config_path.to_path_buf()];
    let mut add = |p: &Path| {
        if !files.iter().any(|f| f == p) {
            files.push(p.to_path_buf());
        }
    };
    for tls in [&config.internal().tls, &config.external().tls] {
        if let TlsIdentity::Files(f) = tls {
            add(&f.cert_file);
            add(&f.key_file);
        }
    }
    for ca in [&config.internal().client_ca, &config.external().extra_roots]
        .into_iter()
        .flatten()
    {
        add(&ca.file);
    }
    files
}

/// The directories to watch for `files`: the directory of each path, of every symlink it goes
/// through (a kubelet mount's `sipedge.toml -> ..data/sipedge.toml`, `..data -> ..2026_…`), and of
/// the file it finally names. A directory that does not exist is left out (the poll still covers
/// its files).
pub fn dirs_for(files: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut dirs = BTreeSet::new();
    for file in files {
        let mut hop = file.clone();
        for _ in 0..MAX_HOPS {
            if let Some(parent) = hop.parent().filter(|p| !p.as_os_str().is_empty()) {
                dirs.insert(parent.to_path_buf());
            }
            match std::fs::read_link(&hop) {
                Ok(target) => {
                    hop = match hop.parent() {
                        Some(parent) if target.is_relative() => parent.join(target),
                        _ => target,
                    };
                }
                Err(_) => break,
            }
        }
        if let Some(parent) = std::fs::canonicalize(file)
            .ok()
            .and_then(|c| c.parent().map(Path::to_path_buf))
        {
            dirs.insert(parent);
        }
        // A directory on the way that is a symlink (`/etc/sipedge/tls -> v1`): its swap happens
        // in the directory that holds it.
        for ancestor in file.ancestors().skip(1) {
            if std::fs::symlink_metadata(ancestor).is_ok_and(|m| m.file_type().is_symlink()) {
                if let Some(parent) = ancestor.parent().filter(|p| !p.as_os_str().is_empty()) {
                    dirs.insert(parent.to_path_buf());
                }
            }
        }
    }
    dirs.retain(|d| d.is_dir());
    dirs
}

/// What each watched file holds: a hash of its bytes, or `None` when it cannot be read (missing,
/// unreadable). Kept per path, so the change names the files that changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprint(BTreeMap<PathBuf, Option<u64>>);

impl Fingerprint {
    /// Reads every file in `files` (through symlinks).
    pub fn of(files: &[PathBuf]) -> Fingerprint {
        Fingerprint(
            files
                .iter()
                .map(|f| (f.clone(), std::fs::read(f).ok().map(|b| hash(&b))))
                .collect(),
        )
    }

    /// The files whose content differs from `before` (a file new to the set counts only when
    /// `before` had no entry and it differs from nothing: never, since a new set is read as it is).
    pub fn changed_since(&self, before: &Fingerprint) -> Vec<PathBuf> {
        self.0
            .iter()
            .filter(|(path, now)| before.0.get(*path).is_some_and(|was| was != *now))
            .map(|(path, _)| path.clone())
            .collect()
    }
}

fn hash(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    h.write(bytes);
    h.finish()
}

/// Whether a file-system event can mean new content: every event but a read's open and close
/// (the watch's own reads and the reload's would otherwise wake it again).
fn may_change(kind: &EventKind) -> bool {
    !matches!(
        kind,
        EventKind::Access(AccessKind::Open(_))
            | EventKind::Access(AccessKind::Read)
            | EventKind::Access(AccessKind::Close(AccessMode::Read))
            | EventKind::Access(AccessKind::Close(AccessMode::Execute))
    )
}

/// The running watch; [`Watch::set_files`] after each applied reload. Dropped: the thread is woken
/// and stops.
#[derive(Debug)]
pub struct Watch {
    shared: Arc<Shared>,
}

/// Why [`Watch::start`] could not start the watch.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot start the file watch thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// A wake of the watch thread: `rewatch` asks it to add every directory watch again (a watched
/// directory was removed or renamed: the kernel dropped its watch).
type Wake = bool;

#[derive(Debug)]
struct Shared {
    /// The files, and their fingerprint as the caller read them (the baseline for new ones).
    files: Mutex<(Vec<PathBuf>, Fingerprint)>,
    stop: AtomicBool,
    /// Wakes the thread (file events come through it too); kept here so it lives as long as the
    /// watch, whether or not file events could start.
    wake: Mutex<mpsc::Sender<Wake>>,
}

impl Watch {
    /// Starts the watch thread over `files`, whose contents were `baseline` when the configuration
    /// read them (taken by the caller right after loading, so a change made while the edge starts
    /// is not taken as the starting point); `on_change` gets the files whose content changed and
    /// what saw it (it runs on the watch thread). Fails only when the thread cannot start; file
    /// events that cannot start are logged and leave the poll.
    pub fn start(
        files: Vec<PathBuf>,
        baseline: Fingerprint,
        on_change: impl Fn(Vec<PathBuf>, SeenBy) + Send + 'static,
    ) -> Result<Watch, WatchError> {
        let (tx, rx) = mpsc::channel::<Wake>();
        let shared = Arc::new(Shared {
            files: Mutex::new((files, baseline)),
            stop: AtomicBool::new(false),
            wake: Mutex::new(tx),
        });
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("watch".to_owned())
            .spawn(move || watch_loop(&thread_shared, &rx, &on_change))
            .map_err(WatchError::Thread)?;
        Ok(Watch { shared })
    }

    /// The files to watch from now on (after an applied reload). Nothing happens when they are the
    /// same; a file new to the set is read now, right after the reload read it, as its starting
    /// point.
    pub fn set_files(&self, files: Vec<PathBuf>) {
        let mut current = self.shared.files.lock();
        if current.0 == files {
            return;
        }
        let new: Vec<PathBuf> = files.iter().filter(|f| !current.0.contains(f)).cloned().collect();
        *current = (files, Fingerprint::of(&new));
        drop(current);
        let _ = self.shared.wake.lock().send(false);
    }

    pub fn file_count(&self) -> usize {
        self.shared.files.lock().0.len()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let _ = self.shared.wake.lock().send(false);
    }
}

/// Whether a file-system event means a watched directory itself went away or moved (its watch is
/// gone with it).
fn drops_a_watch(kind: &EventKind) -> bool {
    use notify::event::{ModifyKind, RemoveKind, RenameMode};
    matches!(
        kind,
        EventKind::Remove(RemoveKind::Folder | RemoveKind::Any | RemoveKind::Other)
            | EventKind::Modify(ModifyKind::Name(RenameMode::From | RenameMode::Any))
            | EventKind::Other
    )
}

fn watch_loop(shared: &Shared, rx: &mpsc::Receiver<Wake>, on_change: &dyn Fn(Vec<PathBuf>, SeenBy)) {
    let events = shared.wake.lock().clone();
    let mut watcher = match notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
        Ok(e) if may_change(&e.kind) => {
            let _ = events.send(drops_a_watch(&e.kind));
        }
        Ok(_) => {}
        // An error from the watcher (an overflowed queue) may hide a change: compare, and
        // watch every directory again.
        Err(_) => {
            let _ = events.send(true);
        }
    }) {
        Ok(w) => Some(w),
        Err(e) => {
            log_watch(
                "warn",
                &format!(
                    "file events unavailable ({e}); the files are compared every {} s",
                    POLL.as_secs()
                ),
            );
            None
        }
    };
    let (mut files, mut seen) = shared.files.lock().clone();
    let mut watched: BTreeSet<PathBuf> = BTreeSet::new();
    if let Some(w) = watcher.as_mut() {
        watch_dirs(w, &mut watched, dirs_for(&files));
    }
    log_watch(
        "info",
        &format!(
            "watching {} in {} for changes",
            crate::log::count(files.len(), "file"),
            match watched.len() {
                1 => "1 directory".to_owned(),
                n => format!("{n} directories"),
            }
        ),
    );
    while !shared.stop.load(Ordering::Relaxed) {
        let (by, rewatch) = match rx.recv_timeout(POLL) {
            Ok(rewatch) => {
                let more = settle(rx);
                (SeenBy::Event, rewatch || more)
            }
            // The sender lives in `shared`: never disconnected while the thread runs.
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => (SeenBy::Poll, false),
        };
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let (now_files, baseline) = shared.files.lock().clone();
        if now_files != files {
            // A reload named other files: new ones start from what they held when it read them.
            for (path, h) in baseline.0 {
                seen.0.entry(path).or_insert(h);
            }
            seen.0.retain(|p, _| now_files.contains(p));
            files = now_files;
        }
        if rewatch {
            watched.clear();
        }
        // Symlink targets move with every swap: follow them.
        if let Some(w) = watcher.as_mut() {
            watch_dirs(w, &mut watched, dirs_for(&files));
        }
        let now = Fingerprint::of(&files);
        let changed = now.changed_since(&seen);
        seen = now;
        if !changed.is_empty() {
            on_change(changed, by);
        }
    }
}

/// Waits until no event came for [`QUIET`], or [`MAX_DELAY`] passed; whether one of the events
/// asked for the directories to be watched again.
fn settle(rx: &mpsc::Receiver<Wake>) -> bool {
    let deadline = Instant::now() + MAX_DELAY;
    let mut rewatch = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return rewatch;
        }
        match rx.recv_timeout(QUIET.min(left)) {
            Ok(r) => rewatch |= r,
            Err(_) => return rewatch,
        }
    }
}

/// Makes `watched` equal to `want` on `watcher`: new directories watched, gone ones released (an
/// unwatch of a deleted directory fails harmlessly: the kernel already dropped it).
fn watch_dirs(watcher: &mut impl Watcher, watched: &mut BTreeSet<PathBuf>, want: BTreeSet<PathBuf>) {
    for gone in watched.difference(&want) {
        let _ = watcher.unwatch(gone);
    }
    let mut now = BTreeSet::new();
    for dir in want {
        if watched.contains(&dir) {
            now.insert(dir);
            continue;
        }
        match watcher.watch(&dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                now.insert(dir);
            }
            Err(e) => log_watch(
                "warn",
                &format!(
                    "cannot watch {} ({e}); its files are compared every {} s",
                    dir.display(),
                    POLL.as_secs()
                ),
            ),
        }
    }
    *watched = now;
}

fn log_watch(level: &str, text: &str) {
    crate::log::emit(json!({ "level": level, "event": "config_watch", "text": text }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_that_cannot_start_is_named() {
        let cause = || std::io::Error::from(std::io::ErrorKind::OutOfMemory);
        assert_eq!(
            WatchError::Thread(cause()).to_string(),
            format!("cannot start the file watch thread: {}", cause())
        );
    }

    fn write(p: &Path, s: &str) {
        std::fs::write(p, s).unwrap();
    }

    /// A kubelet-style mount: `dir/name -> ..data/name`, `..data -> ..<stamp>`.
    fn kubelet_mount(dir: &Path, stamp: &str, files: &[(&str, &str)]) {
        let real = dir.join(format!("..{stamp}"));
        std::fs::create_dir(&real).unwrap();
        for (name, text) in files {
            write(&real.join(name), text);
        }
        let tmp = dir.join("..data_tmp");
        std::os::unix::fs::symlink(format!("..{stamp}"), &tmp).unwrap();
        std::fs::rename(&tmp, dir.join("..data")).unwrap();
        for (name, _) in files {
            let link = dir.join(name);
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(format!("..data/{name}"), &link).unwrap();
            }
        }
    }

    #[test]
    fn a_kubelet_mount_is_watched_at_the_mount_and_at_the_real_directory() {
        let d = tempfile::tempdir().unwrap();
        kubelet_mount(d.path(), "2026_12_07_1", &[("sipedge.toml", "a")]);
        let file = d.path().join("sipedge.toml");
        let dirs = dirs_for(std::slice::from_ref(&file));
        let canon = std::fs::canonicalize(d.path()).unwrap();
        assert!(dirs.contains(d.path()), "{dirs:?}");
        assert!(dirs.contains(&canon.join("..2026_12_07_1")), "{dirs:?}");
        // After the swap the old directory is gone and the new one is watched.
        kubelet_mount(d.path(), "2026_12_07_2", &[("sipedge.toml", "b")]);
        std::fs::remove_dir_all(d.path().join("..2026_12_07_1")).unwrap();
        let dirs = dirs_for(std::slice::from_ref(&file));
        assert!(dirs.contains(&canon.join("..2026_12_07_2")), "{dirs:?}");
        assert!(!dirs.iter().any(|p| p.ends_with("..2026_12_07_1")), "{dirs:?}");
    }

    #[test]
    fn a_symlinked_directory_on_the_way_is_watched_where_its_link_lives() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("v1")).unwrap();
        write(&d.path().join("v1/tls.crt"), "a");
        std::os::unix::fs::symlink("v1", d.path().join("tls")).unwrap();
        let dirs = dirs_for(&[d.path().join("tls/tls.crt")]);
        assert!(dirs.contains(d.path()), "the link's directory: {dirs:?}");
        assert!(dirs.contains(&d.path().join("tls")), "{dirs:?}");
    }

    #[test]
    fn a_file_added_by_a_reload_is_watched_from_what_it_held_then() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a.toml"), d.path().join("b.pem"));
        write(&a, "a");
        write(&b, "one");
        let (tx, rx) = mpsc::channel();
        let first = vec![a.clone()];
        let watch = Watch::start(first.clone(), Fingerprint::of(&first), move |changed, by| {
            let _ = tx.send((changed, by));
        })
        .unwrap();
        watch.set_files(vec![a.clone(), b.clone()]);
        assert_eq!(watch.file_count(), 2);
        // The set change wakes the thread; nothing changed yet.
        assert!(rx.recv_timeout(QUIET * 3).is_err());
        write(&b, "two");
        let (changed, _) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(changed, vec![b]);
        drop(watch);
    }

    #[test]
    fn a_change_is_named_by_file_and_an_unchanged_rewrite_is_not_one() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a.pem"), d.path().join("b.pem"));
        write(&a, "one");
        write(&b, "two");
        let files = vec![a.clone(), b.clone()];
        let before = Fingerprint::of(&files);
        write(&b, "two");
        assert!(Fingerprint::of(&files).changed_since(&before).is_empty());
        write(&b, "three");
        assert_eq!(Fingerprint::of(&files).changed_since(&before), vec![b.clone()]);
        std::fs::remove_file(&a).unwrap();
        let gone = Fingerprint::of(&files);
        assert_eq!(gone.changed_since(&before), vec![a.clone(), b.clone()]);
        // Back as it was: a change against the missing state.
        write(&a, "one");
        assert_eq!(Fingerprint::of(&files).changed_since(&gone), vec![a]);
    }

    #[test]
    fn reads_are_not_changes() {
        use notify::event::{CreateKind, ModifyKind, RenameMode};
        assert!(!may_change(&EventKind::Access(AccessKind::Open(AccessMode::Any))));
        assert!(!may_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(may_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(may_change(&EventKind::Modify(ModifyKind::Name(RenameMode::To))));
        assert!(may_change(&EventKind::Create(CreateKind::File)));
    }

    #[test]
    fn the_thread_reports_a_rename_over_the_file_once_it_settles() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("sipedge.toml");
        write(&file, "old");
        let (tx, rx) = mpsc::channel();
        let files = vec![file.clone()];
        let baseline = Fingerprint::of(&files);
        let watch = Watch::start(files, baseline, move |changed, by| {
            let _ = tx.send((changed, by));
        })
        .unwrap();
        // Give the thread its first fingerprint, then an editor's save: write aside, rename over.
        std::thread::sleep(Duration::from_millis(200));
        let aside = d.path().join(".sipedge.toml.swp");
        write(&aside, "new");
        std::fs::rename(&aside, &file).unwrap();
        let (changed, by) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!((changed, by), (vec![file.clone()], SeenBy::Event));
        // Reading the file is no change.
        let _ = std::fs::read(&file).unwrap();
        assert!(rx.recv_timeout(QUIET * 3).is_err());
        drop(watch);
    }
}
