//! Shared test harness: embedded server on 127.0.0.1:0, fixtures, await helpers, kubectl runner.
