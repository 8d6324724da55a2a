// "Delete snapshot" and "Delete backup": a confirmation saying what is lost, then the delete; the
// row disappears when the API says so.

import { remove, paths } from '../api.js';
import { h, announce } from '../dom.js';
import { describeError } from '../errors.js';
import { openDialog, button } from './dialog.js';

/// Confirms, then deletes the object at `path`. `kind` names it in the title and messages,
/// `body` says what deleting it means; `onDeleted` runs once the API accepted the delete.
function openConfirmDelete({ kind, name, path, body, onDeleted }) {
  const Kind = kind[0].toUpperCase() + kind.slice(1);
  openDialog({
    title: `Delete ${kind}?`,
    className: 'dialog-delete',
    build(dialog) {
      const confirm = button('Delete', 'danger', async () => {
        dialog.setBusy(true);
        confirm.disabled = true;
        dialog.error.clear();
        try {
          await remove(path);
          announce(`${Kind} ${name} is being deleted`);
          dialog.setBusy(false);
          dialog.close();
          if (onDeleted) onDeleted();
        } catch (err) {
          dialog.setBusy(false);
          confirm.disabled = false;
          dialog.error.show(describeError(err, { kind, name, doing: `delete ${name}` }));
        }
      });
      const cancel = button('Cancel', 'secondary', () => dialog.close(), { autofocus: true });
      dialog.setActions(confirm, cancel);
      return h('div', {}, ...body);
    },
  });
}

export function openDeleteSnapshot(snapshot, { onDeleted } = {}) {
  const { namespace, name } = snapshot.metadata;
  const body = [
    h('p', {}, 'Delete snapshot ', h('strong', {}, name), ` of ${snapshot.spec?.source?.name}?`),
    h('p', {}, 'Its disk snapshots are deleted with it and it can no longer be restored. This cannot be undone.'),
  ];
  openConfirmDelete({ kind: 'snapshot', name, path: paths.snapshots(namespace, name), body, onDeleted });
}

/// Says whether the data leaves the repository (deletionPolicy Retain keeps it).
export function openDeleteBackup(backup) {
  const { namespace, name } = backup.metadata;
  const repository = backup.spec?.repository;
  const vm = backup.status?.vmName || backup.spec?.source?.name;
  const body = [
    h('p', {}, 'Delete backup ', h('strong', {}, name), vm ? ` of ${vm}?` : '?'),
    backup.spec?.deletionPolicy === 'Retain'
      ? h('p', {}, `Its deletion policy is Retain: the backup stays in repository ${repository} and appears again if the repository is added again.`)
      : h('p', {}, `Its data is deleted from repository ${repository} (chunks other backups use are kept) and it can no longer be restored. This cannot be undone.`),
  ];
  openConfirmDelete({ kind: 'backup', name, path: paths.backups(namespace, name), body });
}
