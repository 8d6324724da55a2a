// The web console, end to end, as a user drives it: Debian's Chromium against a running vmsnap.
// Only the UI and kubectl are used, so the same scenario runs against `vmsnap serve` with real
// VMs. Settings come from the environment (see harness.mjs); a screenshot of each screen is saved.
//
// Expects: VM_NAME running with a guest agent and only snapshottable disks; VM_PARTIAL stopped,
// with a disk that cannot be snapshotted (e.g. on a StorageClass without a VolumeSnapshotClass);
// no VM named "copy" (the scenario restores VM_NAME as a new VM of that name, then starts it).

import { Scenario, check, expectText, kubectlRunner, settings, until } from './harness.mjs';

const cfg = settings();
const kubectl = kubectlRunner(cfg.kubeconfig);
const { namespace: ns, vm, partialVm } = cfg;
const copyVm = 'copy';
const READY = cfg.readyTimeout;
/// How long a test guest may take to boot under TCG.
const BOOT = 2 * READY;

const s = await Scenario.open('console.test', cfg, 4.5);
const { page } = s;

const dialog = (name) => page.getByRole('dialog', { name });
const snapshotRow = (name) => page.locator(`table.table-snapshots tbody tr[data-name="${name}"]`);
const vmRow = (name) => page.locator(`table.table-vms tbody tr[data-name="${name}"]`);
const restoreRow = (name) => page.locator(`table.table-restores tbody tr[data-name="${name}"]`);

async function openVm(name) {
  await page.getByRole('link', { name: 'VirtualMachines', exact: true }).first().click();
  await vmRow(name).getByRole('link', { name, exact: true }).click();
  await expectText(page.getByRole('heading', { level: 1 }), new RegExp(`^${name}\\b`));
}

async function openSnapshotsTab() {
  await page.getByRole('tab', { name: 'Snapshots' }).click();
  await until('the Snapshots tab to be selected', async () => (await page.getByRole('tab', { name: 'Snapshots' }).getAttribute('aria-selected')) === 'true');
}

async function waitReady(name) {
  await until(`snapshot ${name} to be ready`, async () => (await snapshotRow(name).getAttribute('data-ready', { timeout: 1000 })) === 'true', READY);
}

/// Records every state the restore dialog `d` shows (its data-restore-state) from now on.
async function recordRestoreStates(d) {
  await d.evaluate((el) => {
    el.__states = [];
    new MutationObserver(() => {
      const state = el.dataset.restoreState;
      if (state && el.__states[el.__states.length - 1] !== state) el.__states.push(state);
    }).observe(el, { attributes: true, attributeFilter: ['data-restore-state'] });
  });
}

/// Waits until the restore shown in `d` is complete; checks that its progress was shown first.
async function restoreStates(d) {
  await until('the restore to complete', async () => (await d.getAttribute('data-restore-state')) === 'Complete', READY);
  const states = await d.evaluate((el) => el.__states);
  check(states[0] === 'In progress' && states[states.length - 1] === 'Complete', `the dialog showed the progress, then completion: ${states.join(' → ')}`);
  process.stdout.write(`  restore progress shown: ${states.join(' → ')}\n`);
  return states;
}

async function rowMenu(snapshot, item) {
  await snapshotRow(snapshot).getByRole('button', { name: `Actions for snapshot ${snapshot}` }).click();
  await page.getByRole('menuitem', { name: item }).click();
}

await s.run(async () => {
  await s.step('open the console: the login page asks for the token', async () => {
    await page.goto(cfg.url);
    await page.getByLabel('Bearer token').waitFor();
    check(await page.getByLabel('Bearer token').evaluate((el) => el === document.activeElement), 'the token field has the focus');
    await s.screenshot('login');
  });

  await s.step('a wrong token is refused in words', async () => {
    await page.getByLabel('Bearer token').fill('not-the-token');
    await page.getByRole('button', { name: 'Log in' }).click();
    await expectText(page.getByRole('alert'), /The token was not accepted/);
  });

  await s.step('log in with the token (Enter submits)', async () => {
    await s.logIn(cfg.token);
    check((await page.evaluate(() => sessionStorage.getItem('vmsnap.token'))) === cfg.token, 'the token is kept in sessionStorage');
    check((await page.evaluate(() => localStorage.length)) === 0, 'nothing is kept in localStorage');
  });

  await s.step('the VirtualMachines list shows name, namespace, status and age', async () => {
    await expectText(vmRow(vm), new RegExp(`${vm}\\s+${ns}\\s+Running\\s+\\d+[smhd]`));
    await expectText(vmRow(partialVm), new RegExp(`${partialVm}\\s+${ns}\\s+Stopped`));
    await s.screenshot('vms');
  });

  await s.step('open the VirtualMachine: Overview shows status, guest agent and disks', async () => {
    await openVm(vm);
    check((await page.getByRole('tab', { name: 'Overview' }).getAttribute('aria-selected')) === 'true', 'Overview is the first tab');
    const overview = page.locator('.overview');
    await expectText(overview, /Status\s+Running/);
    await expectText(overview, /Guest agent\s+Connected/);
    const disks = page.locator('table.table-disks tbody tr');
    await until('the disks to be listed', async () => (await disks.count()) >= 1);
    const diskTexts = await disks.allInnerTexts();
    check(diskTexts.every((t) => /Supported/.test(t)), `every disk of ${vm} can be snapshotted: ${diskTexts.join(' | ')}`);
    await s.screenshot('vm-overview');
  });

  await s.step('schedules made with kubectl: the VM lists the ones covering it, the Schedules page all of them', async () => {
    const schedule = (name, spec) =>
      JSON.stringify({ apiVersion: 'schedule.vmsnap.io/v1alpha1', kind: 'VirtualMachineSnapshotSchedule', metadata: { name, namespace: ns }, spec });
    // Suspended, so that no snapshot is taken during the rest of the scenario.
    kubectl(['create', '-f', '-'], schedule('hourly', { vmName: vm, every: '1h', suspend: true, keep: { last: 3, daily: 7 } }));
    kubectl(['create', '-f', '-'], schedule('other-vms', { selector: { matchLabels: { tier: 'none-here' } }, cron: '30 2 * * *', timeZone: 'Europe/Berlin', suspend: true }));
    const covering = page.locator('.schedules-of-vm li');
    await until('the covering schedule to be listed live', async () => (await covering.count()) === 1);
    await expectText(covering.first(), /hourly\s+—\s+every 1h, keeps last 3, daily 7\s+Suspended\s+next run: none while suspended/);
    await s.screenshot('vm-schedules');
    await page.getByRole('link', { name: 'Schedules', exact: true }).first().click();
    await expectText(page.getByRole('heading', { level: 1 }), /^Schedules$/);
    const row = (name) => page.locator(`table.table-schedules tbody tr[data-name="${name}"]`);
    await expectText(row('hourly'), new RegExp(`hourly\\s+${ns}\\s+VM ${vm}\\s+every 1h\\s+last 3, daily 7\\s+Suspended`));
    await expectText(row('other-vms'), /VMs with tier=none-here\s+cron 30 2 \* \* \* \(Europe\/Berlin\)\s+everything\s+Suspended/);
    await s.screenshot('schedules');
    kubectl(['delete', 'vmschedule', 'other-vms', '-n', ns]);
    await row('other-vms').waitFor({ state: 'detached' });
    await openVm(vm);
  });

  await s.step('the Snapshots tab, reached with the arrow keys', async () => {
    await page.getByRole('tab', { name: 'Overview' }).focus();
    await page.keyboard.press('ArrowRight');
    await until('the Snapshots tab to be selected', async () => (await page.getByRole('tab', { name: 'Snapshots' }).getAttribute('aria-selected')) === 'true');
    check(page.url().endsWith('/snapshots'), 'the tab is in the URL');
    await page.getByText('No snapshots of this VirtualMachine yet').waitFor();
    await s.screenshot('snapshots-empty');
  });

  let firstSnapshot = 'first';
  await s.step('take a snapshot through the dialog: default name, disks listed, no warning', async () => {
    await page.getByRole('button', { name: 'Take snapshot' }).click();
    const d = dialog('Take snapshot');
    await d.waitFor();
    const name = await d.getByLabel('Name').inputValue();
    check(name.startsWith(`${vm}-snapshot-`), `the default name is made from the VM's: ${name}`);
    check(await d.getByRole('button', { name: 'Save' }).isEnabled(), 'Save is enabled');
    check(!(await d.getByRole('checkbox').count()), 'there is nothing to acknowledge');
    await d.getByText(/Disks included in this snapshot \(\d+\)/).click();
    check((await d.locator('.disk-list li').count()) >= 1, 'the included disks are listed');
    await s.screenshot('take-snapshot-dialog');
    await d.getByLabel('Name').fill(firstSnapshot);
    await d.getByRole('button', { name: 'Save' }).click();
    await d.waitFor({ state: 'detached' });
  });

  await s.step('the new snapshot shows its progress live until it is Ready', async () => {
    const row = snapshotRow(firstSnapshot);
    await row.waitFor();
    await s.screenshot('snapshot-in-progress');
    await waitReady(firstSnapshot);
    await expectText(row.locator('.cell-status'), /Succeeded/);
    await expectText(row.locator('.cell-indications'), /Online/);
    await expectText(row.locator('.cell-indications'), /Guest agent/);
    const badge = row.locator('[data-indication="Online"]');
    await badge.hover();
    await expectText(badge.getByRole('tooltip'), /Snapshot taken while the VM was running/);
    await s.screenshot('snapshot-ready-indication-message');
  });

  await s.step('a second snapshot with the same name is refused in words', async () => {
    await page.getByRole('button', { name: 'Take snapshot' }).click();
    const d = dialog('Take snapshot');
    await d.getByLabel('Name').fill(firstSnapshot);
    await d.getByRole('button', { name: 'Save' }).click();
    await expectText(d.getByRole('alert'), new RegExp(`A snapshot named ${firstSnapshot} already exists\\. Choose another name\\.`));
    await s.screenshot('snapshot-name-taken');
    await page.keyboard.press('Escape');
    await d.waitFor({ state: 'detached' });
  });

  await s.step('keyboard: a dialog opens with Enter, keeps the focus inside, and Escape closes it', async () => {
    const opener = page.getByRole('button', { name: 'Take snapshot' });
    await opener.focus();
    await page.keyboard.press('Enter');
    const d = dialog('Take snapshot');
    await d.waitFor();
    check(await d.getByLabel('Name').evaluate((el) => el === document.activeElement), 'the name field has the focus');
    for (let i = 0; i < 8; i += 1) {
      await page.keyboard.press('Tab');
      check(await d.evaluate((el) => el.contains(document.activeElement)), `the focus stays in the dialog (after ${i + 1} Tab)`);
    }
    await page.keyboard.press('Shift+Tab');
    check(await d.evaluate((el) => el.contains(document.activeElement)), 'the focus stays in the dialog (Shift+Tab)');
    await page.keyboard.press('Escape');
    await d.waitFor({ state: 'detached' });
    check(await opener.evaluate((el) => el === document.activeElement), 'the focus is back on "Take snapshot"');
  });

  await s.step('a snapshot of a VM with a disk that cannot be included needs the warning acknowledged', async () => {
    await openVm(partialVm);
    await openSnapshotsTab();
    await page.getByRole('button', { name: 'Take snapshot' }).click();
    const d = dialog('Take snapshot');
    const warning = d.getByRole('alert');
    await expectText(warning, /cannot be included/);
    const excluded = await d.locator('.excluded-disks li').allInnerTexts();
    check(excluded.length >= 1 && excluded.every((t) => /: \S/.test(t)), `the warning names each disk and why: ${excluded.join(' | ')}`);
    const ack = d.getByRole('checkbox', { name: 'I am aware of this warning and wish to proceed' });
    check(!(await ack.isChecked()), 'the acknowledgement starts unticked');
    check(await d.getByRole('button', { name: 'Save' }).isDisabled(), 'Save is disabled until the warning is acknowledged');
    await d.getByText(/Disks included in this snapshot/).click();
    await s.screenshot('take-snapshot-warning');
    await ack.check();
    check(await d.getByRole('button', { name: 'Save' }).isEnabled(), 'Save is enabled once acknowledged');
    await d.getByLabel('Name').fill('partial');
    await d.getByRole('button', { name: 'Save' }).click();
    await d.waitFor({ state: 'detached' });
    await waitReady('partial');
    await expectText(snapshotRow('partial').locator('.cell-indications'), /Partial snapshot/);
    await s.screenshot('partial-snapshot');
  });

  await s.step('snapshot details: status, conditions, indications, volumes, backups, events', async () => {
    await openVm(vm);
    await openSnapshotsTab();
    await snapshotRow(firstSnapshot).getByRole('link', { name: firstSnapshot }).click();
    await expectText(page.getByRole('heading', { level: 1 }), new RegExp(`^${firstSnapshot}`));
    const section = (name) => page.getByRole('region', { name });
    await expectText(section('Details'), /Status\s+Succeeded/);
    await expectText(section('Details'), /Ready to use\s+Yes/);
    await expectText(section('Conditions'), /Progressing\s+False/);
    await expectText(section('Conditions'), /Ready\s+True/);
    await expectText(section('Indications'), /Online.*running/);
    await expectText(section('Volumes'), /Included\s+\S+/);
    await until('the volume backups to be ready', async () => {
      const rows = await section('Volume backups').locator('tbody tr').allInnerTexts();
      return rows.length >= 1 && rows.every((t) => /vmsnapshot-.*Ready/.test(t.replace(/\s+/g, ' ')));
    });
    await expectText(section('Events'), /SuccessfulVirtualMachineSnapshotContentCreate/);
    await s.screenshot('snapshot-details', { fullPage: true });
  });

  await s.step('restore the VM from the row menu: the dialog stops it, then shows progress until complete', async () => {
    await page.locator('nav.breadcrumb').getByRole('link', { name: 'Snapshots' }).click();
    await rowMenu(firstSnapshot, 'Restore VirtualMachine from snapshot');
    const d = dialog('Restore VirtualMachine from snapshot');
    await expectText(d, new RegExp(`${vm} is running`));
    check(await d.getByRole('button', { name: 'Restore' }).isDisabled(), 'Restore is disabled while the VM runs');
    await s.screenshot('restore-vm-running');
    await d.getByRole('button', { name: 'Stop VirtualMachine' }).click();
    await expectText(d, new RegExp(`${vm} is stopped`), READY);
    await recordRestoreStates(d);
    await d.getByRole('button', { name: 'Restore' }).click();
    await restoreStates(d);
    await expectText(d, new RegExp(`${vm} was restored from snapshot ${firstSnapshot}`));
    await s.screenshot('restore-complete');
    await d.getByRole('button', { name: 'Close', exact: true }).click();
    await d.waitFor({ state: 'detached' });
    const restores = page.locator('table.table-restores tbody tr');
    await expectText(restores.first(), /Complete/);
    await expectText(page.locator('.header-status'), /Stopped/);
  });

  await s.step('restore as a new VM named "copy"', async () => {
    await rowMenu(firstSnapshot, 'Restore as new VirtualMachine');
    const d = dialog('Restore as new VirtualMachine');
    await d.getByLabel('Name of the new VirtualMachine').fill(vm);
    await d.getByRole('button', { name: 'Restore' }).click();
    await expectText(d.getByRole('alert'), new RegExp(`A VirtualMachine named ${vm} already exists`));
    await d.getByLabel('Name of the new VirtualMachine').fill(copyVm);
    await d.getByRole('alert').waitFor({ state: 'detached' });
    await s.screenshot('restore-as-new');
    await recordRestoreStates(d);
    await d.getByRole('button', { name: 'Restore' }).click();
    await restoreStates(d);
    await expectText(d, new RegExp(`VirtualMachine ${copyVm} was created from snapshot`));
    await d.getByRole('link', { name: `Open VirtualMachine ${copyVm}` }).click();
    await expectText(page.getByRole('heading', { level: 1 }), new RegExp(`^${copyVm}\\b`));
    await expectText(page.locator('.overview'), /Status\s+Stopped/, READY);
    await s.screenshot('restored-copy');
  });

  await s.step('the copy starts, restarts and stops from the VirtualMachines list', async () => {
    await page.getByRole('link', { name: 'VirtualMachines', exact: true }).first().click();
    const row = vmRow(copyVm);
    check(await row.getByRole('button', { name: `Stop ${copyVm}`, exact: true }).isDisabled(), 'Stop is disabled for a stopped VM');
    await row.getByRole('button', { name: `Start ${copyVm}`, exact: true }).click();
    await expectText(row, /Running/, READY);
    // The copy really runs on its restored disks: its guest agent connects.
    await row.getByRole('link', { name: copyVm, exact: true }).click();
    await expectText(page.locator('.overview'), /Guest agent\s+Connected/, BOOT);
    await s.screenshot('copy-running');
    await page.getByRole('link', { name: 'VirtualMachines', exact: true }).first().click();
    const uid = () => kubectl(['get', 'virtualmachineinstances', copyVm, '-n', ns, '-o', 'jsonpath={.metadata.uid}']).trim();
    const before = await until('the VMI to exist', () => uid());
    await row.getByRole('button', { name: `Restart ${copyVm}`, exact: true }).click();
    await until('a new VMI after the restart', () => {
      try {
        const now = uid();
        return now && now !== before;
      } catch {
        return false;
      }
    }, READY);
    await expectText(row, /Running/, READY);
    await row.getByRole('button', { name: `Stop ${copyVm}`, exact: true }).click();
    await expectText(row, /Stopped/, READY);
  });

  await s.step('nothing is polled: an idle page makes no requests', async () => {
    await openVm(vm);
    await openSnapshotsTab();
    await waitReady(firstSnapshot);
    await page.waitForTimeout(1000);
    const requests = [];
    const record = (r) => requests.push(r.url());
    page.on('request', record);
    await page.waitForTimeout(4000);
    page.off('request', record);
    check(requests.length === 0, `no requests while idle, saw: ${requests.join(', ')}`);
  });

  await s.step('a snapshot created with kubectl appears live, and disappears when deleted with kubectl', async () => {
    const manifest = JSON.stringify({
      apiVersion: 'snapshot.kubevirt.io/v1beta1',
      kind: 'VirtualMachineSnapshot',
      metadata: { name: 'from-kubectl', namespace: ns },
      spec: { source: { apiGroup: 'kubevirt.io', kind: 'VirtualMachine', name: vm } },
    });
    kubectl(['create', '-f', '-'], manifest);
    await snapshotRow('from-kubectl').waitFor();
    await waitReady('from-kubectl');
    await s.screenshot('kubectl-snapshot-appears');
    kubectl(['delete', 'vmsnapshot', 'from-kubectl', '-n', ns, '--wait=false']);
    await snapshotRow('from-kubectl').waitFor({ state: 'detached', timeout: READY });
  });

  await s.step('delete a snapshot after confirming, with the keyboard only', async () => {
    const focused = (locator) => locator.evaluate((el) => el === document.activeElement);
    await snapshotRow(firstSnapshot).getByRole('button', { name: `Actions for snapshot ${firstSnapshot}` }).focus();
    await page.keyboard.press('Enter');
    const item = page.getByRole('menuitem', { name: 'Delete snapshot' });
    await page.keyboard.press('End');
    check(await focused(item), 'End moves to "Delete snapshot", the last item of the row menu');
    await page.keyboard.press('Enter');
    const d = dialog('Delete snapshot?');
    await expectText(d, new RegExp(`Delete snapshot ${firstSnapshot}`));
    check(await focused(d.getByRole('button', { name: 'Cancel' })), 'Cancel has the focus');
    await s.screenshot('delete-confirmation');
    await page.keyboard.press('Shift+Tab');
    check(await focused(d.getByRole('button', { name: 'Delete', exact: true })), 'Shift+Tab moves to Delete');
    await page.keyboard.press('Enter');
    await d.waitFor({ state: 'detached' });
    await snapshotRow(firstSnapshot).waitFor({ state: 'detached', timeout: READY });
    check(!kubectl(['get', 'vmsnapshot', '-n', ns, '-o', 'name']).includes(`/${firstSnapshot}\n`), 'the snapshot is gone from the API');
  });

  await s.step('a narrow window (400 px) is usable: no sideways scrolling', async () => {
    await page.setViewportSize({ width: 400, height: 800 });
    const noOverflow = async (where) => {
      const width = await page.evaluate(() => document.documentElement.scrollWidth);
      check(width <= 401, `${where} fits in 400 px (scroll width ${width})`);
    };
    await page.getByRole('link', { name: 'VirtualMachines', exact: true }).first().click();
    await vmRow(vm).waitFor();
    await noOverflow('the VirtualMachines list');
    await s.screenshot('narrow-vms', { fullPage: true });
    await openVm(partialVm);
    await openSnapshotsTab();
    await snapshotRow('partial').waitFor();
    await noOverflow('the Snapshots tab');
    await s.screenshot('narrow-snapshots', { fullPage: true });
    await snapshotRow('partial').getByRole('link', { name: 'partial' }).click();
    await page.getByRole('region', { name: 'Volume backups' }).waitFor();
    await noOverflow('the snapshot details');
    await s.screenshot('narrow-snapshot-details', { fullPage: true });
    await page.goBack();
    await snapshotRow('partial').waitFor();
    await page.getByRole('button', { name: 'Take snapshot' }).click();
    await dialog('Take snapshot').waitFor();
    await noOverflow('the Take snapshot dialog');
    await s.screenshot('narrow-take-snapshot');
    await page.keyboard.press('Escape');
    await page.setViewportSize({ width: 1280, height: 800 });
  });

  await s.step('log out: the token is forgotten', async () => {
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.getByLabel('Bearer token').waitFor();
    check((await page.evaluate(() => sessionStorage.getItem('vmsnap.token'))) === null, 'the token is removed');
  });
});
