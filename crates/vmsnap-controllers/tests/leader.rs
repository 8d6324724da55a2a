//! Leader election on a Lease: one of two replicas leads; when it stops renewing, the other takes over.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use vmsnap_controllers::leader::{Attempt, LeaseConfig, run_elected, try_acquire};
use vmsnap_testing::{TestServer, eventually};

fn config(identity: &str) -> LeaseConfig {
    LeaseConfig {
        namespace: "default".into(),
        name: "vmsnap-controllers".into(),
        identity: identity.into(),
        duration: Duration::from_secs(2),
        renew_every: Duration::from_millis(300),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_and_the_other_takes_over_when_it_stops() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    assert_eq!(try_acquire(&client, &config("a")).await.unwrap(), Attempt::Leading);
    assert_eq!(try_acquire(&client, &config("b")).await.unwrap(), Attempt::Following("a".into()));
    assert_eq!(try_acquire(&client, &config("a")).await.unwrap(), Attempt::Leading, "the holder renews");

    let leading_a = Arc::new(AtomicUsize::new(0));
    let leading_b = Arc::new(AtomicUsize::new(0));
    let replica = |name: &'static str, flag: Arc<AtomicUsize>| {
        let client = client.clone();
        tokio::spawn(run_elected(client, config(name), move || {
            let flag = flag.clone();
            async move {
                flag.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<()>().await
            }
        }))
    };
    let a = replica("a", leading_a.clone());
    let b = replica("b", leading_b.clone());
    eventually("replica a to lead", Duration::from_secs(10), || async {
        (leading_a.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(leading_b.load(Ordering::SeqCst), 0, "two leaders at once");
    a.abort();
    eventually("replica b to take over after the lease expires", Duration::from_secs(10), || async {
        (leading_b.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await
    .unwrap();
    b.abort();
}
