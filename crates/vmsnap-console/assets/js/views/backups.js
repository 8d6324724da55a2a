// The Backups tab of a VirtualMachine: its backups in repositories, live (type, size, point in
// time, phase, a progress bar while one runs), "Back up now", and a menu per row to restore a
// backup as a new VM or delete it; then the restores made from them with their progress.

import { paths } from '../api.js';
import { h, updateKeyed, replace } from '../dom.js';
import { describeError } from '../errors.js';
import { ageElement, exactTime, statusBadge } from '../format.js';
import { menuButton } from '../menu.js';
import { isBackupOf, progressBar, progressText, quantity, rowSignature, transferPhase, updateProgressBar } from '../backup-format.js';
import { openBackUpNow } from '../dialogs/back-up-now.js';
import { openRestoreBackup } from '../dialogs/restore-backup.js';
import { openDeleteBackup } from '../dialogs/delete.js';

const newestFirst = (a, b) =>
  (b.status?.pointInTime || b.metadata.creationTimestamp || '').localeCompare(a.status?.pointInTime || a.metadata.creationTimestamp || '') ||
  a.metadata.name.localeCompare(b.metadata.name);

/// The status cell of a backup or restore: its badge, a progress bar while it runs, and its
/// detail (the error, or what it awaits); once done, what it transferred.
export function transferStatus(obj, label) {
  const phase = transferPhase(obj);
  const running = obj.status?.phase === 'InProgress';
  const done = obj.status?.phase === 'Succeeded' ? progressText(obj.status?.progress) : '';
  return [
    statusBadge(phase, { dataset: { phase: phase.text } }),
    running ? progressBar(obj.status?.progress, label) : null,
    phase.detail ? h('span', { class: phase.tone === 'danger' ? 'activity text-danger' : 'activity' }, phase.detail) : null,
    done ? h('span', { class: 'activity' }, done) : null,
  ];
}

/// Brings the progress bars of the running rows of `body` up to date, in place.
function refreshBars(body, items, noun) {
  for (const obj of items) {
    if (obj.status?.phase !== 'InProgress') continue;
    const transfer = body.querySelector(`tr[data-key="${CSS.escape(obj.metadata.name)}"] .transfer`);
    if (transfer) updateProgressBar(transfer, obj.status.progress, `${noun} ${obj.metadata.name}`);
  }
}

/// Under the type: the backup an incremental builds on, or why a backup read everything.
function typeDetail(status) {
  if (status.type === 'Incremental' && status.baseBackup) return `on top of ${status.baseBackup}`;
  return status.fullReason || '';
}

/// The backup actions of a row.
function backupMenuItems(backup) {
  const deleting = Boolean(backup.metadata.deletionTimestamp);
  const done = backup.status?.phase === 'Succeeded';
  return [
    {
      label: 'Restore as new VirtualMachine',
      disabled: !done || deleting,
      description: deleting ? 'The backup is being deleted' : 'Only a backup that succeeded can be restored',
      onSelect: () => openRestoreBackup(backup),
    },
    { label: 'Delete backup', danger: true, disabled: deleting, description: 'Already being deleted', onSelect: () => openDeleteBackup(backup) },
  ];
}

/// The panel. Its watches are acquired by `start(scope)` when the tab is shown and released with
/// that scope when another tab is: a browser keeps only six connections to one server.
export function backupsPanel(namespace, vmName) {
  const tbody = h('tbody');
  const restoresBody = h('tbody');
  const empty = h('p', { class: 'empty', hidden: true }, 'No backups of this VirtualMachine yet. Use "Back up now" to copy it to a repository.');
  const loadError = h('div');
  const backUpNow = h('button', { type: 'button', class: 'button button-primary', onclick: () => openBackUpNow(namespace, vmName) }, 'Back up now');
  const table = h(
    'table',
    { class: 'table table-backups' },
    h('caption', { class: 'visually-hidden' }, `Backups of ${vmName}, updated live`),
    h(
      'thead',
      {},
      h('tr', {}, ['Name', 'Point in time', 'Type', 'Size', 'Repository', 'Status'].map((c) => h('th', { scope: 'col' }, c)), h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions'))),
    ),
    tbody,
  );
  const restoresSection = h(
    'section',
    { class: 'restores', hidden: true, 'aria-labelledby': 'backup-restores-title' },
    h('h2', { id: 'backup-restores-title' }, 'Restores from backups'),
    h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { class: 'table table-backup-restores' },
        h('thead', {}, h('tr', {}, ['Name', 'Backup', 'Target', 'Status', 'Started'].map((c) => h('th', { scope: 'col' }, c)))),
        restoresBody,
      ),
    ),
  );
  const el = h(
    'div',
    { class: 'backups' },
    h('div', { class: 'panel-toolbar' }, backUpNow, h('a', { href: '#/repositories' }, 'Repositories')),
    loadError,
    h('div', { class: 'table-wrap' }, table),
    empty,
    restoresSection,
  );

  let backups = null;
  let restores = null;
  let initialKeys = null;

  const renderBackups = () => {
    if (!backups) return;
    replace(loadError, backups.error ? h('div', { class: 'alert alert-danger', role: 'alert' }, h('p', {}, `${describeError(backups.error, { doing: 'load the backups' })} Retrying…`)) : null);
    if (!backups.synced) return;
    const items = backups.list().filter((b) => isBackupOf(b, vmName)).sort(newestFirst);
    if (!initialKeys) initialKeys = new Set(items.map((b) => b.metadata.name));
    empty.hidden = items.length > 0;
    table.hidden = items.length === 0;
    updateKeyed(tbody, items, {
      key: (b) => b.metadata.name,
      signature: rowSignature,
      render: (b) => {
        const name = b.metadata.name;
        const status = b.status || {};
        const when = status.pointInTime;
        return h(
          'tr',
          { class: initialKeys.has(name) ? '' : 'is-new', dataset: { name, phase: status.phase || '' } },
          h('th', { scope: 'row', 'data-label': 'Name' }, name),
          h('td', { 'data-label': 'Point in time', class: 'cell-time' }, when ? h('time', { datetime: when }, exactTime(when)) : h('span', { class: 'muted' }, 'not taken yet')),
          h('td', { 'data-label': 'Type', class: 'cell-type' }, status.type || h('span', { class: 'muted' }, '—'), typeDetail(status) ? h('span', { class: 'activity' }, typeDetail(status)) : null),
          h('td', { 'data-label': 'Size', class: 'cell-size' }, quantity(status.size)),
          h('td', { 'data-label': 'Repository' }, b.spec?.repository || '—'),
          h('td', { 'data-label': 'Status', class: 'cell-status' }, transferStatus(b, `Backup ${name}`)),
          h('td', { class: 'cell-actions' }, menuButton(`Actions for backup ${name}`, backupMenuItems(b))),
        );
      },
    });
    refreshBars(tbody, items, 'Backup');
  };

  const renderRestores = () => {
    if (!restores?.synced || !backups?.synced) return;
    const mine = new Set(backups.list().filter((b) => isBackupOf(b, vmName)).map((b) => b.metadata.name));
    const items = restores
      .list()
      .filter((r) => r.spec?.target?.name === vmName || mine.has(r.spec?.backupName))
      .sort((a, b) => (b.metadata.creationTimestamp || '').localeCompare(a.metadata.creationTimestamp || '') || a.metadata.name.localeCompare(b.metadata.name));
    restoresSection.hidden = items.length === 0;
    updateKeyed(restoresBody, items, {
      key: (r) => r.metadata.name,
      signature: rowSignature,
      render: (r) => {
        const target = r.spec?.target?.name || '';
        return h(
          'tr',
          { dataset: { name: r.metadata.name, phase: r.status?.phase || '' } },
          h('th', { scope: 'row', 'data-label': 'Name' }, r.metadata.name),
          h('td', { 'data-label': 'Backup' }, r.spec?.backupName),
          h('td', { 'data-label': 'Target' }, h('a', { href: `#/vms/${encodeURIComponent(namespace)}/${encodeURIComponent(target)}` }, target)),
          h('td', { 'data-label': 'Status', class: 'cell-status' }, transferStatus(r, `Restore ${r.metadata.name}`)),
          h('td', { 'data-label': 'Started' }, ageElement(r.metadata.creationTimestamp)),
        );
      },
    });
    refreshBars(restoresBody, items, 'Restore');
  };

  return {
    el,
    /// The VM, or null when it does not exist: its backups can still be restored, but there is
    /// nothing to back up.
    updateVm(vm) {
      backUpNow.disabled = !vm;
      backUpNow.title = vm ? '' : `There is no VirtualMachine ${vmName} to back up`;
    },
    start(scope) {
      initialKeys = null;
      backups = scope.watch(paths.backups(namespace), {}, () => {
        renderBackups();
        renderRestores();
      });
      restores = scope.watch(paths.backupRestores(namespace), {}, renderRestores);
    },
  };
}
