// "Restore as new VirtualMachine" from a backup: a new VM of the backup's VM under a new name,
// with the restore's progress shown until the VM exists, then a link to it.

import { create, paths, repositoryRestoreObject } from '../api.js';
import { h, replace, announce, alertBox } from '../dom.js';
import { describeError, vmNameProblem } from '../errors.js';
import { exactTime, statusBadge, timestampedName } from '../format.js';
import { transferPhase } from '../backup-format.js';
import { transferStatus } from '../views/backups.js';
import { openDialog, button } from './dialog.js';

/// Whether a restore of a backup is done: KubeVirt's `complete`, or the phase.
export function restoreComplete(restore) {
  return restore.status?.complete === true || restore.status?.phase === 'Succeeded';
}

function showProgress(dialog, namespace, restoreName, target, backupName) {
  const state = h('div', { class: 'restore-progress', 'aria-live': 'polite' });
  const closeButton = button('Close', 'secondary', () => dialog.close());
  dialog.setActions(closeButton);
  const help = h('p', { class: 'help' }, 'Closing this dialog does not stop the restore; its progress is also shown under "Restores from backups".');
  replace(dialog.body, h('p', {}, 'Progress of restore ', h('strong', {}, restoreName), ':'), state, help);
  closeButton.focus();
  let announced = false;
  let seen = false;
  dialog.scope.watch(paths.backupRestores(namespace), {}, (restores) => {
    const restore = restores.get(namespace, restoreName);
    if (!restore) {
      // Just created, the watch may not have brought it yet.
      replace(state, seen ? alertBox('warning', null, h('p', {}, `The restore ${restoreName} no longer exists.`)) : statusBadge({ text: 'Starting', tone: 'info', busy: true }));
      return;
    }
    seen = true;
    const phase = transferPhase(restore);
    if (restoreComplete(restore)) {
      const text = `VirtualMachine ${target} was created from backup ${backupName}.`;
      dialog.el.dataset.restoreState = 'Complete';
      replace(state, alertBox('success', text, h('p', {}, h('a', { href: `#/vms/${encodeURIComponent(namespace)}/${encodeURIComponent(target)}`, onclick: () => dialog.close() }, `Open VirtualMachine ${target}`))));
      closeButton.className = 'button button-primary';
      help.hidden = true;
      if (!announced) announce(text);
      announced = true;
    } else if (phase.text === 'Failed') {
      dialog.el.dataset.restoreState = 'Failed';
      help.hidden = true;
      replace(state, alertBox('danger', 'The restore failed', h('p', {}, phase.detail)));
    } else {
      dialog.el.dataset.restoreState = phase.text;
      replace(state, transferStatus(restore, `Restore ${restoreName}`));
    }
  });
}

export function openRestoreBackup(backup) {
  const { namespace, name: backupName } = backup.metadata;
  const vmName = backup.status?.vmName || backup.spec?.source?.name || 'vm';
  openDialog({
    title: 'Restore backup as new VirtualMachine',
    className: 'dialog-restore-backup',
    build(dialog) {
      const nameInput = h('input', {
        id: 'backup-restore-vm-name',
        name: 'name',
        type: 'text',
        value: `${vmName}-restored`.slice(0, 63),
        required: true,
        autocomplete: 'off',
        spellcheck: 'false',
        autofocus: true,
        'aria-describedby': 'backup-restore-vm-name-help',
        oninput: () => {
          dialog.error.clear();
          nameInput.removeAttribute('aria-invalid');
        },
      });
      const save = button('Restore', 'primary', null, { type: 'submit', form: 'restore-backup-form' });
      dialog.setActions(save, button('Cancel', 'secondary', () => dialog.close()));
      const vms = dialog.scope.watch(paths.vms(), {});
      dialog.scope.watch(paths.backupRestores(namespace), {});

      async function submit(event) {
        event.preventDefault();
        const target = nameInput.value.trim();
        const problem = vmNameProblem(target) || (vms.get(namespace, target) ? `A VirtualMachine named ${target} already exists. Choose another name.` : '');
        if (!dialog.validate(nameInput, problem)) return;
        dialog.setBusy(true);
        save.disabled = true;
        const restoreName = timestampedName(target, 'restore', 253);
        try {
          await create(paths.backupRestores(namespace), repositoryRestoreObject(namespace, restoreName, backupName, target));
          dialog.setBusy(false);
          announce(`Restore of backup ${backupName} to ${target} started`);
          showProgress(dialog, namespace, restoreName, target, backupName);
        } catch (err) {
          dialog.setBusy(false);
          save.disabled = false;
          dialog.error.show(describeError(err, { kind: 'restore', name: restoreName, doing: `create ${target}` }));
        }
      }

      const when = backup.status?.pointInTime;
      return h(
        'form',
        { id: 'restore-backup-form', novalidate: true, onsubmit: submit },
        h('p', {}, 'Create a new VirtualMachine from backup ', h('strong', {}, backupName), ` of ${vmName}`, when ? ` (${exactTime(when)})` : '', ` in repository ${backup.spec?.repository}. ${vmName} itself is not changed.`),
        h(
          'div',
          { class: 'field' },
          h('label', { for: 'backup-restore-vm-name' }, 'Name of the new VirtualMachine'),
          nameInput,
          h('p', { id: 'backup-restore-vm-name-help', class: 'help' }, `Created in namespace ${namespace} with new disks holding the backup's data, and a new firmware UUID and MAC addresses.`),
        ),
      );
    },
  });
}
