import { h, replace } from '../lib/dom.js';

/** The login form; submit(user, password) logs in or throws the dispatcher's refusal. */
export function renderLogin(main, { message, submit }) {
  const error = h('p', { class: 'form-error', id: 'login-error', role: 'alert' });
  const user = h('input', { id: 'login-user', name: 'user', autocomplete: 'username', required: true, maxlength: 200, autocapitalize: 'none', spellcheck: 'false' });
  const password = h('input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true, maxlength: 1024 });
  const button = h('button', { type: 'submit' }, 'Log in');
  const form = h(
    'form',
    { class: 'login card', 'aria-describedby': 'login-error', novalidate: true },
    h('h1', {}, 'Log in to tracefleet'),
    message ? h('p', { class: 'notice', role: 'status' }, message) : null,
    h('div', { class: 'field' }, h('label', { for: 'login-user' }, 'User'), user),
    h('div', { class: 'field' }, h('label', { for: 'login-password' }, 'Password'), password),
    error,
    h('div', { class: 'actions' }, button),
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    if (!user.value.trim() || !password.value) {
      error.textContent = 'give your user name and password';
      (user.value.trim() ? password : user).focus();
      return;
    }
    button.disabled = true;
    try {
      await submit(user.value.trim(), password.value);
    } catch (e) {
      error.textContent = e.message;
      password.select();
      password.focus();
    } finally {
      button.disabled = false;
    }
  });
  replace(main, form);
  user.focus();
}
