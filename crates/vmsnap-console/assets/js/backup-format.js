// How backups, their restores and repositories are shown: byte counts, phases with their
// messages, the progress of a transfer, and what a repository's last verify or prune found.

import { h } from './dom.js';
import { ageElement, condition } from './format.js';

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/// "1.5 GiB": a byte count in binary units (as the API's sizes, `10Gi`, are).
export function bytes(n) {
  if (n === undefined || n === null || Number.isNaN(Number(n))) return '—';
  let value = Number(n);
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const digits = unit === 0 || value >= 100 ? 0 : 1;
  return `${value.toFixed(digits)} ${UNITS[unit]}`;
}

/// "10Gi" as the API writes a size, in the console's words ("10 GiB").
export function quantity(text) {
  if (!text) return '—';
  const match = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|Pi)?$/.exec(String(text));
  if (!match) return String(text);
  return match[2] ? `${match[1]} ${match[2]}B` : `${match[1]} B`;
}

/// Whether `backup` is of the VM `vmName`: by its label, by what it read, or by its source.
export function isBackupOf(backup, vmName) {
  if (backup.metadata.labels?.['backup.vmsnap.io/vm'] === vmName) return true;
  if (backup.status?.vmName) return backup.status.vmName === vmName;
  const source = backup.spec?.source;
  return source?.kind === 'VirtualMachine' && source.name === vmName;
}

/// Why an object failed: `status.error.message`, else its Failure condition's message.
function failureMessage(obj) {
  if (obj.status?.error?.message) return obj.status.error.message;
  const failure = condition(obj, 'Failure');
  if (failure?.status === 'True') return failure.message || failure.reason || '';
  return '';
}

/// What an object is waiting for or doing, from its Progressing condition.
function activity(obj) {
  const progressing = condition(obj, 'Progressing');
  if (progressing?.status !== 'True') return '';
  return progressing.message || progressing.reason || '';
}

/// The phase of a backup (or of a restore of one) in words, with a tone for its badge and a detail:
/// the error when it failed, what it awaits or does while it runs.
export function transferPhase(obj) {
  const status = obj.status || {};
  if (obj.metadata.deletionTimestamp) return { text: 'Deleting', tone: 'muted', busy: true, detail: '' };
  const failed = failureMessage(obj);
  if (status.phase === 'Failed' || (failed && status.phase !== 'Succeeded')) {
    return { text: 'Failed', tone: 'danger', detail: failed || 'The controller gave no reason.' };
  }
  switch (status.phase) {
    case 'Succeeded':
      return { text: 'Succeeded', tone: 'success', detail: '' };
    case 'InProgress':
      return { text: 'In progress', tone: 'info', busy: true, detail: activity(obj) };
    default:
      return { text: status.phase || 'Pending', tone: 'muted', busy: true, detail: activity(obj) || (status.phase ? '' : 'Waiting for the backup controller') };
  }
}

/// "45.0 MiB/s": bytes read per second so far, or '' when not known yet.
export function rate(progress) {
  const read = progress?.bytesRead ?? progress?.bytesWritten;
  const seconds = progress?.elapsedSeconds;
  if (!read || !seconds) return '';
  return `${bytes(read / seconds)}/s`;
}

/// "about 12 s left": the time left at the rate so far, or '' when it cannot be told.
export function timeLeft(progress) {
  const read = progress?.bytesRead;
  const total = progress?.bytesToRead;
  const seconds = progress?.elapsedSeconds;
  if (!read || !total || !seconds || read >= total) return '';
  const left = Math.round(((total - read) * seconds) / read);
  if (left < 60) return `about ${left} s left`;
  const minutes = Math.round(left / 60);
  if (minutes < 60) return `about ${minutes} min left`;
  return `about ${Math.floor(minutes / 60)} h ${minutes % 60} min left`;
}

/// The counters of a transfer in words: read (of how much), uploaded, deduplicated, written, and
/// while it runs the rate and the time left.
export function progressText(progress, { running = false } = {}) {
  if (!progress) return '';
  const parts = [];
  if (progress.bytesRead !== undefined) {
    parts.push(progress.bytesToRead ? `read ${bytes(progress.bytesRead)} of ${bytes(progress.bytesToRead)}` : `read ${bytes(progress.bytesRead)}`);
  }
  if (progress.bytesUploaded !== undefined) parts.push(`uploaded ${bytes(progress.bytesUploaded)}`);
  if (progress.bytesDeduplicated !== undefined) parts.push(`deduplicated ${bytes(progress.bytesDeduplicated)}`);
  if (progress.bytesReused) parts.push(`reused ${bytes(progress.bytesReused)} from the base backup`);
  if (progress.bytesWritten !== undefined) parts.push(`written ${bytes(progress.bytesWritten)}`);
  const r = rate(progress);
  if (running && r) parts.push(r);
  const left = timeLeft(progress);
  if (running && left) parts.push(left);
  return parts.join(' · ');
}

/// A progress bar (a native <progress>, announced by screen readers with its label) and the
/// counters under it. `label` names what progresses ("Backup db-1").
export function progressBar(progress, label) {
  const percent = Math.max(0, Math.min(100, Number(progress?.percent ?? 0)));
  const bar = h('progress', { class: 'progress', max: '100', 'aria-label': `${label}: ${percent}% done` });
  bar.value = percent;
  return h(
    'div',
    { class: 'transfer', dataset: { percent: String(percent) } },
    h('div', { class: 'transfer-line' }, bar, h('span', { class: 'transfer-percent' }, `${percent}%`)),
    h('span', { class: 'activity transfer-counters' }, progressText(progress, { running: true })),
  );
}

/// Updates in place a bar made by `progressBar` (so that an open row menu or the focus survive
/// the once-a-second progress updates).
export function updateProgressBar(transfer, progress, label) {
  const percent = Math.max(0, Math.min(100, Number(progress?.percent ?? 0)));
  const bar = transfer.querySelector('progress');
  bar.value = percent;
  bar.setAttribute('aria-label', `${label}: ${percent}% done`);
  transfer.dataset.percent = String(percent);
  transfer.querySelector('.transfer-percent').textContent = `${percent}%`;
  transfer.querySelector('.transfer-counters').textContent = progressText(progress, { running: true });
}

/// What, of a backup or restore, needs its row redrawn: everything but the progress of one that
/// runs, which `updateProgressBar` updates in place.
export function rowSignature(obj) {
  const status = obj.status || {};
  const running = status.phase === 'InProgress';
  return JSON.stringify([obj.metadata.deletionTimestamp, obj.metadata.labels, obj.spec, { ...status, progress: running ? Boolean(status.progress) : status.progress }]);
}

/// A repository's readiness: Ready, or Not ready with the condition's message (wrong passphrase,
/// unreachable, a Secret missing).
export function repositoryState(repo) {
  const ready = condition(repo, 'Ready');
  if (ready?.status === 'True') return { text: 'Ready', tone: 'success', detail: '' };
  if (!ready) return { text: 'Opening', tone: 'muted', busy: true, detail: 'Waiting for the repository controller' };
  return { text: 'Not ready', tone: 'danger', detail: ready.message || ready.reason || '', reason: ready.reason || '' };
}

/// The read limit of a repository without `spec.readLimit` (`vmsnap_api::backup::DEFAULT_READ_LIMIT`;
/// a test of `vmsnap-server` fails if the two differ).
export const DEFAULT_READ_LIMIT = '256Mi';

/// "reads up to 64Mi/s", or "reads up to 256Mi/s (default)": how fast a repository's backups read
/// their disks (`spec.readLimit`), as `vmsnap repo describe` says it.
export function readLimitText(repo) {
  const limit = repo.spec?.readLimit;
  return limit ? `reads up to ${limit}/s` : `reads up to ${DEFAULT_READ_LIMIT}/s (default)`;
}

const VERIFY_ANNOTATION = 'backup.vmsnap.io/verify-request';
const PRUNE_ANNOTATION = 'backup.vmsnap.io/prune-request';

/// The annotation that asks the controller to verify (`verify`) or prune (`prune`) a repository.
export function requestAnnotation(operation) {
  return operation === 'verify' ? VERIFY_ANNOTATION : PRUNE_ANNOTATION;
}

/// Whether a verify or prune of `repo` was asked for and has no result yet: the annotation's
/// token is not the one the last result carries.
export function requestPending(repo, operation) {
  const token = repo.metadata.annotations?.[requestAnnotation(operation)];
  if (!token) return false;
  const result = operation === 'verify' ? repo.status?.lastVerify : repo.status?.lastPrune;
  return result?.request !== token;
}

/// A fresh token for a request annotation.
export function freshToken() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/// What a verify found, in words, with a tone: `{text, tone, details: [lines]}`.
export function verifySummary(result) {
  if (!result) return null;
  if (result.error) return { text: 'Could not verify', tone: 'danger', details: [result.error] };
  const checked = `${result.chunksChecked ?? 0} chunks of ${result.backupsChecked ?? 0} backups checked`;
  if (result.ok) return { text: 'OK', tone: 'success', details: [checked] };
  const lists = result.badChunkLists || [];
  const bad = result.badChunks || [];
  const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;
  const line = (kind, note = '') => (c) => `${c.problem} ${kind} ${c.chunk}${note}${c.breaks?.length ? `: breaks ${c.breaks.join('; ')}` : ''}`;
  return {
    text: [lists.length ? plural(lists.length, 'bad chunk list') : null, bad.length || !lists.length ? plural(bad.length, 'bad chunk') : null]
      .filter(Boolean)
      .join(', '),
    tone: 'danger',
    details: [checked, ...lists.map(line('chunk list', ' (its 1,024 chunks are unknown)')), ...bad.map(line('chunk'))],
  };
}

/// What a prune did, in words, with a tone.
export function pruneSummary(result) {
  if (!result) return null;
  if (result.error) return { text: 'Could not prune', tone: 'danger', details: [result.error] };
  const lists = result.chunkListsDeleted ? ` and ${result.chunkListsDeleted} chunk lists` : '';
  return { text: `Freed ${bytes(result.bytesFreed ?? 0)}`, tone: 'success', details: [`${result.chunksDeleted ?? 0} chunks${lists} deleted`] };
}

/// A result (of verify or prune) with its time, for a table cell.
export function resultElement(summary, time, attrs = {}) {
  if (!summary) return h('span', { class: 'muted', ...attrs }, 'never');
  return h(
    'span',
    { class: 'result', ...attrs },
    h(
      'span',
      { class: 'result-title' },
      h('span', { class: `status status-${summary.tone}` }, h('span', { class: 'dot', 'aria-hidden': 'true' }), summary.text),
      time ? h('span', { class: 'muted' }, ' ', ageElement(time), ' ago') : null,
    ),
    summary.details.map((line) => h('span', { class: 'activity' }, line)),
  );
}
