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
// - DPoP (RFC 9449): the session is bound to a key pair made in this browser, whose
//   private half cannot be exported. Login, refresh, logout and every API call carry a
//   proof signed with it, so a copy of the cookie or of an access token is useless
//   anywhere else. If the server does not bind the session (DPoP off, or no WebCrypto
//   on a plain-HTTP origin), the page works as before with Bearer tokens.

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

// DPoP: the key pair and the proofs -------------------------------------------------

// crypto.subtle exists only in a secure context (HTTPS, localhost, 127.0.0.1).
const DPOP_AVAILABLE = Boolean(window.crypto && crypto.subtle && window.indexedDB);
const KEY_DATABASE = "rotating-tokens"; // IndexedDB: one database, one store, one record
const KEY_STORE = "dpop";
const KEY_RECORD = "session-key";
const encoder = new TextEncoder();

function base64url(bytes) {
  let binary = "";
  for (const byte of new Uint8Array(bytes)) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

const base64urlJson = (value) => base64url(encoder.encode(JSON.stringify(value)));
const sha256 = async (text) => base64url(await crypto.subtle.digest("SHA-256", encoder.encode(text)));

class DPoPKey {
  // A new pair for a new session. extractable=false: the private key can sign, but no
  // script (ours or an injected one) can read it out of the browser's key store.
  static async generate() {
    const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, [
      "sign",
      "verify",
    ]);
    return DPoPKey.from(pair);
  }

  static async from(pair) {
    // The public key exports even though the private one cannot. Only the members RFC
    // 7638 names, in its (lexicographic) order: this very JSON is what gets hashed.
    const { crv, kty, x, y } = await crypto.subtle.exportKey("jwk", pair.publicKey);
    const jwk = { crv, kty, x, y };
    return new DPoPKey(pair, jwk, await sha256(JSON.stringify(jwk)));
  }

  constructor(pair, jwk, thumbprint) {
    this.pair = pair;
    this.jwk = jwk;
    this.thumbprint = thumbprint; // the access token's cnf.jkt, the family's dpop_jkt
    this.header = base64urlJson({ typ: "dpop+jwt", alg: "ES256", jwk });
  }

  // A proof for one request (RFC 9449 section 4.2): a fresh jti each time (the server
  // refuses a jti it has seen), the URL without query and fragment, and for an API call
  // the hash of the access token it goes with.
  async proof(method, url, accessToken = null) {
    const htu = new URL(url, location.href);
    htu.search = "";
    htu.hash = "";
    const claims = {
      jti: base64url(crypto.getRandomValues(new Uint8Array(16))),
      htm: method,
      htu: htu.href,
      iat: Math.floor(Date.now() / 1000),
    };
    if (accessToken) claims.ath = await sha256(accessToken);
    const input = `${this.header}.${base64urlJson(claims)}`;
    // WebCrypto's ECDSA signature is already r || s, the form JWS wants (RFC 7518 3.4).
    const signature = await crypto.subtle.sign(
      { name: "ECDSA", hash: "SHA-256" },
      this.pair.privateKey,
      encoder.encode(input),
    );
    return `${input}.${base64url(signature)}`;
  }
}

// The pair outlives a reload in IndexedDB, which stores CryptoKey objects as they are
// (still non-extractable): the cookie restores the session, this restores its key.
// Every tab reads the same record, so the key always goes with the cookie.
function keyStore(mode, action) {
  return new Promise((resolve, reject) => {
    const opening = indexedDB.open(KEY_DATABASE, 1);
    opening.onupgradeneeded = () => opening.result.createObjectStore(KEY_STORE);
    opening.onerror = () => reject(opening.error);
    opening.onsuccess = () => {
      const database = opening.result;
      try {
        const transaction = database.transaction(KEY_STORE, mode);
        const request = action(transaction.objectStore(KEY_STORE));
        transaction.oncomplete = () => {
          database.close();
          resolve(request.result);
        };
        transaction.onerror = transaction.onabort = () => {
          database.close();
          reject(transaction.error);
        };
      } catch (error) {
        database.close(); // e.g. the store is missing: some other code made the database
        reject(error);
      }
    };
  });
}

const KeyStore = {
  async load() {
    if (!DPOP_AVAILABLE) return null;
    // No usable IndexedDB (a private window in some browsers): no key, so a refresh
    // goes without a proof; the server refuses it for a bound session.
    const pair = await keyStore("readonly", (store) => store.get(KEY_RECORD)).catch(() => null);
    return pair ? DPoPKey.from(pair) : null;
  },
  save(key) {
    const { privateKey, publicKey } = key.pair;
    return keyStore("readwrite", (store) => store.put({ privateKey, publicKey }, KEY_RECORD));
  },
  clear() {
    return keyStore("readwrite", (store) => store.delete(KEY_RECORD)).catch(() => {});
  },
  // Only if it is still this key: another tab may have logged in with a new one.
  async remove(key) {
    const stored = await KeyStore.load();
    if (stored && stored.thumbprint === key.thumbprint) await KeyStore.clear();
  },
};

// The client -------------------------------------------------------------------------

class AuthClient {
  #access = null; // the access token: in this variable and nowhere else
  #key = null; // the DPoPKey the access token is bound to; null for a Bearer token
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

  // The RFC 7638 thumbprint of the key the session is bound to, or null (Bearer).
  get boundKey() {
    return this.#key && this.#key.thumbprint;
  }

  // remember: false ("remember me" unticked) makes the refresh cookie a session
  // cookie, which the browser drops when it closes.
  async login(username, password, { remember = true } = {}) {
    // Under the refresh lock: the new cookie and its new key must reach IndexedDB
    // together, before another tab's refresh sends that cookie with the old key.
    await this.#oneTabAtATime(() => this.#loginNow(username, password, remember));
    if (this.#channel) this.#channel.postMessage("logged-in");
    this.onLoggedIn();
  }

  async #loginNow(username, password, remember) {
    const key = DPOP_AVAILABLE ? await DPoPKey.generate() : null; // a new key per session
    const headers = { "Content-Type": "application/json" };
    if (key) headers.DPoP = await key.proof("POST", AUTH_URLS.obtain);
    const response = await fetch(AUTH_URLS.obtain, {
      method: "POST",
      headers,
      body: JSON.stringify({ username, password, remember }),
      credentials: "same-origin",
    });
    const body = await readJson(response);
    if (!response.ok) throw new AuthError(response.status, body);
    if (!this.#accept(body, key)) {
      // A Bearer answer: the server does not bind sessions, so keep no key either.
      if (DPOP_AVAILABLE) await KeyStore.clear();
      return;
    }
    // If IndexedDB refuses, this tab's session still works; a reload will need a login.
    await KeyStore.save(key).catch(() => this.onEvent("the DPoP key could not be stored"));
  }

  // Refresh the access token with the cookie. Concurrent callers get the same promise.
  refresh() {
    if (!this.#refreshing) {
      this.#refreshing = this.#oneTabAtATime(() => this.#refreshNow()).finally(() => {
        this.#refreshing = null;
      });
    }
    return this.#refreshing;
  }

  #oneTabAtATime(task) {
    // While another tab holds the lock, its refresh rotates the cookie; ours starts
    // after it and sends the new cookie. Without Web Locks (very old browsers) the
    // server's grace period still forgives a same-browser race.
    if (navigator.locks) return navigator.locks.request(REFRESH_LOCK, task);
    return task();
  }

  async #refreshNow() {
    // The stored key, not this tab's: another tab may have logged in since.
    const key = await KeyStore.load();
    const response = await this.#post(AUTH_URLS.refresh, key);
    const body = await readJson(response);
    this.onEvent(`POST refresh → ${response.status}${body && body.code ? " " + body.code : ""}`);
    if (!response.ok) {
      // Expired, revoked, reused, no cookie: the session is over (the server has
      // deleted the cookie). A 400 about the proof (dpop_required, dpop_invalid)
      // leaves the cookie and its token as they were. Back to the login form.
      this.#forget(body && body.detail);
      throw new AuthError(response.status, body);
    }
    this.#accept(body, key);
  }

  // fetch() with the access token, one silent refresh on 401, and one retry.
  async api(url, options = {}) {
    if (!this.#access) await this.refresh(); // e.g. after a reload: the cookie restores it
    const sent = this.#access;
    let response = await fetch(url, await this.#withAccess(url, options));
    this.onEvent(`${options.method || "GET"} ${url} → ${response.status}`);
    if (response.status !== 401) return response;
    // Refresh, unless another call already did while ours was on the way.
    if (this.#access === sent) await this.refresh();
    response = await fetch(url, await this.#withAccess(url, options));
    this.onEvent(`${options.method || "GET"} ${url} (retry) → ${response.status}`);
    if (response.status === 401) this.#forget((await readJson(response))?.detail);
    return response;
  }

  logout() {
    return this.#logoutNow("signed out");
  }

  async logoutEverywhere() {
    await this.api(AUTH_URLS.logoutAll, { method: "POST" });
    await this.#logoutNow("signed out everywhere"); // the family is revoked; this deletes our cookie
  }

  async #logoutNow(reason) {
    // The cookie says which session; a bound one ends only with a proof by its key.
    const key = await KeyStore.load();
    await this.#post(AUTH_URLS.logout, key); // the server deletes the cookie
    if (key) await KeyStore.remove(key);
    this.#forget(reason, { broadcast: true });
  }

  // Refresh and logout: the cookie, the CSRF token, and a proof if there is a key.
  async #post(url, key) {
    const headers = { "X-CSRFToken": csrfToken() };
    if (key) headers.DPoP = await key.proof("POST", url);
    return fetch(url, { method: "POST", headers, credentials: "same-origin" });
  }

  async #withAccess(url, options) {
    // Token and key are read together: a refresh may replace both while we sign.
    const token = this.#access;
    const key = this.#key;
    // The proof's htm must be the method sent, and fetch upper-cases only some
    // methods ("patch" stays "patch"): send it upper-cased ourselves.
    const method = (options.method || "GET").toUpperCase();
    const headers = new Headers(options.headers || {});
    if (token && key) {
      headers.set("Authorization", `DPoP ${token}`);
      headers.set("DPoP", await key.proof(method, url, token));
    } else if (token) {
      headers.set("Authorization", `Bearer ${token}`);
    }
    return { ...options, method, headers, credentials: "same-origin" };
  }

  // Returns whether the access token is bound to the key (the server says "DPoP").
  #accept(body, key) {
    const bound = Boolean(key) && body.token_type === "DPoP";
    this.#access = body.access;
    this.#key = bound ? key : null;
    this.accessIssuedAt = new Date();
    this.accessExpiresAt = new Date(body.access_expires_at);
    return bound;
  }

  #forget(reason, { broadcast = false } = {}) {
    const wasLoggedIn = this.#access !== null;
    this.#access = null;
    this.#key = null;
    this.accessExpiresAt = null;
    if (broadcast && this.#channel) this.#channel.postMessage("logged-out");
    if (wasLoggedIn || broadcast) this.onLoggedOut(reason);
  }
}

window.AuthClient = AuthClient;
window.AuthError = AuthError;
window.DPoPKey = DPoPKey;
