//! Where the engine's CPU work runs: hashing, compressing and sealing chunks (a backup) and
//! opening and checking them (a restore or a verify). A backup reads a running VM's disks on the
//! same CPUs as the VM, and must not slow it: the work runs on a few threads of their own with a
//! lower scheduling priority than the rest of the process (nice [`NICE`]), so that the backup
//! takes the CPU time the guests leave, rather than sharing it evenly with them.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Mutex, OnceLock};

/// The nice value of the workers (0 is the default, 19 the lowest priority): a thread at 10 gets
/// about a tenth of the CPU that a thread at 0 wants.
pub(crate) const NICE: i32 = 10;

/// How many workers at most (one per CPU up to this).
const MAX_WORKERS: usize = 8;

type Job = Box<dyn FnOnce() + Send>;

/// The queue of the workers, started on first use.
fn queue() -> &'static Mutex<Sender<Job>> {
    static QUEUE: OnceLock<Mutex<Sender<Job>>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (sender, receiver) = channel::<Job>();
        let receiver: &'static Mutex<Receiver<Job>> = Box::leak(Box::new(Mutex::new(receiver)));
        let count = std::thread::available_parallelism().map_or(2, |n| n.get()).min(MAX_WORKERS);
        for index in 0..count {
            std::thread::Builder::new()
                .name(format!("backup-worker-{index}"))
                .spawn(move || work(receiver))
                .expect("start a backup worker thread");
        }
        Mutex::new(sender)
    })
}

/// A worker: lowers its own priority (on Linux the nice value is a thread's), then runs jobs.
fn work(jobs: &'static Mutex<Receiver<Job>>) {
    if let Err(error) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), NICE) {
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

/// Runs `job` on a worker and returns its result.
pub(crate) async fn run<T: Send + 'static>(job: impl FnOnce() -> T + Send + 'static) -> T {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let boxed: Job = Box::new(move || {
        let _ = sender.send(job());
    });
    queue()
        .lock()
        .expect("the queue is not poisoned")
        .send(boxed)
        .expect("the workers run for the process's life");
    receiver.await.expect("a job runs to its end (the engine's jobs do not panic)")
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn jobs_run_on_workers_of_lower_priority() {
        let (nice, name) = super::run(|| {
            let nice = rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
            (nice, std::thread::current().name().map(str::to_owned))
        })
        .await;
        assert_eq!(nice, super::NICE);
        assert!(name.unwrap().starts_with("backup-worker-"));
    }
}
