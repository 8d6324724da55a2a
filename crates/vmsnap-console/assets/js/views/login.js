// Logging in: the bearer token of the kubeconfig, checked against the API, kept in sessionStorage.

import { request, session, paths } from '../api.js';
import { h, errorSlot } from '../dom.js';
import { describeError } from '../errors.js';

export function loginView({ message, onLogin }) {
  const error = errorSlot();
  const input = h('input', {
    id: 'token',
    name: 'token',
    type: 'password',
    autocomplete: 'off',
    spellcheck: 'false',
    required: true,
    'aria-describedby': 'token-help',
  });
  const submit = h('button', { type: 'submit', class: 'button button-primary' }, 'Log in');
  const form = h(
    'form',
    {
      class: 'login-form',
      novalidate: true,
      onsubmit: async (event) => {
        event.preventDefault();
        const token = input.value.trim();
        if (!token) {
          error.show('Enter the token.');
          input.focus();
          return;
        }
        submit.disabled = true;
        error.clear();
        try {
          await request('GET', `${paths.vms()}?limit=1`, undefined, { token });
          session.set(token);
          onLogin();
        } catch (err) {
          error.show(describeError(err, { doing: 'log in' }));
          input.select();
          input.focus();
        } finally {
          submit.disabled = false;
        }
      },
    },
    h('label', { for: 'token' }, 'Bearer token'),
    input,
    h(
      'p',
      { id: 'token-help', class: 'help' },
      'The token of the kubeconfig that "vmsnap serve" wrote (the "token:" line), also in the "token" file of its data directory. It is kept in this browser tab only.',
    ),
    error.el,
    h('div', { class: 'form-actions' }, submit),
  );
  const el = h(
    'section',
    { class: 'login' },
    h('h1', {}, 'Log in to vmsnap'),
    message ? h('div', { class: 'alert alert-warning', role: 'alert' }, h('p', {}, message)) : null,
    form,
  );
  return {
    el,
    title: 'Log in',
    initialFocus: input,
    dispose() {},
  };
}
