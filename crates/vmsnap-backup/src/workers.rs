//! Where the engine's CPU work runs: hashing, compressing and sealing chunks (a backup) and
//! opening and checking them (a restore or a verify), on a few threads of its own.
//!
//! A backup (and a verify) reads beside running VMs, on the same CPUs, and must not slow them: its
//! work runs at a lower scheduling priority than the rest of the process (nice [`NICE`]), so that
//! it takes the CPU time the guests leave rather than sharing it evenly with them. A restore's
//! work runs at the process's own priority: its VM is not running yet, a user waits on it, and
//! it is one half of a pipeline whose other half (the object store answering its reads) runs at
//! normal priority; at nice 10 a restore from a local SeaweedFS took a fifth longer.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Mutex, OnceLock};

/// The nice value of the background workers (0 is the default, 19 the lowest priority): a thread
/// at 10 gets about a tenth of the CPU that a thread at 0 wants.
pub(crate) const NICE: i32 = 10;
/// How many workers at most in each pool (one per CPU up to this).
const MAX_WORKERS: usize = 8;

/// Which workers run a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Priority {
    /// Below the guests (nice [`NICE`]): backups and verifies, which run beside running VMs.
    Background,
    /// The process's own: restores.
    Foreground,
}

impl Priority {
    fn thread_name(self) -> &'static str {
        match self {
            Priority::Background => "backup-worker",
            Priority::Foreground => "restore-worker",
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The queue of the workers of `priority`, started on first use.
fn queue(priority: Priority) -> &'static Mutex<Sender<Job>> {
    static BACKGROUND: OnceLock<Mutex<Sender<Job>>> = OnceLock::new();
    static FOREGROUND: OnceLock<Mutex<Sender<Job>>> = OnceLock::new();
    let pool = match priority {
        Priority::Background => &BACKGROUND,
        Priority::Foreground => &FOREGROUND,
    };
    pool.get_or_init(|| {
        let (sender, receiver) = channel::<Job>();
        let receiver: &'static Mutex<Receiver<Job>> = Box::leak(Box::new(Mutex::new(receiver)));
        let count = std::thread::available_parallelism().map_or(2, |n| n.get()).min(MAX_WORKERS);
        for index in 0..count {
            std::thread::Builder::new()
                .name(format!("{}-{index}", priority.thread_name()))
                .spawn(move || work(priority, receiver))
                .expect("start an engine worker thread");
        }
        Mutex::new(sender)
    })
}

/// A worker: a background one lowers its own priority (on Linux the nice value is a thread's),
/// then runs jobs.
fn work(priority: Priority, jobs: &'static Mutex<Receiver<Job>>) {
    if priority == Priority::Background
        && let Err(error) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), NICE)
    {
        tracing::warn!(%error, "a backup worker keeps its priority: it competes with the guests as an equal");
    }
    loop {
        let job = jobs.lock().expect("the queue is not poisoned").recv();
        match job {
            // A job that panics drops its result's sender (its caller sees it); the worker stays.
            Ok(job) => drop(std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))),
            Err(_) => return,
        }
    }
}

/// Runs `job` on a worker of `priority` and returns its result.
pub(crate) async fn run<T: Send + 'static>(
    priority: Priority,
    job: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let boxed: Job = Box::new(move || {
        let _ = sender.send(job());
    });
    queue(priority)
        .lock()
        .expect("the queue is not poisoned")
        .send(boxed)
        .expect("the workers run for the process's life");
    receiver.await.expect("a job runs to its end (the engine's jobs do not panic)")
}

#[cfg(test)]
mod tests {
    use super::Priority;

    async fn nice_and_name(priority: Priority) -> (i32, String) {
        super::run(priority, || {
            let nice = rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
            (nice, std::thread::current().name().unwrap_or_default().to_owned())
        })
        .await
    }

    #[tokio::test]
    async fn background_jobs_run_below_the_process_and_foreground_ones_at_its_priority() {
        let own = rustix::process::getpriority_process(None).unwrap();
        let (nice, name) = nice_and_name(Priority::Background).await;
        assert_eq!(nice, super::NICE);
        assert!(name.starts_with("backup-worker-"), "{name}");
        let (nice, name) = nice_and_name(Priority::Foreground).await;
        assert_eq!(nice, own, "a restore's work keeps the process's priority");
        assert!(name.starts_with("restore-worker-"), "{name}");
    }
}
