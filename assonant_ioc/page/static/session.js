// Who is reading: a person logged in at the catalog (tiled's multi-user mode: password
// login, a session that refreshes and ends, logout, API keys for scripts), or the API key
// typed in the field (tiled's single-user mode). The tokens live in this script's
// variables only, never in storage: a reload logs out.
"use strict";

let CATALOG = "";
const session = { people: false, provider: null, access: null, refresh: null, who: null, links: {} };

function apiKey() { return document.getElementById("api-key").value.trim(); }

function authHeader() {
  if (session.people) return session.access ? { Authorization: "Bearer " + session.access } : {};
  const key = apiKey();
  return key ? { Authorization: "Apikey " + key } : {};
}

function refusedError(status) {
  const error = new Error("refused");
  error.refused = status;
  return error;
}

async function api(path, options) {
  const send = () => fetch(CATALOG + path, {
    ...(options || {}), headers: { ...authHeader(), ...((options || {}).headers || {}) } });
  let reply = await send();
  if (reply.status === 401 && session.refresh && await refreshSession()) reply = await send();
  if (reply.status === 401 || reply.status === 403) throw refusedError(reply.status);
  if (!reply.ok) throw new Error(`${path}: HTTP ${reply.status}`);
  return reply.json();
}

function tokens(reply) {
  session.access = reply.access_token;
  session.refresh = reply.refresh_token;
}

// the access token lives minutes; the refresh token gets a new one until the session ends
async function refreshSession() {
  const reply = await fetch(session.links.refresh_session, {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ refresh_token: session.refresh }) });
  if (!reply.ok) {
    loggedOut("Your session has ended: log in again.");
    return false;
  }
  tokens(await reply.json());
  return true;
}

async function logIn(event) {
  event.preventDefault();
  const user = document.getElementById("username").value.trim();
  const password = document.getElementById("password").value;
  const form = new URLSearchParams({ grant_type: "password", username: user, password });
  const endpoint = `${CATALOG}/api/v1/auth/provider/${encodeURIComponent(session.provider)}/token`;
  const reply = await fetch(endpoint, { method: "POST", body: form });
  document.getElementById("password").value = "";
  if (!reply.ok) {
    say("Refused: that user name and password were not accepted.", true);
    return;
  }
  tokens(await reply.json());
  const me = await api("/api/v1/auth/whoami");
  session.who = (me.identities || []).map((i) => i.id).join(", ") || "?";
  showPerson();
  await search();
}

function loggedOut(message) {
  session.access = session.refresh = session.who = null;
  showPerson();
  for (const id of ["results", "file"]) document.getElementById(id).hidden = true;
  document.querySelector("#results tbody").replaceChildren();
  document.getElementById("results-list").replaceChildren();
  say(message, false);
}

async function logOut() {
  if (session.refresh) {
    await fetch(`${CATALOG}/api/v1/auth/session/revoke`, {
      method: "POST", headers: { ...authHeader(), "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: session.refresh }) }).catch(() => null);
  }
  loggedOut("Logged out.");
}

function showPerson() {
  const inside = Boolean(session.access);
  document.getElementById("login-form").hidden = !session.people || inside;
  document.getElementById("person").hidden = !inside;
  document.getElementById("key-field").hidden = session.people;
  document.getElementById("whoami").textContent = inside ? `Logged in as ${session.who}` : "";
  document.getElementById("search-form").hidden = session.people && !inside;
  document.getElementById("new-key").hidden = true;
}

// the tags of what this person sees: an API key made here reads those (and public) only
async function ownTags() {
  const tags = new Set(["public"]);
  let path = "/api/v1/search/?fields=metadata&page[limit]=100";
  while (path) {
    const page = await api(path);
    for (const item of page.data) {
      for (const tag of item.attributes.metadata.access_tags || []) tags.add(String(tag));
    }
    const next = (page.links || {}).next;
    path = next ? next.slice(CATALOG.length) : null;
  }
  return [...tags].sort();
}

async function makeKey(event) {
  event.preventDefault();
  const count = Number(document.getElementById("key-expiry").value);
  const unit = Number(document.getElementById("key-unit").value);
  if (!(count > 0)) { say("An API key needs an expiry: a number above 0.", true); return; }
  const tags = await ownTags();
  const made = await api("/api/v1/auth/apikey", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ scopes: ["read:metadata", "read:data"], access_tags: tags,
                           expires_in: Math.round(count * unit), note: "made on the page" }) });
  const box = document.getElementById("new-key");
  box.hidden = false;
  document.getElementById("key-secret").value = made.secret;
  document.getElementById("key-says").textContent =
    `Reads ${tags.filter((t) => t !== "public").join(", ") || "public data"} ` +
    `until ${made.expiration_time} UTC. Copy it now: it is not shown again.`;
}

async function startSession() {
  CATALOG = (await (await fetch("config.json")).json()).catalog;
  sessionStorage.removeItem("apiKey");  // an older page kept it there: not any more
  const about = await (await fetch(CATALOG + "/api/v1/")).json();
  const providers = ((about.authentication || {}).providers || []);
  const password = providers.find((p) => p.mode === "internal" || p.mode === "password");
  session.people = providers.length > 0;
  session.links = (about.authentication || {}).links || {};
  if (password) session.provider = password.provider;
  const external = providers.find((p) => p.mode === "external");
  if (external && !password) {  // OIDC: the provider's own login page
    const link = document.getElementById("external-login");
    link.href = external.links.auth_endpoint;
    link.hidden = false;
    document.getElementById("login-fields").hidden = true;
  }
  document.getElementById("login-form").addEventListener("submit", logIn);
  document.getElementById("logout").addEventListener("click", logOut);
  document.getElementById("key-form").addEventListener("submit", makeKey);
  showPerson();
  if (session.people) say("Log in to see your proposals' files.", false);
}
