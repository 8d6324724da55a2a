//! Every file the documentation names exists: ARCHITECTURE.md, README.md and docs/*.md name source
//! files, tests and manifests to show where things live, and a name that no longer exists sends a
//! reader nowhere. A reference is a backticked path (`crates/vmsnap-agent/src/vmm/freeze.rs`,
//! `agent/src/vmm/block.rs`, `running/freeze.rs:42`, `deploy/*.yaml`) or a relative Markdown link;
//! bare file names that are not source files (`manifest.json`, a file a program writes) are not
//! references.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask is in the repository root").to_path_buf()
}

fn documents(root: &Path) -> Vec<PathBuf> {
    let mut docs = vec![root.join("ARCHITECTURE.md"), root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).expect("docs/") {
        let path = entry.expect("a docs entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            docs.push(path);
        }
    }
    docs
}

const EXTENSIONS: &[&str] = &["rs", "md", "yaml", "yml", "sh", "toml", "json", "js", "mjs", "html", "css"];

/// The references in a document: backticked paths and relative link targets.
fn references(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (i, quoted) in text.split('`').enumerate() {
        if i % 2 == 1 && !quoted.contains(char::is_whitespace) {
            let path = quoted.split(':').next().unwrap_or_default();
            let is_file = path.rsplit_once('.').is_some_and(|(_, ext)| EXTENSIONS.contains(&ext));
            if is_file && (path.contains('/') || path.ends_with(".rs")) && !path.starts_with('/') {
                found.push(path.to_owned());
            }
        }
    }
    for part in text.split("](").skip(1) {
        let target = part.split(')').next().unwrap_or_default().split('#').next().unwrap_or_default();
        if !target.is_empty() && !target.contains("://") && !target.starts_with("mailto:") {
            found.push(target.to_owned());
        }
    }
    found
}

/// `a{b,c}d` -> `abd`, `acd`.
fn expand_braces(pattern: &str) -> Vec<String> {
    let (Some(open), Some(close)) = (pattern.find('{'), pattern.find('}')) else {
        return vec![pattern.to_owned()];
    };
    let (head, tail) = (&pattern[..open], &pattern[close + 1..]);
    pattern[open + 1..close]
        .split(',')
        .flat_map(|choice| expand_braces(&format!("{head}{choice}{tail}")))
        .collect()
}

/// Whether `pattern` (with `*` in its last part) names at least one existing file.
fn exists(path: &Path) -> bool {
    let text = path.to_string_lossy();
    let Some((dir, name)) = text.rsplit_once('/') else { return path.exists() };
    if !name.contains('*') {
        return path.exists();
    }
    let (prefix, suffix) = name.split_once('*').expect("a star");
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(prefix) && n.ends_with(suffix)
        })
    })
}

/// Where a reference may point: the repository root, the document's folder, deploy/, a crate
/// (`agent/src/x.rs` is `crates/vmsnap-agent/src/x.rs`), or a crate's `src/`.
fn candidates(root: &Path, doc: &Path, reference: &str) -> Vec<PathBuf> {
    let mut bases = vec![
        root.to_path_buf(),
        doc.parent().expect("a folder").to_path_buf(),
        root.join("deploy"),
        root.join("crates"),
    ];
    let mut list = Vec::new();
    for entry in std::fs::read_dir(root.join("crates")).expect("crates/").flatten() {
        let krate = entry.path();
        let short = entry.file_name().to_string_lossy().trim_start_matches("vmsnap-").to_owned();
        if let Some(rest) = reference.strip_prefix(&format!("{short}/")) {
            list.push(krate.join(rest));
        }
        bases.push(krate.join("src"));
        bases.push(krate.clone());
    }
    for base in bases {
        list.push(base.join(reference));
    }
    list
}

#[test]
fn every_file_the_documentation_names_exists() {
    let root = root();
    let mut missing = Vec::new();
    for doc in documents(&root) {
        let text = std::fs::read_to_string(&doc).expect("a readable document");
        for reference in references(&text) {
            let found = expand_braces(&reference)
                .iter()
                .all(|one| candidates(&root, &doc, one).iter().any(|path| exists(path)));
            if !found {
                missing.push(format!("{}: {reference}", doc.strip_prefix(&root).unwrap_or(&doc).display()));
            }
        }
    }
    assert!(missing.is_empty(), "the documentation names files that do not exist:\n{}", missing.join("\n"));
}

#[test]
fn references_are_found_in_backticks_and_links_and_expanded() {
    let text = "see `crates/a/b.rs:12` and `writer.rs`, not `manifest.json` or `a b.rs`; [x](guests.md#top)";
    assert_eq!(references(text), ["crates/a/b.rs", "writer.rs", "guests.md"]);
    assert_eq!(expand_braces("g/{a,b}-v1.json"), ["g/a-v1.json", "g/b-v1.json"]);
}
