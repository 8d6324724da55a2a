//! `vmsnap repo ...` and `vmsnap backup ...`. No backup controller runs here: the tests play it by
//! writing the status it would write, so what is checked is the command's side of the contract
//! (the objects and Secrets it makes, the requests it sends, how it reads the answers). One file a
//! topic: adding repositories, verify and prune, backing up, restoring, what is checked first, the
//! API server's admission rules; the helpers they share are here.

mod admission;
mod checks;
mod create;
mod repo_add;
mod requests;
mod restore;

use std::path::{Path, PathBuf};

use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use vmsnap_api::backup::{
    VirtualMachineBackupRepository, VirtualMachineRepositoryBackup, VirtualMachineRepositoryRestore,
    annotation,
};
use vmsnap_api::k8s_openapi::api::core::v1::Secret;

use crate::support::{Env, Out, WAIT};

fn repos(env: &Env) -> Api<VirtualMachineBackupRepository> {
    Api::namespaced(env.client.clone(), "default")
}

fn backups(env: &Env) -> Api<VirtualMachineRepositoryBackup> {
    Api::namespaced(env.client.clone(), "default")
}

fn restores(env: &Env) -> Api<VirtualMachineRepositoryRestore> {
    Api::namespaced(env.client.clone(), "default")
}

fn secrets(env: &Env) -> Api<Secret> {
    Api::namespaced(env.client.clone(), "default")
}

/// The names of the Secrets in the namespace.
async fn secret_names(env: &Env) -> Vec<String> {
    let mut names: Vec<String> = secrets(env)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect();
    names.sort();
    names
}

/// `key: value` of a Secret's data, as text.
async fn secret_data(env: &Env, name: &str) -> Vec<(String, String)> {
    let secret = secrets(env).get(name).await.unwrap();
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, String::from_utf8(v.0).unwrap())).collect()
}

/// Writes `text` into a file of `dir` and returns its path as a string.
fn file(dir: &Path, name: &str, text: &str) -> String {
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Plays the controller: merges `status` into the object's status.
async fn set_status<K>(api: &Api<K>, name: &str, status: Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&json!({ "status": status })))
        .await
        .unwrap();
}

async fn finish(child: tokio::process::Child) -> Out {
    let out = tokio::time::timeout(WAIT, child.wait_with_output()).await.expect("vmsnap ends").unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ready(location: &str, backups: i64) -> Value {
    json!({"location": location, "repositoryId": "3f1c9a", "backups": backups, "observedGeneration": 1,
           "conditions": [{"type": "Ready", "status": "True", "reason": "RepositoryReady"}]})
}

/// A repository `name` in the default directory, made through the API and marked ready.
async fn ready_repository(env: &Env, name: &str) {
    let repo: VirtualMachineBackupRepository = serde_json::from_value(json!({
        "apiVersion": "backup.vmsnap.io/v1alpha1", "kind": "VirtualMachineBackupRepository",
        "metadata": {"name": name}, "spec": {"local": {}, "passphraseSecretRef": {"name": format!("{name}-passphrase")}}
    }))
    .unwrap();
    repos(env).create(&PostParams::default(), &repo).await.unwrap();
    set_status(&repos(env), name, ready(&format!("/data/backups/default/{name}"), 0)).await;
}

/// A backup object of `vm` in `repo`, made through the API.
async fn create_backup(env: &Env, name: &str, vm: &str, repo: &str) {
    let b: VirtualMachineRepositoryBackup = serde_json::from_value(json!({
        "apiVersion": "backup.vmsnap.io/v1alpha1", "kind": "VirtualMachineRepositoryBackup",
        "metadata": {"name": name},
        "spec": {"repository": repo, "source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": vm}}
    }))
    .unwrap();
    backups(env).create(&PostParams::default(), &b).await.unwrap();
}

/// The message of a refused write.
fn refusal(result: Result<impl std::fmt::Debug, kube::Error>) -> (u16, String) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.message.clone()),
        other => panic!("expected a refusal, got {other:?}"),
    }
}
