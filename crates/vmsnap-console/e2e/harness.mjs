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
  /// A scenario called `name` in a fresh 1280×800 page of Debian's Chromium, given at most
  /// `minutes` before a watchdog closes the browser. The page's script errors are collected.
  static async open(name, cfg, minutes) {
    const browser = await launch(cfg.chromium);
    const watchdog = setTimeout(async () => {
      console.error(`${name}: the scenario took more than ${minutes} minutes; giving up`);
      await browser.close().catch(() => {});
      process.exit(1);
    }, minutes * 60 * 1000);
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    page.setDefaultTimeout(15000);
    const s = new Scenario(page, cfg.screenshots);
    Object.assign(s, { name, browser, watchdog, pageErrors: [] });
    page.on('pageerror', (err) => s.pageErrors.push(err.message));
    page.on('console', (msg) => {
      // A refused request is logged by Chromium itself; the console shows it in words.
      if (msg.type() === 'error' && !/Failed to load resource/.test(msg.text())) s.pageErrors.push(msg.text());
    });
    return s;
  }

  constructor(page, screenshots) {
    this.page = page;
    this.screenshots = screenshots;
    this.count = 0;
    this.shots = 0;
    this.started = Date.now();
    mkdirSync(screenshots, { recursive: true });
    for (const file of readdirSync(screenshots)) if (file.endsWith('.png')) rmSync(join(screenshots, file));
  }

  /// Logs in on the login page with `token` (Enter submits) and marks the page, so that `run` can
  /// tell it was never reloaded (a reload would lose the mark).
  async logIn(token) {
    await this.page.getByLabel('Bearer token').fill(token);
    await this.page.getByLabel('Bearer token').press('Enter');
    await this.page.getByRole('heading', { name: 'VirtualMachines', level: 1 }).waitFor();
    await this.page.evaluate(() => {
      window.__noReload = true;
    });
  }

  /// Runs `steps`, then checks that the page was never reloaded and reported no script errors;
  /// prints the summary, or the failure (and sets the exit code), and closes the browser.
  async run(steps) {
    try {
      await steps();
      await this.step('the page was never reloaded and reported no script errors', async () => {
        check(await this.page.evaluate(() => window.__noReload === true), 'the page was not reloaded');
        check(this.pageErrors.length === 0, `no script errors: ${this.pageErrors.join(' | ')}`);
      });
      console.log(`${this.name}: ${this.count} steps passed in ${((Date.now() - this.started) / 1000).toFixed(1)} s; ${this.shots} screenshots in ${this.screenshots}`);
    } catch (err) {
      console.error(err instanceof StepFailed ? err.message : `${this.name}: ${err.stack || err}`);
      process.exitCode = 1;
    } finally {
      clearTimeout(this.watchdog);
      await this.browser.close();
    }
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
