// "Delete snapshot": a confirmation, then the delete; the row disappears when the API says so.

import { remove, paths } from '../api.js';
import { h, announce } from '../dom.js';
import { describeError } from '../errors.js';
import { openDialog, button } from './dialog.js';

export function openDeleteSnapshot(snapshot, { onDeleted } = {}) {
  const { namespace, name } = snapshot.metadata;
  openDialog({
    title: 'Delete snapshot?',
    className: 'dialog-delete',
    build(dialog) {
      const confirm = button('Delete', 'danger', async () => {
        dialog.setBusy(true);
        confirm.disabled = true;
        dialog.error.clear();
        try {
          await remove(paths.snapshots(namespace, name));
          announce(`Snapshot ${name} is being deleted`);
          dialog.setBusy(false);
          dialog.close();
          if (onDeleted) onDeleted();
        } catch (err) {
          dialog.setBusy(false);
          confirm.disabled = false;
          dialog.error.show(describeError(err, { kind: 'snapshot', name, doing: `delete ${name}` }));
        }
      });
      const cancel = button('Cancel', 'secondary', () => dialog.close(), { autofocus: true });
      dialog.setActions(confirm, cancel);
      return h(
        'div',
        {},
        h('p', {}, 'Delete snapshot ', h('strong', {}, name), ` of ${snapshot.spec?.source?.name}?`),
        h('p', {}, 'Its disk snapshots are deleted with it and it can no longer be restored. This cannot be undone.'),
      );
    },
  });
}
