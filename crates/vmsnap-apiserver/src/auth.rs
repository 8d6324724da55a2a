//! The bearer token and the kubeconfig a user points kubectl at.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::Engine;

/// Reads the token from `dir/token`, creating a random one (mode 0600) at first start.
pub fn load_or_create_token(dir: &Path) -> std::io::Result<String> {
    let path = dir.join("token");
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = hex::encode(bytes);
    write_private(&path, token.as_bytes())?;
    Ok(token)
}

/// Writes a file readable only by its owner, atomically. A failed write (a full disk) leaves the
/// file as it was and no temporary file behind.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let written = (|| {
        let mut f =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Like [`write_private`], but leaves the file untouched when it already holds `contents`, so that a
/// restart writes nothing (it must succeed on a full disk). Returns whether it wrote.
pub fn write_private_if_changed(path: &Path, contents: &[u8]) -> std::io::Result<bool> {
    if std::fs::read(path).is_ok_and(|existing| existing == contents) {
        return Ok(false);
    }
    write_private(path, contents)?;
    Ok(true)
}

/// Writes the kubeconfig unless it is already there as it should be. On a full disk the start goes
/// on with the file of an earlier start, or none (the user must be able to start vmsnap to free
/// space), after a warning; other errors are returned.
pub fn write_kubeconfig(path: &Path, contents: &str) -> std::io::Result<()> {
    match write_private_if_changed(path, contents.as_bytes()) {
        Ok(_) => Ok(()),
        Err(error) if is_disk_full(&error) && path.exists() => {
            tracing::warn!(
                path = %path.display(),
                "the disk is full: the kubeconfig is left as an earlier start wrote it (if --listen changed \
                 since, it names the old address); free space and restart to update it"
            );
            Ok(())
        }
        Err(error) if is_disk_full(&error) => {
            tracing::warn!(
                path = %path.display(),
                "the disk is full: no kubeconfig could be written; free space and restart to get one"
            );
            Ok(())
        }
        Err(error) => Err(error),
    }
}

/// ENOSPC or EDQUOT: no room left for this user on the file system.
fn is_disk_full(error: &std::io::Error) -> bool {
    matches!(error.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
}

/// The kubeconfig for `server` (an `http://` or `https://` URL), with the CA for TLS.
pub fn kubeconfig(server: &str, token: &str, ca_pem: Option<&str>) -> String {
    let ca = ca_pem
        .map(|pem| {
            format!(
                "    certificate-authority-data: {}\n",
                base64::engine::general_purpose::STANDARD.encode(pem.as_bytes())
            )
        })
        .unwrap_or_default();
    format!(
        "apiVersion: v1
kind: Config
clusters:
- cluster:
{ca}    server: {server}
  name: vmsnap
contexts:
- context:
    cluster: vmsnap
    namespace: default
    user: vmsnap-admin
  name: vmsnap
current-context: vmsnap
users:
- name: vmsnap-admin
  user:
    token: {token}
preferences: {{}}
"
    )
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn an_unchanged_kubeconfig_is_not_rewritten_and_a_changed_one_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        write_kubeconfig(&path, "one").unwrap();
        let inode = std::fs::metadata(&path).unwrap().ino();
        write_kubeconfig(&path, "one").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode, "rewritten although unchanged");
        write_kubeconfig(&path, "two").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_full_disk_keeps_the_old_kubeconfig_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        write_kubeconfig(&path, "old").unwrap();
        // Writes to /dev/full fail with ENOSPC: the temporary file goes there.
        std::os::unix::fs::symlink("/dev/full", path.with_extension("tmp")).unwrap();
        write_kubeconfig(&path, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert!(std::fs::symlink_metadata(path.with_extension("tmp")).is_err());
        let other = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert!(!is_disk_full(&other), "only a full disk is tolerated");
    }
}
