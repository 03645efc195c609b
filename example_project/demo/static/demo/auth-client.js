// A browser client for django-rotating-tokens. Plain JavaScript, no build step, no
// dependencies: copy it and change the URLs.
//
// - The access token lives in memory only (never localStorage: an XSS could read it).
// - The refresh token lives in an HttpOnly cookie set by the server; this code never
//   sees it. Refresh and logout send it by themselves (credentials: "same-origin"),
//   echoing Django's csrftoken cookie in X-CSRFToken.
// - api() refreshes silently on a 401 and retries the call once.
// - Single-flight: calls that hit a 401 together share one refresh request.
// - Tabs: a Web Lock makes tabs refresh one after the other, so two tabs never present
//   the same cookie at the same moment (which the server would take for a replay).
// - A refused refresh means the session is over: onLoggedOut() shows the login form.

"use strict";

const AUTH_URLS = {
  obtain: "/api/auth/token/",
  refresh: "/api/auth/token/refresh/",
  logout: "/api/auth/logout/",
  logoutAll: "/api/auth/logout/all/",
};
const REFRESH_LOCK = "rotating-tokens-refresh"; // one name for every tab of the origin

class AuthError extends Error {
  constructor(status, body) {
    super((body && body.detail) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
  }
}

function csrfToken() {
  // Django's csrftoken cookie is readable on purpose; the refresh cookie is not.
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

class AuthClient {
  #access = null; // the access token: in this variable and nowhere else
  #refreshing = null; // the refresh in flight, shared by every caller (single-flight)
  #channel = "BroadcastChannel" in window ? new BroadcastChannel("rotating-tokens") : null;

  constructor({ onLoggedIn = () => {}, onLoggedOut = () => {}, onEvent = () => {} } = {}) {
    this.onLoggedIn = onLoggedIn;
    this.onLoggedOut = onLoggedOut;
    this.onEvent = onEvent; // for the demo's log; remove in your code
    this.accessExpiresAt = null;
    // A logout in another tab ends this tab's session too (its access token is
    // already refused by the server; this only updates the page at once).
    if (this.#channel) this.#channel.onmessage = (event) => {
      if (event.data === "logged-out") this.#forget("signed out in another tab");
      // A login in another tab set the cookie: pick the session up with a refresh.
      if (event.data === "logged-in" && !this.loggedIn) this.refresh().then(this.onLoggedIn, () => {});
    };
  }

  get loggedIn() {
    return this.#access !== null;
  }

  async login(username, password) {
    const response = await fetch(AUTH_URLS.obtain, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username, password }),
      credentials: "same-origin",
    });
    const body = await readJson(response);
    if (!response.ok) throw new AuthError(response.status, body);
    this.#accept(body);
    if (this.#channel) this.#channel.postMessage("logged-in");
    this.onLoggedIn();
  }

  // Refresh the access token with the cookie. Concurrent callers get the same promise.
  refresh() {
    if (!this.#refreshing) {
      this.#refreshing = this.#refreshOneTabAtATime().finally(() => {
        this.#refreshing = null;
      });
    }
    return this.#refreshing;
  }

  async #refreshOneTabAtATime() {
    // While another tab holds the lock, its refresh rotates the cookie; ours starts
    // after it and sends the new cookie. Without Web Locks (very old browsers) the
    // server's grace period still forgives a same-browser race.
    if (navigator.locks) return navigator.locks.request(REFRESH_LOCK, () => this.#refreshNow());
    return this.#refreshNow();
  }

  async #refreshNow() {
    const response = await fetch(AUTH_URLS.refresh, {
      method: "POST",
      headers: { "X-CSRFToken": csrfToken() },
      credentials: "same-origin",
    });
    const body = await readJson(response);
    this.onEvent(`POST refresh → ${response.status}${body && body.code ? " " + body.code : ""}`);
    if (!response.ok) {
      // Expired, revoked, reused, no cookie: the session is over (the server has
      // deleted the cookie). Back to the login form.
      this.#forget(body && body.detail);
      throw new AuthError(response.status, body);
    }
    this.#accept(body);
  }

  // fetch() with the access token, one silent refresh on 401, and one retry.
  async api(url, options = {}) {
    if (!this.#access) await this.refresh(); // e.g. after a reload: the cookie restores it
    const sent = this.#access;
    let response = await fetch(url, this.#withAccess(options, sent));
    this.onEvent(`${options.method || "GET"} ${url} → ${response.status}`);
    if (response.status !== 401) return response;
    // Refresh, unless another call already did while ours was on the way.
    if (this.#access === sent) await this.refresh();
    response = await fetch(url, this.#withAccess(options, this.#access));
    this.onEvent(`${options.method || "GET"} ${url} (retry) → ${response.status}`);
    if (response.status === 401) this.#forget((await readJson(response))?.detail);
    return response;
  }

  async logout() {
    await this.#post(AUTH_URLS.logout); // the cookie says which session; the server deletes it
    this.#forget("signed out", { broadcast: true });
  }

  async logoutEverywhere() {
    await this.api(AUTH_URLS.logoutAll, { method: "POST" });
    await this.#post(AUTH_URLS.logout); // the family is revoked; this deletes our cookie
    this.#forget("signed out everywhere", { broadcast: true });
  }

  #post(url) {
    return fetch(url, {
      method: "POST",
      headers: { "X-CSRFToken": csrfToken() },
      credentials: "same-origin",
    });
  }

  #withAccess(options, token) {
    const headers = new Headers(options.headers || {});
    if (token) headers.set("Authorization", `Bearer ${token}`);
    return { ...options, headers, credentials: "same-origin" };
  }

  #accept(body) {
    this.#access = body.access;
    this.accessIssuedAt = new Date();
    this.accessExpiresAt = new Date(body.access_expires_at);
  }

  #forget(reason, { broadcast = false } = {}) {
    const wasLoggedIn = this.#access !== null;
    this.#access = null;
    this.accessExpiresAt = null;
    if (broadcast && this.#channel) this.#channel.postMessage("logged-out");
    if (wasLoggedIn || broadcast) this.onLoggedOut(reason);
  }
}

window.AuthClient = AuthClient;
window.AuthError = AuthError;
