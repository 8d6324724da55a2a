// A menu button (the "⋮" of a table row): Enter, Space or ArrowDown opens it, arrows move, Escape
// or Tab closes it and the focus returns to the button.

import { h, newId } from './dom.js';

let openMenu = null;

document.addEventListener('click', (event) => {
  if (openMenu && !openMenu.root.contains(event.target)) openMenu.close(false);
});
// The menu is placed in the window (position: fixed), so that a table's scrolling wrapper does not
// cut it off; scrolling or resizing would leave it behind its button, so they close it.
const closeOpenMenu = () => openMenu && openMenu.close(false);
window.addEventListener('scroll', closeOpenMenu, true);
window.addEventListener('resize', closeOpenMenu);

/// `items`: `[{label, onSelect, disabled, danger, description}]`.
export function menuButton(label, items, { focusKey = 'menu' } = {}) {
  const menuId = newId('menu');
  const toggle = h(
    'button',
    {
      type: 'button',
      class: 'button button-plain kebab',
      'aria-haspopup': 'menu',
      'aria-expanded': 'false',
      'aria-controls': menuId,
      'aria-label': label,
      dataset: { focusKey },
    },
    h('span', { 'aria-hidden': 'true' }, '⋮'),
  );
  const entries = items.map((item) =>
    h(
      'button',
      {
        type: 'button',
        role: 'menuitem',
        tabindex: '-1',
        // After a re-render of the row the focus falls back on the (new) toggle.
        dataset: { focusKey },
        class: `menu-item ${item.danger ? 'menu-item-danger' : ''}`,
        'aria-disabled': item.disabled ? 'true' : undefined,
        title: item.disabled && item.description ? item.description : undefined,
        onclick: () => {
          if (item.disabled) return;
          control.close(true);
          item.onSelect();
        },
      },
      item.label,
      item.disabled && item.description ? h('span', { class: 'menu-item-note' }, item.description) : null,
    ),
  );
  const menu = h('div', { class: 'menu', role: 'menu', id: menuId, 'aria-label': label, hidden: true }, entries);
  const root = h('div', { class: 'menu-root' }, toggle, menu);
  const focusItem = (index) => entries[(index + entries.length) % entries.length].focus({ preventScroll: true });
  /// Below the button, its right edges aligned, or above it when there is no room below.
  const place = () => {
    const button = toggle.getBoundingClientRect();
    const width = menu.offsetWidth;
    const height = menu.offsetHeight;
    const left = Math.max(8, Math.min(button.right - width, window.innerWidth - width - 8));
    const roomBelow = window.innerHeight - button.bottom;
    const up = roomBelow < height + 16 && button.top > height + 16;
    menu.style.left = `${left}px`;
    menu.style.top = `${up ? button.top - height - 4 : button.bottom + 4}px`;
  };
  const control = {
    root,
    open(index = 0) {
      if (openMenu && openMenu !== control) openMenu.close(false);
      openMenu = control;
      menu.hidden = false;
      toggle.setAttribute('aria-expanded', 'true');
      place();
      focusItem(index);
    },
    close(returnFocus) {
      if (openMenu === control) openMenu = null;
      menu.hidden = true;
      toggle.setAttribute('aria-expanded', 'false');
      if (returnFocus) toggle.focus();
    },
  };
  toggle.addEventListener('click', () => (menu.hidden ? control.open(0) : control.close(true)));
  toggle.addEventListener('keydown', (event) => {
    if (event.key === 'ArrowDown') {
      event.preventDefault();
      control.open(0);
    } else if (event.key === 'ArrowUp') {
      event.preventDefault();
      control.open(entries.length - 1);
    }
  });
  menu.addEventListener('keydown', (event) => {
    const index = entries.indexOf(document.activeElement);
    if (event.key === 'ArrowDown') focusItem(index + 1);
    else if (event.key === 'ArrowUp') focusItem(index - 1);
    else if (event.key === 'Home') focusItem(0);
    else if (event.key === 'End') focusItem(entries.length - 1);
    else if (event.key === 'Escape') control.close(true);
    else if (event.key === 'Tab') {
      control.close(false);
      return;
    } else return;
    event.preventDefault();
    event.stopPropagation();
  });
  return root;
}
