// Start, stop and restart of a VirtualMachine, as buttons that know when each action makes sense.

import { vmAction } from './api.js';
import { h, announce } from './dom.js';
import { describeError } from './errors.js';
import { vmHasInstance } from './format.js';

const pending = new Set();

const LABELS = { start: 'Start', stop: 'Stop', restart: 'Restart' };
const DOING = { start: 'start', stop: 'stop', restart: 'restart' };

/// Whether `action` can be asked of `vm` now.
export function actionAllowed(vm, action) {
  const status = vm.status?.printableStatus;
  const running = vmHasInstance(vm);
  if (pending.has(`${vm.metadata.namespace}/${vm.metadata.name}`)) return false;
  if (action === 'start') return !running && status !== 'Starting';
  if (action === 'stop') return running && status !== 'Stopping';
  return status === 'Running' || status === 'Paused';
}

/// Runs `action` on `vm`; reports failures through `onError(message)`.
export async function runAction(vm, action, onError, onDone) {
  const id = `${vm.metadata.namespace}/${vm.metadata.name}`;
  pending.add(id);
  onError('');
  try {
    await vmAction(vm.metadata.namespace, vm.metadata.name, action);
    announce(`${LABELS[action]} requested for ${vm.metadata.name}`);
  } catch (err) {
    onError(describeError(err, { kind: 'VirtualMachine', name: vm.metadata.name, doing: `${DOING[action]} ${vm.metadata.name}` }));
  } finally {
    pending.delete(id);
    if (onDone) onDone();
  }
}

/// Start, Stop and Restart buttons for `vm`. `rerender` is called when a request ends.
export function actionButtons(vm, { onError, rerender, compact = false }) {
  return h(
    'div',
    { class: 'actions', role: 'group', 'aria-label': `Actions for ${vm.metadata.name}` },
    ['start', 'stop', 'restart'].map((action) =>
      h(
        'button',
        {
          type: 'button',
          class: `button ${compact ? 'button-small' : ''} button-secondary`,
          disabled: !actionAllowed(vm, action),
          'aria-label': compact ? `${LABELS[action]} ${vm.metadata.name}` : undefined,
          dataset: { action, focusKey: action },
          onclick: (event) => {
            event.currentTarget.disabled = true;
            runAction(vm, action, onError, rerender);
          },
        },
        LABELS[action],
      ),
    ),
  );
}
