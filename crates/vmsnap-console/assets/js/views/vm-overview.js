// The Overview tab of a VirtualMachine: status, guest agent, and its disks with whether each can
// be snapshotted.

import { h, replace } from '../dom.js';
import { ageElement, agentConnected, statusBadge, vmDisks, vmHasInstance, vmStatus } from '../format.js';
import { nextRun, scheduleCovers, scheduleKeep, scheduleState, scheduleWhen } from './schedules.js';

function item(label, value) {
  return [h('dt', {}, label), h('dd', {}, value)];
}

function agentText(vm) {
  if (!vmHasInstance(vm)) return h('span', { class: 'muted' }, 'Not applicable (the VirtualMachine is not running)');
  return agentConnected(vm)
    ? statusBadge({ text: 'Connected', tone: 'success' }, { dataset: { agent: 'connected' } })
    : statusBadge({ text: 'Not connected', tone: 'warning' }, { dataset: { agent: 'disconnected' } });
}

function snapshotSupport(disk) {
  if (!disk.snapshot.known) return h('span', { class: 'muted' }, 'Not known yet');
  if (disk.snapshot.enabled) return statusBadge({ text: 'Supported', tone: 'success' });
  return h('span', {}, statusBadge({ text: 'Not supported', tone: 'warning' }), h('span', { class: 'reason' }, disk.snapshot.reason));
}

/// The panel; `update(vm)` redraws it.
export function overviewPanel() {
  const details = h('dl', { class: 'details' });
  const disks = h('tbody');
  const schedules = h('div', { class: 'schedules-of-vm' });
  let vm = null;
  let allSchedules = null;
  const renderSchedules = () => {
    if (!vm || !allSchedules?.synced) return;
    const covering = allSchedules.list().filter((s) => scheduleCovers(s, vm));
    replace(
      schedules,
      covering.length
        ? h(
            'ul',
            { class: 'plain-list' },
            covering.map((s) =>
              h(
                'li',
                { dataset: { schedule: s.metadata.name } },
                h('a', { href: '#/schedules' }, s.metadata.name),
                ` — ${scheduleWhen(s)}, keeps ${scheduleKeep(s)} `,
                statusBadge(scheduleState(s)),
                h('span', { class: 'reason' }, ' next run: ', nextRun(s)),
              ),
            ),
          )
        : h('p', { class: 'muted' }, 'No schedule covers this VirtualMachine: its snapshots are taken by hand.'),
    );
  };
  const el = h(
    'div',
    { class: 'overview' },
    h('section', { class: 'card', 'aria-labelledby': 'overview-details' }, h('h2', { id: 'overview-details' }, 'Details'), details),
    h(
      'section',
      { class: 'card', 'aria-labelledby': 'overview-disks' },
      h('h2', { id: 'overview-disks' }, 'Disks'),
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          { class: 'table table-disks' },
          h('thead', {}, h('tr', {}, ['Name', 'Drive', 'Interface', 'Source', 'Snapshot'].map((c) => h('th', { scope: 'col' }, c)))),
          disks,
        ),
      ),
    ),
    h('section', { class: 'card', 'aria-labelledby': 'overview-schedules' }, h('h2', { id: 'overview-schedules' }, 'Schedules'), schedules),
  );
  return {
    el,
    /// Redraws the schedules covering the VM from the live collection of its namespace's schedules.
    updateSchedules(collection) {
      allSchedules = collection;
      renderSchedules();
    },
    update(current) {
      vm = current;
      renderSchedules();
      const status = vm.status || {};
      replace(
        details,
        item('Status', statusBadge(vmStatus(vm), { dataset: { vmStatus: status.printableStatus || '' } })),
        item('Guest agent', agentText(vm)),
        item('Namespace', vm.metadata.namespace),
        item('Created', ageElement(vm.metadata.creationTimestamp)),
        item('Run strategy', vm.spec?.runStrategy || (vm.spec?.running ? 'Always (running: true)' : vm.spec?.running === false ? 'Halted (running: false)' : '—')),
        status.snapshotInProgress ? item('Snapshot in progress', status.snapshotInProgress) : null,
        status.restoreInProgress ? item('Restore in progress', status.restoreInProgress) : null,
      );
      const rows = vmDisks(vm);
      replace(
        disks,
        rows.length
          ? rows.map((d) =>
              h(
                'tr',
                { dataset: { disk: d.name } },
                h('th', { scope: 'row', 'data-label': 'Name' }, d.name),
                h('td', { 'data-label': 'Drive' }, d.type),
                h('td', { 'data-label': 'Interface' }, d.bus || '—'),
                h('td', { 'data-label': 'Source' }, d.source),
                h('td', { 'data-label': 'Snapshot' }, snapshotSupport(d)),
              ),
            )
          : h('tr', {}, h('td', { colspan: '5', class: 'muted' }, 'This VirtualMachine has no disks.')),
      );
    },
  };
}
