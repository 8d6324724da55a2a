// "Restore as new VirtualMachine" from a backup: a new VM of the backup's VM under a new name.

import { h, announce } from '../dom.js';
import { exactTime } from '../format.js';
import { openNewVmRestore } from './new-vm-restore.js';
import { backupRestores } from './restore-progress.js';

export function openRestoreBackup(backup) {
  const { namespace, name: backupName } = backup.metadata;
  const vmName = backup.status?.vmName || backup.spec?.source?.name || 'vm';
  const when = backup.status?.pointInTime;
  openNewVmRestore({
    title: 'Restore backup as new VirtualMachine',
    id: 'restore-backup',
    namespace,
    restores: backupRestores,
    source: backupName,
    defaultName: `${vmName}-restored`,
    intro: ['Create a new VirtualMachine from backup ', h('strong', {}, backupName), ` of ${vmName}`, when ? ` (${exactTime(when)})` : '', ` in repository ${backup.spec?.repository}. ${vmName} itself is not changed.`],
    help: `Created in namespace ${namespace} with new disks holding the backup's data, and a new firmware UUID and MAC addresses.`,
    doneText: (target) => `VirtualMachine ${target} was created from backup ${backupName}.`,
    started: (target) => announce(`Restore of backup ${backupName} to ${target} started`),
  });
}
