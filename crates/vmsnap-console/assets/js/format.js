// How objects are shown: ages and times, status labels, indications and their messages, and what
// a VirtualMachine's status says about it.

import { h, newId } from './dom.js';

/// "3m", "2h", "5d": how long ago `timestamp` was.
export function age(timestamp, now = Date.now()) {
  if (!timestamp) return '';
  const seconds = Math.max(0, Math.floor((now - Date.parse(timestamp)) / 1000));
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours}h`;
  return `${Math.floor(hours / 24)}d`;
}

/// A `<time>` showing the age, with the exact time on hover; kept fresh by the page's clock.
export function ageElement(timestamp) {
  if (!timestamp) return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: timestamp, title: exactTime(timestamp), dataset: { age: '' } }, age(timestamp));
}

/// Local date and time, e.g. "Jun 3, 2026, 14:05:09".
export function exactTime(timestamp) {
  if (!timestamp) return '';
  return new Date(timestamp).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
}

/// Updates every age shown on the page (local only: no API calls).
export function refreshAges(root = document) {
  const now = Date.now();
  for (const el of root.querySelectorAll('time[data-age]')) el.textContent = age(el.getAttribute('datetime'), now);
}

/// KubeVirt's messages for each snapshot indication (used when the snapshot carries none).
export const INDICATION_MESSAGES = {
  Online: 'Snapshot taken while the VM was running. Consistency depends on guest-agent quiescing.',
  GuestAgent: 'Guest agent was active and attempted to quiesce the filesystem for application consistency.',
  NoGuestAgent: 'Guest agent was not available. Snapshot is crash-consistent and may not be application-consistent.',
  QuiesceTimeout:
    'Guest agent quiesced the filesystem, but the freeze window timed out before completion. Snapshot is crash-consistent and may not be application-consistent.',
  Paused: 'Snapshot taken while the VM was paused. Snapshot is crash-consistent and may not be application-consistent.',
  PartialSnapshot:
    'Not all snapshotable volumes were included in the snapshot. Check status.snapshotVolumes for excluded volumes and VM VolumeSnapshotStatus for details.',
};

const INDICATION_LABELS = {
  Online: 'Online',
  GuestAgent: 'Guest agent',
  NoGuestAgent: 'No guest agent',
  QuiesceTimeout: 'Quiesce timeout',
  Paused: 'Paused',
  PartialSnapshot: 'Partial snapshot',
};

const INDICATION_TONES = { NoGuestAgent: 'warning', QuiesceTimeout: 'warning', Paused: 'warning', PartialSnapshot: 'warning' };

/// The indications of a snapshot with their messages: `sourceIndications` when present, else
/// the deprecated `indications` with KubeVirt's messages.
export function indications(snapshot) {
  const status = snapshot.status || {};
  if (status.sourceIndications?.length) {
    return status.sourceIndications.map((i) => ({ indication: i.indication, message: i.message }));
  }
  return (status.indications || []).map((i) => ({ indication: i, message: INDICATION_MESSAGES[i] || 'Unknown indication' }));
}

/// A readable badge for an indication, its message shown on hover and on keyboard focus.
export function indicationBadge({ indication, message }) {
  const tipId = newId('tip');
  const tone = INDICATION_TONES[indication] || 'info';
  return h(
    'span',
    { class: `badge badge-${tone} has-tip`, tabindex: '0', 'aria-describedby': tipId, dataset: { indication } },
    INDICATION_LABELS[indication] || indication,
    h('span', { class: 'tip', role: 'tooltip', id: tipId }, message),
  );
}

/// The badges of a snapshot's indications (or a dash).
export function indicationBadges(snapshot) {
  const list = indications(snapshot);
  if (!list.length) return h('span', { class: 'muted' }, '—');
  return h('span', { class: 'badges' }, list.map(indicationBadge));
}

/// The condition of type `type` of an object.
export function condition(obj, type) {
  return (obj?.status?.conditions || []).find((c) => c.type === type);
}

/// The phase of a snapshot in words, with a tone for its badge.
export function snapshotPhase(snapshot) {
  const status = snapshot.status || {};
  if (snapshot.metadata.deletionTimestamp) return { text: 'Deleting', tone: 'muted', busy: true };
  switch (status.phase) {
    case 'Succeeded':
      return { text: 'Succeeded', tone: 'success' };
    case 'Failed':
      return { text: 'Failed', tone: 'danger' };
    case 'InProgress':
      return { text: 'In progress', tone: 'info', busy: true };
    case 'Deleting':
      return { text: 'Deleting', tone: 'muted', busy: true };
    default:
      return { text: status.phase || 'Pending', tone: 'muted', busy: true };
  }
}

/// A status badge (with a spinner while something is under way).
export function statusBadge({ text, tone, busy }, attrs = {}) {
  return h(
    'span',
    { class: `status status-${tone}`, ...attrs },
    busy ? h('span', { class: 'spinner', 'aria-hidden': 'true' }) : h('span', { class: 'dot', 'aria-hidden': 'true' }),
    text,
  );
}

/// What a snapshot is doing now, from its conditions (e.g. "Source locked and operation in progress").
export function snapshotActivity(snapshot) {
  const status = snapshot.status || {};
  if (status.error?.message) return status.error.message;
  if (status.phase === 'Succeeded' && !status.readyToUse) return 'Waiting for the disk snapshots to be ready';
  if (status.phase === 'Succeeded') return '';
  return condition(snapshot, 'Progressing')?.reason || '';
}

const VM_TONES = {
  Running: 'success',
  Stopped: 'muted',
  Paused: 'warning',
  Starting: 'info',
  Stopping: 'info',
  Terminating: 'info',
  Provisioning: 'info',
  WaitingForVolumeBinding: 'info',
  Migrating: 'info',
};
const VM_BUSY = new Set(['Starting', 'Stopping', 'Terminating', 'Provisioning', 'WaitingForVolumeBinding', 'Migrating']);

/// The VM's printable status, with a tone.
export function vmStatus(vm) {
  const text = vm.status?.printableStatus || 'Unknown';
  return { text: text.replace(/([a-z])([A-Z])/g, '$1 $2'), tone: VM_TONES[text] || 'danger', busy: VM_BUSY.has(text) };
}

/// Whether a VM instance exists (the VM is running, starting, paused or stopping).
export function vmHasInstance(vm) {
  return Boolean(vm.status?.created) || ['Running', 'Starting', 'Stopping', 'Paused', 'Migrating'].includes(vm.status?.printableStatus);
}

/// Whether the VM's guest agent is connected (the VM copies the instance's AgentConnected condition).
export function agentConnected(vm) {
  return condition(vm, 'AgentConnected')?.status === 'True';
}

/// A VM volume's source in words.
export function volumeSource(volume) {
  if (!volume) return 'Unknown';
  if (volume.persistentVolumeClaim) return `PVC ${volume.persistentVolumeClaim.claimName}`;
  if (volume.dataVolume) return `DataVolume ${volume.dataVolume.name}`;
  if (volume.containerDisk) return `Container disk ${volume.containerDisk.image || ''}`.trim();
  if (volume.cloudInitNoCloud) return 'cloud-init (NoCloud)';
  if (volume.cloudInitConfigDrive) return 'cloud-init (ConfigDrive)';
  if (volume.memoryDump) return `Memory dump ${volume.memoryDump.claimName || ''}`.trim();
  const other = Object.keys(volume).find((k) => k !== 'name');
  return other || 'Unknown';
}

/// The disks of a VM, joined with their volumes and whether they can be snapshotted:
/// `[{name, type, bus, source, snapshot: {known, enabled, reason}}]`.
export function vmDisks(vm) {
  const spec = vm.spec?.template?.spec || {};
  const volumes = new Map((spec.volumes || []).map((v) => [v.name, v]));
  const statuses = new Map((vm.status?.volumeSnapshotStatuses || []).map((s) => [s.name, s]));
  const disks = spec.domain?.devices?.disks || [];
  const names = [...new Set([...disks.map((d) => d.name), ...volumes.keys()])];
  return names.map((name) => {
    const disk = disks.find((d) => d.name === name) || {};
    const type = ['disk', 'cdrom', 'lun'].find((t) => disk[t]) || 'disk';
    const st = statuses.get(name);
    return {
      name,
      type,
      bus: disk[type]?.bus || '',
      source: volumeSource(volumes.get(name)),
      snapshot: st ? { known: true, enabled: Boolean(st.enabled), reason: st.reason || '' } : { known: false, enabled: false, reason: '' },
    };
  });
}

/// A default name for something new made from `base`: "BASE-SUFFIX-YYYYMMDD-HHMMSS", cut to fit.
export function timestampedName(base, suffix, max = 63) {
  const d = new Date();
  const pad = (n) => String(n).padStart(2, '0');
  const stamp = `${d.getFullYear()}${pad(d.getMonth() + 1)}${pad(d.getDate())}-${pad(d.getHours())}${pad(d.getMinutes())}${pad(d.getSeconds())}`;
  const tail = `-${suffix}-${stamp}`;
  return `${base.slice(0, Math.max(1, max - tail.length)).replace(/[-.]+$/, '')}${tail}`;
}
