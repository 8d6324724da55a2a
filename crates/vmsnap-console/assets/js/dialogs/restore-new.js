// "Restore as new VirtualMachine" from a snapshot: a copy of the snapshot's VM under a new name.

import { h } from '../dom.js';
import { openNewVmRestore } from './new-vm-restore.js';
import { snapshotRestores } from './restore-progress.js';

export function openRestoreAsNew(snapshot) {
  const { namespace, name: snapName } = snapshot.metadata;
  const vmName = snapshot.spec.source.name;
  openNewVmRestore({
    title: 'Restore as new VirtualMachine',
    id: 'restore-new',
    namespace,
    restores: snapshotRestores,
    source: snapName,
    defaultName: `${vmName}-copy`,
    intro: ['Create a new VirtualMachine from snapshot ', h('strong', {}, snapName), ` of ${vmName}. ${vmName} itself is not changed.`],
    help: `Created stopped, in namespace ${namespace}. It keeps the MAC addresses and firmware UUID of ${vmName}: change them before running both on the same network.`,
    doneText: (target) => `VirtualMachine ${target} was created from snapshot ${snapName}.`,
  });
}
