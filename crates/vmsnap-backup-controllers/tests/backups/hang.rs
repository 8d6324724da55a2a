//! A backup whose S3 server stops answering mid-upload (suspended: connections open, requests
//! hang, as behind a network that drops packets) fails within a bound, naming the endpoint, instead
//! of hanging; once the server answers again the next backup succeeds.

use std::time::{Duration, Instant};

use kube::api::Api;
use vmsnap_api::backup::VirtualMachineRepositoryBackup;
use vmsnap_api::snapshot::find_condition;
use vmsnap_testing::await_value;

use crate::s3::{backup_held_mid_upload, s3_repository_and_vm_with_distinct_chunks};

/// Distinct chunks written, so that the upload is still going when the server is suspended.
const WRITTEN_CHUNKS: u64 = 64;

/// How long a backup may take to give up on a server that does not answer: the request time limit
/// (30 s) and the retries' time limit (20 s) of `vmsnap_backup::S3_TIMEOUT` and
/// `S3_RETRY_TIMEOUT`, for the upload and then for the lease's release, with room for a slow run.
const GIVE_UP_BOUND: Duration = Duration::from_secs(200);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_whose_s3_server_hangs_fails_in_bounded_time_naming_the_endpoint() {
    let Some((seaweed, env)) = s3_repository_and_vm_with_distinct_chunks(WRITTEN_CHUNKS).await else {
        return;
    };
    backup_held_mid_upload(&env, &seaweed, "b1").await;
    let hung = Instant::now();
    let api: Api<VirtualMachineRepositoryBackup> = env.api();
    let failed = await_value(&api, "b1", GIVE_UP_BOUND, |b| {
        let status = b.status.as_ref()?;
        match status.phase.as_deref() {
            Some("Failed") => Some(Ok(status.clone())),
            Some("Succeeded") => Some(Err(())),
            _ => None,
        }
    })
    .await;
    let gave_up_after = hung.elapsed();
    seaweed.resume();
    let status = failed
        .unwrap_or_else(|e| panic!("the backup did not fail within {GIVE_UP_BOUND:?}: {e}"))
        .expect("the backup cannot succeed while its server is suspended");
    let error = status.error.and_then(|e| e.message).unwrap_or_default();
    assert!(error.contains(&seaweed.endpoint), "the error names the endpoint: {error}");
    let failure = find_condition(&status.conditions, "Failure").unwrap();
    assert!(failure.is_true(), "{failure:?}");
    eprintln!("a suspended S3 server failed the backup after {gave_up_after:?}: {error}");

    // The server answers again: the next backup succeeds.
    env.backup("b2", "main", "VirtualMachine/vm").await;
    env.await_succeeded("b2").await;
}
