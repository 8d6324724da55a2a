//! `vmsnap vm list | start | stop | restart | pause | unpause`.

use crate::support::Env;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_runs_a_stopped_vm_and_list_shows_it_running_with_its_agent() {
    let env = Env::start().await;
    env.stopped_vm("db").await;
    env.stopped_vm("web").await;

    let out = env.run(&["vm", "start", "db"]).await;
    out.expect(0);
    assert_eq!(out.stdout, "VM \"db\" was scheduled to start\n");

    let list = env.run(&["vm", "list"]).await;
    list.expect(0);
    let lines: Vec<Vec<&str>> = list.stdout.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["NAME", "STATUS", "READY", "AGENT", "LAST-SNAPSHOT", "LAST-BACKUP", "AGE"]);
    assert_eq!(lines[1][..6], ["db", "Running", "True", "connected", "-", "-"]);
    assert_eq!(lines[2][..6], ["web", "-", "False", "-", "-", "-"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shows_the_age_of_each_vms_newest_ready_snapshot() {
    let env = Env::start().await;
    env.stopped_vm("db").await;
    env.stopped_vm("web").await;
    env.ready_snapshot("s1", "db").await;
    // A snapshot that never gets ready (its VM does not exist) counts for nobody.
    env.create_snapshot("pending", "ghost").await;
    let list = env.run(&["vm", "list"]).await;
    list.expect(0);
    let lines: Vec<Vec<&str>> = list.stdout.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0][4], "LAST-SNAPSHOT");
    assert!(lines[1][4].ends_with('s'), "db's last snapshot is seconds old: {:?}", lines[1]);
    assert_eq!(lines[2][4], "-", "web has no snapshot: {:?}", lines[2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_an_unknown_vm_is_not_found_with_exit_3() {
    let env = Env::start().await;
    let out = env.run(&["vm", "start", "nope"]).await;
    out.expect(3);
    assert_eq!(
        out.stderr,
        "error: VM \"nope\" not found in namespace \"default\": list VMs with: vmsnap vm list\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_a_running_vm_is_a_conflict_with_exit_4() {
    let env = Env::start().await;
    env.running_vm("db").await;
    let out = env.run(&["vm", "start", "db"]).await;
    out.expect(4);
    assert_eq!(out.stderr, "error: VM \"db\" is already running\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_stops_a_running_vm_and_a_second_stop_says_it_is_not_running() {
    let env = Env::start().await;
    env.running_vm("db").await;
    env.run(&["vm", "stop", "db"]).await.expect(0);
    let vm = env.vms().get("db").await.unwrap();
    assert_eq!(vm.spec.run_strategy.as_deref(), Some("Halted"));

    let again = env.run(&["vm", "stop", "db"]).await;
    again.expect(4);
    assert_eq!(again.stderr, "error: VM \"db\" is not running: start it with: vmsnap vm start db\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_unpause_a_running_vm_and_pausing_a_stopped_one_says_it_is_not_running() {
    let env = Env::start().await;
    env.running_vm("db").await;
    env.stopped_vm("off").await;
    env.run(&["vm", "pause", "db"]).await.expect(0);
    let twice = env.run(&["vm", "pause", "db"]).await;
    twice.expect(4);
    assert!(twice.stderr.contains("VM \"db\" is already paused"), "{}", twice.stderr);
    env.run(&["vm", "unpause", "db"]).await.expect(0);

    let off = env.run(&["vm", "pause", "off"]).await;
    off.expect(4);
    assert_eq!(off.stderr, "error: VM \"off\" is not running: start it with: vmsnap vm start off\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_replaces_the_instance_of_a_running_vm() {
    let env = Env::start().await;
    env.running_vm("db").await;
    let vmis: kube::Api<vmsnap_api::kubevirt::VirtualMachineInstance> =
        kube::Api::namespaced(env.client.clone(), "default");
    let before = vmis.get("db").await.unwrap().metadata.uid;
    env.run(&["vm", "restart", "db"]).await.expect(0);
    let after = vmis.get("db").await.unwrap().metadata.uid;
    assert_ne!(before, after);
    assert_eq!(env.agent.calls_of("restart"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_list_prints_the_objects_with_o_name_and_json() {
    let env = Env::start().await;
    env.stopped_vm("db").await;
    let names = env.run(&["vm", "list", "-o", "name"]).await;
    names.expect(0);
    assert_eq!(names.stdout, "virtualmachine.kubevirt.io/db\n");
    let json = env.run(&["vm", "list", "-o", "json"]).await;
    json.expect(0);
    let list: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"][0]["kind"], "VirtualMachine");
    assert_eq!(list["items"][0]["metadata"]["name"], "db");
}

/// Takes snapshot `snapshot` of `vm` whose freeze keeps failing, so that it holds the VM's lock.
async fn hold_with_a_snapshot(env: &Env, snapshot: &str, vm: &str) {
    *env.agent.fail_freeze.lock().unwrap() = Some("command Freeze failed: guest agent busy".into());
    env.create_snapshot(snapshot, vm).await;
    vmsnap_testing::eventually("the VM to be locked", crate::support::WAIT, || async {
        let locked = env.vms().get(vm).await.ok()?;
        (locked.status?.snapshot_in_progress.as_deref() == Some(snapshot)).then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_vm_during_a_snapshot_reports_the_lock_with_exit_4() {
    let env = Env::start().await;
    env.running_vm("db").await;
    hold_with_a_snapshot(&env, "s1", "db").await;
    let out = env.run(&["vm", "stop", "db"]).await;
    out.expect(4);
    assert!(
        out.stderr.starts_with("error: cannot stop VM \"db\": ") && out.stderr.contains("snapshot \"s1\""),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("vmsnap snapshot describe s1"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpausing_a_vm_during_a_snapshot_names_the_snapshot_with_exit_4() {
    let env = Env::start().await;
    // The VM is not paused first: a paused VM's snapshot needs no freeze, so the failing freeze
    // would not hold it and the lock could be gone before the unpause. The API server refuses an
    // unpause under the lock before the node agent looks at whether the VM is paused.
    env.running_vm("db").await;
    hold_with_a_snapshot(&env, "s1", "db").await;
    let out = env.run(&["vm", "unpause", "db"]).await;
    out.expect(4);
    assert_eq!(
        out.stderr,
        "error: VM \"db\" cannot be unpaused while its snapshot \"s1\" is in progress: wait for it with: vmsnap snapshot describe s1\n"
    );
}
