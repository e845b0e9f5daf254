// Gantry console: the login page. The token goes to the console's server,
// which keeps it; the browser gets only a session cookie it cannot read.
const form = document.getElementById('login-form');
const input = document.getElementById('token');
const error = document.getElementById('login-error');
const submit = document.getElementById('login-submit');

// next is where to go once logged in: a page of the console, never
// another site.
function next() {
  const n = new URLSearchParams(location.search).get('next') || '/';
  if (!n.startsWith('/') || n.startsWith('//') || n.startsWith('/\\') || n.startsWith('/login') || n.startsWith('/api/')) return '/';
  return n;
}

function fail(msg) {
  error.textContent = msg;
  error.hidden = false;
  input.focus();
  input.select();
}

// A browser that arrives from another site's link sends no cookie (it is
// SameSite=Strict), so a logged-in user may land here: go on.
async function check() {
  try {
    const r = await fetch('/api/session', { cache: 'no-store' });
    if (!r.ok) return;
    const s = await r.json();
    if (!s.required || s.name) location.replace(next());
  } catch {
    // The form still works.
  }
}

form.addEventListener('submit', async (e) => {
  e.preventDefault();
  error.hidden = true;
  submit.disabled = true;
  try {
    const r = await fetch('/api/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Gantry-Console': '1' },
      body: JSON.stringify({ token: input.value.trim() }),
    });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) {
      fail(body.error || `${r.status} ${r.statusText}`);
      return;
    }
    input.value = '';
    location.replace(next());
  } catch (err) {
    fail(err.message);
  } finally {
    submit.disabled = false;
  }
});

input.focus();
check();
