// The Snapshots tab of a VirtualMachine: its snapshots live (status, readiness, indications), a
// menu per row to restore or delete, and the restores made from them with their progress.

import { paths } from '../api.js';
import { h, updateKeyed, replace } from '../dom.js';
import { describeError } from '../errors.js';
import { ageElement, condition, indicationBadges, snapshotActivity, snapshotPhase, statusBadge } from '../format.js';
import { menuButton } from '../menu.js';
import { openRestore } from '../dialogs/restore.js';
import { openRestoreAsNew } from '../dialogs/restore-new.js';
import { openDeleteSnapshot } from '../dialogs/delete.js';

const newestFirst = (a, b) => (b.metadata.creationTimestamp || '').localeCompare(a.metadata.creationTimestamp || '') || a.metadata.name.localeCompare(b.metadata.name);

/// Whether `snapshot` was taken of the VM `vmName`.
export function isSnapshotOf(snapshot, vmName) {
  const source = snapshot.spec?.source || {};
  return source.kind === 'VirtualMachine' && source.name === vmName;
}

/// The state of a restore in words, with a tone.
export function restoreState(restore) {
  const status = restore.status || {};
  const failure = condition(restore, 'Failure');
  if (failure?.status === 'True') return { text: 'Failed', tone: 'danger', detail: failure.message || failure.reason || '' };
  if (status.complete) return { text: 'Complete', tone: 'success', detail: '' };
  const progressing = condition(restore, 'Progressing');
  return { text: 'In progress', tone: 'info', busy: true, detail: progressing?.reason || 'Waiting for the restore controller' };
}

/// The snapshot actions of a row or of the snapshot's page.
export function snapshotMenuItems(snapshot, getVm) {
  const ready = snapshot.status?.readyToUse === true;
  const notReady = snapshot.metadata.deletionTimestamp ? 'The snapshot is being deleted' : 'The snapshot is not ready yet';
  return [
    { label: 'Restore VirtualMachine from snapshot', disabled: !ready, description: notReady, onSelect: () => openRestore(snapshot, getVm()) },
    { label: 'Restore as new VirtualMachine', disabled: !ready, description: notReady, onSelect: () => openRestoreAsNew(snapshot) },
    { label: 'Delete snapshot', danger: true, disabled: Boolean(snapshot.metadata.deletionTimestamp), description: 'Already being deleted', onSelect: () => openDeleteSnapshot(snapshot) },
  ];
}

/// The panel. Its watches are acquired by `start(scope)` when the tab is shown and released with
/// that scope when another tab is: a browser keeps only six connections to one server.
export function snapshotsPanel(namespace, vmName) {
  const tbody = h('tbody');
  const restoresBody = h('tbody');
  const empty = h('p', { class: 'empty', hidden: true }, 'No snapshots of this VirtualMachine yet. Use "Take snapshot" to take one.');
  const loadError = h('div');
  const table = h(
    'table',
    { class: 'table table-snapshots' },
    h('caption', { class: 'visually-hidden' }, `Snapshots of ${vmName}, updated live`),
    h('thead', {}, h('tr', {}, ['Name', 'Created', 'Status', 'Ready', 'Indications'].map((c) => h('th', { scope: 'col' }, c)), h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')))),
    tbody,
  );
  const restoresSection = h(
    'section',
    { class: 'restores', hidden: true, 'aria-labelledby': 'restores-title' },
    h('h2', { id: 'restores-title' }, 'Restores'),
    h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { class: 'table table-restores' },
        h('thead', {}, h('tr', {}, ['Name', 'Snapshot', 'Target', 'Status', 'Started'].map((c) => h('th', { scope: 'col' }, c)))),
        restoresBody,
      ),
    ),
  );
  const el = h('div', { class: 'snapshots' }, loadError, h('div', { class: 'table-wrap' }, table), empty, restoresSection);

  let vm = null;
  let snapshots = null;
  let restores = null;
  let initialKeys = null;

  const renderSnapshots = () => {
    if (!snapshots) return;
    replace(loadError, snapshots.error ? h('div', { class: 'alert alert-danger', role: 'alert' }, h('p', {}, `${describeError(snapshots.error, { doing: 'load the snapshots' })} Retrying…`)) : null);
    if (!snapshots.synced) return;
    const items = snapshots.list().filter((s) => isSnapshotOf(s, vmName)).sort(newestFirst);
    if (!initialKeys) initialKeys = new Set(items.map((s) => s.metadata.name));
    empty.hidden = items.length > 0;
    table.hidden = items.length === 0;
    updateKeyed(tbody, items, {
      key: (s) => s.metadata.name,
      signature: (s) => JSON.stringify([s.metadata.resourceVersion]),
      render: (s) => {
        const name = s.metadata.name;
        const phase = snapshotPhase(s);
        const activity = snapshotActivity(s);
        const ready = s.status?.readyToUse === true;
        return h(
          'tr',
          { class: initialKeys.has(name) ? '' : 'is-new', dataset: { name, phase: s.status?.phase || '', ready: String(ready) } },
          h('th', { scope: 'row', 'data-label': 'Name' }, h('a', { href: `#/snapshots/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`, dataset: { focusKey: 'link' } }, name)),
          h('td', { 'data-label': 'Created' }, ageElement(s.status?.creationTime || s.metadata.creationTimestamp)),
          h('td', { 'data-label': 'Status', class: 'cell-status' }, statusBadge(phase), activity ? h('span', { class: 'activity' }, activity) : null),
          h('td', { 'data-label': 'Ready', class: 'cell-ready' }, ready ? statusBadge({ text: 'Ready', tone: 'success' }) : statusBadge({ text: 'Not ready', tone: 'muted' })),
          h('td', { 'data-label': 'Indications', class: 'cell-indications' }, indicationBadges(s)),
          h('td', { class: 'cell-actions' }, menuButton(`Actions for snapshot ${name}`, snapshotMenuItems(s, () => vm))),
        );
      },
    });
  };

  const renderRestores = () => {
    if (!restores?.synced || !snapshots?.synced) return;
    const mine = new Set(snapshots.list().filter((s) => isSnapshotOf(s, vmName)).map((s) => s.metadata.name));
    const items = restores
      .list()
      .filter((r) => r.spec?.target?.name === vmName || mine.has(r.spec?.virtualMachineSnapshotName))
      .sort(newestFirst);
    restoresSection.hidden = items.length === 0;
    updateKeyed(restoresBody, items, {
      key: (r) => r.metadata.name,
      signature: (r) => r.metadata.resourceVersion,
      render: (r) => {
        const state = restoreState(r);
        return h(
          'tr',
          { dataset: { name: r.metadata.name, complete: String(Boolean(r.status?.complete)) } },
          h('th', { scope: 'row', 'data-label': 'Name' }, r.metadata.name),
          h('td', { 'data-label': 'Snapshot' }, r.spec?.virtualMachineSnapshotName),
          h('td', { 'data-label': 'Target' }, h('a', { href: `#/vms/${encodeURIComponent(namespace)}/${encodeURIComponent(r.spec?.target?.name || '')}` }, r.spec?.target?.name)),
          h('td', { 'data-label': 'Status', class: 'cell-status' }, statusBadge(state), state.detail ? h('span', { class: 'activity' }, state.detail) : null),
          h('td', { 'data-label': 'Started' }, ageElement(r.metadata.creationTimestamp)),
        );
      },
    });
  };

  return {
    el,
    updateVm(next) {
      vm = next;
    },
    start(scope) {
      initialKeys = null;
      snapshots = scope.watch(paths.snapshots(namespace), {}, () => {
        renderSnapshots();
        renderRestores();
      });
      restores = scope.watch(paths.restores(namespace), {}, renderRestores);
    },
  };
}
