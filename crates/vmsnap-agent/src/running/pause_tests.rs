//! The pause state machine against QEMU's events (sent by the fake QMP peer, in the shapes QEMU 7.2
//! sent them for a test guest whose disk filled up), and a running VMI that is paused on a full
//! disk and resumed once there is room, with its status and events in a real API server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use k8s_openapi::api::events::v1::Event as KubeEvent;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use vmsnap_api::kubevirt::VirtualMachineInstance;
use vmsnap_api::kubevirt::VmiPhase;
use vmsnap_qemu::client::QmpClient;
use vmsnap_qemu::fake::{Behavior, FakeQmp};
use vmsnap_testing::{TestServer, eventually};

use super::*;
use crate::running::record::AttachedVolume;
use crate::running::{Deps, RunningVmi};
use crate::vmi_status::VmiFacts;
use crate::volumes::ResolvedVolume;
use vmsnap_vmm::{
    Accel, Boot, DiskFormat, DiskSpec, LaunchRecord, LaunchSpec, RuntimePaths, Timeouts, VmEvents, VmHandle,
};

const PATIENCE: Duration = Duration::from_secs(10);

/// `BLOCK_IO_ERROR` as QEMU 7.2 sends it for a `-blockdev` disk (no device name, the node named).
fn io_error(node: &str, nospace: bool, action: &str) -> Value {
    let reason = if nospace { "No space left on device" } else { "Input/output error" };
    json!({"device": "", "nospace": nospace, "node-name": node, "reason": reason, "operation": "write", "action": action})
}

async fn fake_qmp(dir: &Path) -> (FakeQmp, QmpClient) {
    let fake = FakeQmp::start(dir.join("qmp.sock")).unwrap();
    let client = QmpClient::connect(fake.path(), Duration::from_secs(5)).await.unwrap();
    (fake, client)
}

/// Feeds `count` events from `events` to `tracker`, as the monitor does.
async fn feed(tracker: &mut PauseTracker, events: &mut VmEvents, count: usize) {
    for _ in 0..count {
        let event = tokio::time::timeout(PATIENCE, events.next()).await.expect("an event").expect("open");
        tracker.on_event(&event, |key| format!("volume-{key}"));
    }
}

fn disks(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

#[tokio::test]
async fn qemus_events_tell_a_users_pause_from_a_full_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, client) = fake_qmp(dir.path()).await;
    let mut events = VmEvents::new(client.events());
    let mut tracker = PauseTracker::new(PauseState::Running);

    // A stop nothing explains is a user's (the pause subresource, a paused start).
    fake.emit_event("STOP", Value::Null);
    feed(&mut tracker, &mut events, 1).await;
    assert_eq!(tracker.state(), &PauseState::ByUser);
    fake.emit_event("RESUME", Value::Null);
    feed(&mut tracker, &mut events, 1).await;
    assert_eq!(tracker.state(), &PauseState::Running);

    // ENOSPC: the error, then the stop it causes. More requests fail on another disk meanwhile.
    fake.emit_event("BLOCK_IO_ERROR", io_error("fmt-data", true, "stop"));
    fake.emit_event("STOP", Value::Null);
    fake.emit_event("BLOCK_IO_ERROR", io_error("fmt3-logs", true, "stop"));
    feed(&mut tracker, &mut events, 3).await;
    let full = IoErrorPause { episode: 1, disks: disks(&["volume-data", "volume-logs"]), no_space: true };
    assert_eq!(tracker.state(), &PauseState::IoError(full));

    // Another kind of error stops it too, but is not one the agent can wait out.
    fake.emit_event("RESUME", Value::Null);
    fake.emit_event("BLOCK_IO_ERROR", io_error("fmt-data", false, "stop"));
    fake.emit_event("STOP", Value::Null);
    feed(&mut tracker, &mut events, 3).await;
    let broken = IoErrorPause { episode: 2, disks: disks(&["volume-data"]), no_space: false };
    assert_eq!(tracker.state(), &PauseState::IoError(broken));

    // An error passed to the guest (reads: rerror=report) explains no stop.
    fake.emit_event("RESUME", Value::Null);
    fake.emit_event("BLOCK_IO_ERROR", io_error("fmt-data", false, "report"));
    fake.emit_event("STOP", Value::Null);
    feed(&mut tracker, &mut events, 3).await;
    assert_eq!(tracker.state(), &PauseState::ByUser);

    // A request that fails while a user has the VM paused does not make it an I/O error pause,
    // and is forgotten once the VM runs again.
    fake.emit_event("BLOCK_IO_ERROR", io_error("fmt-data", true, "stop"));
    fake.emit_event("RESUME", Value::Null);
    fake.emit_event("STOP", Value::Null);
    feed(&mut tracker, &mut events, 3).await;
    assert_eq!(tracker.state(), &PauseState::ByUser);
}

#[test]
fn a_resume_into_a_disk_that_is_still_full_is_a_new_pause_not_a_resume() {
    let first = PauseState::IoError(IoErrorPause { episode: 1, disks: disks(&["data"]), no_space: true });
    let mut tracker = PauseTracker::new(first.clone());
    // `cont` on a full disk: RESUME, BLOCK_IO_ERROR and STOP within a millisecond.
    tracker.on_resume();
    tracker.on_io_error(Some("data".into()), true, true);
    tracker.on_stop();
    let second = IoErrorPause { episode: 2, disks: disks(&["data"]), no_space: true };
    assert_eq!(reaction(&first, tracker.state()), Reaction::IoErrorPaused(second.clone()));

    tracker.on_io_error(Some("logs".into()), true, true);
    let more = reaction(&PauseState::IoError(second.clone()), tracker.state());
    let Reaction::MoreDisks { added, .. } = more else { panic!("{more:?}") };
    assert_eq!(added, ["logs"]);

    tracker.on_resume();
    let Reaction::IoErrorResumed(ended) = reaction(&first, tracker.state()) else { panic!() };
    assert_eq!(ended.episode, 1);
    assert_eq!(reaction(&PauseState::Running, &PauseState::ByUser), Reaction::Show);
    assert_eq!(reaction(&PauseState::ByUser, &PauseState::ByUser), Reaction::None);
}

#[test]
fn qemus_run_state_is_taken_when_events_were_lost() {
    let status = |running: bool, state: RunState| StatusInfo { running, status: state };
    let mut tracker = PauseTracker::new(PauseState::Running);

    tracker.resync(&status(false, RunState::IoError), &[("data".into(), true)]);
    assert_eq!(
        tracker.state(),
        &PauseState::IoError(IoErrorPause { episode: 1, disks: disks(&["data"]), no_space: true })
    );
    // The same pause, seen again: not a new episode.
    tracker.resync(&status(false, RunState::IoError), &[("data".into(), true)]);
    assert_eq!(tracker.state().io_error().map(|p| p.episode), Some(1));
    tracker.resync(&status(true, RunState::Running), &[]);
    assert_eq!(tracker.state(), &PauseState::Running);
    // Disks not known (query-block failed): not known to be ENOSPC until an event names one.
    tracker.resync(&status(false, RunState::IoError), &[]);
    let unknown = tracker.state().clone();
    assert_eq!(unknown.io_error().map(|p| p.no_space), Some(false));
    tracker.on_io_error(Some("data".into()), true, true);
    let known = IoErrorPause { episode: 2, disks: disks(&["data"]), no_space: true };
    assert_eq!(tracker.state(), &PauseState::IoError(known.clone()));
    assert_eq!(reaction(&unknown, tracker.state()), Reaction::IoErrorPaused(known));
    tracker.resync(&status(false, RunState::Paused), &[]);
    assert_eq!(tracker.state(), &PauseState::ByUser);

    // A re-attached agent starts from the run state alone; the disks come with the first resync.
    let adopted = PauseState::from_status(&status(false, RunState::IoError));
    let mut tracker = PauseTracker::new(adopted);
    tracker.resync(&status(false, RunState::IoError), &[("data".into(), true), ("logs".into(), false)]);
    assert_eq!(
        tracker.state(),
        &PauseState::IoError(IoErrorPause { episode: 1, disks: disks(&["data", "logs"]), no_space: false })
    );
    assert_eq!(PauseState::from_status(&status(false, RunState::Prelaunch)), PauseState::ByUser);
}

#[tokio::test]
async fn the_space_is_checked_less_and_less_often_until_there_is_room() {
    let ms = Duration::from_millis;
    let policy = ResumePolicy { first_check: ms(20), max_check: ms(50), ..ResumePolicy::default() };
    let started = tokio::time::Instant::now();
    let checks = Arc::new(AtomicU64::new(0));
    let room = |free: u64| vec![Room { dir: "/data".into(), free: Some(free) }];

    let counted = checks.clone();
    let found = wait_for_room(&policy, policy.first_wait(0), || {
        let check = counted.fetch_add(1, Ordering::SeqCst);
        // Full three times (one file system short of the margin by a byte), then room.
        let free = if check < 3 { policy.min_free_bytes - 1 } else { policy.min_free_bytes };
        async move { Some(room(free)) }
    })
    .await;

    assert_eq!(found, Some(room(policy.min_free_bytes)));
    assert_eq!(checks.load(Ordering::SeqCst), 4);
    // 20 ms, then 40 and (capped) 50 and 50: no busy loop, and never more than the cap late.
    let took = started.elapsed();
    assert!(took >= ms(160) && took < ms(1000), "{took:?}");
    let ended = wait_for_room(&policy, policy.first_wait(0), || async { None }).await;
    assert_eq!(ended, None, "a pause that ended is not waited for");
    let default = ResumePolicy::default();
    assert_eq!(default.first_wait(0), Duration::from_secs(2));
    assert_eq!(default.first_wait(1), Duration::from_secs(4), "a pause right after a resume waits longer");
    assert_eq!(default.first_wait(30), default.max_check);
    assert_eq!(default.next_wait(Duration::from_secs(8)), Duration::from_secs(10));
    assert!(!has_room(&[], &policy), "no disk file found is no room");
    assert!(!has_room(&[Room { dir: "/d".into(), free: None }], &policy));
}

#[test]
fn the_warning_names_the_volume_the_full_directory_and_what_to_do() {
    let pause = IoErrorPause { episode: 1, disks: disks(&["data"]), no_space: true };
    let rooms = [
        Room { dir: "/var/lib/vmsnap/volumes/layers".into(), free: Some(3 << 19) },
        Room { dir: "/var/lib/vmsnap/volumes/layers".into(), free: Some(3 << 19) },
    ];
    let note = paused_note(&pause, &rooms, &ResumePolicy::default());
    assert_eq!(
        note,
        "VM Paused due to not enough space on volume: data. The data directory is full: \
         /var/lib/vmsnap/volumes/layers has 1.5 MiB free. Free space there (delete snapshots, VMs or \
         disks you no longer need, or other files on that file system); the VM resumes by itself once \
         64 MiB are free."
    );
    let broken = IoErrorPause { no_space: false, ..pause.clone() };
    assert!(paused_note(&broken, &rooms, &ResumePolicy::default()).starts_with(
        "VM Paused due to IO error at the volume: data. Unpause the VM once its storage works again."
    ));
    let room = [Room { dir: "/d".into(), free: Some(100 << 20) }];
    assert_eq!(
        resumed_note(&pause, &room),
        "The data directory has room again (/d has 100 MiB free): resumed the VM paused because volume \
         data was out of space."
    );
}

/// A running VMI over the fake QMP peer, its status and events in a real API server, and free
/// space the test sets.
struct Harness {
    fake: FakeQmp,
    vm: Arc<RunningVmi>,
    vmis: Api<VirtualMachineInstance>,
    events: Api<KubeEvent>,
    free: Arc<AtomicU64>,
    _server: TestServer,
    _dir: tempfile::TempDir,
}

const MIB: u64 = 1 << 20;

impl Harness {
    async fn start() -> Harness {
        let server = TestServer::start().await.unwrap();
        let client: Client = server.client().await.unwrap();
        let vmis: Api<VirtualMachineInstance> = Api::namespaced(client.clone(), "default");
        let vmi = VirtualMachineInstance::new("full", Default::default());
        let uid = vmis.create(&PostParams::default(), &vmi).await.unwrap().uid().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (fake, qmp) = fake_qmp(dir.path()).await;
        let file = dir.path().join("data.qcow2");
        let mut spec = LaunchSpec::new("full", 64, Boot::Disk);
        spec.disks.push(DiskSpec::new("data", &file, DiskFormat::Qcow2));
        let record = LaunchRecord {
            format_version: 1,
            spec,
            accel: Accel::Tcg,
            qemu_binary: "qemu".into(),
            argv: vec![],
        };
        let pid = i32::try_from(std::process::id()).unwrap();
        let handle = VmHandle::new(RuntimePaths::new(dir.path()), record, pid, qmp, Timeouts::default());
        let reporter = Reporter { controller: "vmsnap-test".into(), instance: None };
        let deps = Deps {
            client: client.clone(),
            recorder: Recorder::new(client.clone(), reporter),
            registry: Weak::new(),
        };
        let volume = ResolvedVolume {
            disk: DiskSpec::new("data", &file, DiskFormat::Qcow2),
            claim: None,
            hotplugged: false,
        };
        let mut facts = VmiFacts::default();
        facts.set_phase(VmiPhase::Running, &crate::time::now_time());
        let free = Arc::new(AtomicU64::new(MIB));
        let measured = free.clone();
        let space = SpaceWatch {
            policy: ResumePolicy {
                min_free_bytes: 64 * MIB,
                first_check: Duration::from_millis(100),
                max_check: Duration::from_millis(400),
                relapse_window: Duration::from_secs(60),
            },
            free_bytes: Arc::new(move |_: &Path| Ok(measured.load(Ordering::SeqCst))),
        };
        let attached = vec![AttachedVolume { volume, target: "vda".into() }];
        let vm = RunningVmi::start_with(handle, ("default", "full", &uid), facts, attached, deps, space);
        let events = Api::namespaced(client, "default");
        Harness { fake, vm, vmis, events, free, _server: server, _dir: dir }
    }

    /// QEMU stopping the VM on a failed write to the data disk.
    fn fail_write(&self, nospace: bool) {
        self.fake.with_state(|state| {
            state.running = false;
            state.status = "io-error".into();
        });
        self.fake.emit_event("BLOCK_IO_ERROR", io_error("fmt-data", nospace, "stop"));
        self.fake.emit_event("STOP", Value::Null);
    }

    fn conts(&self) -> usize {
        self.fake.received_names().iter().filter(|name| *name == "cont").count()
    }

    /// Waits until the VMI's `Paused` condition is `(status, reason)` (`None`: absent).
    async fn await_paused(&self, wanted: Option<(&str, &str)>) {
        let wanted = wanted.map(|(s, r)| (s.to_owned(), r.to_owned()));
        eventually(&format!("Paused to be {wanted:?}"), PATIENCE, || async {
            let vmi = self.vmis.get("full").await.ok()?;
            let paused = vmi.status.iter().flat_map(|s| &s.conditions).find(|c| c.type_ == "Paused");
            let seen = paused.map(|c| (c.status.clone(), c.reason.clone().unwrap_or_default()));
            (seen == wanted).then_some(())
        })
        .await
        .unwrap();
    }

    /// Waits for an event with `reason` whose note contains `text`; returns the note.
    async fn await_event(&self, reason: &str, text: &str) -> String {
        eventually(&format!("a {reason} event saying {text:?}"), PATIENCE, || async {
            let events = self.events.list(&ListParams::default()).await.ok()?;
            events
                .items
                .into_iter()
                .filter(|e| e.reason.as_deref() == Some(reason))
                .filter_map(|e| e.note)
                .find(|note| note.contains(text))
        })
        .await
        .unwrap_or_else(|error| {
            let seen: Vec<_> = futures::executor::block_on(self.events.list(&ListParams::default()))
                .map(|l| l.items.into_iter().map(|e| (e.reason, e.note)).collect())
                .unwrap_or_default();
            panic!("{error}; events: {seen:#?}")
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_paused_on_a_full_disk_is_shown_and_resumed_once_there_is_room() {
    let h = Harness::start().await;

    h.fail_write(true);
    h.await_paused(Some(("True", "PausedIOError"))).await;
    let warning = h.await_event("IOerror", "VM Paused due to not enough space on volume: data.").await;
    assert!(warning.contains(&format!("{} has 1.0 MiB free", h._dir.path().display())), "{warning}");

    // Not enough room (the margin is 64 MiB): it stays paused, checked a few times meanwhile.
    h.free.store(63 * MIB, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(h.conts(), 0, "resumed without room");

    h.free.store(64 * MIB, Ordering::SeqCst);
    h.await_paused(None).await;
    assert_eq!(h.conts(), 1);
    h.await_event("Resumed", "has room again").await;
    assert_eq!(h.vm.facts().pause, PauseState::Running);
    h.vm.abort_tasks().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_into_a_full_disk_stays_paused_and_is_tried_again() {
    let h = Harness::start().await;
    h.free.store(100 * MIB, Ordering::SeqCst);
    // QEMU's answer to `cont` while the guest's retried write still does not fit.
    h.fake.set_behavior_once("cont", Behavior::Reply(json!({})));

    h.fail_write(true);
    eventually("a first resume", PATIENCE, || async { (h.conts() == 1).then_some(()) }).await.unwrap();
    h.fake.emit_event("RESUME", Value::Null);
    h.fail_write(true);
    eventually("a second pause", PATIENCE, || async {
        h.vm.facts().pause.io_error().filter(|p| p.episode == 2).map(drop)
    })
    .await
    .unwrap();
    h.await_paused(Some(("True", "PausedIOError"))).await;

    // The next try works (the fake's `cont` resumes for real now).
    eventually("a second resume", PATIENCE, || async { (h.conts() == 2).then_some(()) }).await.unwrap();
    h.await_paused(None).await;
    h.vm.abort_tasks().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_pause_is_never_undone_and_a_user_may_unpause_an_io_error() {
    let h = Harness::start().await;
    h.free.store(100 * MIB, Ordering::SeqCst);

    h.vm.user_pause().await.unwrap();
    h.await_paused(Some(("True", "PausedByUser"))).await;
    assert!(matches!(h.vm.user_pause().await, Err(PauseError::AlreadyPaused)));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(h.conts(), 0, "the agent resumed a user's pause");
    h.vm.user_unpause().await.unwrap();
    h.await_paused(None).await;

    // An error the agent cannot wait out (EIO) waits for a user, who may resume it.
    h.fail_write(false);
    h.await_paused(Some(("True", "PausedIOError"))).await;
    h.await_event("IOerror", "VM Paused due to IO error at the volume: data.").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(h.conts(), 1, "the agent resumed a pause that was not ENOSPC");
    h.vm.user_unpause().await.unwrap();
    h.await_paused(None).await;
    assert!(matches!(h.vm.user_unpause().await, Err(PauseError::NotPaused)));
    h.vm.abort_tasks().await;
}
