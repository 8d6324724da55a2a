//! The freeze state machine against the fake guest agent.

use std::path::Path;

use serde_json::json;
use vmsnap_qemu::client::QgaOptions;
use vmsnap_qemu::fake::{Behavior, FakeQga};

use super::*;

const TIMEOUTS: FreezeTimeouts = FreezeTimeouts {
    freeze: Duration::from_millis(300),
    late_answer: Duration::from_secs(3),
    thaw: Duration::from_secs(5),
    status: Duration::from_millis(500),
};

fn freezer(agent: &FakeQga, dir: &Path) -> Arc<Freezer> {
    let qga = Arc::new(QgaClient::new(agent.path(), QgaOptions::default()));
    Freezer::new(qga, dir.join("freeze.json"), TIMEOUTS)
}

fn frozen(agent: &FakeQga) -> bool {
    agent.with_state(|state| state.frozen)
}

fn count(agent: &FakeQga, command: &str) -> usize {
    agent.received_names().iter().filter(|name| *name == command).count()
}

async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(Instant::now() < deadline, "{what} did not happen within 5 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_second_freeze_is_a_no_op_and_unfreeze_cancels_the_auto_thaw() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeQga::start(dir.path().join("qga.sock")).unwrap();
    let freezer = freezer(&agent, dir.path());

    let first = freezer.freeze(None, Duration::from_millis(300)).await.unwrap();
    let second = freezer.freeze(None, Duration::from_secs(60)).await.unwrap();
    let record = FreezeRecord::read(&dir.path().join("freeze.json")).unwrap().unwrap();
    let thaw = freezer.unfreeze().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    assert_eq!(first.outcome, FreezeOutcome::Frozen { filesystems: 1 });
    assert_eq!(second.outcome, FreezeOutcome::AlreadyFrozen);
    assert_eq!(second.thaw_deadline, first.thaw_deadline, "the first deadline is kept");
    assert_eq!(record.deadline(), first.thaw_deadline);
    assert_eq!(thaw.filesystems, 1);
    assert_eq!(count(&agent, "guest-fsfreeze-freeze"), 1);
    assert_eq!(count(&agent, "guest-fsfreeze-thaw"), 1, "the cancelled timer thawed again");
    assert!(!dir.path().join("freeze.json").exists());
}

#[tokio::test]
async fn the_auto_thaw_fires_at_the_deadline_and_removes_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeQga::start(dir.path().join("qga.sock")).unwrap();
    let freezer = freezer(&agent, dir.path());
    let started = Instant::now();

    freezer.freeze(None, Duration::from_millis(400)).await.unwrap();
    assert!(frozen(&agent));
    eventually("the auto-thaw", || !frozen(&agent)).await;

    assert!(started.elapsed() >= Duration::from_millis(400), "thawed after {:?}", started.elapsed());
    eventually("the record removal", || !dir.path().join("freeze.json").exists()).await;
}

#[tokio::test]
async fn an_agent_error_carries_the_agents_message_and_leaves_no_record() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeQga::start(dir.path().join("qga.sock")).unwrap();
    agent.set_behavior("guest-fsfreeze-freeze", Behavior::generic_error("fsfreeze hook /etc/qemu/x failed"));
    let freezer = freezer(&agent, dir.path());

    let error = freezer.freeze(None, Duration::from_secs(60)).await.unwrap_err();

    let FreezeError::Agent(agent_error) = &error else { panic!("{error:?}") };
    assert_eq!(agent_error.message(), "fsfreeze hook /etc/qemu/x failed");
    assert!(!dir.path().join("freeze.json").exists());
}

#[tokio::test]
async fn a_freeze_answered_after_the_caller_gave_up_is_never_repeated_and_thawed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeQga::start(dir.path().join("qga.sock")).unwrap();
    // A freeze hook that hangs: the agent freezes and answers long after the caller's wait.
    let late = Behavior::delayed(Duration::from_secs(1), Behavior::Reply(json!(1)));
    agent.set_behavior_once("guest-fsfreeze-freeze", late);
    let freezer = freezer(&agent, dir.path());
    let started = Instant::now();

    let error = freezer.freeze(None, Duration::from_secs(60)).await.unwrap_err();
    let took = started.elapsed();
    let retry = freezer.freeze(None, Duration::from_secs(60)).await.unwrap_err();
    let unfreeze = freezer.unfreeze().await;

    assert!(matches!(error, FreezeError::Unanswered { waited } if waited == TIMEOUTS.freeze), "{error:?}");
    assert!(error.to_string().contains("a freeze hook in the guest may hang"), "{error}");
    assert!(took < TIMEOUTS.freeze + Duration::from_millis(200), "took {took:?}");
    assert!(matches!(retry, FreezeError::PreviousFreezeUnanswered { .. }), "{retry:?}");
    assert!(unfreeze.is_ok(), "an unfreeze is satisfied by the thaw that follows the late answer");
    assert!(freezer.unanswered().await);
    // The agent answers at 1 s (frozen), and the thaw follows at once.
    eventually("the late freeze", || frozen(&agent) || count(&agent, "guest-fsfreeze-thaw") > 0).await;
    eventually("the thaw", || !frozen(&agent)).await;
    assert!(started.elapsed() < Duration::from_millis(1500), "thawed only after {:?}", started.elapsed());
    assert_eq!(count(&agent, "guest-fsfreeze-freeze"), 1, "a freeze was repeated behind the unanswered one");
    eventually("the record removal", || !dir.path().join("freeze.json").exists()).await;
    assert!(!freezer.unanswered().await);
    let again = freezer.freeze(None, Duration::from_secs(60)).await.unwrap();
    assert_eq!(again.outcome, FreezeOutcome::Frozen { filesystems: 1 });
}

#[tokio::test]
async fn the_caller_learns_of_a_hanging_freeze_before_the_auto_thaw_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeQga::start(dir.path().join("qga.sock")).unwrap();
    let late = Behavior::delayed(Duration::from_millis(600), Behavior::Reply(json!(1)));
    agent.set_behavior_once("guest-fsfreeze-freeze", late);
    let freezer = freezer(&agent, dir.path());

    let error = freezer.freeze(None, Duration::from_millis(100)).await.unwrap_err();

    assert!(
        matches!(error, FreezeError::Unanswered { waited } if waited == Duration::from_millis(80)),
        "{error:?}"
    );
    eventually("the thaw after the late freeze", || count(&agent, "guest-fsfreeze-thaw") == 1).await;
    assert!(!frozen(&agent));
}

#[tokio::test]
async fn a_freeze_that_never_completes_is_undone_and_blocks_new_freezes_until_then() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeQga::start(dir.path().join("qga.sock")).unwrap();
    // The agent freezes, but answers only after the late-answer patience too.
    let late = Behavior::delayed(Duration::from_secs(4), Behavior::Reply(json!(1)));
    agent.set_behavior_once("guest-fsfreeze-freeze", late);
    agent.with_state(|state| state.frozen = true);
    let freezer = freezer(&agent, dir.path());

    let error = freezer.freeze(None, Duration::from_secs(60)).await.unwrap_err();
    let retry = freezer.freeze(None, Duration::from_secs(60)).await.unwrap_err();

    assert!(matches!(error, FreezeError::Unanswered { .. }), "{error:?}");
    assert!(matches!(retry, FreezeError::PreviousFreezeUnanswered { .. }), "{retry:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while frozen(&agent) {
        assert!(Instant::now() < deadline, "never thawed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eventually("the record removal", || !dir.path().join("freeze.json").exists()).await;
    let again = freezer.freeze(None, Duration::from_secs(60)).await.unwrap();
    assert_eq!(again.outcome, FreezeOutcome::Frozen { filesystems: 1 });
}

#[tokio::test]
async fn a_failed_thaw_keeps_retrying_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeQga::start(dir.path().join("qga.sock")).unwrap();
    let freezer = freezer(&agent, dir.path());
    freezer.freeze(None, Duration::ZERO).await.unwrap();
    agent.set_behavior_once("guest-fsfreeze-thaw", Behavior::generic_error("thaw failed"));

    let error = freezer.unfreeze().await.unwrap_err();

    assert_eq!(error.to_string(), "the guest agent failed guest-fsfreeze-thaw: thaw failed");
    eventually("the background thaw", || !frozen(&agent)).await;
    eventually("the record removal", || !dir.path().join("freeze.json").exists()).await;
}

#[tokio::test]
async fn recovery_thaws_an_overdue_freeze_and_rearms_a_pending_one() {
    let dir = tempfile::tempdir().unwrap();
    let agent = FakeQga::start(dir.path().join("qga.sock")).unwrap();
    let record_path = dir.path().join("freeze.json");
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    FreezeRecord::new(an_hour_ago, Duration::from_secs(10), None).write(&record_path).unwrap();
    agent.with_state(|state| state.frozen = true);

    freezer(&agent, dir.path()).recover().await;

    assert!(!frozen(&agent), "an overdue freeze was not thawed at once");
    assert!(!record_path.exists());

    FreezeRecord::new(SystemTime::now(), Duration::from_millis(500), None).write(&record_path).unwrap();
    agent.with_state(|state| state.frozen = true);
    let freezer = freezer(&agent, dir.path());
    freezer.recover().await;
    assert!(frozen(&agent), "a pending freeze was thawed early");
    eventually("the re-armed auto-thaw", || !frozen(&agent)).await;
}
