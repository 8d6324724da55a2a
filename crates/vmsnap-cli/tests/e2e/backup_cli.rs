//! Backups as a user runs them with the vmsnap CLI alone, against a real `vmsnap serve` and the
//! test guest: `repo add` on the default local directory, `backup create` of a running VM (full,
//! then incremental after a change), `backup list`, `repo verify`, `backup restore --to` a new VM
//! that boots with the first point in time's file, `backup delete` and `repo prune`.

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_backs_a_running_vm_up_and_restores_it_as_a_new_vm() {
    let Some(vmsnap) = start("auto") else { return };
    assert!(kubectl(&vmsnap, &["apply", "-f", &example("vm.yaml")]).await.contains("demo created"));
    await_running_with_agent(&vmsnap, "demo").await;
    vmsnap.sh("demo", "echo first > /mnt/data/f && sync").await.unwrap();

    let passphrase = vmsnap.data_dir().join("../passphrase");
    std::fs::write(&passphrase, "a passphrase for the e2e test\n").unwrap();
    let passphrase = passphrase.to_str().unwrap();
    let out = vmsnap.cli(&["repo", "add", "local", "--passphrase-file", passphrase]).await;
    let added = out.ok();
    assert!(added.contains("local"), "{added}");

    let out = vmsnap.cli(&["backup", "create", "demo", "--repo", "local", "--name", "demo-1"]).await;
    let first = out.ok().to_owned();
    assert!(first.contains("Full"), "the first backup reads everything: {first}");
    vmsnap.sh("demo", "echo second > /mnt/data/f && sync").await.unwrap();
    let out = vmsnap.cli(&["backup", "create", "demo", "--repo", "local", "--name", "demo-2"]).await;
    let second = out.ok().to_owned();
    assert!(second.contains("Incremental"), "the second reads what changed: {second}");
    let demo_2 = get_json(&vmsnap, "vmrbackup", "demo-2").await.unwrap();
    let read = demo_2["status"]["progress"]["bytesRead"].as_i64().unwrap();
    assert!(read < 64 << 20, "an incremental after one small write reads little: {read} bytes");

    let out = vmsnap.cli(&["backup", "list", "demo"]).await;
    let listed = out.ok().to_owned();
    assert!(listed.lines().next().unwrap().contains("TYPE"), "{listed}");
    assert!(listed.contains("demo-1") && listed.contains("demo-2"), "{listed}");
    let out = vmsnap.cli(&["repo", "verify", "local"]).await;
    out.ok();

    let out = vmsnap.cli(&["backup", "restore", "demo-1", "--to", "demo-copy"]).await;
    out.ok();
    vmsnap.cli(&["vm", "start", "demo-copy"]).await.ok();
    await_running_with_agent(&vmsnap, "demo-copy").await;
    let seen = vmsnap.sh("demo-copy", "cat /mnt/data/f").await.unwrap();
    assert_eq!(seen.trim(), "first", "the copy has the first point in time");
    let seen = vmsnap.sh("demo", "cat /mnt/data/f").await.unwrap();
    assert_eq!(seen.trim(), "second", "the original moved on");

    vmsnap.cli(&["backup", "delete", "demo-2"]).await.ok();
    let out = vmsnap.cli(&["repo", "prune", "local"]).await;
    out.ok();
    let out = vmsnap.cli(&["backup", "list", "demo"]).await;
    let listed = out.ok().to_owned();
    assert!(listed.contains("demo-1") && !listed.contains("demo-2"), "{listed}");
    vmsnap.cli(&["vm", "stop", "demo-copy"]).await.ok();
}
