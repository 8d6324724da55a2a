// "Back up now": a repository of the namespace (the first ready one is chosen), a name
// (prefilled) and whether to read everything; then the backup's progress until it is done.

import { create, paths, repositoryBackupObject } from '../api.js';
import { h, replace, announce, alertBox } from '../dom.js';
import { describeError, nameProblem } from '../errors.js';
import { statusBadge, timestampedName } from '../format.js';
import { progressText, quantity, repositoryState, transferPhase } from '../backup-format.js';
import { transferStatus } from '../views/backups.js';
import { openDialog, button } from './dialog.js';

/// The command that adds a repository (Secrets are involved, so the console leaves it to the CLI).
export function repoAddCommand(namespace) {
  const ns = namespace && namespace !== 'default' ? ` -n ${namespace}` : '';
  return `vmsnap repo add NAME --dir /path/to/backups --passphrase-file FILE${ns}`;
}

/// Shows the progress of the backup `backupName` in `dialog` until it succeeds or fails.
function showBackupProgress(dialog, namespace, backupName, vmName) {
  const state = h('div', { class: 'backup-progress', 'aria-live': 'polite' });
  const closeButton = button('Close', 'secondary', () => dialog.close());
  dialog.setActions(closeButton);
  const help = h('p', { class: 'help' }, 'Closing this dialog does not stop the backup; its progress is also shown in the Backups tab.');
  replace(dialog.body, h('p', {}, 'Progress of backup ', h('strong', {}, backupName), ':'), state, help);
  closeButton.focus();
  let announced = '';
  let seen = false;
  dialog.scope.watch(paths.backups(namespace), {}, (backups) => {
    const backup = backups.get(namespace, backupName);
    if (!backup) {
      // Just created, the watch may not have brought it yet.
      if (!seen) {
        replace(state, statusBadge({ text: 'Starting', tone: 'info', busy: true }));
        return;
      }
      replace(state, alertBox('warning', null, h('p', {}, `The backup ${backupName} no longer exists.`)));
      dialog.el.dataset.backupState = 'Gone';
      return;
    }
    seen = true;
    const phase = backup.status?.phase || 'Pending';
    dialog.el.dataset.backupState = phase;
    help.hidden = phase === 'Succeeded' || phase === 'Failed';
    if (phase === 'Succeeded') {
      const s = backup.status;
      const text = `Backup ${backupName} of ${vmName} is complete.`;
      replace(state, alertBox('success', text, h('p', {}, [s.type, s.size ? `${quantity(s.size)} of disks` : '', progressText(s.progress)].filter(Boolean).join(' · '))));
      closeButton.className = 'button button-primary';
      if (announced !== phase) announce(text);
    } else if (phase === 'Failed') {
      replace(state, alertBox('danger', 'The backup failed', h('p', {}, transferPhase(backup).detail)));
    } else {
      replace(state, transferStatus(backup, `Backup ${backupName}`));
    }
    announced = phase;
  });
}

export function openBackUpNow(namespace, vmName) {
  openDialog({
    title: 'Back up now',
    className: 'dialog-back-up',
    build(dialog) {
      const nameInput = h('input', {
        id: 'backup-name',
        name: 'name',
        type: 'text',
        value: timestampedName(vmName, 'backup', 253),
        required: true,
        autocomplete: 'off',
        spellcheck: 'false',
        'aria-describedby': 'backup-name-help',
        oninput: () => {
          dialog.error.clear();
          nameInput.removeAttribute('aria-invalid');
        },
      });
      const repoSelect = h('select', { id: 'backup-repository', name: 'repository', 'aria-describedby': 'backup-repository-help', onchange: () => update() });
      const repoHelp = h('div', { id: 'backup-repository-help', class: 'help' });
      const full = h('input', { type: 'checkbox', id: 'backup-full' });
      const save = button('Back up', 'primary', null, { type: 'submit', form: 'back-up-form', disabled: true });
      dialog.setActions(save, button('Cancel', 'secondary', () => dialog.close()));
      let repositories = null;

      function update() {
        if (!repositories) return;
        const list = repositories.list();
        const chosen = repoSelect.value;
        if (repositories.error && !repositories.synced) {
          replace(repoHelp, h('span', { class: 'text-danger' }, describeError(repositories.error, { doing: 'list the repositories' })));
          return;
        }
        if (!repositories.synced) {
          replace(repoHelp, 'Loading the repositories…');
          return;
        }
        replace(
          repoSelect,
          list.map((r) => {
            const st = repositoryState(r);
            return h('option', { value: r.metadata.name }, st.text === 'Ready' ? r.metadata.name : `${r.metadata.name} (${st.text.toLowerCase()})`);
          }),
        );
        const ready = list.find((r) => repositoryState(r).text === 'Ready');
        repoSelect.value = list.some((r) => r.metadata.name === chosen) ? chosen : (ready || list[0])?.metadata.name || '';
        repoSelect.disabled = list.length === 0;
        const selected = repositories.get(namespace, repoSelect.value);
        if (!selected) {
          replace(
            repoHelp,
            alertBox(
              'info',
              `There is no backup repository in namespace ${namespace}`,
              h('p', {}, 'Add one from a terminal (the passphrase is kept in a Secret):'),
              h('pre', { class: 'command' }, h('code', {}, repoAddCommand(namespace))),
              h('p', {}, h('a', { href: '#/repositories', onclick: () => dialog.close() }, 'See the repositories')),
            ),
          );
        } else {
          const st = repositoryState(selected);
          replace(
            repoHelp,
            st.text === 'Ready'
              ? h('span', {}, selected.status?.location ? `In ${selected.status.location}.` : '', ' Backups after the first one read only what changed.')
              : alertBox('warning', `Repository ${selected.metadata.name} is not ready`, h('p', {}, st.detail || 'It has not been opened yet.'), h('p', {}, 'The backup waits until the repository can be opened.')),
          );
        }
        save.disabled = dialog.busy || !selected;
      }

      async function submit(event) {
        event?.preventDefault();
        const name = nameInput.value.trim();
        if (!dialog.validate(nameInput, nameProblem(name))) return;
        const repository = repoSelect.value;
        if (!repository) return;
        dialog.setBusy(true);
        save.disabled = true;
        try {
          await create(paths.backups(namespace), repositoryBackupObject(namespace, name, vmName, repository, { forceFull: full.checked }));
          dialog.setBusy(false);
          announce(`Backup ${name} of ${vmName} started`);
          showBackupProgress(dialog, namespace, name, vmName);
        } catch (err) {
          dialog.setBusy(false);
          dialog.error.show(describeError(err, { kind: 'backup', name, doing: 'start the backup' }));
          update();
          nameInput.focus();
        }
      }

      repositories = dialog.scope.watch(paths.repositories(namespace), {}, update);
      update();
      nameInput.setAttribute('autofocus', '');
      return h(
        'form',
        { id: 'back-up-form', novalidate: true, onsubmit: submit },
        h('p', {}, 'Copy ', h('strong', {}, vmName), ' to a backup repository: a snapshot is taken and its disks are read, deduplicated, compressed and encrypted. A running VirtualMachine is not stopped.'),
        h('div', { class: 'field' }, h('label', { for: 'backup-repository' }, 'Repository'), repoSelect, repoHelp),
        h('div', { class: 'field' }, h('label', { for: 'backup-name' }, 'Name'), nameInput, h('p', { id: 'backup-name-help', class: 'help' }, `A backup of ${vmName} in namespace ${namespace}.`)),
        h('div', { class: 'checkbox' }, full, h('label', { for: 'backup-full' }, 'Full backup: read every disk completely, even when only the changes could be read')),
      );
    },
  });
}
