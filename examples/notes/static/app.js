// The notes front-end: plain JavaScript, no build step, no dependency, nothing from another
// origin. It speaks the JSON API under /api (see examples/notes/__init__.py):
//
// * every request is a same-origin fetch carrying the login cookie (credentials:
//   "same-origin"); the cookie is HttpOnly, so the script never sees it;
// * every piece of user data reaches the page through textContent or an attribute set with
//   setAttribute, never through innerHTML: a note titled <img onerror=...> shows as text;
// * errors are RFC 9457 problem details: the page shows their title, detail and errors;
// * edits are conditional (PATCH with If-Match: the ETag the note was read with), so an edit
//   made meanwhile in another tab is a 412, not a silent overwrite;
// * /api/events (server-sent events: created, updated, deleted) keeps the list current
//   whichever tab, device or worker made the change.
"use strict";

const PAGE_SIZE = 20;
const $ = (id) => document.getElementById(id);

// -- the API ---------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, problem) {
    super(problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

// One request: {status, data, headers}, or an ApiError carrying the problem details.
async function api(method, path, { json, body, headers = {} } = {}) {
  const init = {
    method,
    credentials: "same-origin",
    cache: "no-store", // every call is a real round trip: the list must never be stale
    headers: { Accept: "application/json, application/problem+json", ...headers },
  };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (body !== undefined) {
    init.body = body; // FormData: the browser writes the multipart Content-Type
  }
  let r;
  try {
    r = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, { title: "The server cannot be reached", detail: String(e.message) });
  }
  let data = null;
  const type = r.headers.get("content-type") || "";
  if (r.status !== 204 && r.status !== 304) {
    data = /[/+]json\b/.test(type) ? await r.json().catch(() => null) : await r.text();
  }
  if (!r.ok) {
    const problem =
      data && typeof data === "object"
        ? data
        : { title: `${r.status} ${r.statusText}`, detail: typeof data === "string" ? data : "" };
    throw new ApiError(r.status, problem);
  }
  return { status: r.status, data, headers: r.headers };
}

const notePath = (id) => `/api/notes/${encodeURIComponent(id)}`;
const filePath = (id, name) => `${notePath(id)}/files/${encodeURIComponent(name)}`;

// -- errors ----------------------------------------------------------------------------------

function showError(err) {
  const problem =
    err instanceof ApiError ? err.problem : { title: "Something went wrong", detail: String(err) };
  $("error-title").textContent = problem.title || "Error";
  const detail = problem.detail || "";
  $("error-detail").textContent = detail && detail !== problem.title ? detail : "";
  const list = $("error-fields");
  list.replaceChildren();
  for (const e of Array.isArray(problem.errors) ? problem.errors : []) {
    const li = document.createElement("li");
    li.textContent = e && e.field ? `${e.field}: ${e.message}` : String(e && e.message);
    list.append(li);
  }
  $("error").hidden = false;
  if (!(err instanceof ApiError)) console.error(err);
}

function clearError() {
  $("error").hidden = true;
}

// Run an action from a click or a submit: errors shown, the button disabled meanwhile.
function action(fn) {
  return async (event) => {
    event.preventDefault();
    const button = event.submitter || event.currentTarget;
    if (button instanceof HTMLButtonElement) button.disabled = true;
    try {
      clearError();
      await fn(event);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401 && state.user !== null) {
        signedOut(); // the session ended elsewhere (logout in another tab, revoked)
      }
      showError(err);
    } finally {
      if (button instanceof HTMLButtonElement) button.disabled = false;
    }
  };
}

// -- state -----------------------------------------------------------------------------------

const state = {
  user: null, // the username, or null when signed out
  notes: new Map(), // id -> {note, el}
  cursor: null, // next_cursor of the last page, null at the end
  q: "", // the search in force
  events: null, // the EventSource
};

// -- rendering: textContent and setAttribute only ----------------------------------------------

function formatTime(rfc3339) {
  const d = new Date(rfc3339);
  return Number.isNaN(d.getTime()) ? String(rfc3339) : d.toLocaleString();
}

function renderNote(note) {
  const el = $("note-template").content.firstElementChild.cloneNode(true);
  el.dataset.id = String(note.id);
  el.querySelector(".edit").addEventListener("click", action(() => startEdit(note.id)));
  el.querySelector(".delete").addEventListener("click", action(() => deleteNote(note.id)));
  el.querySelector(".cancel").addEventListener("click", () => stopEdit(note.id));
  el.querySelector(".editor").addEventListener("submit", action(() => saveEdit(note.id)));
  el.querySelector(".upload").addEventListener("submit", action(() => upload(note.id)));
  fillNote(el, note);
  loadFiles(note.id, el).catch(showError);
  return el;
}

function fillNote(el, note) {
  el.querySelector(".note-title").textContent = note.title;
  el.querySelector(".note-body").textContent = note.body;
  const time = el.querySelector(".note-time");
  time.setAttribute("datetime", note.updated_at);
  const edited = note.updated_at !== note.created_at ? " (edited)" : "";
  time.textContent = formatTime(note.updated_at) + edited;
}

function renderFiles(el, id, names) {
  const list = el.querySelector(".file-list");
  list.replaceChildren();
  for (const name of names) {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = filePath(id, name); // every piece percent-encoded: a name cannot add a path
    a.download = name;
    a.className = "file-link";
    a.textContent = name;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "file-delete small";
    remove.textContent = "Remove";
    remove.addEventListener("click", action(() => deleteFile(id, name)));
    li.append(a, " ", remove);
    list.append(li);
  }
}

function updateEmpty() {
  $("empty").hidden = state.notes.size > 0;
  $("empty").textContent = state.q ? "No notes match." : "No notes yet.";
  $("more").hidden = state.cursor === null;
}

// Put a note in the list (or refresh it there), keeping the list newest first.
function upsert(note, { append = false } = {}) {
  const key = String(note.id);
  const known = state.notes.get(key);
  if (known) {
    known.note = note;
    if (known.el.querySelector(".editor").hidden) fillNote(known.el, note);
    else known.el.classList.add("stale"); // being edited here: the save will get its 412
    return;
  }
  const el = renderNote(note);
  state.notes.set(key, { note, el });
  const list = $("notes");
  if (append) list.append(el);
  else list.prepend(el);
  updateEmpty();
}

function removeNote(id) {
  const key = String(id);
  const known = state.notes.get(key);
  if (known) {
    known.el.remove();
    state.notes.delete(key);
  }
  updateEmpty();
}

// -- notes -----------------------------------------------------------------------------------

async function loadPage(reset) {
  if (reset) {
    state.notes.clear();
    state.cursor = null;
    $("notes").replaceChildren();
  }
  const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (state.q) params.set("q", state.q);
  if (!reset && state.cursor) params.set("cursor", state.cursor);
  const { data } = await api("GET", `/api/notes?${params}`);
  for (const note of data.items) upsert(note, { append: true });
  state.cursor = data.next_cursor ?? null;
  updateEmpty();
}

async function createNote() {
  const title = $("new-title").value;
  const body = $("new-body").value;
  const { data } = await api("POST", "/api/notes", { json: { title, body } });
  upsert(data);
  $("new-title").value = "";
  $("new-body").value = "";
}

async function startEdit(id) {
  // Read the note afresh: its ETag is what the PATCH will be conditional on.
  const { data, headers } = await api("GET", notePath(id));
  const known = state.notes.get(String(id));
  if (!known) return;
  known.note = data;
  known.etag = headers.get("etag");
  fillNote(known.el, data);
  known.el.classList.remove("stale");
  known.el.querySelector(".edit-title").value = data.title;
  known.el.querySelector(".edit-body").value = data.body;
  known.el.querySelector(".view").hidden = true;
  known.el.querySelector(".editor").hidden = false;
  known.el.querySelector(".edit-title").focus();
}

function stopEdit(id) {
  const known = state.notes.get(String(id));
  if (!known) return;
  known.el.querySelector(".editor").hidden = true;
  known.el.querySelector(".view").hidden = false;
  known.el.classList.remove("stale");
  fillNote(known.el, known.note);
}

async function saveEdit(id) {
  const known = state.notes.get(String(id));
  if (!known) return;
  const title = known.el.querySelector(".edit-title").value;
  const body = known.el.querySelector(".edit-body").value;
  const headers = known.etag ? { "If-Match": known.etag } : {};
  let r;
  try {
    r = await api("PATCH", notePath(id), { json: { title, body }, headers });
  } catch (err) {
    if (err instanceof ApiError && err.status === 412) {
      // Changed since it was opened here: show the current text; the edit stays in the form.
      const fresh = await api("GET", notePath(id));
      known.note = fresh.data;
      known.etag = fresh.headers.get("etag");
      fillNote(known.el, fresh.data);
      known.el.classList.add("stale");
    }
    throw err;
  }
  known.note = r.data;
  known.etag = r.headers.get("etag");
  stopEdit(id);
}

async function deleteNote(id) {
  await api("DELETE", notePath(id));
  removeNote(id);
}

// -- files -----------------------------------------------------------------------------------

// The files this page uploaded, per note: what it lists when the server offers no listing.
const uploaded = new Map(); // id -> Set of names

// GET /api/notes/:id/files lists the note's files: {"items": [{"name", ...}]} (or a bare list).
// Where the server has no such route (404, 405), the page lists what it uploaded itself.
async function loadFiles(id, el) {
  let names;
  try {
    const { data } = await api("GET", `${notePath(id)}/files`);
    const items = Array.isArray(data) ? data : (data && data.items) || [];
    names = items.map((f) => (typeof f === "string" ? f : f.name));
  } catch (err) {
    if (!(err instanceof ApiError && (err.status === 404 || err.status === 405))) throw err;
    names = [...(uploaded.get(String(id)) || [])];
  }
  renderFiles(el, id, names);
}

// The stored name of an upload: the 201's "name" member, else its Location's last segment.
function uploadedName(r, fallback) {
  if (r.data && typeof r.data === "object" && typeof r.data.name === "string") return r.data.name;
  const location = r.headers.get("location");
  if (location) return decodeURIComponent(location.split("/").pop());
  return fallback;
}

async function upload(id) {
  const known = state.notes.get(String(id));
  if (!known) return;
  const input = known.el.querySelector(".file-input");
  if (!input.files.length) throw new ApiError(0, { title: "Choose a file to upload first" });
  const form = new FormData();
  form.append("file", input.files[0]);
  const r = await api("POST", `${notePath(id)}/files`, { body: form });
  const key = String(id);
  if (!uploaded.has(key)) uploaded.set(key, new Set());
  uploaded.get(key).add(uploadedName(r, input.files[0].name));
  input.value = "";
  await loadFiles(id, known.el);
}

async function deleteFile(id, name) {
  await api("DELETE", filePath(id, name));
  uploaded.get(String(id))?.delete(name);
  const known = state.notes.get(String(id));
  if (known) await loadFiles(id, known.el);
}

// -- live updates ------------------------------------------------------------------------------

// An event's data names the note: {"id": ...} (or the bare id).
function eventNoteId(event) {
  try {
    const data = JSON.parse(event.data);
    return data !== null && typeof data === "object" ? data.id : data;
  } catch {
    return event.data;
  }
}

async function onChange(kind, id) {
  if (id === undefined || id === null || id === "") return;
  if (kind === "deleted") {
    removeNote(id);
    return;
  }
  if (kind === "files") {
    const known = state.notes.get(String(id));
    if (known) await loadFiles(id, known.el);
    return;
  }
  let note;
  try {
    note = (await api("GET", notePath(id))).data;
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      removeNote(id); // deleted again before we asked
      return;
    }
    throw err;
  }
  // A note made elsewhere joins the list unless a search is in force (it may not match).
  if (kind === "updated" || !state.q || state.notes.has(String(id))) upsert(note);
}

function openEvents() {
  closeEvents();
  const es = new EventSource("/api/events"); // same origin: the cookie goes with it
  state.events = es;
  const live = $("live");
  let opened = false;
  es.addEventListener("open", () => {
    live.textContent = "live";
    live.classList.add("on");
    // A reconnection: changes made while the stream was down are not replayed, so the list
    // is read again.
    if (opened) loadPage(true).catch(showError);
    opened = true;
  });
  es.addEventListener("error", () => {
    // EventSource reconnects by itself; a 401 (signed out elsewhere) closes it for good.
    live.textContent = es.readyState === EventSource.CLOSED ? "offline" : "reconnecting…";
    live.classList.remove("on");
  });
  for (const kind of ["created", "updated", "deleted", "files"]) {
    es.addEventListener(kind, (event) => onChange(kind, eventNoteId(event)).catch(showError));
  }
}

function closeEvents() {
  if (state.events) state.events.close();
  state.events = null;
  $("live").textContent = "offline";
  $("live").classList.remove("on");
}

// -- signing in and out ------------------------------------------------------------------------

async function signedIn(username) {
  state.user = username;
  $("whoami").textContent = username;
  $("auth").hidden = true;
  $("session").hidden = false;
  $("app").hidden = false;
  $("password").value = "";
  openEvents();
  await loadPage(true);
}

function signedOut() {
  state.user = null;
  closeEvents();
  state.notes.clear();
  state.cursor = null;
  state.q = "";
  $("notes").replaceChildren();
  $("q").value = "";
  $("session").hidden = true;
  $("app").hidden = true;
  $("auth").hidden = false;
  $("username").focus();
}

async function authenticate(event) {
  const which = event.submitter && event.submitter.value === "signup" ? "signup" : "login";
  const username = $("username").value.trim();
  const password = $("password").value;
  const { data } = await api("POST", `/api/${which}`, { json: { username, password } });
  await signedIn(data.username);
}

async function logout() {
  await api("POST", "/api/logout");
  signedOut();
}

// -- start -----------------------------------------------------------------------------------

async function start() {
  $("error-close").addEventListener("click", clearError);
  $("auth-form").addEventListener("submit", action(authenticate));
  $("logout").addEventListener("click", action(logout));
  $("new-note").addEventListener("submit", action(createNote));
  $("more").addEventListener("click", action(() => loadPage(false)));
  $("search").addEventListener(
    "submit",
    action(async () => {
      state.q = $("q").value.trim();
      await loadPage(true);
    }),
  );
  $("search-clear").addEventListener(
    "click",
    action(async () => {
      $("q").value = "";
      state.q = "";
      await loadPage(true);
    }),
  );
  try {
    const { data } = await api("GET", "/api/me");
    await signedIn(data.username);
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) showError(err);
    signedOut();
  } finally {
    $("loading").hidden = true;
    document.body.dataset.ready = "true"; // for tests and anyone waiting on the first paint
  }
}

start();
