//! `vmsnap snapshot create | list | describe | delete`.

use std::time::Duration;

use kube::api::PostParams;
use vmsnap_api::snapshot::DeletionPolicy;
use vmsnap_testing::fixtures::{VmBuilder, create_bound_pvc};

use crate::support::{Env, WAIT};

/// The step lines of the progress, in order, without their times.
fn steps(stderr: &str) -> Vec<String> {
    let labels = ["source locked", "guest frozen", "volumes cut", "guest thawed", "ready"];
    stderr
        .lines()
        .filter_map(|l| labels.iter().find(|label| l.trim_start().starts_with(*label)).map(|s| s.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_on_a_running_vm_shows_each_step_and_reports_the_freeze_window() {
    let env = Env::start().await;
    env.running_vm("db").await;

    let out = env.run(&["snapshot", "create", "db", "--name", "s1"]).await;
    out.expect(0);
    assert!(out.stderr.starts_with("Snapshot \"s1\" of VM \"db\":\n"), "{}", out.stderr);
    assert_eq!(steps(&out.stderr), ["source locked", "guest frozen", "volumes cut", "guest thawed", "ready"]);
    let thawed = out.stderr.lines().find(|l| l.contains("guest thawed")).unwrap();
    assert!(thawed.contains("frozen for ") && thawed.trim_end().ends_with('s'), "{thawed}");
    let cut = out.stderr.lines().find(|l| l.contains("volumes cut")).unwrap();
    assert!(cut.ends_with("1 volume"), "{cut}");

    assert!(out.stdout.starts_with("Snapshot \"s1\" of VM \"db\" is ready ("), "{}", out.stdout);
    let window = out.stdout.lines().find(|l| l.contains("Freeze window:")).unwrap();
    assert!(
        window.contains("(guest frozen to thawed, measured by this client from watch events)"),
        "{window}"
    );
    assert!(out.stdout.contains("GuestAgent") && out.stdout.contains("Online"), "{}", out.stdout);
    assert!(out.stdout.contains("Included disks:\n    data   1Gi\n"), "{}", out.stdout);
    assert_eq!(env.agent.calls_of("freeze"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_of_a_stopped_vm_says_why_a_disk_was_excluded() {
    let env = Env::start().await;
    create_bound_pvc(&env.client, "default", "data-pvc", "local").await.unwrap();
    create_bound_pvc(&env.client, "default", "nfs-pvc", "nfs").await.unwrap();
    let vm = VmBuilder::new("db").with_pvc("data", "data-pvc").with_pvc("shared", "nfs-pvc").build();
    env.vms().create(&PostParams::default(), &vm).await.unwrap();
    vmsnap_testing::eventually("the VM's volumeSnapshotStatuses", WAIT, || async {
        (env.vms().get("db").await.ok()?.status?.volume_snapshot_statuses.len() == 2).then_some(())
    })
    .await
    .unwrap();

    let out = env.run(&["snapshot", "create", "db", "--name", "s1"]).await;
    out.expect(0);
    assert_eq!(steps(&out.stderr), ["source locked", "volumes cut", "ready"]);
    assert!(out.stdout.contains("Freeze window: none: the VM was stopped"), "{}", out.stdout);
    assert!(out.stdout.contains("PartialSnapshot"), "{}", out.stdout);
    let excluded = out.stdout.lines().skip_while(|l| !l.contains("Excluded disks:")).nth(1).unwrap();
    assert!(excluded.contains("shared") && excluded.contains("No VolumeSnapshotClass"), "{excluded}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_of_an_unknown_vm_is_not_found_with_exit_3() {
    let env = Env::start().await;
    let out = env.run(&["snapshot", "create", "ghost"]).await;
    out.expect(3);
    assert_eq!(
        out.stderr,
        "error: VM \"ghost\" not found in namespace \"default\": list VMs with: vmsnap vm list\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_wait_prints_the_name_and_a_taken_name_is_a_conflict_with_exit_4() {
    let env = Env::start().await;
    env.stopped_vm("db").await;
    let first = env.run(&["snapshot", "create", "db", "--name", "s1", "--no-wait", "--retain"]).await;
    first.expect(0);
    assert_eq!(first.stdout, "s1\n");
    let snap = env.snapshots().get("s1").await.unwrap();
    assert_eq!(snap.spec.deletion_policy, Some(DeletionPolicy::Retain));

    let clash = env.run(&["snapshot", "create", "db", "--name", "s1"]).await;
    clash.expect(4);
    assert_eq!(
        clash.stderr.lines().last().unwrap(),
        "error: snapshot \"s1\" already exists: pick another --name, or delete it with: vmsnap snapshot delete s1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_with_o_json_prints_the_ready_snapshot_and_a_default_name() {
    let env = Env::start().await;
    env.stopped_vm("db").await;
    let out = env.run(&["snapshot", "create", "db", "-o", "json", "--failure-deadline", "2m"]).await;
    out.expect(0);
    let snap: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(snap["kind"], "VirtualMachineSnapshot");
    assert_eq!(snap["status"]["readyToUse"], true);
    assert_eq!(snap["spec"]["failureDeadline"], "2m0s");
    let name = snap["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("db-") && name.len() == "db-20250101-120000".len(), "{name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_that_misses_its_deadline_fails_with_exit_5() {
    let env = Env::start().await;
    env.running_vm("db").await;
    *env.agent.fail_freeze.lock().unwrap() = Some("command Freeze failed: guest agent busy".into());
    let out = env.run(&["snapshot", "create", "db", "--name", "s1", "--failure-deadline", "2s"]).await;
    out.expect(5);
    assert!(
        out.stderr.contains("error (the controller retries): command Freeze failed: guest agent busy"),
        "{}",
        out.stderr
    );
    let last = out.stderr.lines().last().unwrap();
    assert!(
        last.starts_with("error: snapshot \"s1\" of VM \"db\" failed: snapshot deadline exceeded"),
        "{last}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_longer_than_timeout_exits_6_and_leaves_the_snapshot_going() {
    let env = Env::start().await;
    env.running_vm("db").await;
    *env.agent.fail_freeze.lock().unwrap() = Some("command Freeze failed: guest agent busy".into());
    let out = env.run(&["snapshot", "create", "db", "--name", "s1", "--timeout", "1s"]).await;
    out.expect(6);
    assert!(out.stderr.contains("is not ready after 1s (phase InProgress)"), "{}", out.stderr);
    assert!(env.snapshots().get_opt("s1").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shows_a_vms_snapshots_newest_first_with_size_and_indications() {
    let env = Env::start().await;
    env.running_vm("db").await;
    env.stopped_vm("other").await;
    env.ready_snapshot("older", "db").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    env.ready_snapshot("newer", "db").await;
    env.ready_snapshot("not-mine", "other").await;

    let out = env.run(&["snapshot", "list", "db"]).await;
    out.expect(0);
    let rows: Vec<Vec<&str>> = out.stdout.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["NAME", "VM", "PHASE", "READY", "INDICATIONS", "SIZE", "AGE"]);
    assert_eq!(rows[1][..6], ["newer", "db", "Succeeded", "true", "GuestAgent,Online", "1Gi"]);
    assert_eq!(rows[2][0], "older");
    assert_eq!(rows.len(), 3, "{}", out.stdout);

    let all = env.run(&["snapshot", "list", "-o", "yaml"]).await;
    all.expect(0);
    assert!(all.stdout.contains("kind: List") && all.stdout.contains("name: not-mine"), "{}", all.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_the_snapshots_of_an_unknown_vm_is_not_found_with_exit_3() {
    let env = Env::start().await;
    let out = env.run(&["snapshot", "list", "ghost"]).await;
    out.expect(3);
    assert!(out.stderr.contains("VM \"ghost\" not found"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_shows_the_phase_disks_and_conditions_and_a_missing_snapshot_is_exit_3() {
    let env = Env::start().await;
    env.stopped_vm("db").await;
    env.ready_snapshot("s1", "db").await;
    let out = env.run(&["snapshot", "describe", "s1"]).await;
    out.expect(0);
    for expected in [
        "Name:             s1",
        "VM:               db",
        "Phase:            Succeeded",
        "Ready:            true",
        "Size:             1Gi",
        "Included disks:",
        "Conditions:",
    ] {
        assert!(out.stdout.contains(expected), "{expected} missing from:\n{}", out.stdout);
    }
    let yaml = env.run(&["snapshot", "describe", "s1", "-o", "yaml"]).await;
    yaml.expect(0);
    assert!(
        yaml.stdout.starts_with("apiVersion: snapshot.kubevirt.io/v1beta1\nkind: VirtualMachineSnapshot\n"),
        "{}",
        yaml.stdout
    );

    let missing = env.run(&["snapshot", "describe", "nope"]).await;
    missing.expect(3);
    assert_eq!(
        missing.stderr,
        "error: snapshot \"nope\" not found in namespace \"default\": list snapshots with: vmsnap snapshot list\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_existing_snapshots_and_reports_a_missing_one_with_exit_3() {
    let env = Env::start().await;
    env.stopped_vm("db").await;
    env.ready_snapshot("s1", "db").await;
    let out = env.run(&["snapshot", "delete", "s1", "nope", "--wait"]).await;
    out.expect(3);
    assert_eq!(out.stdout, "snapshot \"s1\" deleted\n");
    assert!(out.stderr.contains("snapshot \"nope\" not found"), "{}", out.stderr);
    assert!(env.snapshots().get_opt("s1").await.unwrap().is_none(), "--wait waits until it is gone");
}
