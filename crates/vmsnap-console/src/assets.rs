//! The console's files, compiled into the binary, and the version that names them in URLs.

use std::sync::OnceLock;

/// One file of the console, served under `/console/<version>/<path>`.
#[derive(Debug)]
pub struct Asset {
    /// Path relative to `assets/`, e.g. `js/api.js`.
    pub path: &'static str,
    /// The file's bytes.
    pub body: &'static [u8],
}

macro_rules! assets {
    ($($path:literal),* $(,)?) => {
        &[$(Asset { path: $path, body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/", $path)) }),*]
    };
}

/// Every file of the console except `index.html`, which is served at `/`.
pub static ASSETS: &[Asset] = assets![
    "styles.css",
    "icon.svg",
    "js/app.js",
    "js/api.js",
    "js/live.js",
    "js/errors.js",
    "js/dom.js",
    "js/format.js",
    "js/menu.js",
    "js/vm-actions.js",
    "js/backup-format.js",
    "js/views/login.js",
    "js/views/vms.js",
    "js/views/vm-detail.js",
    "js/views/vm-overview.js",
    "js/views/snapshots.js",
    "js/views/snapshot-detail.js",
    "js/views/schedules.js",
    "js/views/backups.js",
    "js/views/repositories.js",
    "js/dialogs/dialog.js",
    "js/dialogs/take-snapshot.js",
    "js/dialogs/restore-progress.js",
    "js/dialogs/new-vm-restore.js",
    "js/dialogs/restore.js",
    "js/dialogs/restore-new.js",
    "js/dialogs/back-up-now.js",
    "js/dialogs/restore-backup.js",
    "js/dialogs/delete.js",
];

/// The page template; `{{BASE}}` becomes the versioned asset prefix.
const INDEX_TEMPLATE: &str = include_str!("../assets/index.html");

/// Looks an asset up by its path.
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// The `Content-Type` of a file, from its extension.
pub fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") | Some("mjs") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// A hash of every asset (FNV-1a, 64 bits), so that a changed console gets new URLs and the old
/// ones can be cached forever.
pub fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |bytes: &[u8]| {
            for b in bytes {
                hash ^= u64::from(*b);
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        feed(INDEX_TEMPLATE.as_bytes());
        for asset in ASSETS {
            feed(asset.path.as_bytes());
            feed(&[0]);
            feed(asset.body);
        }
        format!("{hash:016x}")
    })
}

/// The prefix of every asset URL, e.g. `/console/0123456789abcdef`.
pub fn base() -> String {
    format!("/console/{}", version())
}

/// `index.html` with the asset prefix filled in.
pub fn index_html() -> &'static str {
    static INDEX: OnceLock<String> = OnceLock::new();
    INDEX.get_or_init(|| INDEX_TEMPLATE.replace("{{BASE}}", &base()))
}
