/*
 * The dispatcher's web page: log in, then hash routes
 *   #/             new trace (tracer, admin; a viewer lands on History)
 *   #/trace/<id>   one trace: live host rows, SIP messages, ladder, downloads
 *   #/history      past traces, newest first
 *   #/fleet        agents
 *   #/health       SIP statistics per window, peer and host; alert rules
 * A route is a URL, so a trace page can be reloaded or sent to a colleague.
 */

import { ApiError, canTrace, clearSession, connectClient, loadSession, login, makeApi, saveSession } from './lib/api.js';
import { h, replace } from './lib/dom.js';
import { RULES } from './lib/request.js';
import { renderLogin } from './views/login.js';
import { renderTraceForm } from './views/trace-form.js';
import { renderTrace } from './views/trace.js';
import { renderHistory } from './views/history.js';
import { renderFleet } from './views/fleet.js';
import { renderHealth } from './views/health.js';
import { alertBanners } from './views/alerts.js';

/** #/trace/<id>, with the dispatcher's trace-id rule (an anchored pattern). */
const TRACE_ROUTE = new RegExp(`^/trace/(${RULES.patterns.traceId.slice(1, -1)})$`);
const main = document.getElementById('main');
const nav = document.getElementById('nav');
const who = document.getElementById('who');
const conn = document.getElementById('conn');
const logoutButton = document.getElementById('logout');

/** What lives as long as a login. */
let session = null;
let api = null;
let client = null;
/** The time window the trace form asks for; the fleet view marks agents whose ring does not reach back that far. */
const shared = { window: { window: '15m', from: '', to: '' } };
const updateListeners = new Set();
const reconnectListeners = new Set();
/** The view following live, if any: the only taker of follow:data. */
let followListener = null;
/** The current view's clean-up (timers, watched rooms). */
let leaveView = null;
let banners = null;

function setConn(status, detail) {
  conn.dataset.status = status;
  conn.textContent = status === 'connected' ? 'live' : status === 'reconnecting' ? 'reconnecting…' : '';
  conn.title = detail ? String(detail) : '';
}

function endSession(message) {
  if (leaveView) leaveView();
  leaveView = null;
  client?.close();
  client = null;
  api = null;
  session = null;
  clearSession();
  updateListeners.clear();
  reconnectListeners.clear();
  followListener = null;
  banners?.clear();
  banners = null;
  nav.hidden = true;
  logoutButton.hidden = true;
  who.textContent = '';
  setConn('offline');
  showLogin(message);
}

function showLogin(message) {
  document.title = 'Log in · tracefleet';
  renderLogin(main, {
    message,
    async submit(user, password) {
      const s = await login(user, password);
      saveSession({ token: s.token, user: s.user, roles: s.roles, expiresAt: s.expiresAt });
      start(loadSession());
    },
  });
}

function start(s) {
  session = s;
  api = makeApi(session, (msg) => endSession(`You were logged out: ${msg}`));
  client = connectClient(session, {
    onStatus: setConn,
    onUnauthorized: (msg) => endSession(`You were logged out: ${msg}`),
    onUpdate: (u) => {
      for (const f of [...updateListeners]) f(u);
    },
    onReconnect: () => {
      for (const f of [...reconnectListeners]) f();
      void banners?.load();
    },
    onFollow: (kind, payload, ack) => {
      if (followListener) followListener(kind, payload, ack);
      // Nobody shows it (the view was left as it arrived): taken all the same, the view's leaving stopped it.
      else ack({});
    },
    onAlert: (e) => banners?.take(e),
  });
  banners = alertBanners(document.getElementById('alerts'), context([]));
  void banners.load();
  nav.hidden = false;
  document.getElementById('nav-new').hidden = !canTrace(session);
  logoutButton.hidden = false;
  replace(who, h('span', { class: 'user' }, session.user), ' ', h('span', { class: 'roles' }, `(${session.roles.join(', ') || 'no role'})`));
  route();
}

/** What a view gets: the session, REST and socket, shared state, and hooks it must undo when left. */
function context(cleanups) {
  return {
    session,
    api,
    client,
    shared,
    navigate(hash) {
      if (location.hash === hash) route();
      else location.hash = hash;
    },
    onUpdate(f) {
      updateListeners.add(f);
      cleanups.push(() => updateListeners.delete(f));
    },
    onReconnect(f) {
      reconnectListeners.add(f);
      cleanups.push(() => reconnectListeners.delete(f));
    },
    /** f(kind, payload, ack) for follow:data and follow:end, while this view lives. */
    onFollow(f) {
      followListener = f;
      cleanups.push(() => {
        if (followListener === f) followListener = null;
      });
    },
    onLeave(f) {
      cleanups.push(f);
    },
    setTitle(t) {
      document.title = `${t} · tracefleet`;
    },
  };
}

function route() {
  if (!session) return;
  if (leaveView) leaveView();
  const cleanups = [];
  leaveView = () => {
    for (const f of cleanups.splice(0).reverse()) {
      try {
        f();
      } catch {
        /* a view's clean-up must not stop the next view */
      }
    }
  };
  const ctx = context(cleanups);
  const hash = location.hash.replace(/^#/, '') || '/';
  let m;
  let current = 'new';
  main.replaceChildren();
  if ((m = TRACE_ROUTE.exec(hash))) {
    current = '';
    renderTrace(main, ctx, m[1]);
  } else if (hash === '/history') {
    current = 'history';
    renderHistory(main, ctx);
  } else if (hash === '/health') {
    current = 'health';
    renderHealth(main, ctx);
  } else if (hash === '/fleet') {
    current = 'fleet';
    renderFleet(main, ctx);
  } else if (hash === '/' || hash === '/new') {
    if (canTrace(session)) renderTraceForm(main, ctx);
    else {
      // A viewer has no trace form: History is where they start.
      location.replace('#/history');
      return;
    }
  } else {
    current = '';
    ctx.setTitle('Not found');
    replace(main, h('h1', {}, 'Nothing here'), h('p', {}, 'This address is not a page of tracefleet. ', h('a', { href: '#/history' }, 'Go to the trace history'), '.'));
  }
  for (const a of nav.querySelectorAll('a')) {
    if (a.dataset.route === current) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  // Screen readers and keyboards start at the new page's heading.
  const heading = main.querySelector('h1');
  if (heading) {
    heading.tabIndex = -1;
    heading.focus({ preventScroll: true });
  }
}

logoutButton.addEventListener('click', () => endSession('You logged out.'));
window.addEventListener('hashchange', route);

async function boot() {
  const s = loadSession();
  if (!s) return showLogin();
  try {
    // The stored session may have expired or its roles changed: ask who we are.
    const me = await makeApi(s, () => {}).me();
    const fresh = { ...s, user: me.user, roles: me.roles };
    saveSession(fresh);
    start(fresh);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) endSession('Your session has ended: log in again.');
    else {
      showLogin(e.message);
    }
  }
}

boot();
