//! DataVolumes: blank, http and file imports (raw and qcow2), clones from a
//! PVC and a VolumeSnapshot, failures and retries, and adoption of a
//! pre-populated PVC.

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use vmsnap_api::cdi::DataVolume;
use vmsnap_api::volumesnapshot::VolumeSnapshot;
use vmsnap_storage::VolumeDriver;
use vmsnap_testing::images::DiskModel;

use crate::harness::{Env, MIB};
use crate::http_server::HttpServer;

fn data_volume(name: &str, source: &str, size: &str) -> String {
    format!(
        "apiVersion: cdi.kubevirt.io/v1beta1\nkind: DataVolume\nmetadata: {{name: {name}}}\nspec:\n  source: {source}\n  storage:\n    resources: {{requests: {{storage: {size}}}}}\n"
    )
}

async fn await_succeeded(env: &Env, name: &str) -> DataVolume {
    let dvs: Api<DataVolume> = env.api();
    env.await_some(&dvs, name, |dv| {
        (dv.status.as_ref()?.phase.as_deref() == Some("Succeeded")).then(|| dv.clone())
    })
    .await
}

fn condition(dv: &DataVolume, type_: &str) -> (String, Option<String>, Option<String>) {
    let condition = dv.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == type_).unwrap();
    (condition.status.clone(), condition.reason.clone(), condition.message.clone())
}

/// Every `status.progress` value seen, by DataVolume name.
type ProgressSeen = Arc<Mutex<HashMap<String, Vec<String>>>>;

/// Records every `status.progress` each DataVolume shows.
fn record_progress(env: &Env) -> (ProgressSeen, tokio::task::JoinHandle<()>) {
    let seen: ProgressSeen = Arc::default();
    let record = seen.clone();
    let api: Api<DataVolume> = env.api();
    let task = tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default()).applied_objects().boxed();
        while let Some(Ok(dv)) = stream.next().await {
            if let Some(progress) = dv.status.as_ref().and_then(|s| s.progress.clone()) {
                let mut seen = record.lock().unwrap();
                let values = seen.entry(dv.name_any()).or_default();
                if values.last() != Some(&progress) {
                    values.push(progress);
                }
            }
        }
    });
    (seen, task)
}

/// An 8 MiB image with two patterns, as raw bytes and the model of its content.
fn image() -> (Vec<u8>, DiskModel) {
    let mut model = DiskModel::blank(8 * MIB);
    model.push_write(MIB, MIB, 0xa1);
    model.push_write(5 * MIB, MIB / 2, 0x5c);
    (model.bytes(), model)
}

fn to_qcow2(env: &Env, raw: &[u8], name: &str) -> std::path::PathBuf {
    let raw_path = env.dir.path().join(format!("{name}.raw"));
    std::fs::write(&raw_path, raw).unwrap();
    let qcow2 = env.dir.path().join("images").join(format!("{name}.qcow2"));
    let status = Command::new(&env.qemu_img)
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(&raw_path)
        .arg(&qcow2)
        .status()
        .unwrap();
    assert!(status.success());
    qcow2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blank_data_volume_succeeds_with_a_bound_pvc_it_owns() {
    let Some(env) = crate::harness::start().await else { return };
    env.apply(&data_volume("blank", "{blank: {}}", "8Mi")).await;
    let dv = await_succeeded(&env, "blank").await;
    let status = dv.status.clone().unwrap();
    assert_eq!(status.progress.as_deref(), Some("100.0%"));
    assert_eq!(status.claim_name.as_deref(), Some("blank"));
    assert_eq!(
        condition(&dv, "Bound"),
        ("True".into(), Some("Bound".into()), Some("PVC blank Bound".into()))
    );
    assert_eq!(condition(&dv, "Ready").0, "True");
    assert_eq!(condition(&dv, "Running"), ("False".into(), Some("Completed".into()), None));

    let claim = env.await_bound("blank").await;
    let owner = &claim.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller, owner.block_owner_deletion),
        ("DataVolume", Some(true), Some(true))
    );
    assert_eq!(owner.uid, dv.uid().unwrap());
    let annotations = claim.annotations();
    assert_eq!(annotations["cdi.kubevirt.io/storage.contentType"], "kubevirt");
    assert_eq!(annotations["cdi.kubevirt.io/storage.pod.phase"], "Succeeded");
    assert_eq!(claim.status.unwrap().capacity.unwrap()["storage"].0, "8Mi");
    assert_eq!(claim.spec.unwrap().volume_mode.as_deref(), Some("Filesystem"));
    assert_eq!(env.volume_of("blank").await.size_bytes, 8 * MIB);
    env.assert_data("blank", &DiskModel::blank(8 * MIB)).await;

    let table = env.kubectl().run_async(&["get", "dv", "blank"]).await;
    assert!(table.ok().contains("Succeeded"), "{}", table.stdout);
    env.await_event("default", "blank", "Successfully imported into PVC blank").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sources_import_raw_and_qcow2_images_with_progress() {
    let Some(env) = crate::harness::start().await else { return };
    let (raw, model) = image();
    let qcow2 = std::fs::read(to_qcow2(&env, &raw, "served")).unwrap();
    let server = HttpServer::start().await;
    server.serve("/disk.raw", raw);
    server.serve("/disk.qcow2", qcow2);
    let (progress, watch) = record_progress(&env);

    // The raw image is smaller than the request; the qcow2 image is larger.
    env.apply(&data_volume(
        "from-raw",
        &format!("{{http: {{url: \"{}\"}}}}", server.url("/disk.raw")),
        "16Mi",
    ))
    .await;
    env.apply(&data_volume(
        "from-qcow2",
        &format!("{{http: {{url: \"{}\"}}}}", server.url("/disk.qcow2")),
        "4Mi",
    ))
    .await;
    await_succeeded(&env, "from-raw").await;
    await_succeeded(&env, "from-qcow2").await;
    // The recorder sees the events on a watch of its own, which may trail the one that saw
    // Succeeded: give it until the final write has reached it.
    let recorded_final = || {
        let seen = progress.lock().unwrap();
        ["from-raw", "from-qcow2"]
            .iter()
            .all(|name| seen.get(*name).and_then(|v| v.last()).map(String::as_str) == Some("100.0%"))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !recorded_final() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    watch.abort();

    assert_eq!(env.volume_of("from-raw").await.size_bytes, 16 * MIB);
    assert_eq!(env.volume_of("from-qcow2").await.size_bytes, 8 * MIB);
    env.assert_data("from-raw", &model.resized(16 * MIB)).await;
    env.assert_data("from-qcow2", &model).await;
    let claims: Api<PersistentVolumeClaim> = env.api();
    assert_eq!(claims.get("from-qcow2").await.unwrap().status.unwrap().capacity.unwrap()["storage"].0, "8Mi");

    let seen = progress.lock().unwrap().clone();
    for name in ["from-raw", "from-qcow2"] {
        let values = &seen[name];
        assert_eq!(values.last().map(String::as_str), Some("100.0%"), "{name}: {values:?}");
        let midway: Vec<f64> = values
            .iter()
            .filter_map(|v| v.strip_suffix('%')?.parse::<f64>().ok())
            .filter(|p| *p > 0.0 && *p < 100.0)
            .collect();
        assert!(!midway.is_empty(), "{name} never showed progress between 0 and 100 %: {values:?}");
        assert!(midway.windows(2).all(|w| w[0] <= w[1]), "{name} went backwards: {values:?}");
        assert!(values.iter().all(|v| v == "N/A" || v.ends_with('%')), "{values:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sources_import_from_the_allowed_directories_only() {
    let Some(env) = crate::harness::start().await else { return };
    let (raw, model) = image();
    let qcow2 = to_qcow2(&env, &raw, "local");
    env.apply(&data_volume(
        "from-file",
        &format!("{{http: {{url: \"file://{}\"}}}}", qcow2.display()),
        "8Mi",
    ))
    .await;
    let outside = env.dir.path().join("outside.raw");
    std::fs::write(&outside, &raw).unwrap();
    env.apply(&data_volume(
        "not-allowed",
        &format!("{{http: {{url: \"file://{}\"}}}}", outside.display()),
        "8Mi",
    ))
    .await;

    await_succeeded(&env, "from-file").await;
    env.assert_data("from-file", &model).await;
    let dvs: Api<DataVolume> = env.api();
    let failed = env
        .await_some(&dvs, "not-allowed", |dv| {
            (dv.status.as_ref()?.phase.as_deref() == Some("Failed")).then(|| dv.clone())
        })
        .await;
    let (status, reason, message) = condition(&failed, "Running");
    assert_eq!((status.as_str(), reason.as_deref()), ("False", Some("Error")));
    assert!(message.unwrap().contains("outside the directories file:// imports may read"));
    assert_eq!(condition(&failed, "Bound").2.as_deref(), Some("PVC not-allowed Pending"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handed_over_file_becomes_the_volume_without_a_copy_and_a_users_file_stays() {
    use std::os::unix::fs::MetadataExt as _;
    use vmsnap_storage::VolumeDriver as _;
    let mut env = crate::harness::without_controllers().await.unwrap();
    let staging = env.dir.path().join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    env.config.file_import_roots.push(staging.clone());
    env.config.handed_over_import_roots.push(staging.clone());
    env.start_controllers().await;
    // A restore's staging file: the driver's own format, written in place, in the directory of
    // its namespace.
    let (raw, model) = image();
    std::fs::create_dir_all(staging.join("default/uid-1")).unwrap();
    let staged = staging.join("default/uid-1/disk.img");
    let image = env.layered.create_import_image(&staged, 8 * MIB).await.unwrap();
    image.write_at(&raw, 0).unwrap();
    image.sync().unwrap();
    let inode = std::fs::metadata(&staged).unwrap().ino();
    // A user's file in an import directory, in the same format.
    let users = env.dir.path().join("images/users.img");
    env.layered.create_import_image(&users, 8 * MIB).await.unwrap().write_at(&raw, 0).unwrap();
    for (name, path) in [("handed-over", &staged), ("users", &users)] {
        env.apply(&data_volume(name, &format!("{{http: {{url: \"file://{}\"}}}}", path.display()), "8Mi"))
            .await;
    }
    await_succeeded(&env, "handed-over").await;
    await_succeeded(&env, "users").await;
    env.assert_data("handed-over", &model).await;
    env.assert_data("users", &model).await;
    let taken = env.volume_of("handed-over").await;
    assert_eq!(
        std::fs::metadata(&taken.path).unwrap().ino(),
        inode,
        "the staging file is the volume's layer"
    );
    assert!(!staged.exists(), "its staging name is removed once imported");
    assert_eq!(std::fs::metadata(&users).unwrap().nlink(), 1, "a user's file is copied, not taken");
    let copied = env.volume_of("users").await;
    assert_ne!(std::fs::metadata(&copied.path).unwrap().ino(), std::fs::metadata(&users).unwrap().ino());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handed_over_file_is_refused_to_another_namespace_and_stays() {
    use std::os::unix::fs::MetadataExt as _;
    let mut env = crate::harness::without_controllers().await.unwrap();
    let staging = env.dir.path().join("staging");
    env.config.file_import_roots.push(staging.clone());
    env.config.handed_over_import_roots.push(staging.clone());
    env.start_controllers().await;
    let (raw, _) = image();
    // Another namespace's staging file, and one outside any namespace's directory.
    std::fs::create_dir_all(staging.join("other/uid-2")).unwrap();
    let others = staging.join("other/uid-2/disk.img");
    let loose = staging.join("loose.img");
    for path in [&others, &loose] {
        env.layered.create_import_image(path, 8 * MIB).await.unwrap().write_at(&raw, 0).unwrap();
    }
    for (name, path) in [("others", &others), ("loose", &loose)] {
        env.apply(&data_volume(name, &format!("{{http: {{url: \"file://{}\"}}}}", path.display()), "8Mi"))
            .await;
    }
    let dvs: Api<DataVolume> = env.api();
    for (name, path, expected) in [
        (
            "others",
            &others,
            "made by the server for namespace other; a DataVolume in namespace default may not import it",
        ),
        ("loose", &loose, "a directory per namespace; name a file under"),
    ] {
        let failed = env
            .await_some(&dvs, name, |dv| {
                (dv.status.as_ref()?.phase.as_deref() == Some("Failed")).then(|| dv.clone())
            })
            .await;
        let message = condition(&failed, "Running").2.unwrap();
        assert!(message.contains(expected), "{name}: {message}");
        assert_eq!(
            std::fs::metadata(path).unwrap().nlink(),
            1,
            "{name}: the file is neither taken nor removed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_import_is_reported_and_retried_until_it_succeeds() {
    let Some(env) = crate::harness::start().await else { return };
    let server = HttpServer::start().await;
    env.apply(&data_volume("retried", &format!("{{http: {{url: \"{}\"}}}}", server.url("/late.raw")), "8Mi"))
        .await;
    let dvs: Api<DataVolume> = env.api();
    let failed = env
        .await_some(&dvs, "retried", |dv| {
            let status = dv.status.as_ref()?;
            (status.phase.as_deref() == Some("Failed") && status.restart_count >= Some(1)).then(|| dv.clone())
        })
        .await;
    let message = condition(&failed, "Running").2.unwrap();
    assert!(message.contains("404 Not Found"), "{message}");
    env.await_event("default", "retried", "Unable to import into PVC retried").await;

    let (raw, model) = image();
    server.serve("/late.raw", raw);
    let done = await_succeeded(&env, "retried").await;
    assert!(done.status.unwrap().restart_count >= Some(1));
    env.assert_data("retried", &model).await;
    assert!(
        std::fs::read_dir(&env.config.scratch_dir).unwrap().next().is_none(),
        "the download was not removed"
    );
    env.assert_no_leaks().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pvc_and_snapshot_sources_clone_the_data_in_constant_time() {
    let Some(env) = crate::harness::start().await else { return };
    env.apply(&data_volume("source", "{blank: {}}", "16Mi")).await;
    await_succeeded(&env, "source").await;
    let mut model = DiskModel::blank(16 * MIB);
    env.write("source", &mut model, 0, MIB, 0x11).await;
    env.apply(
        "apiVersion: snapshot.storage.k8s.io/v1\nkind: VolumeSnapshot\nmetadata: {name: source-snap}\nspec: {source: {persistentVolumeClaimName: source}}\n",
    )
    .await;
    let snapshots: Api<VolumeSnapshot> = env.api();
    env.await_some(&snapshots, "source-snap", |s| s.status.as_ref()?.ready_to_use.filter(|r| *r)).await;
    let at_snapshot = model.clone();
    env.write("source", &mut model, 8 * MIB, MIB, 0x22).await;

    env.apply(&data_volume("copy", "{pvc: {name: source}}", "16Mi")).await;
    // No size: the source claim's size is used, as CDI does.
    env.apply(
        "apiVersion: cdi.kubevirt.io/v1beta1\nkind: DataVolume\nmetadata: {name: sized-like-source}\nspec:\n  source: {pvc: {name: source}}\n  storage: {}\n",
    )
    .await;
    env.apply(
        "apiVersion: cdi.kubevirt.io/v1beta1\nkind: DataVolume\nmetadata: {name: pvc-sized-like-source}\nspec:\n  source: {pvc: {namespace: default, name: source}}\n  pvc: {accessModes: [ReadWriteOnce]}\n",
    )
    .await;
    // No size: the snapshot's restore size is used.
    env.apply(
        "apiVersion: cdi.kubevirt.io/v1beta1\nkind: DataVolume\nmetadata: {name: restored}\nspec:\n  source: {snapshot: {name: source-snap}}\n  storage: {}\n",
    )
    .await;
    let copy = await_succeeded(&env, "copy").await;
    await_succeeded(&env, "restored").await;
    await_succeeded(&env, "sized-like-source").await;
    assert_eq!(env.volume_of("sized-like-source").await.size_bytes, 16 * MIB);
    await_succeeded(&env, "pvc-sized-like-source").await;
    assert_eq!(env.volume_of("pvc-sized-like-source").await.size_bytes, 16 * MIB);
    env.assert_data("copy", &model).await;
    env.assert_data("restored", &at_snapshot).await;
    env.assert_data("source", &model).await;
    assert_eq!(env.volume_of("restored").await.size_bytes, 16 * MIB);
    env.await_event("default", "copy", "Successfully cloned from default/source into default/copy").await;
    assert_eq!(env.driver.calls_of("clone_volume"), 3);
    assert_eq!(env.driver.calls_of("restore_volume"), 1);
    assert_eq!(condition(&copy, "Ready").0, "True");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_volume_adopts_a_pre_populated_claim_without_touching_its_data() {
    let Some(env) = crate::harness::start().await else { return };
    for (name, annotation) in [
        ("pre", "restore.kubevirt.io/name: r1"),
        ("populated", "cdi.kubevirt.io/storage.populatedFor: populated"),
    ] {
        env.apply(&format!(
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: {name}\n  annotations: {{{annotation}}}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {{requests: {{storage: 4Mi}}}}\n"
        ))
        .await;
    }
    let mut model = DiskModel::blank(4 * MIB);
    env.write("pre", &mut model, 0, MIB, 0x77).await;
    env.await_bound("populated").await;
    let volumes_before = env.driver.volumes().await.unwrap().len();

    env.apply(
        "apiVersion: cdi.kubevirt.io/v1beta1\nkind: DataVolume\nmetadata:\n  name: pre\n  annotations: {cdi.kubevirt.io/storage.prePopulated: pre}\nspec:\n  source: {blank: {}}\n  storage: {resources: {requests: {storage: 4Mi}}}\n",
    )
    .await;
    env.apply(&data_volume("populated", "{blank: {}}", "4Mi")).await;
    for name in ["pre", "populated"] {
        let dv = await_succeeded(&env, name).await;
        let claims: Api<PersistentVolumeClaim> = env.api();
        let claim =
            env.await_some(&claims, name, |c| (!c.owner_references().is_empty()).then(|| c.clone())).await;
        let owner = &claim.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("DataVolume", dv.uid().unwrap().as_str(), Some(true))
        );
    }
    env.assert_data("pre", &model).await;
    assert_eq!(env.driver.volumes().await.unwrap().len(), volumes_before);
    assert_eq!(env.driver.calls_of("create_volume"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_the_driver_cannot_use_is_named_as_the_reason_not_a_missing_size() {
    let Some(env) = crate::harness::start().await else { return };
    env.apply(
        "apiVersion: cdi.kubevirt.io/v1beta1\nkind: DataVolume\nmetadata: {name: from-a-data-source}\nspec:\n  sourceRef: {kind: DataSource, name: fedora}\n  storage: {}\n",
    )
    .await;
    let dvs: Api<DataVolume> = env.api();
    let message = env
        .await_some(&dvs, "from-a-data-source", |dv| {
            let running = dv.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Running")?;
            running.message.clone().filter(|m| !m.is_empty())
        })
        .await;
    assert!(message.contains("sourceRef (a DataSource) is not supported"), "{message}");
    assert!(!message.contains("gives no size"), "{message}");
}

/// KubeVirt's "network cloned" golden images: a DataVolume cloning a PVC of another namespace, with
/// no size, gets the source's size and data and CDI's clone annotations, and stays whole when the
/// source and its namespace are deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pvc_of_another_namespace_is_cloned_and_outlives_its_namespace() {
    let Some(env) = crate::harness::start().await else { return };
    env.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: golden}\n").await;
    let image = data_volume("image", "{blank: {}}", "16Mi")
        .replace("metadata: {name: image}", "metadata: {name: image, namespace: golden}");
    env.apply(&image).await;
    let golden: Api<DataVolume> = Api::namespaced(env.client.clone(), "golden");
    env.await_some(&golden, "image", |dv| {
        (dv.status.as_ref()?.phase.as_deref() == Some("Succeeded")).then_some(())
    })
    .await;
    let mut model = DiskModel::blank(16 * MIB);
    env.write_in("golden", "image", &mut model, 0, MIB, 0x33).await;
    env.apply(
        "apiVersion: cdi.kubevirt.io/v1beta1\nkind: DataVolume\nmetadata: {name: from-golden}\nspec:\n  source: {pvc: {namespace: golden, name: image}}\n  storage: {}\n",
    )
    .await;
    await_succeeded(&env, "from-golden").await;
    assert_eq!(env.volume_of("from-golden").await.size_bytes, 16 * MIB);
    env.assert_data("from-golden", &model).await;
    let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> = env.api();
    let claim = claims.get("from-golden").await.unwrap();
    let annotations = claim.metadata.annotations.unwrap_or_default();
    assert_eq!(annotations.get("k8s.io/CloneRequest").map(String::as_str), Some("golden/image"));
    assert_eq!(annotations.get("k8s.io/CloneOf").map(String::as_str), Some("true"));

    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(env.client.clone());
    namespaces.delete("golden", &Default::default()).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while namespaces.get_opt("golden").await.unwrap().is_some() {
        assert!(std::time::Instant::now() < deadline, "the golden namespace was not deleted");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    env.assert_data("from-golden", &model).await;
}
