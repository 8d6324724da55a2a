// The small harness of the browser scenario: named steps that stop at the first failure (with a
// screenshot), waits with timeouts, kubectl, and Chromium's launch settings for this machine.

import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

/// Settings from the environment (the Rust test sets them).
export function settings() {
  const need = (name) => {
    const value = process.env[name];
    if (!value) {
      console.error(`console.test: set ${name} (the Rust test crates/vmsnap-server/tests/console_browser.rs does)`);
      process.exit(2);
    }
    return value;
  };
  return {
    url: need('CONSOLE_URL'),
    token: need('VMSNAP_TOKEN'),
    kubeconfig: need('KUBECONFIG'),
    screenshots: need('SCREENSHOT_DIR'),
    namespace: process.env.NAMESPACE || 'default',
    vm: process.env.VM_NAME || 'demo',
    partialVm: process.env.VM_PARTIAL || 'legacy',
    chromium: process.env.CHROMIUM || '/usr/bin/chromium',
    readyTimeout: Number(process.env.READY_TIMEOUT_MS || 60000),
  };
}

/// Starts Debian's Chromium (playwright's own browser builds cannot be downloaded here).
export function launch(executablePath) {
  return chromium.launch({
    executablePath,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

export class StepFailed extends Error {}

/// Runs the scenario's steps in order; the first failure stops everything with its step's name.
export class Scenario {
  constructor(page, screenshots) {
    this.page = page;
    this.screenshots = screenshots;
    this.count = 0;
    this.shots = 0;
    this.started = Date.now();
    mkdirSync(screenshots, { recursive: true });
    for (const file of readdirSync(screenshots)) if (file.endsWith('.png')) rmSync(join(screenshots, file));
  }

  async step(name, fn) {
    this.count += 1;
    const label = `step ${this.count}: ${name}`;
    const started = Date.now();
    process.stdout.write(`▶ ${label}\n`);
    try {
      await fn();
    } catch (err) {
      const file = join(this.screenshots, `FAILED-step-${String(this.count).padStart(2, '0')}.png`);
      await this.page.screenshot({ path: file, fullPage: true }).catch(() => {});
      throw new StepFailed(`${label} failed: ${err.message}\n  (screenshot of the page: ${file})`);
    }
    process.stdout.write(`  ok (${Date.now() - started} ms)\n`);
  }

  /// Saves a screenshot of the page as NN-name.png.
  async screenshot(name, { fullPage = false } = {}) {
    this.shots += 1;
    const file = join(this.screenshots, `${String(this.shots).padStart(2, '0')}-${name}.png`);
    await this.page.screenshot({ path: file, fullPage });
    process.stdout.write(`  screenshot ${file}\n`);
  }
}

/// Waits until `probe()` returns a truthy value; fails naming `what` (and the last value seen).
export async function until(what, probe, timeout = 15000) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await probe();
      if (last) return last;
    } catch (err) {
      last = err.message;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what} (last seen: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/// Waits until the text of `locator` matches `pattern`.
export async function expectText(locator, pattern, timeout = 15000) {
  return until(`text matching ${pattern}`, async () => {
    const text = (await locator.innerText({ timeout: 1000 })).replace(/\s+/g, ' ');
    return pattern.test(text) ? text : false;
  }, timeout);
}

/// Fails unless `condition` holds.
export function check(condition, message) {
  if (!condition) throw new Error(message);
}

/// Runs kubectl with the server's kubeconfig; returns its standard output.
export function kubectlRunner(kubeconfig) {
  const cache = mkdtempSync(join(tmpdir(), 'vmsnap-console-kubectl-'));
  return (args, input) =>
    execFileSync('kubectl', [...args, `--cache-dir=${cache}`], {
      env: { ...process.env, KUBECONFIG: kubeconfig },
      input,
      encoding: 'utf8',
      stdio: ['pipe', 'pipe', 'pipe'],
    });
}
