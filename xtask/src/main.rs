//! Developer tasks, run through `./x TASK` (which first installs what is missing) or `cargo xtask TASK`.
//!
//! Every task prints the commands it runs, so what CI does can be repeated by hand.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

const HELP: &str = "\
cargo xtask TASK

Tasks:
  up [ARGS...]   build vmsnap (release) and the test guest image, then run `vmsnap serve ARGS...`
  test           what CI runs: rustfmt check, clippy -D warnings, the whole test suite, browser tests,
                 a short run of the API server's fuzz targets
  bench [ARGS]   the benchmark command (release build): vmsnap against its baselines, as ratios
  help           this text
";

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_else(|| "help".into());
    let rest: Vec<String> = args.collect();
    match task.as_str() {
        "up" => up(rest.strip_prefix(&["--".to_string()]).unwrap_or(&rest)),
        "test" => test(),
        "bench" => bench(&rest),
        "help" | "--help" | "-h" => {
            print!("{HELP}");
            Ok(())
        }
        other => bail!("unknown task `{other}`; run `cargo xtask help` for the list"),
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace root").to_path_buf()
}

/// The cargo target directory (`CARGO_TARGET_DIR` or `<root>/target`).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"))
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: $ {}", render(cmd));
    let status =
        cmd.current_dir(root()).status().with_context(|| format!("could not start {}", render(cmd)))?;
    if !status.success() {
        bail!("`{}` failed with {status}", render(cmd));
    }
    Ok(())
}

fn render(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Cargo for a one-shot build of every target, as CI does: no incremental state, which would
/// only add gigabytes beside the hundred test binaries on a disk the tests' own images need
/// (a CI run once ran out of space compiling the tests).
fn one_shot_cargo() -> Command {
    let mut cargo = cargo();
    cargo.env("CARGO_INCREMENTAL", "0");
    cargo
}

/// Prints the free space where the build goes, so that a run that fills the disk says how much
/// it started with.
fn report_free_space() {
    let target = target_dir();
    let dir = if target.exists() { target } else { root() };
    match Command::new("df").arg("-h").arg(&dir).output() {
        Ok(out) => {
            eprint!("xtask: free space for {}:\n{}", dir.display(), String::from_utf8_lossy(&out.stdout))
        }
        Err(error) => eprintln!("xtask: could not run df: {error}"),
    }
}

/// Builds vmsnap in release mode, prepares the guest image, and runs `vmsnap serve` in the foreground.
fn up(serve_args: &[String]) -> Result<()> {
    run(cargo().args(["build", "--release", "--package", "vmsnap-cli", "--bin", "vmsnap"]))?;
    let vmsnap = target_dir().join("release/vmsnap");
    run(Command::new(&vmsnap).args(["guest-image", "build"]))?;
    let err = exec(Command::new(&vmsnap).arg("serve").args(serve_args));
    Err(err).context("could not run vmsnap serve")
}

fn exec(cmd: &mut Command) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    eprintln!("xtask: $ {}", render(cmd));
    cmd.exec()
}

/// Runs exactly what CI runs.
fn test() -> Result<()> {
    report_free_space();
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(one_shot_cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    // The benchmark is linked into `vmsnap` only with this feature; check that build too.
    let bench_clippy = ["clippy", "--package", "vmsnap-cli", "--features", "bench", "--", "-D", "warnings"];
    run(one_shot_cargo().args(bench_clippy))?;
    run(one_shot_cargo().args(["build", "--workspace", "--bins"]))?;
    let guest_cache = target_dir().join("guest-cache");
    run(Command::new(target_dir().join("debug/vmsnap"))
        .arg("guest-image")
        .arg("build")
        .arg("--cache-dir")
        .arg(&guest_cache))?;
    run(one_shot_cargo()
        .args(["test", "--workspace", "--no-fail-fast"])
        // Every prerequisite is required (tests fail when one is missing); make sure a
        // developer's opt-out does not leak into CI.
        .env_remove("VMSNAP_ALLOW_SKIP")
        .env("VMSNAP_GUEST_CACHE", &guest_cache))?;
    fuzz_smoke()?;
    eprintln!("xtask: all checks passed");
    Ok(())
}

/// The API server's fuzz targets (`crates/vmsnap-apiserver/fuzz`), each built and run briefly.
const FUZZ_TARGETS: &[&str] = &["request_paths", "selectors", "patches", "validation", "protobuf", "bodies"];

/// Seconds each fuzz target runs in CI: together well under two minutes.
const FUZZ_SECONDS: u32 = 12;

/// Builds every fuzz target and runs each for [`FUZZ_SECONDS`]. cargo-fuzz needs nightly compiler
/// features, which `RUSTC_BOOTSTRAP=1` enables on the stable toolchain; it is installed only when
/// missing. No sanitizer: the code under test forbids `unsafe`, and the runs look for panics,
/// endless loops (libFuzzer's timeout) and runaway memory.
fn fuzz_smoke() -> Result<()> {
    let installed = cargo()
        .args(["fuzz", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        run(cargo().args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let fuzz_dir = root().join("crates/vmsnap-apiserver/fuzz");
    for target in FUZZ_TARGETS {
        run(cargo()
            // A dev build: the smoke run is short, and an optimized build of the API server's
            // dependencies would take most of CI's time.
            .args(["fuzz", "run", "--dev", "--sanitizer", "none", "--fuzz-dir"])
            .arg(&fuzz_dir)
            .arg(target)
            .arg("--")
            .arg(format!("-max_total_time={FUZZ_SECONDS}"))
            .args(["-timeout=10", "-rss_limit_mb=2048"])
            .env("RUSTC_BOOTSTRAP", "1"))?;
    }
    Ok(())
}

fn bench(args: &[String]) -> Result<()> {
    run(cargo().args([
        "build",
        "--release",
        "--package",
        "vmsnap-cli",
        "--bin",
        "vmsnap",
        "--features",
        "bench",
    ]))?;
    run(Command::new(target_dir().join("release/vmsnap")).arg("bench").args(args))
}
