// A VirtualMachine's page: its status and actions, and the Overview, Snapshots and Backups tabs.
// A tab's watches are held only while it is shown: a browser keeps at most six connections to one
// server over HTTP/1.1, and each watch holds one.

import { paths } from '../api.js';
import { h, replace, errorSlot, newId } from '../dom.js';
import { describeError } from '../errors.js';
import { statusBadge, vmStatus } from '../format.js';
import { Scope } from '../live.js';
import { actionButtons } from '../vm-actions.js';
import { overviewPanel } from './vm-overview.js';
import { snapshotsPanel } from './snapshots.js';
import { backupsPanel } from './backups.js';
import { openTakeSnapshot } from '../dialogs/take-snapshot.js';

const TABS = [
  { id: 'overview', label: 'Overview' },
  { id: 'snapshots', label: 'Snapshots' },
  { id: 'backups', label: 'Backups' },
];

export function vmDetailView(namespace, name, tab = 'overview') {
  const scope = new Scope();
  const errors = errorSlot();
  const vmHref = `#/vms/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`;
  const status = h('span', { class: 'header-status' });
  const actions = h('div', { class: 'header-actions' });
  const missing = h('div', { hidden: true });
  const overview = overviewPanel();
  const snapshots = snapshotsPanel(namespace, name);
  const backups = backupsPanel(namespace, name);
  const lazyPanels = { snapshots, backups };
  let shown = null;
  let tabScope = null;

  const panels = {};
  const tabs = {};
  const tablist = h('div', { class: 'tabs', role: 'tablist', 'aria-label': `${name} sections` });
  for (const t of TABS) {
    const tabId = newId(`tab-${t.id}`);
    const panelId = newId(`panel-${t.id}`);
    tabs[t.id] = h(
      'button',
      {
        type: 'button',
        role: 'tab',
        id: tabId,
        class: 'tab',
        'aria-controls': panelId,
        dataset: { tab: t.id },
        onclick: () => select(t.id, true),
        onkeydown: (event) => {
          const order = TABS.map((x) => x.id);
          const i = order.indexOf(t.id);
          const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: order.length - 1 }[event.key];
          if (next === undefined) return;
          event.preventDefault();
          select(order[(next + order.length) % order.length], true);
        },
      },
      t.label,
    );
    panels[t.id] = h('div', { role: 'tabpanel', id: panelId, class: 'tabpanel', 'aria-labelledby': tabId, tabindex: '0' });
    tablist.append(tabs[t.id]);
  }
  panels.overview.append(overview.el);
  panels.snapshots.append(snapshots.el);
  panels.backups.append(backups.el);

  function select(id, focus) {
    for (const t of TABS) {
      const selected = t.id === id;
      tabs[t.id].setAttribute('aria-selected', String(selected));
      tabs[t.id].tabIndex = selected ? 0 : -1;
      panels[t.id].hidden = !selected;
    }
    if (focus) tabs[id].focus();
    history.replaceState(null, '', `${vmHref}/${id}`);
    if (shown !== id) {
      shown = id;
      // The new tab's watches are acquired before the old tab's are released, so shared ones stay.
      const previous = tabScope;
      tabScope = lazyPanels[id] ? new Scope() : null;
      if (tabScope) lazyPanels[id].start(tabScope);
      if (previous) previous.dispose();
    }
  }

  let current = null;
  const takeSnapshot = h(
    'button',
    {
      type: 'button',
      class: 'button button-primary',
      disabled: true,
      onclick: () =>
        openTakeSnapshot(current, {
          onCreated: () => select('snapshots', false),
        }),
    },
    'Take snapshot',
  );

  const el = h(
    'section',
    { class: 'page' },
    h('nav', { class: 'breadcrumb', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/vms' }, 'VirtualMachines'), h('span', { 'aria-hidden': 'true' }, ' › '), h('span', { 'aria-current': 'page' }, name)),
    h('div', { class: 'page-header' }, h('h1', {}, name, ' ', status), h('div', { class: 'toolbar' }, actions, takeSnapshot)),
    errors.el,
    missing,
    tablist,
    panels.overview,
    panels.snapshots,
    panels.backups,
  );
  select(tab, false);

  let rendered = null;
  let lastAction = null;
  actions.addEventListener('focusin', (event) => {
    lastAction = event.target.dataset.action || null;
  });
  actions.addEventListener('focusout', (event) => {
    if (event.relatedTarget && !actions.contains(event.relatedTarget)) lastAction = null;
  });
  const render = (vms) => {
    if (vms.error && !vms.synced) {
      errors.show(describeError(vms.error, { doing: `load ${name}` }));
      return;
    }
    if (!vms.synced) return;
    const vm = vms.get(namespace, name);
    current = vm;
    missing.hidden = Boolean(vm);
    takeSnapshot.disabled = !vm;
    backups.updateVm(vm || null);
    if (!vm) {
      replace(missing, h('div', { class: 'alert alert-warning', role: 'alert' }, h('p', {}, `The VirtualMachine ${name} does not exist in namespace ${namespace} (it may have been deleted). Its backups, if any, are under Backups and can be restored as a new VirtualMachine. `, h('a', { href: '#/vms' }, 'Back to the VirtualMachines'))));
      replace(status);
      replace(actions);
      return;
    }
    if (rendered === vm) return;
    rendered = vm;
    replace(status, statusBadge(vmStatus(vm), { dataset: { vmStatus: vm.status?.printableStatus || '' } }));
    // A clicked action button is disabled (and loses the focus) until the VM changes: put the focus
    // back on the same action, or on the first one that can be used now.
    const restoreFocus = lastAction && (actions.contains(document.activeElement) || document.activeElement === document.body);
    replace(actions, actionButtons(vm, { onError: (m) => errors.show(m), rerender: () => { rendered = null; render(vms); } }));
    if (restoreFocus) {
      const buttons = [...actions.querySelectorAll('button')];
      const again = buttons.find((b) => b.dataset.action === lastAction && !b.disabled) || buttons.find((b) => !b.disabled);
      (again || takeSnapshot).focus();
    }
    overview.update(vm);
    snapshots.updateVm(vm);
  };
  scope.watch(paths.vms(), {}, render);
  scope.watch(paths.schedules(namespace), {}, (schedules) => overview.updateSchedules(schedules));
  return {
    el,
    title: name,
    dispose: () => {
      if (tabScope) tabScope.dispose();
      scope.dispose();
    },
  };
}
