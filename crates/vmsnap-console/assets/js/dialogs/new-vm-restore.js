// "Restore as new VirtualMachine", from a snapshot or from a backup: a name for the new VM, checked
// against the VMs of the namespace, then the restore is created and its progress shown until the
// VM exists, with a link to it.

import { create, paths } from '../api.js';
import { h } from '../dom.js';
import { describeError, vmNameProblem } from '../errors.js';
import { timestampedName } from '../format.js';
import { openDialog, button } from './dialog.js';
import { showRestoreProgress } from './restore-progress.js';

/// Opens the dialog. `restores`: the kind of restore (`snapshotRestores` or `backupRestores` of
/// restore-progress.js) and `source` the snapshot or backup it restores; `id`: the dialog's class
/// (`dialog-ID`) and the prefix of its element ids; `defaultName`, `intro` (the nodes that say
/// what is restored), `help` (what the new VM gets), `doneText(target)` and `started(target)` (run
/// once the restore is created).
export function openNewVmRestore({ title, id, namespace, restores, source, defaultName, intro, help, doneText, started }) {
  const inputId = `${id}-vm-name`;
  const formId = `${id}-form`;
  openDialog({
    title,
    className: `dialog-${id}`,
    build(dialog) {
      const nameInput = h('input', {
        id: inputId,
        name: 'name',
        type: 'text',
        value: defaultName.slice(0, 63),
        required: true,
        autocomplete: 'off',
        spellcheck: 'false',
        autofocus: true,
        'aria-describedby': `${inputId}-help`,
        // A refusal is about the name that was submitted: editing it makes the message stale.
        oninput: () => {
          dialog.error.clear();
          nameInput.removeAttribute('aria-invalid');
        },
      });
      const save = button('Restore', 'primary', null, { type: 'submit', form: formId });
      dialog.setActions(save, button('Cancel', 'secondary', () => dialog.close()));
      const vms = dialog.scope.watch(paths.vms(), {});
      dialog.scope.watch(restores.path(namespace), {});

      async function submit(event) {
        event.preventDefault();
        const target = nameInput.value.trim();
        const problem = vmNameProblem(target) || (vms.get(namespace, target) ? `A VirtualMachine named ${target} already exists. Choose another name.` : '');
        if (!dialog.validate(nameInput, problem)) return;
        dialog.setBusy(true);
        save.disabled = true;
        const restoreName = timestampedName(target, 'restore', 253);
        try {
          await create(restores.path(namespace), restores.object(namespace, restoreName, source, target));
          dialog.setBusy(false);
          if (started) started(target);
          const open = h('p', {}, h('a', { href: `#/vms/${encodeURIComponent(namespace)}/${encodeURIComponent(target)}`, onclick: () => dialog.close() }, `Open VirtualMachine ${target}`));
          showRestoreProgress(dialog, restores, namespace, restoreName, { doneText: doneText(target), doneLink: open });
        } catch (err) {
          dialog.setBusy(false);
          save.disabled = false;
          dialog.error.show(describeError(err, { kind: 'restore', name: restoreName, doing: `create ${target}` }));
        }
      }

      return h(
        'form',
        { id: formId, novalidate: true, onsubmit: submit },
        h('p', {}, ...intro),
        h('div', { class: 'field' }, h('label', { for: inputId }, 'Name of the new VirtualMachine'), nameInput, h('p', { id: `${inputId}-help`, class: 'help' }, help)),
      );
    },
  });
}
