//! `vmsnap schedule create | list | describe | suspend | resume | delete`.

use vmsnap_api::schedule::VirtualMachineSnapshotSchedule;

use crate::support::Env;

async fn get(env: &Env, name: &str) -> VirtualMachineSnapshotSchedule {
    kube::Api::<VirtualMachineSnapshotSchedule>::namespaced(env.client.clone(), "default")
        .get(name)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_list_describe_suspend_resume_and_delete_a_schedule() {
    let env = Env::start().await;
    let out = env
        .run(&[
            "schedule",
            "create",
            "db-hourly",
            "--vm",
            "db",
            "--every",
            "1h",
            "--keep-last",
            "24",
            "--keep-daily",
            "7",
        ])
        .await;
    out.expect(0);
    assert_eq!(out.stdout, "schedule \"db-hourly\" created: snapshots of VM \"db\" every 1h\n");
    let created = get(&env, "db-hourly").await;
    let keep = created.spec.keep.unwrap();
    assert_eq!((keep.last, keep.daily, keep.hourly), (Some(24), Some(7), None));

    env.run(&[
        "schedule",
        "create",
        "nightly",
        "--selector",
        "tier=db",
        "--cron",
        "30 2 * * *",
        "--time-zone",
        "Europe/Berlin",
    ])
    .await
    .expect(0);
    let list = env.run(&["schedule", "list"]).await;
    list.expect(0);
    let lines: Vec<&str> = list.stdout.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{}", list.stdout);
    assert!(
        lines[1].starts_with("db-hourly") && lines[1].contains("vm db") && lines[1].contains("every 1h"),
        "{}",
        list.stdout
    );
    assert!(
        lines[2].contains("selector tier=db") && lines[2].contains("30 2 * * * (Europe/Berlin)"),
        "{}",
        list.stdout
    );

    env.run(&["schedule", "suspend", "nightly"]).await.expect(0);
    assert_eq!(get(&env, "nightly").await.spec.suspend, Some(true));
    let described = env.run(&["schedule", "describe", "nightly"]).await;
    described.expect(0);
    assert!(described.stdout.contains("Suspended:     true"), "{}", described.stdout);
    env.run(&["schedule", "resume", "nightly"]).await.expect(0);
    assert_eq!(get(&env, "nightly").await.spec.suspend, Some(false));

    let deleted = env.run(&["schedule", "delete", "nightly", "db-hourly"]).await;
    deleted.expect(0);
    assert!(
        deleted.stdout.contains("schedule \"nightly\" deleted (the snapshots it made are kept)"),
        "{}",
        deleted.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_schedules_get_one_line_errors_and_their_exit_codes() {
    let env = Env::start().await;
    // Admission names the field and the problem: exit 4, like the other refusals.
    let out = env.run(&["schedule", "create", "s", "--vm", "db", "--cron", "61 * * * *"]).await;
    out.expect(4);
    assert!(
        out.stderr.starts_with("error: cannot create schedule \"s\": spec.cron: cron minute field: "),
        "{}",
        out.stderr
    );
    let out = env
        .run(&["schedule", "create", "s", "--vm", "db", "--every", "1h", "--time-zone", "Mars/Olympus"])
        .await;
    out.expect(4);
    assert!(out.stderr.contains("spec.timeZone: unknown time zone \"Mars/Olympus\""), "{}", out.stderr);
    // Both or neither of a pair is a usage error.
    env.run(&["schedule", "create", "s", "--vm", "db", "--selector", "a=b", "--every", "1h"]).await.expect(2);
    env.run(&["schedule", "create", "s", "--vm", "db"]).await.expect(2);
    // A selector kubectl would refuse is a usage error naming the term.
    let out =
        env.run(&["schedule", "create", "s", "--selector", "tier=db,zone in (a b)", "--every", "1h"]).await;
    out.expect(2);
    assert_eq!(
        out.stderr,
        "error: --selector \"tier=db,zone in (a b)\": unable to parse requirement \"zone in (a b)\": found 'b', expected: ',' or ')'\n"
    );
    // `>` has no metav1.LabelSelector form.
    let out = env.run(&["schedule", "create", "s", "--selector", "gen>2", "--every", "1h"]).await;
    out.expect(2);
    assert!(out.stderr.contains("\"gen>2\""), "{}", out.stderr);
    // Missing and taken names.
    let out = env.run(&["schedule", "describe", "nope"]).await;
    out.expect(3);
    assert_eq!(
        out.stderr,
        "error: schedule \"nope\" not found in namespace \"default\": list schedules with: vmsnap schedule list\n"
    );
    env.run(&["schedule", "suspend", "nope"]).await.expect(3);
    env.run(&["schedule", "create", "s", "--vm", "db", "--every", "1h"]).await.expect(0);
    let out = env.run(&["schedule", "create", "s", "--vm", "db", "--every", "2h"]).await;
    out.expect(4);
    assert_eq!(
        out.stderr,
        "error: schedule \"s\" already exists: pick another name, or delete it with: vmsnap schedule delete s\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_can_back_its_snapshots_up_with_a_keep_policy_of_their_own() {
    let env = Env::start().await;
    let out = env
        .run(&[
            "schedule",
            "create",
            "offsite",
            "--vm",
            "db",
            "--every",
            "6h",
            "--keep-last",
            "2",
            "--backup-to",
            "main",
            "--backup-keep-daily",
            "30",
            "--backup-keep-monthly",
            "12",
        ])
        .await;
    out.expect(0);
    assert!(out.stdout.contains("each backed up to repository \"main\""), "{}", out.stdout);
    let spec = get(&env, "offsite").await.spec;
    assert_eq!(spec.backup_to.as_deref(), Some("main"));
    let backup_keep = spec.backup_keep.unwrap();
    assert_eq!((backup_keep.daily, backup_keep.monthly, backup_keep.last), (Some(30), Some(12), None));
    assert_eq!(spec.keep.unwrap().last, Some(2), "the snapshots' policy is separate");
    // A backup keep policy without a repository to back up to is a usage error.
    let out =
        env.run(&["schedule", "create", "s", "--vm", "db", "--every", "1h", "--backup-keep-last", "3"]).await;
    out.expect(2);
    assert!(out.stderr.contains("--backup-to"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selector_in_kubectl_syntax_becomes_the_schedules_label_selector() {
    let env = Env::start().await;
    let selector = "tier=db,env!=dev,zone in (a,b),site notin (old),backup,!skip";
    let out = env.run(&["schedule", "create", "dbs", "--selector", selector, "--every", "1h"]).await;
    out.expect(0);
    let stored = serde_json::to_value(get(&env, "dbs").await.spec.selector.unwrap()).unwrap();
    assert_eq!(
        stored,
        serde_json::json!({
            "matchLabels": {"tier": "db"},
            "matchExpressions": [
                {"key": "backup", "operator": "Exists"},
                {"key": "env", "operator": "NotIn", "values": ["dev"]},
                {"key": "site", "operator": "NotIn", "values": ["old"]},
                {"key": "skip", "operator": "DoesNotExist"},
                {"key": "zone", "operator": "In", "values": ["a", "b"]},
            ]
        })
    );
    // Listed back in kubectl's syntax.
    let list = env.run(&["schedule", "list"]).await;
    list.expect(0);
    assert!(
        list.stdout.contains("selector tier=db,backup,env notin (dev),site notin (old),!skip,zone in (a,b)"),
        "{}",
        list.stdout
    );
}
