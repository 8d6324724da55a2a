// A few DOM helpers: building elements, updating keyed lists in place without losing focus,
// alerts, and announcing changes to screen readers.

/// Creates an element. `attrs`: `class`, `text`, `on<event>` functions, `dataset`, boolean
/// properties (`disabled`, `checked`, `hidden`, `open`), anything else as an attribute.
/// Children: nodes, strings, arrays; null, undefined and false are skipped.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') el.className = value;
    else if (name === 'text') el.textContent = value;
    else if (name === 'dataset') Object.assign(el.dataset, value);
    else if (name.startsWith('on') && typeof value === 'function') el.addEventListener(name.slice(2), value);
    else if (['disabled', 'checked', 'hidden', 'open', 'value', 'required'].includes(name)) el[name] = value;
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/// Replaces the children of `el`.
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let uid = 0;
/// A unique element id.
export function newId(prefix = 'id') {
  uid += 1;
  return `${prefix}-${uid}`;
}

/// Updates the children of `container` to show `items`, one element per key, in order. An element
/// is rebuilt only when its `signature` changed; when it held the focus, the focus moves to the
/// element with the same `data-focus-key` in its replacement.
export function updateKeyed(container, items, { key, signature, render }) {
  const existing = new Map();
  for (const child of [...container.children]) {
    if (child.dataset.key !== undefined) existing.set(child.dataset.key, child);
  }
  let previous = null;
  const keep = new Set();
  for (const item of items) {
    const k = key(item);
    const sig = signature(item);
    keep.add(k);
    let el = existing.get(k);
    if (!el || el.dataset.signature !== sig) {
      const fresh = render(item);
      fresh.dataset.key = k;
      fresh.dataset.signature = sig;
      if (el) {
        const focusKey = el.contains(document.activeElement) ? document.activeElement.dataset.focusKey : undefined;
        el.replaceWith(fresh);
        if (focusKey) fresh.querySelector(`[data-focus-key="${CSS.escape(focusKey)}"]`)?.focus();
      }
      el = fresh;
    }
    const expectedNext = previous ? previous.nextElementSibling : container.firstElementChild;
    if (expectedNext !== el) {
      if (previous) previous.after(el);
      else container.prepend(el);
    }
    previous = el;
  }
  for (const [k, el] of existing) if (!keep.has(k)) el.remove();
}

/// An alert box. `kind`: info, warning, danger, success.
export function alertBox(kind, title, ...body) {
  return h(
    'div',
    { class: `alert alert-${kind}`, role: kind === 'danger' || kind === 'warning' ? 'alert' : 'status' },
    title ? h('p', { class: 'alert-title' }, title) : null,
    ...body,
  );
}

/// A place for errors in a view: `show(message)` fills it (announced), `clear()` empties it.
export function errorSlot() {
  const el = h('div', { class: 'error-slot' });
  return {
    el,
    show(message, title) {
      replace(el, message ? alertBox('danger', title || null, h('p', {}, message)) : null);
    },
    clear() {
      el.replaceChildren();
    },
  };
}

/// Says `text` to screen readers (polite).
export function announce(text) {
  const region = document.querySelector('.live-region');
  if (!region) return;
  region.textContent = '';
  setTimeout(() => {
    region.textContent = text;
  }, 50);
}

/// Sets the page title and moves focus to the heading, as a page load would.
export function focusHeading(root, title) {
  document.title = title ? `${title} · vmsnap` : 'vmsnap';
  const heading = root.querySelector('h1');
  if (heading) {
    heading.tabIndex = -1;
    heading.focus({ preventScroll: true });
  }
}
