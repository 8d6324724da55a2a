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
