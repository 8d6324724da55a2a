//! The backup controller (being written: see the crate's documentation for what it does).

use std::sync::Arc;

use crate::Context;

/// Runs the backup controller until the task is aborted.
pub(crate) async fn run(ctx: Arc<Context>) {
    let _ = ctx;
    std::future::pending::<()>().await
}
