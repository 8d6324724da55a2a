//! The crate graph says the architecture: each workspace crate depends on exactly the workspace
//! crates ARCHITECTURE.md allows it ("Invariants and boundaries"), and a few boundaries are
//! checked on the whole dependency closure. A new edge fails here until it is written down there.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

/// Every workspace crate and the workspace crates it may depend on (normal, non-optional).
const ALLOWED: &[(&str, &[&str])] = &[
    ("vmsnap-api", &[]),
    ("vmsnap-store", &[]),
    ("vmsnap-qemu", &[]),
    ("vmsnap-guestimage", &[]),
    ("vmsnap-console", &[]),
    ("vmsnap-schedule", &[]),
    ("vmsnap-storage", &[]),
    ("vmsnap-backup", &[]),
    ("vmsnap-admission", &["vmsnap-api", "vmsnap-schedule"]),
    ("vmsnap-contracts", &["vmsnap-api"]),
    ("vmsnap-controllers", &["vmsnap-api", "vmsnap-contracts", "vmsnap-schedule"]),
    ("vmsnap-storage-controllers", &["vmsnap-api", "vmsnap-contracts", "vmsnap-storage"]),
    ("vmsnap-backup-controllers", &["vmsnap-api", "vmsnap-backup", "vmsnap-contracts", "vmsnap-storage"]),
    ("vmsnap-webhook", &["vmsnap-admission", "vmsnap-api"]),
    ("vmsnap-apiserver", &["vmsnap-admission", "vmsnap-api", "vmsnap-contracts", "vmsnap-store"]),
    (
        "vmsnap-agent",
        &[
            "vmsnap-api",
            "vmsnap-contracts",
            "vmsnap-guestimage",
            "vmsnap-qemu",
            "vmsnap-storage",
            "vmsnap-vmm",
        ],
    ),
    ("vmsnap-vmm", &["vmsnap-guestimage", "vmsnap-qemu"]),
    (
        "vmsnap-server",
        &[
            "vmsnap-agent",
            "vmsnap-api",
            "vmsnap-apiserver",
            "vmsnap-backup-controllers",
            "vmsnap-console",
            "vmsnap-controllers",
            "vmsnap-storage",
            "vmsnap-storage-controllers",
            "vmsnap-store",
        ],
    ),
    (
        "vmsnap-bench",
        &[
            "vmsnap-agent",
            "vmsnap-api",
            "vmsnap-guestimage",
            "vmsnap-server",
            "vmsnap-storage",
            "vmsnap-testing",
        ],
    ),
    // The storage environment that the storage and backup controllers' tests share.
    (
        "vmsnap-testing",
        &[
            "vmsnap-api",
            "vmsnap-apiserver",
            "vmsnap-contracts",
            "vmsnap-storage",
            "vmsnap-storage-controllers",
            "vmsnap-store",
        ],
    ),
    (
        "vmsnap-cli",
        &[
            "vmsnap-agent",
            "vmsnap-api",
            "vmsnap-console",
            "vmsnap-controllers",
            "vmsnap-guestimage",
            "vmsnap-server",
            "vmsnap-webhook",
        ],
    ),
    ("xtask", &[]),
];

/// Who may depend on the API server crate: the server assembly and the test harness (the binary
/// reaches it through the server).
const API_SERVER_USERS: &[&str] = &["vmsnap-server", "vmsnap-testing"];

fn metadata(no_deps: bool) -> Value {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(["metadata", "--format-version", "1"]).current_dir(env!("CARGO_MANIFEST_DIR"));
    if no_deps {
        cmd.arg("--no-deps");
    }
    let out = cmd.output().expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

/// Each workspace crate's normal, non-optional dependencies on other workspace crates.
fn workspace_edges() -> BTreeMap<String, BTreeSet<String>> {
    let meta = metadata(true);
    let packages = meta["packages"].as_array().expect("packages");
    let names: BTreeSet<String> =
        packages.iter().filter_map(|p| p["name"].as_str().map(str::to_owned)).collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|d| d["kind"].is_null() && d["optional"] != true)
                .filter_map(|d| d["name"].as_str())
                .filter(|d| names.contains(*d))
                .map(str::to_owned)
                .collect();
            (p["name"].as_str().expect("a name").to_owned(), deps)
        })
        .collect()
}

#[test]
fn every_crate_depends_on_exactly_the_crates_architecture_md_allows() {
    let edges = workspace_edges();
    let allowed: BTreeMap<String, BTreeSet<String>> = ALLOWED
        .iter()
        .map(|(krate, deps)| (krate.to_string(), deps.iter().map(|d| d.to_string()).collect()))
        .collect();
    let mut wrong = Vec::new();
    for (krate, deps) in &edges {
        match allowed.get(krate) {
            None => {
                wrong.push(format!("{krate} is not in the table: add it, with its edges, to ARCHITECTURE.md"))
            }
            Some(ok) if ok != deps => wrong.push(format!("{krate} depends on {deps:?}, allowed {ok:?}")),
            Some(_) => {}
        }
    }
    for krate in allowed.keys().filter(|k| !edges.contains_key(*k)) {
        wrong.push(format!("{krate} is in the table but not in the workspace"));
    }
    assert!(wrong.is_empty(), "the crate graph and its table disagree:\n{}", wrong.join("\n"));
}

#[test]
fn only_the_server_assembly_and_the_test_harness_depend_on_the_api_server() {
    let users: Vec<String> = workspace_edges()
        .into_iter()
        .filter(|(_, deps)| deps.contains("vmsnap-apiserver"))
        .map(|(krate, _)| krate)
        .collect();
    assert_eq!(users, API_SERVER_USERS, "crates that depend on vmsnap-apiserver");
}

/// The names of every package in `krate`'s normal dependency closure.
fn closure(krate: &str) -> BTreeSet<String> {
    let meta = metadata(false);
    let nodes = meta["resolve"]["nodes"].as_array().expect("a resolve graph");
    let id_of = |name: &str| {
        meta["packages"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == name && p["source"].is_null())
            .and_then(|p| p["id"].as_str())
            .map(str::to_owned)
    };
    let name_of = |id: &str| id.to_owned();
    let start = id_of(krate).expect("a workspace crate");
    let mut seen = BTreeSet::new();
    let mut todo = vec![start];
    while let Some(id) = todo.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        let node = nodes.iter().find(|n| n["id"] == id.as_str()).expect("a node");
        for dep in node["deps"].as_array().into_iter().flatten() {
            let normal = dep["dep_kinds"].as_array().into_iter().flatten().any(|k| k["kind"].is_null());
            if normal {
                todo.push(dep["pkg"].as_str().expect("an id").to_owned());
            }
        }
    }
    let packages = meta["packages"].as_array().expect("packages");
    seen.iter()
        .filter_map(|id| packages.iter().find(|p| p["id"] == id.as_str()))
        .filter_map(|p| p["name"].as_str().map(name_of))
        .collect()
}

#[test]
fn the_api_types_pull_in_no_client_runtime_tls_or_http() {
    let deps = closure("vmsnap-api");
    // The walk reached the crates the API types are built on (so an empty walk cannot pass).
    assert!(
        deps.contains("kube-core") && deps.contains("k8s-openapi"),
        "the closure of vmsnap-api: {deps:?}"
    );
    for forbidden in ["kube-client", "kube-runtime", "hyper", "tokio", "rustls", "axum"] {
        assert!(!deps.contains(forbidden), "vmsnap-api depends on {forbidden} (through {deps:?})");
    }
}

#[test]
fn the_product_binary_links_the_benchmark_only_with_its_feature() {
    assert!(closure("vmsnap-cli").contains("vmsnap-server"), "the walk reaches the server assembly");
    assert!(
        !closure("vmsnap-cli").contains("vmsnap-bench"),
        "vmsnap-cli pulls in vmsnap-bench without the feature"
    );
}
