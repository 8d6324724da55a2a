// The progress of a restore, shown in the dialog that created it until the restore completes or
// fails: the same for a restore from a snapshot and a restore from a backup, which differ only in
// where the restores are listed and how their status reads.

import { paths, repositoryRestoreObject, restoreObject } from '../api.js';
import { h, replace, announce, alertBox } from '../dom.js';
import { statusBadge } from '../format.js';
import { transferPhase } from '../backup-format.js';
import { restoreState } from '../views/snapshots.js';
import { transferStatus } from '../views/backups.js';
import { button } from './dialog.js';

/// A restore from a snapshot (VirtualMachineRestore).
export const snapshotRestores = {
  path: paths.restores,
  object: restoreObject,
  listedUnder: 'Restores',
  state: (restore) => restoreState(restore),
  progress: (restore, s) => [statusBadge(s), h('span', { class: 'activity' }, s.detail)],
};

/// A restore from a backup (VirtualMachineRepositoryRestore): KubeVirt's `complete`, or the phase.
export const backupRestores = {
  path: paths.backupRestores,
  object: repositoryRestoreObject,
  listedUnder: '"Restores from backups"',
  state: (restore) => (restore.status?.complete === true || restore.status?.phase === 'Succeeded' ? { text: 'Complete' } : transferPhase(restore)),
  progress: (restore, s, restoreName) => transferStatus(restore, `Restore ${restoreName}`),
};

/// Shows the progress of the restore `restoreName` (of the kind `restores`, one of the above) in
/// `dialog`; at the end, `doneText` and `doneLink`. The dialog's `data-restore-state` says where
/// it is (`Complete` and `Failed` at the end).
export function showRestoreProgress(dialog, restores, namespace, restoreName, { doneText, doneLink }) {
  const state = h('div', { class: 'restore-progress', 'aria-live': 'polite' });
  const closeButton = button('Close', 'secondary', () => dialog.close());
  dialog.setActions(closeButton);
  const help = h('p', { class: 'help' }, `Closing this dialog does not stop the restore; its progress is also shown under ${restores.listedUnder}.`);
  replace(dialog.body, h('p', {}, 'Progress of restore ', h('strong', {}, restoreName), ':'), state, help);
  closeButton.focus();
  let announced = false;
  let seen = false;
  dialog.scope.watch(restores.path(namespace), {}, (list) => {
    const restore = list.get(namespace, restoreName);
    if (!restore) {
      // Just created, the watch may not have brought it yet.
      replace(state, seen ? alertBox('warning', null, h('p', {}, `The restore ${restoreName} no longer exists.`)) : statusBadge({ text: 'Starting', tone: 'info', busy: true }));
      return;
    }
    seen = true;
    const s = restores.state(restore);
    dialog.el.dataset.restoreState = s.text;
    help.hidden = s.text === 'Complete' || s.text === 'Failed';
    if (s.text === 'Complete') {
      replace(state, alertBox('success', doneText, doneLink || null));
      closeButton.className = 'button button-primary';
      if (!announced) announce(doneText);
      announced = true;
    } else if (s.text === 'Failed') {
      replace(state, alertBox('danger', 'The restore failed', h('p', {}, s.detail)));
    } else {
      replace(state, ...restores.progress(restore, s, restoreName));
    }
  });
}
