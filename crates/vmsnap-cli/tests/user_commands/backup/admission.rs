//! The API server runs the backup admission rules on create and update.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_runs_the_backup_admission_rules_on_create_and_update() {
    let env = Env::start().await;
    ready_repository(&env, "main").await;
    let backup = |policy: &str| -> VirtualMachineRepositoryBackup {
        serde_json::from_value(json!({
            "apiVersion": "backup.vmsnap.io/v1alpha1", "kind": "VirtualMachineRepositoryBackup",
            "metadata": {"name": "b1"},
            "spec": {"repository": "main", "deletionPolicy": policy,
                     "source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "db"}}
        }))
        .unwrap()
    };
    let (code, message) = refusal(backups(&env).create(&PostParams::default(), &backup("Orphan")).await);
    assert_eq!(code, 422);
    assert!(
        message.ends_with(
            "spec.deletionPolicy: unsupported value \"Orphan\": supported values: \"Delete\", \"Retain\""
        ),
        "{message}"
    );
    backups(&env).create(&PostParams::default(), &backup("Delete")).await.unwrap();
    // deletionPolicy may change, the source may not.
    let retain = json!({"spec": {"deletionPolicy": "Retain"}});
    backups(&env).patch("b1", &PatchParams::default(), &Patch::Merge(&retain)).await.unwrap();
    let other = json!({"spec": {"source": {"name": "web"}}});
    let (code, message) =
        refusal(backups(&env).patch("b1", &PatchParams::default(), &Patch::Merge(&other)).await);
    assert_eq!(code, 422);
    assert!(
        message.contains("spec: Forbidden: the spec of a backup cannot change after creation"),
        "{message}"
    );

    let restore: VirtualMachineRepositoryRestore = serde_json::from_value(json!({
        "apiVersion": "backup.vmsnap.io/v1alpha1", "kind": "VirtualMachineRepositoryRestore",
        "metadata": {"name": "r1"},
        "spec": {"backupName": "b1", "target": {"apiGroup": "kubevirt.io", "kind": "VirtualMachineInstance", "name": "db"}}
    }))
    .unwrap();
    let (_, message) = refusal(restores(&env).create(&PostParams::default(), &restore).await);
    assert!(message.ends_with("spec.target.kind: unsupported value \"VirtualMachineInstance\": supported values: \"VirtualMachine\""), "{message}");

    let moved = json!({"spec": {"local": {"path": "/elsewhere"}}});
    let (_, message) =
        refusal(repos(&env).patch("main", &PatchParams::default(), &Patch::Merge(&moved)).await);
    assert!(message.contains("spec: Forbidden: the location"), "{message}");

    // A chunk size is a power of two the engine accepts, and stays what it was made with.
    let sized = |name: &str, chunk_size: &str| -> VirtualMachineBackupRepository {
        serde_json::from_value(json!({
            "apiVersion": "backup.vmsnap.io/v1alpha1", "kind": "VirtualMachineBackupRepository",
            "metadata": {"name": name},
            "spec": {"local": {}, "passphraseSecretRef": {"name": "p"}, "chunkSize": chunk_size}
        }))
        .unwrap()
    };
    let (code, message) = refusal(repos(&env).create(&PostParams::default(), &sized("odd", "3Mi")).await);
    assert_eq!(code, 422);
    assert!(
        message.ends_with("spec.chunkSize: \"3Mi\" (3145728 bytes) is not a power of two from 64Ki to 64Mi (64Ki, 128Ki, 256Ki, ... 64Mi)"),
        "{message}"
    );
    repos(&env).create(&PostParams::default(), &sized("big", "4Mi")).await.unwrap();
    let resized = json!({"spec": {"chunkSize": "8Mi"}});
    let (code, message) =
        refusal(repos(&env).patch("big", &PatchParams::default(), &Patch::Merge(&resized)).await);
    assert_eq!(code, 422);
    assert!(message.contains("spec.chunkSize: Forbidden: the chunk size cannot change"), "{message}");
}
