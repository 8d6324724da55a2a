// The Repositories page: every VirtualMachineBackupRepository, where it is, whether it opens (and
// why not), what it holds, and its last verify and prune, kept live. "Verify" and "Prune" set the
// request annotation to a fresh token; the result is shown when the status carries that token.
//
// Adding a repository needs Secrets (the passphrase, S3 credentials) that the console does not
// handle: the page shows the `vmsnap repo add` command instead.

import { mergePatch, paths } from '../api.js';
import { h, replace, errorSlot, updateKeyed, announce } from '../dom.js';
import { describeError } from '../errors.js';
import { condition, exactTime, statusBadge } from '../format.js';
import { freshToken, pruneSummary, quantity, readLimitText, repositoryState, requestAnnotation, requestPending, resultElement, verifySummary } from '../backup-format.js';
import { Scope } from '../live.js';

const OPERATIONS = {
  verify: { button: 'Verify', busy: 'Verifying…', result: (r) => r.status?.lastVerify, summary: verifySummary },
  prune: { button: 'Prune', busy: 'Pruning…', result: (r) => r.status?.lastPrune, summary: pruneSummary },
};

/// A cell with the last result of `operation`, or a spinner while one is asked for.
function resultCell(repo, operation) {
  const op = OPERATIONS[operation];
  if (requestPending(repo, operation)) {
    const progressing = condition(repo, 'Progressing');
    return h(
      'span',
      { dataset: { result: 'pending' } },
      statusBadge({ text: op.busy, tone: 'info', busy: true }),
      progressing?.status === 'True' && progressing.message ? h('span', { class: 'activity' }, progressing.message) : null,
    );
  }
  const result = op.result(repo);
  const summary = op.summary(result);
  return resultElement(summary, result?.time, { dataset: { result: summary ? summary.tone : 'none' } });
}

/// The commands that add a repository, in a card.
function addRepositoryHelp() {
  return h(
    'section',
    { class: 'card add-repository', 'aria-labelledby': 'add-repository-title' },
    h('h2', { id: 'add-repository-title' }, 'Adding a repository'),
    h('p', {}, 'A repository is opened with a passphrase kept in a Secret, which the console does not handle. Add one from a terminal; it appears here at once:'),
    h('pre', { class: 'command' }, h('code', {}, 'vmsnap repo add NAME --dir /path/to/backups --passphrase-file FILE')),
    h('p', {}, 'or, in an S3 bucket:'),
    h(
      'pre',
      { class: 'command' },
      h('code', {}, 'vmsnap repo add NAME --s3 https://s3.example.com --bucket BUCKET [--prefix P] \\\n  --access-key-id-file F --secret-access-key-file F --passphrase-file FILE'),
    ),
    h('p', { class: 'help' }, 'Keep the passphrase somewhere else too: without it nobody can read the backups. A location that already holds a repository is opened, and its backups are listed.'),
  );
}

/// The backups of `backups` grouped by VM: `[{namespace, vm, count, latest, repositories}]`, the
/// backups that succeeded only, by namespace then VM name.
export function backedUpVms(backups) {
  const groups = new Map();
  for (const b of backups) {
    const vm = b.status?.vmName || b.metadata.labels?.['backup.vmsnap.io/vm'] || (b.spec?.source?.kind === 'VirtualMachine' ? b.spec.source.name : '');
    if (!vm || b.status?.phase !== 'Succeeded') continue;
    const id = `${b.metadata.namespace}/${vm}`;
    const g = groups.get(id) || { namespace: b.metadata.namespace, vm, count: 0, latest: '', repositories: new Set() };
    g.count += 1;
    const when = b.status?.pointInTime || '';
    if (when > g.latest) g.latest = when;
    if (b.spec?.repository) g.repositories.add(b.spec.repository);
    groups.set(id, g);
  }
  return [...groups.values()].sort((a, b) => a.namespace.localeCompare(b.namespace) || a.vm.localeCompare(b.vm));
}

export function repositoriesView() {
  const scope = new Scope();
  const loadError = errorSlot();
  const actionError = errorSlot();
  const tbody = h('tbody');
  const empty = h('p', { class: 'empty', hidden: true }, 'There are no backup repositories yet.');
  const table = h(
    'table',
    { class: 'table table-repositories' },
    h('caption', { class: 'visually-hidden' }, 'Backup repositories, updated live'),
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        ['Name', 'Namespace', 'Location', 'Status', 'Backups', 'Stored', 'Dedup ratio', 'Last verify', 'Last prune'].map((c) => h('th', { scope: 'col' }, c)),
        h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')),
      ),
    ),
    tbody,
  );
  const vmsBody = h('tbody');
  const vmsSection = h(
    'section',
    { class: 'backed-up-vms', hidden: true, 'aria-labelledby': 'backed-up-vms-title' },
    h('h2', { id: 'backed-up-vms-title' }, 'Backed-up VirtualMachines'),
    h('p', { class: 'help' }, 'Every VirtualMachine with a backup that succeeded, including those found in a repository that are not on this machine: open one to restore a backup as a new VirtualMachine.'),
    h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { class: 'table table-backed-up-vms' },
        h('caption', { class: 'visually-hidden' }, 'VirtualMachines with backups, updated live'),
        h('thead', {}, h('tr', {}, ['VirtualMachine', 'Namespace', 'Backups', 'Latest point in time', 'Repositories', 'On this machine'].map((c) => h('th', { scope: 'col' }, c)))),
        vmsBody,
      ),
    ),
  );
  const el = h(
    'section',
    { class: 'page' },
    h('div', { class: 'page-header' }, h('h1', {}, 'Repositories')),
    loadError.el,
    actionError.el,
    h('div', { class: 'table-wrap' }, table),
    empty,
    vmsSection,
    addRepositoryHelp(),
  );

  // Requests made from this page, so that their results are announced when they arrive.
  const asked = new Map();
  let collection = null;

  async function request(repo, operation) {
    const { namespace, name } = repo.metadata;
    const token = freshToken();
    actionError.clear();
    asked.set(`${namespace}/${name}/${operation}`, token);
    try {
      await mergePatch(paths.repositories(namespace, name), { metadata: { annotations: { [requestAnnotation(operation)]: token } } });
      announce(`${OPERATIONS[operation].busy.replace('…', '')} repository ${name}`);
    } catch (err) {
      asked.delete(`${namespace}/${name}/${operation}`);
      actionError.show(describeError(err, { kind: 'repository', name, doing: `${operation} ${name}` }));
    }
  }

  function announceResults(repo) {
    for (const operation of Object.keys(OPERATIONS)) {
      const id = `${repo.metadata.namespace}/${repo.metadata.name}/${operation}`;
      const token = asked.get(id);
      const result = OPERATIONS[operation].result(repo);
      if (token && result?.request === token) {
        asked.delete(id);
        announce(`${OPERATIONS[operation].button} of ${repo.metadata.name}: ${OPERATIONS[operation].summary(result).text}`);
      }
    }
  }

  const render = (repos) => {
    collection = repos;
    if (repos.error) loadError.show(describeError(repos.error, { doing: 'load the repositories' }) + ' Retrying…');
    else loadError.clear();
    if (!repos.synced) return;
    const items = repos.list();
    empty.hidden = items.length > 0;
    table.hidden = items.length === 0;
    for (const repo of items) announceResults(repo);
    updateKeyed(tbody, items, {
      key: (r) => `${r.metadata.namespace}/${r.metadata.name}`,
      signature: (r) => r.metadata.resourceVersion,
      render: (r) => {
        const name = r.metadata.name;
        const status = r.status || {};
        const state = repositoryState(r);
        // While its request waits for a result the button stays focusable (aria-disabled), so that
        // the focus stays on it when the row is redrawn.
        const actionButton = (operation) => {
          const pending = requestPending(r, operation);
          return h(
            'button',
            {
              type: 'button',
              class: 'button button-secondary button-small',
              disabled: state.text !== 'Ready',
              'aria-disabled': pending ? 'true' : undefined,
              'aria-label': `${OPERATIONS[operation].button} repository ${name}`,
              dataset: { focusKey: operation, operation },
              onclick: () => {
                const current = collection.get(r.metadata.namespace, name) || r;
                if (!requestPending(current, operation)) request(current, operation);
              },
            },
            OPERATIONS[operation].button,
          );
        };
        return h(
          'tr',
          { dataset: { name, namespace: r.metadata.namespace, ready: String(state.text === 'Ready') } },
          h('th', { scope: 'row', 'data-label': 'Name' }, name),
          h('td', { 'data-label': 'Namespace' }, r.metadata.namespace),
          h(
            'td',
            { 'data-label': 'Location', class: 'cell-location' },
            status.location || h('span', { class: 'muted' }, r.spec?.s3 ? `s3://${r.spec.s3.bucket}/${r.spec.s3.prefix || ''}` : r.spec?.local?.path || 'default directory'),
            status.chunkSize ? h('span', { class: 'activity' }, `${status.chunkSize} chunks`) : null,
            h('span', { class: 'activity', dataset: { readLimit: r.spec?.readLimit || '' } }, readLimitText(r)),
          ),
          h('td', { 'data-label': 'Status', class: 'cell-status' }, statusBadge(state, { dataset: { repositoryState: state.text } }), state.detail ? h('span', { class: state.tone === 'danger' ? 'activity text-danger' : 'activity' }, state.detail) : null),
          h('td', { 'data-label': 'Backups', class: 'cell-number' }, status.backups ?? '—'),
          h('td', { 'data-label': 'Stored', class: 'cell-number' }, quantity(status.storedSize)),
          h('td', { 'data-label': 'Dedup ratio', class: 'cell-number' }, status.deduplicationRatio ? `${status.deduplicationRatio}×` : '—'),
          h('td', { 'data-label': 'Last verify', class: 'cell-verify' }, resultCell(r, 'verify')),
          h('td', { 'data-label': 'Last prune', class: 'cell-prune' }, resultCell(r, 'prune')),
          h('td', { class: 'cell-actions' }, h('div', { class: 'actions' }, actionButton('verify'), actionButton('prune'))),
        );
      },
    });
  };
  scope.watch(paths.repositories(), {}, render);
  let backups = null;
  let vms = null;
  const renderVms = () => {
    if (!backups?.synced || !vms?.synced) return;
    const groups = backedUpVms(backups.list());
    vmsSection.hidden = groups.length === 0;
    updateKeyed(vmsBody, groups, {
      key: (g) => `${g.namespace}/${g.vm}`,
      signature: (g) => JSON.stringify([g.count, g.latest, [...g.repositories], Boolean(vms.get(g.namespace, g.vm))]),
      render: (g) => {
        const here = Boolean(vms.get(g.namespace, g.vm));
        return h(
          'tr',
          { dataset: { vm: g.vm, namespace: g.namespace } },
          h('th', { scope: 'row', 'data-label': 'VirtualMachine' }, h('a', { href: `#/vms/${encodeURIComponent(g.namespace)}/${encodeURIComponent(g.vm)}/backups`, 'aria-label': `Backups of ${g.vm}` }, g.vm)),
          h('td', { 'data-label': 'Namespace' }, g.namespace),
          h('td', { 'data-label': 'Backups', class: 'cell-number' }, String(g.count)),
          h('td', { 'data-label': 'Latest point in time' }, g.latest ? h('time', { datetime: g.latest }, exactTime(g.latest)) : '—'),
          h('td', { 'data-label': 'Repositories' }, [...g.repositories].sort().join(', ')),
          h('td', { 'data-label': 'On this machine' }, here ? 'Yes' : h('span', { class: 'muted' }, 'No')),
        );
      },
    });
  };
  backups = scope.watch(paths.backups(), {}, renderVms);
  vms = scope.watch(paths.vms(), {}, renderVms);
  return { el, title: 'Repositories', dispose: () => scope.dispose() };
}
