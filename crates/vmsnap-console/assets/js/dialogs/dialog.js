// A modal dialog: a native <dialog> (the page behind is inert), Tab and Shift+Tab cycle inside
// it, Escape closes it (unless it is busy), and the focus goes back to what opened it.

import { h, newId, replace, errorSlot } from '../dom.js';
import { Scope } from '../live.js';

const FOCUSABLE =
  'a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), textarea:not([disabled]), summary, [tabindex]:not([tabindex="-1"])';

/// Opens a dialog. `title`; `build(dialog)` returns the body nodes and may use `dialog.scope`
/// (disposed on close), `dialog.footer` and `dialog.error`. Returns the dialog handle.
export function openDialog({ title, className = '', build, onClose }) {
  const titleId = newId('dialog-title');
  const opener = document.activeElement;
  const body = h('div', { class: 'dialog-body' });
  const footer = h('div', { class: 'dialog-footer' });
  const error = errorSlot();
  const closeButton = h('button', { type: 'button', class: 'button button-plain dialog-close', 'aria-label': 'Close dialog' }, '×');
  const el = h(
    'dialog',
    { class: `dialog ${className}`, 'aria-labelledby': titleId },
    h('div', { class: 'dialog-header' }, h('h2', { id: titleId }, title), closeButton),
    body,
    error.el,
    footer,
  );
  const dialog = {
    el,
    body,
    footer,
    error,
    scope: new Scope(),
    busy: false,
    closed: false,
    close() {
      if (dialog.closed) return;
      dialog.closed = true;
      dialog.scope.dispose();
      if (el.open) el.close();
      el.remove();
      if (onClose) onClose();
      if (opener && opener.isConnected) opener.focus();
    },
    /// Marks the dialog busy (buttons disabled, Escape ignored) while a request runs.
    setBusy(busy) {
      dialog.busy = busy;
      el.classList.toggle('is-busy', busy);
      closeButton.disabled = busy;
      el.setAttribute('aria-busy', String(busy));
    },
    /// Shows `problem` about `input` (marked invalid and focused) and returns false; without a
    /// problem, clears the error and the mark and returns true.
    validate(input, problem) {
      if (problem) {
        error.show(problem);
        input.setAttribute('aria-invalid', 'true');
        input.focus();
        return false;
      }
      input.removeAttribute('aria-invalid');
      error.clear();
      return true;
    },
    /// Replaces the footer buttons.
    setActions(...buttons) {
      replace(footer, ...buttons);
    },
  };
  closeButton.addEventListener('click', () => dialog.close());
  el.addEventListener('cancel', (event) => {
    event.preventDefault();
    if (!dialog.busy) dialog.close();
  });
  // Closed by the browser itself (e.g. a second Escape while busy): clean up all the same.
  el.addEventListener('close', () => dialog.close());
  el.addEventListener('keydown', (event) => {
    if (event.key !== 'Tab') return;
    const items = [...el.querySelectorAll(FOCUSABLE)].filter((n) => n.offsetParent !== null || n === document.activeElement);
    if (!items.length) return;
    const first = items[0];
    const last = items[items.length - 1];
    if (event.shiftKey && (document.activeElement === first || !el.contains(document.activeElement))) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && (document.activeElement === last || !el.contains(document.activeElement))) {
      event.preventDefault();
      first.focus();
    }
  });
  replace(body, build(dialog));
  document.body.append(el);
  el.showModal();
  const initial = el.querySelector('[autofocus]') || body.querySelector(FOCUSABLE) || footer.querySelector(FOCUSABLE) || closeButton;
  initial.focus();
  return dialog;
}

/// A button; `kind`: primary, secondary, danger, plain.
export function button(label, kind, onclick, attrs = {}) {
  return h('button', { type: 'button', class: `button button-${kind}`, onclick, ...attrs }, label);
}
