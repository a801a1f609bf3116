// Sign-in and sign-up pages: send the form, keep the access token in memory (the
// refresh cookie is set by the server), then go where the visitor was headed.

import { signIn, signUp } from './api.js';
import { fail, fields, notify, start } from './ui.js';

/** Only same-site paths: `next` must not send people to another origin. */
function nextPath() {
  const next = new URLSearchParams(location.search).get('next') || '/';
  return next.startsWith('/') && !next.startsWith('//') && !next.startsWith('/\\') ? next : '/';
}

start(async () => {
  const other = document.getElementById('other');
  const next = new URLSearchParams(location.search).get('next');
  if (other && next) other.href += `?next=${encodeURIComponent(next)}`;
  const form = document.getElementById('signin') || document.getElementById('signup');
  const button = document.getElementById('submit');
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const data = fields(form);
    const missing = [...form.querySelectorAll('[required]')].find((input) => !input.value.trim());
    if (missing) {
      notify(`Fill in ${form.querySelector(`label[for="${missing.id}"]`)?.textContent.toLowerCase() || 'every field'}.`, 'error');
      missing.focus();
      return;
    }
    button.disabled = true;
    try {
      if (form.id === 'signup') await signUp({ name: data.name, email: data.email, password: data.password, user_type: data.user_type });
      else await signIn(data.email, data.password);
      location.assign(nextPath());
    } catch (e) {
      fail(e);
      button.disabled = false;
    }
  });
});
