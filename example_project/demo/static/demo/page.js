// The demo page: wires AuthClient (auth-client.js) to the buttons. Only the
// AuthClient part is the pattern to copy; this file is presentation.

"use strict";

const $ = (id) => document.getElementById(id);
let refreshCount = 0;

function log(line) {
  const time = new Date().toLocaleTimeString();
  $("log").textContent += `${time}  ${line}\n`;
  $("log").scrollTop = $("log").scrollHeight;
}

const client = new AuthClient({
  onLoggedIn: showApp,
  onLoggedOut: (reason) => {
    log(`session over: ${reason || "logged out"}`);
    showLogin(reason);
  },
  onEvent: (line) => {
    if (line.startsWith("POST refresh → 200")) $("refresh-count").textContent = ++refreshCount;
    log(line);
  },
});

function showLogin(message) {
  $("app-view").hidden = true;
  $("login-view").hidden = false;
  $("login-error").textContent = message && message !== "signed out" ? message : "";
  $("password").value = "";
}

async function showApp() {
  $("login-view").hidden = true;
  $("app-view").hidden = false;
  $("login-error").textContent = "";
  $("visible-cookies").textContent = document.cookie || "(nothing)";
  showAccessState();
  await callMe();
  await loadSessions();
}

async function callMe() {
  try {
    const response = await client.api("/api/me/");
    const body = await response.json();
    $("me-result").textContent = response.ok ? JSON.stringify(body) : `${response.status} ${body.code}`;
    if (response.ok) $("who").textContent = body.username;
  } catch (error) {
    $("me-result").textContent = `${error.status || ""} ${error.code || error.message}`;
  }
}

// The sessions API (GET/DELETE /api/auth/sessions/…). Optional: if the server has
// no such endpoint, the section stays hidden.
async function loadSessions() {
  let sessions;
  try {
    const response = await client.api("/api/auth/sessions/");
    if (!response.ok) return;
    sessions = await response.json();
  } catch {
    return;
  }
  if (!Array.isArray(sessions)) return;
  const when = (iso) => (iso ? new Date(iso).toLocaleString() : "–");
  $("sessions").replaceChildren(
    ...sessions.map((session) => {
      const row = document.createElement("tr");
      // textContent and value, never innerHTML: a name is whatever its owner typed,
      // and a user agent whatever the client sent.
      row.append(Object.assign(document.createElement("td"), {
        className: "device", textContent: session.device, title: session.user_agent,
      }));
      row.append(nameCell(session));
      for (const text of [when(session.created_at), when(session.last_used_at), session.ip_address || "–"]) {
        row.append(Object.assign(document.createElement("td"), { textContent: text }));
      }
      // The thumbprint of the key a bound session needs (null: a Bearer session).
      const key = session.dpop_jkt ? `${session.dpop_jkt.slice(0, 8)}…` : "–";
      row.append(Object.assign(document.createElement("td"), { className: "key", textContent: key }));
      const cell = document.createElement("td");
      if (session.current) cell.append(Object.assign(document.createElement("span"), { className: "badge", textContent: "this browser" }));
      const button = Object.assign(document.createElement("button"), {
        className: "secondary", textContent: "Sign out",
      });
      button.dataset.session = session.id;
      button.onclick = () => signOutSession(session);
      cell.append(" ", button);
      row.append(cell);
      return row;
    }),
  );
  $("sessions-view").hidden = false;
}

// The name its owner gives a session (PATCH /api/auth/sessions/<id>/ {"name"}).
function nameCell(session) {
  const cell = Object.assign(document.createElement("td"), { className: "name" });
  const form = document.createElement("form");
  const input = Object.assign(document.createElement("input"), {
    value: session.name, placeholder: "Name this device", maxLength: 64,
  });
  input.setAttribute("aria-label", "Session name");
  form.append(input, Object.assign(document.createElement("button"), {
    className: "secondary", textContent: "Rename", type: "submit",
  }));
  form.onsubmit = async (event) => {
    event.preventDefault();
    const response = await client.api(`/api/auth/sessions/${session.id}/`, {
      method: "PATCH",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name: input.value }),
    });
    const body = await response.json();
    log(`renamed session ${session.id.slice(0, 8)}… → ${response.status}${response.ok ? "" : ` ${body.code}`}`);
    if (response.ok) await loadSessions();
  };
  cell.append(form);
  return cell;
}

async function signOutSession(session) {
  if (session.current) return client.logout(); // this browser: the normal logout
  const response = await client.api(`/api/auth/sessions/${session.id}/`, { method: "DELETE" });
  log(`signed out session ${session.id.slice(0, 8)}… → ${response.status}`);
  await loadSessions();
}

// The access token's remaining life, to watch it expire (the demo uses 20 seconds), and
// the key the session is bound to (a refresh in another tab may have changed it).
function showAccessState() {
  const expires = client.accessExpiresAt;
  if (!expires) return;
  const key = client.boundKey;
  $("dpop-state").textContent = key ? `bound to key ${key.slice(0, 8)}…` : "not bound (Bearer token)";
  const left = Math.max(0, Math.round((expires - Date.now()) / 1000));
  $("access-state").textContent = left ? `expires in ${left} s` : "expired; the next call refreshes it silently";
  const lifetime = Math.max(1, (expires - client.accessIssuedAt) / 1000);
  $("access-meter").firstElementChild.style.width = `${Math.min(100, (100 * left) / lifetime)}%`;
  $("access-meter").classList.toggle("expired", left === 0);
}
setInterval(showAccessState, 1000);

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    await client.login($("username").value, $("password").value, { remember: $("remember").checked });
    log(`logged in as ${$("username").value}`);
  } catch (error) {
    $("login-error").textContent = error.message;
  }
});
$("call-me").onclick = callMe;
$("call-many").onclick = () => Promise.all([callMe(), callMe(), callMe()]);
$("logout").onclick = () => client.logout();
$("logout-all").onclick = () => client.logoutEverywhere();

// After a reload the access token is gone, but the cookie may still hold a session:
// one silent refresh restores it, or the login form shows.
client.refresh().then(
  () => {
    log("session restored from the refresh cookie");
    showApp();
  },
  () => showLogin(),
);
