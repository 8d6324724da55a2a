// The VirtualMachines list: name, namespace, status, age, and start/stop/restart, kept live.

import { paths } from '../api.js';
import { h, replace, errorSlot, updateKeyed } from '../dom.js';
import { describeError } from '../errors.js';
import { ageElement, statusBadge, vmStatus } from '../format.js';
import { Scope } from '../live.js';
import { actionButtons, actionAllowed } from '../vm-actions.js';

export function vmsView() {
  const scope = new Scope();
  const errors = errorSlot();
  const loadError = errorSlot();
  const tbody = h('tbody');
  const empty = h('p', { class: 'empty', hidden: true });
  const table = h(
    'table',
    { class: 'table table-vms' },
    h('caption', { class: 'visually-hidden' }, 'VirtualMachines, updated live'),
    h(
      'thead',
      {},
      h('tr', {}, ['Name', 'Namespace', 'Status', 'Age'].map((c) => h('th', { scope: 'col' }, c)), h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions'))),
    ),
    tbody,
  );
  const el = h(
    'section',
    { class: 'page' },
    h('div', { class: 'page-header' }, h('h1', {}, 'VirtualMachines')),
    errors.el,
    loadError.el,
    h('div', { class: 'table-wrap' }, table),
    empty,
  );

  let vms = null;
  const render = () => {
    if (!vms) return;
    if (vms.error) loadError.show(describeError(vms.error, { doing: 'load the VirtualMachines' }) + ' Retrying…');
    else loadError.clear();
    if (!vms.synced) return;
    const items = vms.list();
    empty.hidden = items.length > 0;
    replace(empty, 'There are no VirtualMachines yet. Create one with kubectl (kubectl apply -f vm.yaml) and it appears here.');
    table.hidden = items.length === 0;
    updateKeyed(tbody, items, {
      key: (vm) => `${vm.metadata.namespace}/${vm.metadata.name}`,
      signature: (vm) =>
        JSON.stringify([vm.status?.printableStatus, vm.metadata.creationTimestamp, ['start', 'stop', 'restart'].map((a) => actionAllowed(vm, a))]),
      render: (vm) => {
        const { namespace, name } = vm.metadata;
        return h(
          'tr',
          { dataset: { name, namespace } },
          h('th', { scope: 'row', 'data-label': 'Name' }, h('a', { href: `#/vms/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`, dataset: { focusKey: 'link' } }, name)),
          h('td', { 'data-label': 'Namespace' }, namespace),
          h('td', { 'data-label': 'Status', class: 'cell-status' }, statusBadge(vmStatus(vm))),
          h('td', { 'data-label': 'Age' }, ageElement(vm.metadata.creationTimestamp)),
          h('td', { class: 'cell-actions' }, actionButtons(vm, { compact: true, onError: (m) => errors.show(m), rerender: forceRender })),
        );
      },
    });
  };
  const forceRender = () => {
    for (const row of tbody.children) delete row.dataset.signature;
    render();
  };
  vms = scope.watch(paths.vms(), {}, render);
  return { el, title: 'VirtualMachines', dispose: () => scope.dispose() };
}
