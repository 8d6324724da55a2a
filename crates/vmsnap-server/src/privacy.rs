//! The data directory is private to the user vmsnap runs as: the store holds Secrets, the volumes
//! hold guest disks, the runtime directory holds the QEMU monitors' sockets. Directories are 0700,
//! files 0600, and no other user can read, write or connect to any of them.
//!
//! Two mechanisms: a process umask of 077 set first thing in `vmsnap serve`, which every file
//! created afterwards inherits (by vmsnap, SQLite, `qemu-img` and QEMU alike, without each of them
//! having to ask), and a check at start over the existing tree, which takes group and other
//! access away from what an earlier version, a hand-made directory or a restored backup left open.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, umask};
use nix::unistd::{Uid, User, geteuid};

/// The permission bits of the group and of others.
const GROUP_AND_OTHERS: u32 = 0o077;

/// Makes every file the process creates from now on private to its user: directories 0700, files
/// 0600, sockets 0700. Child processes (QEMU, `qemu-img`) inherit the mask.
pub fn restrict_umask() {
    umask(Mode::from_bits_truncate(GROUP_AND_OTHERS));
}

/// Why the data directory could not be made private.
#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    /// An entry belongs to another user: vmsnap can neither make it private nor trust it.
    #[error(
        "{path} belongs to {owner}, but vmsnap runs as {user}: run vmsnap as {owner}, or give the \
         directory to {user} (chown -R {user}: {root})"
    )]
    ForeignOwner {
        /// The entry.
        path: PathBuf,
        /// Its owner (name, else uid).
        owner: String,
        /// The user vmsnap runs as (name, else uid).
        user: String,
        /// The directory being checked.
        root: PathBuf,
    },
    /// An entry could not be inspected or changed.
    #[error("cannot make {path} private to the service user")]
    Io {
        /// The entry.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// What [`make_private`] found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PrivacyReport {
    /// How many entries were looked at (the root included).
    pub checked: usize,
    /// The entries whose group or other permission bits were cleared.
    pub fixed: Vec<PathBuf>,
}

/// Clears the group and other permission bits of `root` and of everything below it, without
/// following symbolic links below `root`. Refuses, before changing anything, when an entry belongs
/// to another user. A missing `root` is fine (a first start creates it).
pub fn make_private(root: &Path) -> Result<PrivacyReport, PrivacyError> {
    let entries = match collect(root)? {
        Some(entries) => entries,
        None => return Ok(PrivacyReport::default()),
    };
    let uid = geteuid();
    if let Some((path, meta)) = entries.iter().find(|(_, meta)| meta.uid() != uid.as_raw()) {
        return Err(PrivacyError::ForeignOwner {
            path: path.clone(),
            owner: user_name(Uid::from_raw(meta.uid())),
            user: user_name(uid),
            root: root.to_owned(),
        });
    }
    let mut report = PrivacyReport { checked: entries.len(), fixed: Vec::new() };
    for (path, meta) in entries {
        let mode = meta.mode() & 0o7777;
        if meta.file_type().is_symlink() || mode & GROUP_AND_OTHERS == 0 {
            continue;
        }
        match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & !GROUP_AND_OTHERS)) {
            Ok(()) => report.fixed.push(path),
            // Gone since the walk (a VM that stopped): nothing left to protect.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(PrivacyError::Io { path, source }),
        }
    }
    Ok(report)
}

/// Every entry under `root` with its metadata (`root` itself followed if it is a link), or `None`
/// when `root` does not exist.
fn collect(root: &Path) -> Result<Option<Vec<(PathBuf, std::fs::Metadata)>>, PrivacyError> {
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| PrivacyError::Io { path, source }
    };
    let root_meta = match std::fs::metadata(root) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(root)(e)),
    };
    let mut entries = Vec::new();
    let mut pending = vec![(root.to_owned(), root_meta)];
    while let Some((path, meta)) = pending.pop() {
        if meta.is_dir() {
            let listing = match std::fs::read_dir(&path) {
                Ok(listing) => listing,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&path)(e)),
            };
            for child in listing {
                let child = child.map_err(io_err(&path))?.path();
                match std::fs::symlink_metadata(&child) {
                    Ok(child_meta) => pending.push((child, child_meta)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(&child)(e)),
                }
            }
        }
        entries.push((path, meta));
    }
    Ok(Some(entries))
}

/// A user's name, else its uid.
fn user_name(uid: Uid) -> String {
    match User::from_uid(uid) {
        Ok(Some(user)) => user.name,
        _ => format!("uid {uid}"),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn group_and_other_access_is_taken_away_from_every_entry_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        std::fs::create_dir_all(root.join("store")).unwrap();
        std::fs::write(root.join("store/store.db"), "secret").unwrap();
        std::fs::write(root.join("token"), "t").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(root.join("store"), std::fs::Permissions::from_mode(0o775)).unwrap();
        std::fs::set_permissions(root.join("store/store.db"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        std::fs::set_permissions(root.join("token"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let passwd_mode = mode(Path::new("/etc/passwd"));

        let report = make_private(&root).unwrap();

        assert_eq!(report.checked, 5);
        assert_eq!(report.fixed.len(), 3, "{report:?}");
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&root.join("store")), 0o700);
        assert_eq!(mode(&root.join("store/store.db")), 0o600);
        assert_eq!(mode(&root.join("token")), 0o600);
        assert_eq!(mode(Path::new("/etc/passwd")), passwd_mode, "a link's target is not vmsnap's");
        assert_eq!(make_private(&root).unwrap().fixed, Vec::<PathBuf>::new());
    }

    #[test]
    fn a_missing_directory_is_a_first_start() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(make_private(&dir.path().join("absent")).unwrap(), PrivacyReport::default());
    }

    #[test]
    fn an_entry_of_another_user_is_refused_before_anything_changes() {
        if !geteuid().is_root() {
            // Only root can give a file away; the test of the binary as a service user covers it too.
            panic!("this test must run as root: it gives a file to another user");
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(root.join("theirs"), "x").unwrap();
        nix::unistd::chown(&root.join("theirs"), Some(Uid::from_raw(65534)), None).unwrap();

        let error = make_private(&root).unwrap_err().to_string();

        assert!(error.contains(&format!("{} belongs to", root.join("theirs").display())), "{error}");
        assert!(error.contains("chown -R root:"), "{error}");
        assert_eq!(mode(&root), 0o755, "nothing is changed when the start is refused");
    }
}
