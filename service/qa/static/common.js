// callvault pages' shared plumbing (/qa, /console): words in two languages (each page
// defines its TEXT = {en, vi}), text that follows a language switch, the token kept in this
// tab's sessionStorage only and sent as a bearer token (with the tenant a platform token picked),
// and the API's errors as sentences. Each page defines showSignedIn() (signOut(), called on a
// 401, shows the sign-in again through it).
"use strict";

let lang = sessionStorage.getItem("callvault.lang") || "vi";
const $ = (id) => document.getElementById(id);

function t(key, vars) {
  let s = (TEXT[lang] && TEXT[lang][key]) || TEXT.en[key] || key;
  for (const [k, v] of Object.entries(vars || {})) s = s.replace(`{${k}}`, v);
  return s;
}

function has(key) { return !!(TEXT[lang] && TEXT[lang][key]); }

// Everything on screen that is rendered from data keeps the function that renders it, so a
// language switch re-renders it in place (the form being filled and the audio playing stay).
function live(el, render) {
  el._render = render;
  el.setAttribute("data-live", "");
  el.textContent = render();
  return el;
}

function applyLanguage() {
  document.documentElement.lang = lang;
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll("[data-i18n-label]")) {
    el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  }
  for (const el of document.querySelectorAll("[data-live]")) el.textContent = el._render();
  for (const b of document.querySelectorAll("[data-lang]")) {
    b.classList.toggle("active", b.dataset.lang === lang);
  }
}

function token() { return sessionStorage.getItem("callvault.token"); }
// the tenant a platform token acts for (chosen on the page); a tenant token has its own
function tenant() { return sessionStorage.getItem("callvault.tenant"); }

function signOut() {
  sessionStorage.removeItem("callvault.token");
  sessionStorage.removeItem("callvault.tenant");
  showSignedIn();
}

// A message in one of the page's status lines is a key (and its values), never a finished
// sentence: it follows the language. kind: "error", "ok" or none.
function note(id, key, vars, kind) {
  const m = $(id);
  live(m, () => t(key, vars));
  m.classList.toggle("error", kind === "error");
  m.classList.toggle("ok", kind === "ok");
}

// The page's main status line.
function say(key, vars, isError) { note("message", key, vars, isError ? "error" : undefined); }

class UiError extends Error {
  constructor(key, vars) { super(key); this.key = key; this.vars = vars; }
}

function failIn(id, err) {
  if (err instanceof UiError) note(id, err.key, err.vars, "error");
  else if (err instanceof TypeError) note(id, "msg.network", {}, "error");  // fetch got no answer
  else note(id, "msg.error", { m: err.name || "?" }, "error");  // e.g. the browser refused to play
}

function fail(err) { failIn("message", err); }

// A table cell that follows the language.
function cell(tr, render) {
  const td = live(document.createElement("td"), render);
  tr.appendChild(td);
  return td;
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}` };
  if (tenant()) headers["Callvault-Tenant"] = tenant();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = resp.headers.get("Content-Type")?.includes("json") ? await resp.json() : null;
  if (resp.status === 401) { signOut(); throw new UiError("msg.badtoken"); }
  if (resp.status === 403) throw new UiError("msg.forbidden");
  if (!resp.ok) {
    const code = data?.error?.code;
    if (code && has(`err.${code}`)) throw new UiError(`err.${code}`);
    // One this page has no words for: the server's sentence is English, so Vietnamese gets
    // only its code.
    const detail = { en: data?.error?.message || resp.status, vi: code || resp.status };
    throw new UiError("msg.error", { get m() { return detail[lang] || detail.en; } });
  }
  return data;
}

function fmt(iso) {
  if (!iso) return t("none");
  return new Date(iso).toLocaleString(lang === "vi" ? "vi-VN" : "en-GB");
}

// A code the page has words for in this language, else the code itself (a new request kind
// or status is still shown, never hidden).
function word(prefix, code) { return has(`${prefix}.${code}`) ? t(`${prefix}.${code}`) : code; }

// The language buttons: switch, remember for this tab, re-render in place.
function wireLanguage() {
  for (const b of document.querySelectorAll("[data-lang]")) {
    b.addEventListener("click", () => {
      lang = b.dataset.lang;
      sessionStorage.setItem("callvault.lang", lang);
      applyLanguage();
    });
  }
}
