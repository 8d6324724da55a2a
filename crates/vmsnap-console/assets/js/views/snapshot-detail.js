// A snapshot's page: status, conditions, indications, included and excluded volumes, the volume
// backups of its content, and its events, all live.

import { get, paths } from '../api.js';
import { h, replace, errorSlot } from '../dom.js';
import { describeError } from '../errors.js';
import {
  ageElement,
  exactTime,
  indicationBadge,
  indications,
  snapshotActivity,
  snapshotPhase,
  statusBadge,
} from '../format.js';
import { Scope } from '../live.js';
import { snapshotMenuItems } from './snapshots.js';
import { openDeleteSnapshot } from '../dialogs/delete.js';

const card = (id, title, ...body) => h('section', { class: 'card', 'aria-labelledby': id, dataset: { section: id } }, h('h2', { id }, title), ...body);
const item = (label, value) => [h('dt', {}, label), h('dd', {}, value === undefined || value === null || value === '' ? h('span', { class: 'muted' }, '—') : value)];
const table = (columns, rows, emptyText) =>
  h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      { class: 'table' },
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: String(columns.length), class: 'muted' }, emptyText))),
    ),
  );
const cells = (columns, values) => values.map((v, i) => (i === 0 ? h('th', { scope: 'row', 'data-label': columns[0] }, v) : h('td', { 'data-label': columns[i] }, v)));

function volumesSection(snapshot) {
  const volumes = snapshot.status?.snapshotVolumes || {};
  const list = (names, empty) => (names?.length ? h('ul', { class: 'plain-list' }, names.map((n) => h('li', {}, n))) : h('p', { class: 'muted' }, empty));
  return h(
    'div',
    { class: 'two-columns' },
    h('div', { dataset: { volumes: 'included' } }, h('h3', {}, 'Included'), list(volumes.includedVolumes, snapshot.status?.phase === 'Succeeded' ? 'None' : 'Known when the snapshot has succeeded')),
    h('div', { dataset: { volumes: 'excluded' } }, h('h3', {}, 'Excluded'), list(volumes.excludedVolumes, 'None')),
  );
}

function backupsTable(content) {
  const columns = ['Volume', 'PVC', 'Storage class', 'Size', 'VolumeSnapshot', 'Ready'];
  if (!content) return h('p', { class: 'muted' }, 'The snapshot content is not created yet.');
  const statuses = new Map((content.status?.volumeSnapshotStatus || []).map((s) => [s.volumeSnapshotName, s]));
  const rows = (content.spec?.volumeBackups || []).map((b) => {
    const pvc = b.persistentVolumeClaim || {};
    const st = statuses.get(b.volumeSnapshotName) || {};
    const ready = st.readyToUse ? statusBadge({ text: 'Ready', tone: 'success' }) : st.error?.message ? statusBadge({ text: st.error.message, tone: 'danger' }) : statusBadge({ text: 'Not ready', tone: 'muted' });
    return h('tr', { dataset: { volume: b.volumeName } }, cells(columns, [b.volumeName, pvc.metadata?.name || '—', pvc.spec?.storageClassName || '—', pvc.spec?.resources?.requests?.storage || '—', b.volumeSnapshotName || '—', ready]));
  });
  return table(columns, rows, 'No volume backups: only the VirtualMachine configuration was saved.');
}

export function snapshotDetailView(namespace, name) {
  const scope = new Scope();
  const errors = errorSlot();
  const status = h('span', { class: 'header-status' });
  const toolbar = h('div', { class: 'toolbar' });
  const body = h('div', { class: 'detail-body' });
  const vmCrumb = h('a', { href: '#/vms' }, '…');
  const vmTabCrumb = h('a', { href: '#/vms' }, 'Snapshots');
  const el = h(
    'section',
    { class: 'page page-snapshot' },
    h('nav', { class: 'breadcrumb', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/vms' }, 'VirtualMachines'), ' › ', vmCrumb, ' › ', vmTabCrumb, ' › ', h('span', { 'aria-current': 'page' }, name)),
    h('div', { class: 'page-header' }, h('h1', {}, name, ' ', status), toolbar),
    errors.el,
    body,
  );

  let snapshot = null;
  let content = null;
  let contentFetched = null;
  let eventsList = [];
  let vms = null;

  const render = () => {
    if (!snapshot) return;
    const vmName = snapshot.spec?.source?.name || '';
    const vmHref = `#/vms/${encodeURIComponent(namespace)}/${encodeURIComponent(vmName)}`;
    vmCrumb.href = vmHref;
    vmCrumb.textContent = vmName;
    vmTabCrumb.href = `${vmHref}/snapshots`;
    const st = snapshot.status || {};
    replace(status, statusBadge(snapshotPhase(snapshot), { dataset: { phase: st.phase || '' } }));
    const focusedLabel = toolbar.contains(document.activeElement) ? document.activeElement.textContent : null;
    const items = snapshotMenuItems(snapshot, () => vms?.get(namespace, vmName));
    items[2].onSelect = () => openDeleteSnapshot(snapshot, { onDeleted: () => (location.hash = `${vmHref}/snapshots`) });
    replace(
      toolbar,
      items.map((it, i) => h('button', { type: 'button', class: `button ${i === 0 ? 'button-primary' : it.danger ? 'button-danger' : 'button-secondary'}`, disabled: it.disabled, title: it.disabled ? it.description : undefined, onclick: it.onSelect }, it.label.replace(' from snapshot', ''))),
    );
    if (focusedLabel) [...toolbar.children].find((b) => b.textContent === focusedLabel && !b.disabled)?.focus();

    const activity = snapshotActivity(snapshot);
    const ind = indications(snapshot);
    const conditionColumns = ['Type', 'Status', 'Reason', 'Message', 'Changed'];
    const eventColumns = ['Type', 'Reason', 'Age', 'From', 'Message'];
    const details = card(
      'snapshot-details',
      'Details',
      h(
        'dl',
        { class: 'details' },
        item('Status', h('span', {}, statusBadge(snapshotPhase(snapshot)), activity ? h('span', { class: 'activity' }, activity) : null)),
        item('Ready to use', st.readyToUse ? statusBadge({ text: 'Yes', tone: 'success' }) : statusBadge({ text: 'No', tone: 'muted' })),
        item('VirtualMachine', h('a', { href: vmHref }, vmName)),
        item('Snapshot time', st.creationTime ? exactTime(st.creationTime) : null),
        item('Requested', ageElement(snapshot.metadata.creationTimestamp)),
        item('Content', st.virtualMachineSnapshotContentName),
        item('Deletion policy', snapshot.spec?.deletionPolicy || 'Delete'),
        item('Failure deadline', snapshot.spec?.failureDeadline || '5m (default)'),
        st.error?.message ? item('Error', h('span', { class: 'text-danger' }, st.error.message)) : null,
      ),
    );
    const indicationsCard = card(
      'snapshot-indications',
      'Indications',
      ind.length
        ? h('ul', { class: 'indication-list' }, ind.map((i) => h('li', {}, indicationBadge(i), h('span', { class: 'indication-message' }, i.message))))
        : h('p', { class: 'muted' }, st.phase === 'Succeeded' ? 'None: the VirtualMachine was stopped when the snapshot was taken.' : 'None yet.'),
    );
    replace(
      body,
      h('div', { class: 'detail-top' }, details, h('div', {}, indicationsCard, card('snapshot-volumes', 'Volumes', volumesSection(snapshot)))),
      card(
        'snapshot-conditions',
        'Conditions',
        table(
          conditionColumns,
          (st.conditions || []).map((c) => h('tr', { dataset: { condition: c.type } }, cells(conditionColumns, [c.type, c.status, c.reason || '—', c.message || '—', ageElement(c.lastTransitionTime)]))),
          'No conditions yet.',
        ),
      ),
      card('snapshot-backups', 'Volume backups', backupsTable(content)),
      card(
        'snapshot-events',
        'Events',
        table(
          eventColumns,
          eventsList.map((e) =>
            h(
              'tr',
              { dataset: { reason: e.reason || '' } },
              cells(eventColumns, [
                statusBadge({ text: e.type || 'Normal', tone: e.type === 'Warning' ? 'warning' : 'muted' }),
                e.reason || '—',
                ageElement(e.lastTimestamp || e.eventTime || e.firstTimestamp || e.metadata.creationTimestamp),
                e.source?.component || e.reportingComponent || '—',
                e.count > 1 ? `${e.message} (×${e.count})` : e.message,
              ]),
            ),
          ),
          'No events.',
        ),
      ),
    );
  };

  // The content changes when the snapshot does (its status mirrors the content's), so it is read
  // again on each change of the snapshot rather than watched: one connection fewer.
  const refreshContent = async (snap) => {
    const contentName = snap.status?.virtualMachineSnapshotContentName;
    if (!contentName) return;
    const version = snap.metadata.resourceVersion;
    if (contentFetched === version) return;
    contentFetched = version;
    try {
      content = await get(paths.contents(namespace, contentName));
    } catch (err) {
      if (err.code !== 404) errors.show(describeError(err, { kind: 'snapshot content', name: contentName, doing: 'load the volume backups' }));
      content = null;
    }
    render();
  };

  scope.watch(paths.snapshots(namespace), {}, (snapshots) => {
    if (snapshots.error && !snapshots.synced) {
      errors.show(describeError(snapshots.error, { doing: `load ${name}` }));
      return;
    }
    if (!snapshots.synced) return;
    const next = snapshots.get(namespace, name);
    if (!next) {
      if (snapshot) replace(body, h('div', { class: 'alert alert-warning', role: 'alert' }, h('p', {}, `The snapshot ${name} was deleted. `, h('a', { href: vmTabCrumb.getAttribute('href') }, 'Back to the snapshots'))));
      else replace(body, h('div', { class: 'alert alert-warning', role: 'alert' }, h('p', {}, `The snapshot ${name} does not exist in namespace ${namespace}. `, h('a', { href: '#/vms' }, 'Back to the VirtualMachines'))));
      replace(toolbar);
      replace(status);
      snapshot = null;
      return;
    }
    snapshot = next;
    render();
    refreshContent(next);
  });
  scope.watch(paths.events(namespace), { fieldSelector: `involvedObject.name=${name}` }, (events) => {
    eventsList = events
      .list()
      .filter((e) => e.involvedObject?.kind === 'VirtualMachineSnapshot')
      .sort((a, b) => (b.lastTimestamp || b.eventTime || '').localeCompare(a.lastTimestamp || a.eventTime || ''));
    render();
  });
  vms = scope.watch(paths.vms(), {});
  return { el, title: `Snapshot ${name}`, dispose: () => scope.dispose() };
}
