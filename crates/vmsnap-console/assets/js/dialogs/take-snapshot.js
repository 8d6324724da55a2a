// "Take snapshot": a name (prefilled), the disks the snapshot will include, and, when some disks
// cannot be included, a warning naming them and why, which must be acknowledged before saving.

import { create, paths, snapshotObject } from '../api.js';
import { h, replace, announce } from '../dom.js';
import { describeError, nameProblem } from '../errors.js';
import { agentConnected, timestampedName, vmDisks, vmHasInstance } from '../format.js';
import { openDialog, button } from './dialog.js';

export function openTakeSnapshot(initialVm, { onCreated } = {}) {
  const { namespace, name: vmName } = initialVm.metadata;
  openDialog({
    title: 'Take snapshot',
    className: 'dialog-take-snapshot',
    build(dialog) {
      const nameInput = h('input', {
        id: 'snapshot-name',
        name: 'name',
        type: 'text',
        value: timestampedName(vmName, 'snapshot', 253),
        required: true,
        autocomplete: 'off',
        spellcheck: 'false',
        'aria-describedby': 'snapshot-name-help',
        // A refusal is about the name that was submitted: editing it makes the message stale.
        oninput: () => {
          dialog.error.clear();
          nameInput.removeAttribute('aria-invalid');
        },
      });
      const nameHelp = h('p', { id: 'snapshot-name-help', class: 'help' }, `A snapshot of ${vmName} in namespace ${namespace}.`);
      const included = h('ul', { class: 'disk-list' });
      const includedSummary = h('summary', {}, 'Disks included in this snapshot');
      const disksBox = h('details', { class: 'disks-included' }, includedSummary, included);
      const warning = h('div', { class: 'alert alert-warning', role: 'alert', hidden: true });
      const ack = h('input', { type: 'checkbox', id: 'snapshot-ack', onchange: () => updateSave() });
      const ackBox = h('div', { class: 'checkbox', hidden: true }, ack, h('label', { for: 'snapshot-ack' }, 'I am aware of this warning and wish to proceed'));
      const notes = h('div', { class: 'notes' });
      const save = button('Save', 'primary', null, { type: 'submit', form: 'take-snapshot-form' });
      const cancel = button('Cancel', 'secondary', () => dialog.close());
      dialog.setActions(save, cancel);

      let needsAck = false;
      function updateSave() {
        save.disabled = dialog.busy || (needsAck && !ack.checked);
      }

      function update(vm) {
        if (!vm) return;
        const disks = vmDisks(vm);
        const inc = disks.filter((d) => d.snapshot.enabled);
        const excluded = disks.filter((d) => d.snapshot.known && !d.snapshot.enabled);
        const unknown = disks.filter((d) => !d.snapshot.known);
        replace(includedSummary, `Disks included in this snapshot (${inc.length})`);
        replace(
          included,
          inc.length
            ? inc.map((d) => h('li', { dataset: { disk: d.name } }, h('strong', {}, d.name), h('span', { class: 'muted' }, ` — ${d.source}`)))
            : h('li', { class: 'muted' }, 'None: only the VirtualMachine configuration will be saved.'),
        );
        needsAck = excluded.length > 0;
        warning.hidden = !needsAck;
        ackBox.hidden = !needsAck;
        if (needsAck) {
          replace(
            warning,
            h('p', { class: 'alert-title' }, excluded.length === 1 ? 'One disk cannot be included in the snapshot' : `${excluded.length} disks cannot be included in the snapshot`),
            h('p', {}, 'Restoring this snapshot will not bring back the data of:'),
            h('ul', { class: 'excluded-disks' }, excluded.map((d) => h('li', { dataset: { disk: d.name } }, h('strong', {}, d.name), `: ${d.snapshot.reason || 'not supported'}`))),
          );
        }
        replace(
          notes,
          unknown.length ? h('p', { class: 'help' }, `Not known yet whether these disks can be included: ${unknown.map((d) => d.name).join(', ')}.`) : null,
          vmHasInstance(vm) && !agentConnected(vm)
            ? h('p', { class: 'help' }, 'The guest agent is not connected, so the file systems cannot be frozen: the snapshot will be crash-consistent.')
            : null,
          vm.status?.snapshotInProgress ? h('p', { class: 'help' }, `Snapshot ${vm.status.snapshotInProgress} is in progress; this one starts when it ends.`) : null,
        );
        updateSave();
      }

      async function submit(event) {
        event?.preventDefault();
        const name = nameInput.value.trim();
        const problem = nameProblem(name);
        if (!dialog.validate(nameInput, problem)) return;
        dialog.setBusy(true);
        updateSave();
        try {
          await create(paths.snapshots(namespace), snapshotObject(namespace, name, vmName));
          announce(`Snapshot ${name} is being taken`);
          dialog.close();
          if (onCreated) onCreated(name);
        } catch (err) {
          dialog.error.show(describeError(err, { kind: 'snapshot', name, doing: 'take the snapshot' }));
          nameInput.focus();
        } finally {
          dialog.setBusy(false);
          updateSave();
        }
      }

      const vms = dialog.scope.watch(paths.vms(), {}, (c) => update(c.get(namespace, vmName)));
      update(vms.get(namespace, vmName) || initialVm);
      const form = h(
        'form',
        { id: 'take-snapshot-form', novalidate: true, onsubmit: submit },
        h('div', { class: 'field' }, h('label', { for: 'snapshot-name' }, 'Name'), nameInput, nameHelp),
        disksBox,
        warning,
        ackBox,
        notes,
      );
      nameInput.setAttribute('autofocus', '');
      return form;
    },
  });
}
