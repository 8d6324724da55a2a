//! `vmsnap restore VM --snapshot NAME`.

use vmsnap_api::kubevirt::VirtualMachineInstance;
use vmsnap_api::snapshot::VirtualMachineRestore;

use crate::support::Env;

fn steps(stderr: &str) -> Vec<String> {
    let labels = ["target stopped", "volumes restored", "VM updated", "complete"];
    stderr
        .lines()
        .filter_map(|l| labels.iter().find(|label| l.trim_start().starts_with(*label)).map(|s| s.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_of_a_stopped_vm_shows_progress_and_the_new_volumes() {
    let env = Env::start().await;
    env.stopped_vm("db").await;
    env.ready_snapshot("s1", "db").await;

    let out = env.run(&["restore", "db", "--snapshot", "s1", "--name", "r1"]).await;
    out.expect(0);
    assert!(out.stderr.starts_with("Restore \"r1\" of VM \"db\" from snapshot \"s1\":\n"), "{}", out.stderr);
    assert_eq!(steps(&out.stderr), ["volumes restored", "VM updated", "complete"]);
    assert!(
        out.stdout.starts_with("VM \"db\" restored from snapshot \"s1\" (restore \"r1\", "),
        "{}",
        out.stdout
    );
    let restored = kube::Api::<VirtualMachineRestore>::namespaced(env.client.clone(), "default")
        .get("r1")
        .await
        .unwrap();
    let pvc = &restored.status.unwrap().restores[0].persistent_volume_claim;
    assert!(out.stdout.contains(&format!("    data   {pvc}\n")), "{}", out.stdout);
    assert!(out.stdout.contains("VM \"db\" is stopped: start it with: vmsnap vm start db"), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_onto_a_running_vm_without_a_policy_is_refused_with_exit_4() {
    let env = Env::start().await;
    env.running_vm("db").await;
    env.ready_snapshot("s1", "db").await;
    let out = env.run(&["restore", "db", "--snapshot", "s1"]).await;
    out.expect(4);
    assert_eq!(out.stderr, "error: VM \"db\" is running: stop it, or pass --stop-target\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_target_stops_the_running_vm_then_restores_it() {
    let env = Env::start().await;
    env.running_vm("db").await;
    env.ready_snapshot("s1", "db").await;
    let out = env.run(&["restore", "db", "--snapshot", "s1", "--stop-target"]).await;
    out.expect(0);
    assert_eq!(steps(&out.stderr), ["target stopped", "volumes restored", "VM updated", "complete"]);
    let vmis: kube::Api<VirtualMachineInstance> = kube::Api::namespaced(env.client.clone(), "default");
    assert!(vmis.get_opt("db").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_if_running_makes_the_restore_fail_with_exit_5() {
    let env = Env::start().await;
    env.running_vm("db").await;
    env.ready_snapshot("s1", "db").await;
    let out = env.run(&["restore", "db", "--snapshot", "s1", "--fail-if-running", "--name", "r1"]).await;
    out.expect(5);
    assert_eq!(
        out.stderr.lines().last().unwrap(),
        "error: restore \"r1\" of VM \"db\" failed: Restore target VMI must be powered off before restore operation: delete it before trying again with: kubectl delete vmrestore r1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_to_a_new_vm_creates_it_and_an_existing_other_vm_is_refused() {
    let env = Env::start().await;
    env.running_vm("db").await;
    env.stopped_vm("taken").await;
    env.ready_snapshot("s1", "db").await;
    let out = env.run(&["restore", "db", "--snapshot", "s1", "--to", "db-copy", "-o", "name"]).await;
    out.expect(0);
    assert!(
        out.stdout.starts_with("virtualmachinerestore.snapshot.kubevirt.io/db-copy-restore-"),
        "{}",
        out.stdout
    );
    assert!(env.vms().get_opt("db-copy").await.unwrap().is_some());

    let clash = env.run(&["restore", "db", "--snapshot", "s1", "--to", "taken"]).await;
    clash.expect(4);
    assert!(clash.stderr.contains("VM \"taken\" already exists: pick another --to name"), "{}", clash.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_snapshot_is_exit_3_and_an_unready_one_exit_4() {
    let env = Env::start().await;
    env.stopped_vm("db").await;
    let missing = env.run(&["restore", "db", "--snapshot", "nope"]).await;
    missing.expect(3);
    assert!(
        missing.stderr.contains("snapshot \"nope\" not found in namespace \"default\""),
        "{}",
        missing.stderr
    );

    // A snapshot of a VM that does not exist never gets ready.
    env.create_snapshot("pending", "ghost").await;
    let unready = env.run(&["restore", "ghost", "--snapshot", "pending"]).await;
    unready.expect(4);
    assert!(
        unready.stderr.starts_with("error: snapshot \"pending\" is not ready (phase "),
        "{}",
        unready.stderr
    );
    assert!(
        unready.stderr.contains("wait for it with: vmsnap snapshot describe pending"),
        "{}",
        unready.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_restore_name_is_a_conflict_with_exit_4() {
    let env = Env::start().await;
    env.stopped_vm("db").await;
    env.ready_snapshot("s1", "db").await;
    let first = env.run(&["restore", "db", "--snapshot", "s1", "--name", "r1", "--no-wait"]).await;
    first.expect(0);
    assert_eq!(first.stdout, "r1\n");
    let again = env.run(&["restore", "db", "--snapshot", "s1", "--name", "r1", "--no-wait"]).await;
    again.expect(4);
    assert!(
        again.stderr.starts_with("error: restore \"r1\" already exists: pick another --name"),
        "{}",
        again.stderr
    );
}
