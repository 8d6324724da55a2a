// "Restore VirtualMachine from snapshot": the VM must be stopped first (the dialog offers to stop
// it), then the restore is created and its progress shown until it completes.

import { create, paths, restoreObject, vmAction } from '../api.js';
import { h, replace, alertBox } from '../dom.js';
import { describeError } from '../errors.js';
import { exactTime, statusBadge, timestampedName, vmHasInstance, vmStatus } from '../format.js';
import { openDialog, button } from './dialog.js';
import { showRestoreProgress, snapshotRestores } from './restore-progress.js';

export function openRestore(snapshot, initialVm) {
  const { namespace, name: snapName } = snapshot.metadata;
  const vmName = snapshot.spec.source.name;
  openDialog({
    title: 'Restore VirtualMachine from snapshot',
    className: 'dialog-restore',
    build(dialog) {
      const stopArea = h('div', { class: 'stop-area' });
      const restoreButton = button('Restore', 'primary', submit, { disabled: true });
      dialog.setActions(restoreButton, button('Cancel', 'secondary', () => dialog.close()));
      let stopping = false;
      let running = true;

      function stop() {
        stopping = true;
        dialog.error.clear();
        update(lastVm);
        vmAction(namespace, vmName, 'stop').catch((err) => {
          stopping = false;
          dialog.error.show(describeError(err, { kind: 'VirtualMachine', name: vmName, doing: `stop ${vmName}` }));
          update(lastVm);
        });
      }

      let lastVm = initialVm;
      function update(vm) {
        lastVm = vm;
        running = vm ? vmHasInstance(vm) : false;
        if (!running) stopping = false;
        const hadFocus = stopArea.contains(document.activeElement);
        if (!vm) {
          replace(stopArea, alertBox('info', null, h('p', {}, `The VirtualMachine ${vmName} no longer exists; restoring creates it again.`)));
        } else if (running) {
          const stopButton = button(stopping ? 'Stopping…' : 'Stop VirtualMachine', 'secondary', stop, { disabled: stopping });
          replace(
            stopArea,
            alertBox(
              'warning',
              `${vmName} is running`,
              h('p', {}, `The VirtualMachine must be stopped before it can be restored. Current status: `, statusBadge(vmStatus(vm))),
              h('div', { class: 'alert-actions' }, stopButton),
            ),
          );
          if (hadFocus) stopButton.focus();
        } else {
          replace(stopArea, alertBox('success', null, h('p', {}, `${vmName} is stopped.`)));
        }
        restoreButton.disabled = dialog.busy || running;
        if (hadFocus && !running) restoreButton.focus();
      }

      async function submit() {
        const restoreName = timestampedName(vmName, 'restore', 253);
        dialog.setBusy(true);
        restoreButton.disabled = true;
        dialog.error.clear();
        try {
          await create(paths.restores(namespace), restoreObject(namespace, restoreName, snapName, vmName, 'WaitGracePeriod'));
          dialog.setBusy(false);
          showRestoreProgress(dialog, snapshotRestores, namespace, restoreName, { doneText: `${vmName} was restored from snapshot ${snapName}.` });
        } catch (err) {
          dialog.setBusy(false);
          dialog.error.show(describeError(err, { kind: 'restore', name: restoreName, doing: `restore ${vmName}` }));
          update(lastVm);
        }
      }

      const excluded = snapshot.status?.snapshotVolumes?.excludedVolumes || [];
      const body = h(
        'div',
        {},
        h('p', {}, 'Restore ', h('strong', {}, vmName), ' from snapshot ', h('strong', {}, snapName), snapshot.status?.creationTime ? ` taken ${exactTime(snapshot.status.creationTime)}` : '', '?'),
        h('p', {}, `The disks and configuration of ${vmName} are replaced with those saved in the snapshot. Data written since the snapshot was taken is lost.`),
        excluded.length ? alertBox('info', null, h('p', {}, `These disks were not included in the snapshot and keep their current data: ${excluded.join(', ')}.`)) : null,
        stopArea,
      );
      dialog.scope.watch(paths.vms(), {}, (vms) => update(vms.get(namespace, vmName)));
      dialog.scope.watch(paths.restores(namespace), {});
      update(initialVm);
      return body;
    },
  });
}
