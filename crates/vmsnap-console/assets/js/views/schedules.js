// The Schedules page: every VirtualMachineSnapshotSchedule, what it covers, when it runs, what it
// keeps and how its last runs went, kept live. The words for a schedule are shared with the VM
// page, which lists the schedules covering that VM.

import { paths } from '../api.js';
import { h, replace, errorSlot, updateKeyed } from '../dom.js';
import { describeError } from '../errors.js';
import { ageElement, condition, exactTime, statusBadge } from '../format.js';
import { Scope } from '../live.js';

/// Whether a label selector (`matchLabels`, `matchExpressions`) selects `labels`, as Kubernetes
/// reads it: every requirement holds; an empty selector selects everything.
export function selectorMatches(selector, labels = {}) {
  for (const [key, value] of Object.entries(selector?.matchLabels || {})) {
    if (labels[key] !== value) return false;
  }
  for (const { key, operator, values = [] } of selector?.matchExpressions || []) {
    const has = Object.prototype.hasOwnProperty.call(labels, key);
    const ok = {
      In: has && values.includes(labels[key]),
      NotIn: !has || !values.includes(labels[key]),
      Exists: has,
      DoesNotExist: !has,
    }[operator];
    if (!ok) return false;
  }
  return true;
}

/// Whether `schedule` covers the VirtualMachine `vm` (same namespace, by name or by selector).
export function scheduleCovers(schedule, vm) {
  if (schedule.metadata.namespace !== vm.metadata.namespace) return false;
  const spec = schedule.spec || {};
  if (spec.vmName) return spec.vmName === vm.metadata.name;
  return Boolean(spec.selector) && selectorMatches(spec.selector, vm.metadata.labels || {});
}

/// "every 1h" or "cron 30 2 * * * (Europe/Berlin)".
export function scheduleWhen(schedule) {
  const spec = schedule.spec || {};
  if (spec.every) return `every ${spec.every}`;
  if (spec.cron) return `cron ${spec.cron} (${spec.timeZone || 'UTC'})`;
  return '—';
}

/// "VM db" or "VMs with app=web, tier in (db)".
export function scheduleTargets(schedule) {
  const spec = schedule.spec || {};
  if (spec.vmName) return `VM ${spec.vmName}`;
  const parts = Object.entries(spec.selector?.matchLabels || {}).map(([k, v]) => `${k}=${v}`);
  for (const { key, operator, values = [] } of spec.selector?.matchExpressions || []) {
    const list = values.join(', ');
    parts.push({ In: `${key} in (${list})`, NotIn: `${key} notin (${list})`, Exists: key, DoesNotExist: `!${key}` }[operator] || key);
  }
  return parts.length ? `VMs with ${parts.join(', ')}` : 'every VM of the namespace';
}

/// "last 3, daily 7": what the keep policy keeps; everything when it is empty.
export function scheduleKeep(schedule) {
  const keep = schedule.spec?.keep || {};
  const parts = ['last', 'hourly', 'daily', 'weekly', 'monthly', 'yearly']
    .filter((k) => keep[k] !== undefined && keep[k] !== null)
    .map((k) => `${k} ${keep[k]}`);
  if (keep.within) parts.push(`within ${keep.within}`);
  return parts.length ? parts.join(', ') : 'everything';
}

/// The schedule's state in words: suspended, failing (its Failure condition), or active.
export function scheduleState(schedule) {
  if (schedule.spec?.suspend) return { text: 'Suspended', tone: 'warning' };
  const failure = condition(schedule, 'Failure');
  if (failure?.status === 'True') return { text: 'Failing', tone: 'danger', detail: failure.message || failure.reason || '' };
  return { text: 'Active', tone: 'success' };
}

/// When the next run is: its time, or why there is none.
export function nextRun(schedule) {
  if (schedule.spec?.suspend) return h('span', { class: 'muted' }, 'none while suspended');
  const next = schedule.status?.nextRunTime;
  if (!next) return h('span', { class: 'muted' }, 'not planned yet');
  return h('time', { datetime: next }, exactTime(next));
}

export function schedulesView() {
  const scope = new Scope();
  const loadError = errorSlot();
  const tbody = h('tbody');
  const empty = h('p', { class: 'empty', hidden: true });
  const table = h(
    'table',
    { class: 'table table-schedules' },
    h('caption', { class: 'visually-hidden' }, 'Snapshot schedules, updated live'),
    h('thead', {}, h('tr', {}, ['Name', 'Namespace', 'Covers', 'When', 'Keeps', 'Status', 'Last success', 'Next run'].map((c) => h('th', { scope: 'col' }, c)))),
    tbody,
  );
  const el = h(
    'section',
    { class: 'page' },
    h('div', { class: 'page-header' }, h('h1', {}, 'Schedules')),
    loadError.el,
    h('div', { class: 'table-wrap' }, table),
    empty,
  );
  const render = (schedules) => {
    if (schedules.error) loadError.show(describeError(schedules.error, { doing: 'load the schedules' }) + ' Retrying…');
    else loadError.clear();
    if (!schedules.synced) return;
    const items = schedules.list();
    empty.hidden = items.length > 0;
    replace(empty, 'There are no snapshot schedules yet. Create one with: vmsnap schedule create NAME --vm VM --every 1h --keep-last 24');
    table.hidden = items.length === 0;
    updateKeyed(tbody, items, {
      key: (s) => `${s.metadata.namespace}/${s.metadata.name}`,
      signature: (s) => JSON.stringify([s.spec, s.status]),
      render: (s) => {
        const state = scheduleState(s);
        return h(
          'tr',
          { dataset: { name: s.metadata.name, namespace: s.metadata.namespace } },
          h('th', { scope: 'row', 'data-label': 'Name' }, s.metadata.name),
          h('td', { 'data-label': 'Namespace' }, s.metadata.namespace),
          h('td', { 'data-label': 'Covers' }, scheduleTargets(s)),
          h('td', { 'data-label': 'When' }, scheduleWhen(s)),
          h('td', { 'data-label': 'Keeps' }, scheduleKeep(s)),
          h('td', { 'data-label': 'Status', class: 'cell-status', title: state.detail || '' }, statusBadge(state, { dataset: { scheduleState: state.text } })),
          h('td', { 'data-label': 'Last success' }, ageElement(s.status?.lastSuccessTime)),
          h('td', { 'data-label': 'Next run' }, nextRun(s)),
        );
      },
    });
  };
  scope.watch(paths.schedules(), {}, render);
  return { el, title: 'Schedules', dispose: () => scope.dispose() };
}
