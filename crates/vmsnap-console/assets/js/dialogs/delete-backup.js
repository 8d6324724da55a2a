// "Delete backup": a confirmation saying whether the data leaves the repository, then the delete;
// the row disappears when the API says so.

import { remove, paths } from '../api.js';
import { h, announce } from '../dom.js';
import { describeError } from '../errors.js';
import { openDialog, button } from './dialog.js';

export function openDeleteBackup(backup) {
  const { namespace, name } = backup.metadata;
  const repository = backup.spec?.repository;
  const retain = backup.spec?.deletionPolicy === 'Retain';
  openDialog({
    title: 'Delete backup?',
    className: 'dialog-delete',
    build(dialog) {
      const confirm = button('Delete', 'danger', async () => {
        dialog.setBusy(true);
        confirm.disabled = true;
        dialog.error.clear();
        try {
          await remove(paths.backups(namespace, name));
          announce(`Backup ${name} is being deleted`);
          dialog.setBusy(false);
          dialog.close();
        } catch (err) {
          dialog.setBusy(false);
          confirm.disabled = false;
          dialog.error.show(describeError(err, { kind: 'backup', name, doing: `delete ${name}` }));
        }
      });
      const cancel = button('Cancel', 'secondary', () => dialog.close(), { autofocus: true });
      dialog.setActions(confirm, cancel);
      const vm = backup.status?.vmName || backup.spec?.source?.name;
      return h(
        'div',
        {},
        h('p', {}, 'Delete backup ', h('strong', {}, name), vm ? ` of ${vm}?` : '?'),
        retain
          ? h('p', {}, `Its deletion policy is Retain: the backup stays in repository ${repository} and appears again if the repository is added again.`)
          : h('p', {}, `Its data is deleted from repository ${repository} (chunks other backups use are kept) and it can no longer be restored. This cannot be undone.`),
      );
    },
  });
}
