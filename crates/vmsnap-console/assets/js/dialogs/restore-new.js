// "Restore as new VirtualMachine": a copy of the snapshot's VM under a new name, with its progress
// shown until it is created.

import { create, paths, restoreObject } from '../api.js';
import { h } from '../dom.js';
import { describeError, vmNameProblem } from '../errors.js';
import { timestampedName } from '../format.js';
import { openDialog, button } from './dialog.js';
import { showRestoreProgress } from './restore.js';

export function openRestoreAsNew(snapshot) {
  const { namespace, name: snapName } = snapshot.metadata;
  const vmName = snapshot.spec.source.name;
  openDialog({
    title: 'Restore as new VirtualMachine',
    className: 'dialog-restore-new',
    build(dialog) {
      const nameInput = h('input', {
        id: 'new-vm-name',
        name: 'name',
        type: 'text',
        value: `${vmName}-copy`.slice(0, 63),
        required: true,
        autocomplete: 'off',
        spellcheck: 'false',
        autofocus: true,
        'aria-describedby': 'new-vm-name-help',
        // A refusal is about the name that was submitted: editing it makes the message stale.
        oninput: () => {
          dialog.error.clear();
          nameInput.removeAttribute('aria-invalid');
        },
      });
      const save = button('Restore', 'primary', null, { type: 'submit', form: 'restore-new-form' });
      dialog.setActions(save, button('Cancel', 'secondary', () => dialog.close()));
      const vms = dialog.scope.watch(paths.vms(), {});
      dialog.scope.watch(paths.restores(namespace), {});

      async function submit(event) {
        event.preventDefault();
        const target = nameInput.value.trim();
        const problem = vmNameProblem(target) || (vms.get(namespace, target) ? `A VirtualMachine named ${target} already exists. Choose another name.` : '');
        if (!dialog.validate(nameInput, problem)) return;
        dialog.setBusy(true);
        save.disabled = true;
        const restoreName = timestampedName(target, 'restore', 253);
        try {
          await create(paths.restores(namespace), restoreObject(namespace, restoreName, snapName, target));
          dialog.setBusy(false);
          const open = h('p', {}, h('a', { href: `#/vms/${encodeURIComponent(namespace)}/${encodeURIComponent(target)}`, onclick: () => dialog.close() }, `Open VirtualMachine ${target}`));
          showRestoreProgress(dialog, namespace, restoreName, { doneText: `VirtualMachine ${target} was created from snapshot ${snapName}.`, doneLink: open });
        } catch (err) {
          dialog.setBusy(false);
          save.disabled = false;
          dialog.error.show(describeError(err, { kind: 'restore', name: restoreName, doing: `create ${target}` }));
        }
      }

      return h(
        'form',
        { id: 'restore-new-form', novalidate: true, onsubmit: submit },
        h('p', {}, 'Create a new VirtualMachine from snapshot ', h('strong', {}, snapName), ` of ${vmName}. ${vmName} itself is not changed.`),
        h(
          'div',
          { class: 'field' },
          h('label', { for: 'new-vm-name' }, 'Name of the new VirtualMachine'),
          nameInput,
          h('p', { id: 'new-vm-name-help', class: 'help' }, `Created stopped, in namespace ${namespace}. It keeps the MAC addresses and firmware UUID of ${vmName}: change them before running both on the same network.`),
        ),
      );
    },
  });
}
