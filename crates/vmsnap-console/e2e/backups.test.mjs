// The console's backup screens, end to end: a VM's Backups tab and the Repositories page, in
// Debian's Chromium against the real API server of `vmsnap serve`. No backup controller runs:
// this scenario plays it with kubectl, writing each object's status (the status subresource) the
// way the controllers do, step by step, so it proves that the pages follow their watches (a
// progress bar moving, a verify answered) and that each button creates or changes exactly the
// objects it should (their spec fields are checked).
//
// Expects: an empty namespace NAMESPACE (default "default") on a server with no controllers.

import { Scenario, check, expectText, kubectlRunner, settings, until } from './harness.mjs';

const cfg = settings();
const kubectl = kubectlRunner(cfg.kubeconfig);
const { namespace: ns, vm } = cfg;
const restoredVm = `${vm}-restored`;
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

const s = await Scenario.open('backups.test', cfg, 3);
const { page } = s;
// The watches open now: a browser keeps six HTTP/1.1 connections to one server and each watch
// holds one, so a page must leave at least one free for its requests.
const openWatches = new Set();
page.on('request', (r) => r.url().includes('watch=true') && openWatches.add(r));
page.on('requestfinished', (r) => openWatches.delete(r));
page.on('requestfailed', (r) => openWatches.delete(r));
async function checkWatchBudget(where) {
  await page.waitForTimeout(300);
  const paths = [...openWatches].map((r) => new URL(r.url()).pathname.split('/').pop());
  check(paths.length <= 5, `${where}: at most five watches, leaving a connection for requests (open: ${paths.join(', ')})`);
  process.stdout.write(`  watches open ${where}: ${paths.length} (${paths.sort().join(', ')})\n`);
}

const dialog = (name) => page.getByRole('dialog', { name });
const repoRow = (name) => page.locator(`table.table-repositories tbody tr[data-name="${name}"]`);
const backupRow = (name) => page.locator(`table.table-backups tbody tr[data-name="${name}"]`);
const restoreRow = (name) => page.locator(`table.table-backup-restores tbody tr[data-name="${name}"]`);
const now = () => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');

/// Creates an object from its manifest with kubectl.
const createObject = (manifest) => kubectl(['create', '-f', '-'], JSON.stringify(manifest));
/// Reads an object with kubectl.
const getObject = (resource, name) => JSON.parse(kubectl(['get', resource, name, '-n', ns, '-o', 'json']));
/// Writes part of an object's status, as its controller would (a merge patch of the status subresource).
const patchStatus = (resource, name, status) =>
  kubectl(['patch', resource, name, '-n', ns, '--subresource=status', '--type=merge', '-p', JSON.stringify({ status })]);
const cond = (type, status, reason, message = '') => ({ type, status, reason, message, lastTransitionTime: now(), lastProbeTime: null });

/// Fails unless `actual` and `expected` are the same JSON value.
function checkSame(actual, expected, what) {
  const a = JSON.stringify(sortKeys(actual));
  const e = JSON.stringify(sortKeys(expected));
  check(a === e, `${what}: expected ${e}, got ${a}`);
}
function sortKeys(value) {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === 'object') return Object.fromEntries(Object.keys(value).sort().map((k) => [k, sortKeys(value[k])]));
  return value;
}

/// Records every value the attribute `attr` of the dialog `d` takes from now on.
async function recordStates(d, attr) {
  await d.evaluate((el, name) => {
    el.__states = [];
    new MutationObserver(() => {
      const state = el.getAttribute(name);
      if (state && el.__states[el.__states.length - 1] !== state) el.__states.push(state);
    }).observe(el, { attributes: true, attributeFilter: [name] });
  }, attr);
}
const recordedStates = (d) => d.evaluate((el) => el.__states);

/// The percent shown by the progress bar in `locator`, read from the <progress> element itself.
const shownPercent = (locator) => locator.locator('progress').evaluate((el) => el.value, undefined, { timeout: 1000 });

async function rowMenu(row, label, item) {
  await row.getByRole('button', { name: label }).click();
  await page.getByRole('menuitem', { name: item }).click();
}

async function openBackupsTab() {
  await page.getByRole('link', { name: 'VirtualMachines', exact: true }).first().click();
  await page.locator(`table.table-vms tbody tr[data-name="${vm}"]`).getByRole('link', { name: vm, exact: true }).click();
  await expectText(page.getByRole('heading', { level: 1 }), new RegExp(`^${vm}\\b`));
  await page.getByRole('tab', { name: 'Backups' }).click();
  await until('the Backups tab to be selected', async () => (await page.getByRole('tab', { name: 'Backups' }).getAttribute('aria-selected')) === 'true');
}

await s.run(async () => {
  await s.step('set up with kubectl: a stopped VM, a ready repository and one whose passphrase is wrong', async () => {
    createObject({
      apiVersion: 'kubevirt.io/v1',
      kind: 'VirtualMachine',
      metadata: { name: vm, namespace: ns },
      spec: { runStrategy: 'Halted', template: { spec: { domain: { devices: {}, resources: { requests: { memory: '128Mi' } } } } } },
    });
    patchStatus('virtualmachines', vm, { printableStatus: 'Stopped' });
    kubectl(['create', 'secret', 'generic', 'backup-passphrase', '-n', ns, '--from-literal=passphrase=correct horse battery staple']);
    createObject({
      apiVersion: 'backup.vmsnap.io/v1alpha1',
      kind: 'VirtualMachineBackupRepository',
      metadata: { name: 'main', namespace: ns },
      spec: { local: {}, passphraseSecretRef: { name: 'backup-passphrase' } },
    });
    createObject({
      apiVersion: 'backup.vmsnap.io/v1alpha1',
      kind: 'VirtualMachineBackupRepository',
      metadata: { name: 'offsite', namespace: ns },
      spec: { s3: { endpoint: 'http://127.0.0.1:8333', bucket: 'vm-backups', prefix: 'lab', credentialsSecretRef: { name: 's3-keys' } }, passphraseSecretRef: { name: 'backup-passphrase' }, readLimit: '64Mi' },
    });
    patchStatus('vmrepo', 'main', {
      location: '/var/lib/vmsnap/backups/default/main',
      repositoryId: '5d1c0f0e6a2b4c1d',
      formatVersion: 1,
      chunkSize: '512Ki',
      backups: 0,
      chunks: 0,
      storedBytes: 0,
      storedSize: '0',
      conditions: [cond('Ready', 'True', 'RepositoryReady', 'Opened with the passphrase'), cond('Progressing', 'False', 'RepositoryReady')],
    });
    patchStatus('vmrepo', 'offsite', {
      location: 's3://vm-backups/lab at http://127.0.0.1:8333',
      conditions: [cond('Ready', 'False', 'WrongPassphrase', 'the passphrase in Secret backup-passphrase (key passphrase) does not open the repository at s3://vm-backups/lab')],
    });
  });

  await s.step('log in', async () => {
    await page.goto(cfg.url);
    await s.logIn(cfg.token);
  });

  await s.step('the Repositories page (masthead link): location, readiness and why not, contents', async () => {
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Repositories' }).click();
    await expectText(page.getByRole('heading', { level: 1 }), /^Repositories$/);
    check((await page.getByRole('link', { name: 'Repositories' }).getAttribute('aria-current')) === 'page', 'the masthead marks the current page');
    await expectText(repoRow('main'), new RegExp(`main\\s+${ns}\\s+/var/lib/vmsnap/backups/default/main\\s+512Ki chunks\\s+reads up to 256Mi/s \\(default\\)\\s+Ready\\s+0\\s+0 B\\s+—\\s+never\\s+never`));
    await expectText(repoRow('offsite'), /s3:\/\/vm-backups\/lab at http:\/\/127\.0\.0\.1:8333\s+reads up to 64Mi\/s\s+Not ready\s+the passphrase in Secret backup-passphrase \(key passphrase\) does not open the repository/);
    check(await repoRow('offsite').getByRole('button', { name: 'Verify repository offsite' }).isDisabled(), 'a repository that does not open cannot be verified');
    await expectText(page.locator('.add-repository'), /vmsnap repo add NAME --dir \/path\/to\/backups --passphrase-file FILE/);
    await s.screenshot('repositories');
  });

  let verifyToken = '';
  await s.step('Verify sets a fresh request token (merge patch) and shows the result carrying it', async () => {
    const before = getObject('vmrepo', 'main');
    await repoRow('main').getByRole('button', { name: 'Verify repository main' }).click();
    verifyToken = await until('the verify-request annotation', () => getObject('vmrepo', 'main').metadata.annotations?.['backup.vmsnap.io/verify-request']);
    const after = getObject('vmrepo', 'main');
    checkSame(after.spec, before.spec, 'the spec is unchanged');
    checkSame(after.metadata.annotations, { 'backup.vmsnap.io/verify-request': verifyToken }, 'only the request annotation was added');
    check(after.metadata.generation === before.metadata.generation, 'the generation is unchanged (metadata only)');
    await expectText(repoRow('main').locator('.cell-verify'), /Verifying…/);
    check(await repoRow('main').getByRole('button', { name: 'Verify repository main' }).isDisabled(), 'Verify waits for its result');
    patchStatus('vmrepo', 'main', { conditions: [cond('Ready', 'True', 'RepositoryReady'), cond('Progressing', 'True', 'Verifying', 'Reading chunk 10 of 42')] });
    await expectText(repoRow('main').locator('.cell-verify'), /Verifying…\s+Reading chunk 10 of 42/);
    await s.screenshot('repository-verifying');
    // A result for another request is not this one's.
    patchStatus('vmrepo', 'main', { lastVerify: { request: 'an-older-request', ok: true, chunksChecked: 1, backupsChecked: 1, time: now() } });
    await page.waitForTimeout(500);
    await expectText(repoRow('main').locator('.cell-verify'), /Verifying…/);
    patchStatus('vmrepo', 'main', {
      lastVerify: { request: verifyToken, ok: true, chunksChecked: 42, backupsChecked: 2, time: now() },
      conditions: [cond('Ready', 'True', 'RepositoryReady'), cond('Progressing', 'False', 'Succeeded')],
    });
    await expectText(repoRow('main').locator('.cell-verify'), /OK\s+\d+s ago\s+42 chunks of 2 backups checked/);
    check(await repoRow('main').getByRole('button', { name: 'Verify repository main' }).isEnabled(), 'Verify can be asked for again');
  });

  await s.step('a second verify has a new token; bad chunks are shown with what they break', async () => {
    await repoRow('main').getByRole('button', { name: 'Verify repository main' }).click();
    const token = await until('a new verify-request annotation', () => {
      const t = getObject('vmrepo', 'main').metadata.annotations?.['backup.vmsnap.io/verify-request'];
      return t && t !== verifyToken ? t : false;
    });
    patchStatus('vmrepo', 'main', {
      lastVerify: {
        request: token,
        ok: false,
        chunksChecked: 42,
        backupsChecked: 2,
        time: now(),
        chunkListsChecked: 3,
        badChunkLists: [{ chunk: '7c21e4', problem: 'Missing', breaks: ['b-0002 rootdisk @ 536870912'] }],
        badChunks: [{ chunk: '3f9a0c', problem: 'Corrupt', breaks: ['b-0001 rootdisk @ 1048576'] }],
      },
    });
    await expectText(
      repoRow('main').locator('.cell-verify'),
      /1 bad chunk list, 1 bad chunk.*Missing chunk list 7c21e4 \(its 1,024 chunks are unknown\): breaks b-0002 rootdisk @ 536870912.*Corrupt chunk 3f9a0c: breaks b-0001 rootdisk @ 1048576/,
    );
  });

  await s.step('Prune: the same round trip, showing what was freed', async () => {
    // With the keyboard: the focus stays on Prune while it waits and when the result arrives.
    const prune = () => repoRow('main').getByRole('button', { name: 'Prune repository main' });
    await prune().focus();
    await page.keyboard.press('Enter');
    const token = await until('the prune-request annotation', () => getObject('vmrepo', 'main').metadata.annotations?.['backup.vmsnap.io/prune-request']);
    await expectText(repoRow('main').locator('.cell-prune'), /Pruning…/);
    check(await prune().isDisabled(), 'Prune waits for its result');
    check(await prune().evaluate((el) => el === document.activeElement), 'the focus stayed on Prune');
    await page.keyboard.press('Enter');
    await page.waitForTimeout(300);
    check(getObject('vmrepo', 'main').metadata.annotations['backup.vmsnap.io/prune-request'] === token, 'pressing it again while it waits asks nothing more');
    patchStatus('vmrepo', 'main', { lastPrune: { request: token, chunksDeleted: 7, chunkListsDeleted: 2, bytesFreed: 3 * MiB, time: now() } });
    await expectText(repoRow('main').locator('.cell-prune'), /Freed 3\.0 MiB\s+\d+s ago\s+7 chunks and 2 chunk lists deleted/);
    check(await prune().evaluate((el) => el === document.activeElement), 'the focus is still on Prune');
    check(await prune().isEnabled(), 'Prune can be asked for again');
    await s.screenshot('repository-verified-pruned');
  });

  await s.step('the Backups tab of the VM starts empty', async () => {
    await openBackupsTab();
    check(page.url().endsWith('/backups'), 'the tab is in the URL');
    await page.getByText('No backups of this VirtualMachine yet').waitFor();
    await s.screenshot('backups-empty');
  });

  await s.step('Back up now: the ready repository is chosen; the other one warns why it is not ready', async () => {
    await page.getByRole('button', { name: 'Back up now' }).click();
    const d = dialog('Back up now');
    await d.waitFor();
    const repo = d.getByLabel('Repository');
    await until('the ready repository to be chosen', async () => (await repo.inputValue()) === 'main');
    check((await d.getByLabel('Name').inputValue()).startsWith(`${vm}-backup-`), 'the default name is made from the VM name');
    await repo.selectOption('offsite');
    await expectText(d.getByRole('alert'), /Repository offsite is not ready.*does not open the repository/);
    await repo.selectOption('main');
    await d.getByRole('alert').waitFor({ state: 'detached' });
    await s.screenshot('back-up-now-dialog');
  });

  await s.step('the backup made has exactly the expected spec, and its progress is shown live in the dialog', async () => {
    const d = dialog('Back up now');
    await d.getByLabel('Name').fill('nightly-1');
    await recordStates(d, 'data-backup-state');
    await d.getByRole('button', { name: 'Back up', exact: true }).click();
    await expectText(d, /Progress of backup nightly-1/);
    await expectText(d, /Waiting for the backup controller/);
    const created = getObject('vmrbackup', 'nightly-1');
    checkSame(created.spec, { repository: 'main', source: { apiGroup: 'kubevirt.io', kind: 'VirtualMachine', name: vm } }, 'the backup\'s spec');
    check(created.kind === 'VirtualMachineRepositoryBackup' && created.apiVersion === 'backup.vmsnap.io/v1alpha1', 'a VirtualMachineRepositoryBackup');
    patchStatus('vmrbackup', 'nightly-1', {
      phase: 'InProgress',
      vmName: vm,
      pointInTime: now(),
      progress: { bytesToRead: GiB, bytesRead: 256 * MiB, bytesUploaded: 100 * MiB, bytesDeduplicated: 50 * MiB, percent: 25, elapsedSeconds: 4 },
      conditions: [cond('Progressing', 'True', 'BackupInProgress', 'Reading disk rootdisk')],
    });
    await until('the bar at 25%', async () => (await shownPercent(d)) === 25);
    await expectText(d, /25%\s+read 256 MiB of 1\.0 GiB · uploaded 100 MiB · deduplicated 50\.0 MiB · 64\.0 MiB\/s · about 12 s left/);
    await expectText(d, /Reading disk rootdisk/);
    check((await d.getByRole('progressbar').getAttribute('aria-label')) === 'Backup nightly-1: 25% done', 'the bar is labelled for screen readers');
    await s.screenshot('backup-in-progress');
    await checkWatchBudget('with the Back up now dialog open');
    patchStatus('vmrbackup', 'nightly-1', { progress: { bytesToRead: GiB, bytesRead: 820 * MiB, bytesUploaded: 300 * MiB, bytesDeduplicated: 400 * MiB, percent: 80, elapsedSeconds: 10 } });
    await until('the bar at 80%', async () => (await shownPercent(d)) === 80);
    patchStatus('vmrbackup', 'nightly-1', {
      phase: 'Succeeded',
      type: 'Full',
      backupId: 'b-0001',
      size: '10Gi',
      completionTime: now(),
      progress: { bytesToRead: GiB, bytesRead: GiB, bytesUploaded: 380 * MiB, bytesDeduplicated: 500 * MiB, percent: 100, elapsedSeconds: 12 },
      conditions: [cond('Ready', 'True', 'Succeeded'), cond('Progressing', 'False', 'Succeeded')],
    });
    await expectText(d, /Backup nightly-1 of demo is complete\.\s+Full · 10 GiB of disks · read 1\.0 GiB of 1\.0 GiB · uploaded 380 MiB · deduplicated 500 MiB/);
    const states = await recordedStates(d);
    checkSame(states, ['Pending', 'InProgress', 'Succeeded'], 'the dialog followed the backup');
    process.stdout.write(`  backup progress shown: ${states.join(' → ')}\n`);
    await s.screenshot('backup-complete');
    await d.getByRole('button', { name: 'Close', exact: true }).click();
    await d.waitFor({ state: 'detached' });
    await expectText(backupRow('nightly-1'), /nightly-1\s+\w{3} \d+, \d{4}.*Full\s+10 GiB\s+main\s+Succeeded/);
  });

  await s.step('a full backup asked for explicitly sets forceFull; its failure is shown as the controller wrote it', async () => {
    await page.getByRole('button', { name: 'Back up now' }).click();
    const d = dialog('Back up now');
    await d.getByLabel('Name').fill('forced');
    await d.getByLabel(/Full backup/).check();
    await d.getByRole('button', { name: 'Back up', exact: true }).click();
    await expectText(d, /Progress of backup forced/);
    checkSame(getObject('vmrbackup', 'forced').spec, { repository: 'main', source: { apiGroup: 'kubevirt.io', kind: 'VirtualMachine', name: vm }, forceFull: true }, 'the forced backup\'s spec');
    const message = 'cannot write to repository main: /var/lib/vmsnap/backups/default/main: No space left on device';
    patchStatus('vmrbackup', 'forced', {
      phase: 'Failed',
      vmName: vm,
      error: { time: now(), message },
      conditions: [cond('Failure', 'True', 'Failed', message), cond('Progressing', 'False', 'Failed')],
    });
    await expectText(d.getByRole('alert'), /The backup failed\s+cannot write to repository main: .*No space left on device/);
    await page.keyboard.press('Escape');
    await d.waitFor({ state: 'detached' });
    await expectText(backupRow('forced').locator('.cell-status'), /Failed\s+cannot write to repository main/);
    await backupRow('forced').getByRole('button', { name: 'Actions for backup forced' }).click();
    const item = page.getByRole('menuitem', { name: /Restore as new VirtualMachine/ });
    check((await item.getAttribute('aria-disabled')) === 'true', 'a failed backup cannot be restored');
    await expectText(item, /Only a backup that succeeded can be restored/);
    await s.screenshot('backup-failed-menu');
    await page.keyboard.press('Escape');
    check(!(await dialog('Restore backup as new VirtualMachine').count()), 'no restore dialog opened');
  });

  await s.step('a backup made elsewhere (kubectl) appears live with a moving progress bar in its row', async () => {
    createObject({
      apiVersion: 'backup.vmsnap.io/v1alpha1',
      kind: 'VirtualMachineRepositoryBackup',
      metadata: { name: 'from-cli', namespace: ns, labels: { 'backup.vmsnap.io/vm': vm } },
      spec: { repository: 'main', source: { apiGroup: 'kubevirt.io', kind: 'VirtualMachine', name: vm } },
    });
    const row = backupRow('from-cli');
    await row.waitFor();
    patchStatus('vmrbackup', 'from-cli', {
      phase: 'InProgress',
      vmName: vm,
      type: 'Incremental',
      baseBackup: 'nightly-1',
      pointInTime: now(),
      progress: { bytesToRead: 10 * MiB, bytesRead: 4 * MiB, bytesUploaded: 4 * MiB, bytesDeduplicated: 0, bytesReused: 900 * MiB, percent: 40, elapsedSeconds: 2 },
      conditions: [cond('Progressing', 'True', 'BackupInProgress', 'Reading the clusters written since nightly-1')],
    });
    await until('the row bar at 40%', async () => (await shownPercent(row)) === 40);
    await expectText(row.locator('.cell-status'), /In progress\s+40%\s+read 4\.0 MiB of 10\.0 MiB · uploaded 4\.0 MiB · deduplicated 0 B · reused 900 MiB from the base backup · 2\.0 MiB\/s · about 3 s left\s+Reading the clusters written since nightly-1/);
    await s.screenshot('backup-row-in-progress');
    // The bar moves in place: a menu opened on the row stays open.
    await row.getByRole('button', { name: 'Actions for backup from-cli' }).click();
    await page.getByRole('menuitem', { name: 'Delete backup' }).waitFor();
    patchStatus('vmrbackup', 'from-cli', { progress: { bytesToRead: 10 * MiB, bytesRead: 9 * MiB, percent: 90, elapsedSeconds: 3 } });
    await until('the row bar at 90%', async () => (await shownPercent(row)) === 90);
    await expectText(row.locator('.cell-status'), /90%\s+read 9\.0 MiB of 10\.0 MiB/);
    check((await row.getByRole('button', { name: 'Actions for backup from-cli' }).getAttribute('aria-expanded')) === 'true', 'the row menu stayed open while the progress moved');
    check(await page.getByRole('menuitem', { name: 'Delete backup' }).isVisible(), 'its items are still shown');
    check((await row.getByRole('progressbar').getAttribute('aria-label')) === 'Backup from-cli: 90% done', 'the bar\'s label follows');
    await page.keyboard.press('Escape');
    patchStatus('vmrbackup', 'from-cli', { phase: 'Succeeded', size: '10Gi', progress: { bytesToRead: 10 * MiB, bytesRead: 10 * MiB, bytesUploaded: 5 * MiB, percent: 100 }, conditions: [cond('Ready', 'True', 'Succeeded'), cond('Progressing', 'False', 'Succeeded')] });
    await expectText(row, /Incremental\s+on top of nightly-1\s+10 GiB\s+main\s+Succeeded/);
    check(!(await row.locator('progress').count()), 'no bar once done');
  });

  let restoreName = '';
  await s.step('Restore as new VM: a taken name is refused, then the restore made has exactly the expected spec', async () => {
    await rowMenu(backupRow('nightly-1'), 'Actions for backup nightly-1', 'Restore as new VirtualMachine');
    const d = dialog('Restore backup as new VirtualMachine');
    await d.waitFor();
    check((await d.getByLabel('Name of the new VirtualMachine').inputValue()) === restoredVm, 'the default name is made from the VM name');
    await d.getByLabel('Name of the new VirtualMachine').fill(vm);
    await d.getByRole('button', { name: 'Restore' }).click();
    await expectText(d.getByRole('alert'), new RegExp(`A VirtualMachine named ${vm} already exists`));
    await d.getByLabel('Name of the new VirtualMachine').fill(restoredVm);
    await s.screenshot('restore-backup-dialog');
    await recordStates(d, 'data-restore-state');
    await d.getByRole('button', { name: 'Restore' }).click();
    await expectText(d, /Progress of restore/);
    const restores = JSON.parse(kubectl(['get', 'vmrrestore', '-n', ns, '-o', 'json'])).items;
    check(restores.length === 1, `one restore was created (${restores.length})`);
    restoreName = restores[0].metadata.name;
    checkSame(restores[0].spec, { backupName: 'nightly-1', target: { apiGroup: 'kubevirt.io', kind: 'VirtualMachine', name: restoredVm } }, 'the restore\'s spec');
    check(restores[0].kind === 'VirtualMachineRepositoryRestore', 'a VirtualMachineRepositoryRestore');
  });

  await s.step('the restore\'s progress is shown live, then a link to the new VM', async () => {
    const d = dialog('Restore backup as new VirtualMachine');
    patchStatus('vmrrestore', restoreName, {
      phase: 'InProgress',
      progress: { bytesToRead: GiB, bytesRead: GiB / 2, bytesWritten: GiB / 2, percent: 50, elapsedSeconds: 5 },
      conditions: [cond('Progressing', 'True', 'RestoreInProgress', 'Writing disk rootdisk')],
    });
    await until('the restore bar at 50%', async () => (await shownPercent(d)) === 50);
    await expectText(d, /Writing disk rootdisk/);
    await s.screenshot('restore-backup-in-progress');
    await checkWatchBudget('with the restore dialog open');
    await expectText(restoreRow(restoreName), new RegExp(`nightly-1\\s+${restoredVm}\\s+In progress\\s+50%`));
    createObject({
      apiVersion: 'kubevirt.io/v1',
      kind: 'VirtualMachine',
      metadata: { name: restoredVm, namespace: ns },
      spec: { runStrategy: 'Halted', template: { spec: { domain: { devices: {}, resources: { requests: { memory: '128Mi' } } } } } },
    });
    patchStatus('vmrrestore', restoreName, {
      phase: 'Succeeded',
      complete: true,
      restoreTime: now(),
      progress: { bytesToRead: GiB, bytesRead: GiB, bytesWritten: GiB, percent: 100, elapsedSeconds: 9 },
      conditions: [cond('Ready', 'True', 'Succeeded'), cond('Progressing', 'False', 'Succeeded')],
    });
    await expectText(d, new RegExp(`VirtualMachine ${restoredVm} was created from backup nightly-1`));
    const states = await recordedStates(d);
    check(states[0] !== 'Complete' && states.includes('In progress') && states[states.length - 1] === 'Complete', `the dialog showed the progress, then completion: ${states.join(' → ')}`);
    process.stdout.write(`  restore progress shown: ${states.join(' → ')}\n`);
    await s.screenshot('restore-backup-complete');
    await d.getByRole('link', { name: `Open VirtualMachine ${restoredVm}` }).click();
    await expectText(page.getByRole('heading', { level: 1 }), new RegExp(`^${restoredVm}\\b`));
  });

  await s.step('delete a backup after confirming', async () => {
    await openBackupsTab();
    await rowMenu(backupRow('forced'), 'Actions for backup forced', 'Delete backup');
    const d = dialog('Delete backup?');
    await expectText(d, /Delete backup forced of demo\?\s+Its data is deleted from repository main/);
    check(await d.getByRole('button', { name: 'Cancel' }).evaluate((el) => el === document.activeElement), 'Cancel has the focus');
    await s.screenshot('delete-backup');
    await d.getByRole('button', { name: 'Delete', exact: true }).click();
    await d.waitFor({ state: 'detached' });
    await backupRow('forced').waitFor({ state: 'detached' });
    check(!kubectl(['get', 'vmrbackup', '-n', ns, '-o', 'name']).includes('/forced\n'), 'the backup is gone from the API');
    check(await backupRow('nightly-1').count() === 1 && await backupRow('from-cli').count() === 1, 'the other backups stay');
  });

  await s.step('keyboard: the tabs are reached with the arrow keys, and Back up now opens with Enter', async () => {
    await page.getByRole('tab', { name: 'Overview' }).click();
    await page.keyboard.press('ArrowRight');
    await page.keyboard.press('ArrowRight');
    await until('the Backups tab to be selected', async () => (await page.getByRole('tab', { name: 'Backups' }).getAttribute('aria-selected')) === 'true');
    await backupRow('nightly-1').waitFor();
    const opener = page.getByRole('button', { name: 'Back up now' });
    await opener.focus();
    await page.keyboard.press('Enter');
    const d = dialog('Back up now');
    await d.waitFor();
    check(await d.getByLabel('Name').evaluate((el) => el === document.activeElement), 'the name field has the focus');
    await page.keyboard.press('Escape');
    await d.waitFor({ state: 'detached' });
    check(await opener.evaluate((el) => el === document.activeElement), 'the focus is back on "Back up now"');
  });

  await s.step('a backup found in a repository, of a VM not on this machine, is reached from the Repositories page and can be restored', async () => {
    createObject({
      apiVersion: 'backup.vmsnap.io/v1alpha1',
      kind: 'VirtualMachineRepositoryBackup',
      metadata: { name: 'imported-1', namespace: ns, labels: { 'backup.vmsnap.io/vm': 'gone', 'backup.vmsnap.io/imported': 'true' } },
      spec: { repository: 'main', deletionPolicy: 'Retain' },
    });
    patchStatus('vmrbackup', 'imported-1', { phase: 'Succeeded', vmName: 'gone', type: 'Full', size: '2Gi', pointInTime: '2026-11-30T12:00:00Z', backupId: 'b-0007' });
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Repositories' }).click();
    const vmRow = (name) => page.locator(`table.table-backed-up-vms tbody tr[data-vm="${name}"]`);
    await expectText(vmRow(vm), new RegExp(`${vm}\\s+${ns}\\s+2\\s+\\w{3} \\d+, \\d{4}.*main\\s+Yes`));
    await expectText(vmRow('gone'), new RegExp(`gone\\s+${ns}\\s+1\\s+Nov 30, 2026.*main\\s+No`));
    await s.screenshot('backed-up-vms', { fullPage: true });
    await vmRow('gone').getByRole('link', { name: 'Backups of gone' }).click();
    await expectText(page.getByRole('alert').first(), /The VirtualMachine gone does not exist .* Its backups, if any, are under Backups/);
    check((await page.getByRole('tab', { name: 'Backups' }).getAttribute('aria-selected')) === 'true', 'the link opens the Backups tab');
    await expectText(backupRow('imported-1'), /imported-1\s+Nov 30, 2026.*Full\s+2 GiB\s+main\s+Succeeded/);
    await until('Back up now to be disabled: there is nothing to back up', () => page.getByRole('button', { name: 'Back up now' }).isDisabled());
    await rowMenu(backupRow('imported-1'), 'Actions for backup imported-1', 'Restore as new VirtualMachine');
    const d = dialog('Restore backup as new VirtualMachine');
    check((await d.getByLabel('Name of the new VirtualMachine').inputValue()) === 'gone-restored', 'the default name is made from the backed-up VM');
    await page.keyboard.press('Escape');
    await d.waitFor({ state: 'detached' });
    await rowMenu(backupRow('imported-1'), 'Actions for backup imported-1', 'Delete backup');
    await expectText(dialog('Delete backup?'), /deletion policy is Retain: the backup stays in repository main/);
    await page.keyboard.press('Escape');
    await openBackupsTab();
  });

  await s.step('Back up now in a namespace without a repository says how to add one', async () => {
    kubectl(['create', 'namespace', 'lab']);
    createObject({
      apiVersion: 'kubevirt.io/v1',
      kind: 'VirtualMachine',
      metadata: { name: 'solo', namespace: 'lab' },
      spec: { runStrategy: 'Halted', template: { spec: { domain: { devices: {}, resources: { requests: { memory: '128Mi' } } } } } },
    });
    await page.evaluate(() => {
      location.hash = '#/vms/lab/solo/backups';
    });
    await expectText(page.getByRole('heading', { level: 1 }), /^solo\b/);
    await page.getByRole('button', { name: 'Back up now' }).click();
    const d = dialog('Back up now');
    await expectText(d, /There is no backup repository in namespace lab\s+Add one from a terminal.*vmsnap repo add NAME --dir \/path\/to\/backups --passphrase-file FILE -n lab/);
    check(await d.getByRole('button', { name: 'Back up', exact: true }).isDisabled(), 'there is nowhere to back up to');
    check(await d.getByLabel('Repository').isDisabled(), 'there is no repository to choose');
    await s.screenshot('back-up-now-no-repository');
    await page.keyboard.press('Escape');
    await d.waitFor({ state: 'detached' });
    await openBackupsTab();
  });

  await s.step('a narrow window (400 px): the masthead keeps its three links, nothing scrolls sideways', async () => {
    await page.setViewportSize({ width: 400, height: 800 });
    const noOverflow = async (where) => {
      const width = await page.evaluate(() => document.documentElement.scrollWidth);
      check(width <= 401, `${where} fits in 400 px (scroll width ${width})`);
    };
    const nav = page.getByRole('navigation', { name: 'Main' });
    // Down to 400 px (the narrow layout starts at 760 px, the navigation's own row at 520 px).
    for (const width of [760, 600, 521, 480, 400]) {
      await page.setViewportSize({ width, height: 800 });
      for (const name of ['VirtualMachines', 'Schedules', 'Repositories']) {
        const box = await nav.getByRole('link', { name, exact: true }).boundingBox();
        check(box && box.x >= 0 && box.x + box.width <= width, `at ${width} px the ${name} link is in the window (${JSON.stringify(box)})`);
      }
      const logout = await page.getByRole('button', { name: 'Log out' }).boundingBox();
      check(logout && logout.x + logout.width <= width, `at ${width} px Log out is in the window (${JSON.stringify(logout)})`);
      const width2 = await page.evaluate(() => document.documentElement.scrollWidth);
      check(width2 <= width + 1, `at ${width} px the Backups tab fits (scroll width ${width2})`);
    }
    await noOverflow('the Backups tab');
    await s.screenshot('narrow-backups', { fullPage: true });
    await page.getByRole('button', { name: 'Back up now' }).click();
    await dialog('Back up now').waitFor();
    await noOverflow('the Back up now dialog');
    await s.screenshot('narrow-back-up-now');
    await page.keyboard.press('Escape');
    await nav.getByRole('link', { name: 'Repositories' }).click();
    await repoRow('main').waitFor();
    await noOverflow('the Repositories page');
    await s.screenshot('narrow-repositories', { fullPage: true });
    await page.setViewportSize({ width: 1280, height: 800 });
  });
});
