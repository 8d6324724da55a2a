// The console's entry point: the routes (in the URL's hash, so the server serves only one page),
// the masthead, logging in and out, and the clock that keeps ages fresh.

import { session, onUnauthorized } from './api.js';
import { focusHeading } from './dom.js';
import { refreshAges } from './format.js';
import { releaseAll } from './live.js';
import { loginView } from './views/login.js';
import { vmsView } from './views/vms.js';
import { vmDetailView } from './views/vm-detail.js';
import { snapshotDetailView } from './views/snapshot-detail.js';
import { schedulesView } from './views/schedules.js';
import { repositoriesView } from './views/repositories.js';

const main = document.getElementById('main');
const nav = document.querySelector('.mainnav');
const logout = document.querySelector('.logout');

const routes = [
  { pattern: /^#\/vms$/, view: vmsView, nav: 'vms' },
  { pattern: /^#\/vms\/([^/]+)\/([^/]+)(?:\/(overview|snapshots|backups))?$/, view: vmDetailView, nav: 'vms' },
  { pattern: /^#\/snapshots\/([^/]+)\/([^/]+)$/, view: snapshotDetailView, nav: 'vms' },
  { pattern: /^#\/schedules$/, view: schedulesView, nav: 'schedules' },
  { pattern: /^#\/repositories$/, view: repositoriesView, nav: 'repositories' },
];

let current = null;
let loginMessage = '';

function mount(next) {
  main.replaceChildren(next.el);
  // Dispose of the old view only after the new one acquired its watches, so shared ones stay open.
  if (current) current.dispose();
  current = next;
  focusHeading(main, next.title);
  if (next.initialFocus) next.initialFocus.focus();
}

function route() {
  const hash = location.hash || '#/vms';
  const loggedIn = Boolean(session.token);
  nav.hidden = !loggedIn;
  logout.hidden = !loggedIn;
  if (!loggedIn || hash === '#/login') {
    const after = hash === '#/login' ? '#/vms' : hash;
    mount(loginView({ message: loginMessage, onLogin: () => go(after) }));
    loginMessage = '';
    return;
  }
  for (const r of routes) {
    const match = r.pattern.exec(hash);
    if (match) {
      for (const link of nav.querySelectorAll('a')) {
        if (link.dataset.nav === r.nav) link.setAttribute('aria-current', 'page');
        else link.removeAttribute('aria-current');
      }
      mount(r.view(...match.slice(1).map((p) => (p === undefined ? p : decodeURIComponent(p)))));
      return;
    }
  }
  location.replace('#/vms');
}

/// Goes to `hash` (re-rendering even when it is the current one).
function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

logout.addEventListener('click', () => {
  session.clear();
  releaseAll();
  go('#/login');
});

onUnauthorized(() => {
  if (!session.token) return;
  session.clear();
  releaseAll();
  loginMessage = 'Your session ended: the server did not accept the token any more. Log in again.';
  route();
});

window.addEventListener('hashchange', route);
setInterval(() => refreshAges(main), 15000);
route();
