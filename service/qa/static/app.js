// callvault QA page: search calls, open one, give a reason, listen. The token stays in this
// tab's sessionStorage only; every request carries it as a bearer token.
"use strict";

const TEXT = {
  en: {
    "title": "Call review", "signin.title": "Sign in",
    "signin.hint": "Paste your access token. It is kept in this browser tab only.",
    "signin.token": "Access token", "signin.submit": "Use this token", "signout": "Sign out",
    "search.title": "Find calls", "search.from": "From", "search.to": "To",
    "search.outcome": "Consent outcome", "search.submit": "Search", "search.more": "Load more",
    "outcome.any": "Any", "outcome.consented": "Consented", "outcome.refused": "Refused",
    "outcome.hung_up_during_notice": "Hung up during notice", "outcome.no_input": "No key pressed",
    "outcome.not_asked": "Not asked (not recorded)", "outcome.in_progress": "In progress",
    "col.started": "Started", "col.caller": "Caller", "col.queue": "Queue",
    "col.outcome": "Outcome", "col.recording": "Recording",
    "detail.title": "Call details", "detail.close": "Close", "detail.recordings": "Recordings",
    "detail.events": "Consent ledger (tamper-evident)",
    "detail.withheld": "{n} more event(s) not shown to your role",
    "play.reason": "Why are you listening? (required, logged)", "play.submit": "Play",
    "fact.id": "Call id", "fact.platform": "Platform call id", "fact.caller": "Caller",
    "fact.called": "Number called", "fact.started": "Started", "fact.outcome": "Outcome",
    "state.stored": "Stored", "state.pending": "Being stored", "state.purged": "Purged (retention ended)",
    "state.erased": "Erased on request", "state.failed": "Failed",
    "rec.until": "kept until", "rec.held": "legal hold", "rec.seconds": "s",
    "msg.searching": "Searching…", "msg.none": "No calls match.", "msg.count": "{n} calls shown.",
    "msg.badtoken": "This token was not accepted. Sign in again.",
    "msg.forbidden": "Your role may not do this.", "msg.reason": "Give a reason before playing.",
    "msg.error": "Something went wrong: {m}", "msg.playing": "Playing. This playback is logged.",
    "none": "—",
  },
  vi: {
    "title": "Nghe lại cuộc gọi", "signin.title": "Đăng nhập",
    "signin.hint": "Dán mã truy cập (token) của bạn. Mã chỉ được giữ trong thẻ trình duyệt này.",
    "signin.token": "Mã truy cập", "signin.submit": "Dùng mã này", "signout": "Đăng xuất",
    "search.title": "Tìm cuộc gọi", "search.from": "Từ ngày", "search.to": "Đến ngày",
    "search.outcome": "Kết quả đồng ý", "search.submit": "Tìm", "search.more": "Xem thêm",
    "outcome.any": "Tất cả", "outcome.consented": "Đồng ý ghi âm", "outcome.refused": "Từ chối",
    "outcome.hung_up_during_notice": "Gác máy khi nghe thông báo",
    "outcome.no_input": "Không bấm phím", "outcome.not_asked": "Không hỏi (không ghi âm)",
    "outcome.in_progress": "Đang diễn ra",
    "col.started": "Thời gian", "col.caller": "Người gọi", "col.queue": "Hàng chờ",
    "col.outcome": "Kết quả", "col.recording": "Bản ghi",
    "detail.title": "Chi tiết cuộc gọi", "detail.close": "Đóng", "detail.recordings": "Bản ghi âm",
    "detail.events": "Nhật ký đồng ý (không thể sửa đổi)",
    "detail.withheld": "{n} sự kiện khác không hiển thị với vai trò của bạn",
    "play.reason": "Lý do nghe lại (bắt buộc, được ghi nhật ký)", "play.submit": "Nghe",
    "fact.id": "Mã cuộc gọi", "fact.platform": "Mã cuộc gọi của tổng đài", "fact.caller": "Người gọi",
    "fact.called": "Số được gọi", "fact.started": "Bắt đầu", "fact.outcome": "Kết quả",
    "state.stored": "Đã lưu", "state.pending": "Đang lưu", "state.purged": "Đã xoá (hết hạn lưu)",
    "state.erased": "Đã xoá theo yêu cầu", "state.failed": "Lỗi",
    "rec.until": "lưu đến", "rec.held": "đang bị phong toả pháp lý", "rec.seconds": "giây",
    "msg.searching": "Đang tìm…", "msg.none": "Không có cuộc gọi nào phù hợp.",
    "msg.count": "Đang hiển thị {n} cuộc gọi.",
    "msg.badtoken": "Mã truy cập không hợp lệ. Vui lòng đăng nhập lại.",
    "msg.forbidden": "Vai trò của bạn không được phép làm việc này.",
    "msg.reason": "Vui lòng nhập lý do trước khi nghe.", "msg.error": "Có lỗi: {m}",
    "msg.playing": "Đang phát. Lượt nghe này đã được ghi nhật ký.", "none": "—",
  },
};

let lang = sessionStorage.getItem("callvault.lang") || "vi";
let nextCursor = null;
let shown = 0;
const $ = (id) => document.getElementById(id);

function t(key, vars) {
  let s = (TEXT[lang] && TEXT[lang][key]) || TEXT.en[key] || key;
  for (const [k, v] of Object.entries(vars || {})) s = s.replace(`{${k}}`, v);
  return s;
}

function applyLanguage() {
  document.documentElement.lang = lang;
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const b of document.querySelectorAll("[data-lang]")) {
    b.classList.toggle("active", b.dataset.lang === lang);
  }
}

function token() { return sessionStorage.getItem("callvault.token"); }

function say(text, isError) {
  const m = $("message");
  m.textContent = text;
  m.classList.toggle("error", !!isError);
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = resp.headers.get("Content-Type")?.includes("json") ? await resp.json() : null;
  if (resp.status === 401) { signOut(); throw new Error(t("msg.badtoken")); }
  if (resp.status === 403) throw new Error(t("msg.forbidden"));
  if (!resp.ok) throw new Error(t("msg.error", { m: data?.error?.message || resp.status }));
  return data;
}

function fmt(iso) {
  if (!iso) return t("none");
  return new Date(iso).toLocaleString(lang === "vi" ? "vi-VN" : "en-GB");
}

function showSignedIn() {
  const signedIn = !!token();
  $("signin").classList.toggle("hidden", signedIn);
  $("search-card").classList.toggle("hidden", !signedIn);
  if (!signedIn) $("detail").classList.add("hidden");
}

function signOut() {
  sessionStorage.removeItem("callvault.token");
  showSignedIn();
}

function badge(outcome) {
  const span = document.createElement("span");
  span.className = `badge ${outcome}`;
  span.textContent = t(`outcome.${outcome}`);
  return span;
}

function dayStart(value, plusDays) {
  if (!value) return null;
  const d = new Date(`${value}T00:00:00`);
  d.setDate(d.getDate() + plusDays);
  return d.toISOString();
}

async function search(more) {
  const params = new URLSearchParams();
  const from = dayStart($("from").value, 0);
  const to = dayStart($("to").value, 1);
  if (from) params.set("from", from);
  if (to) params.set("to", to);
  if ($("outcome").value) params.set("outcome", $("outcome").value);
  params.set("limit", "25");
  if (more && nextCursor) params.set("cursor", nextCursor);
  say(t("msg.searching"));
  try {
    const page = await api("GET", `/api/calls?${params}`);
    const tbody = $("calls").querySelector("tbody");
    if (!more) { tbody.replaceChildren(); shown = 0; }
    for (const call of page.items) tbody.appendChild(callRow(call));
    shown += page.items.length;
    nextCursor = page.next_cursor;
    $("more").classList.toggle("hidden", !nextCursor);
    $("calls").classList.toggle("hidden", shown === 0);
    say(shown === 0 ? t("msg.none") : t("msg.count", { n: shown }));
  } catch (err) { say(err.message, true); }
}

function callRow(call) {
  const tr = document.createElement("tr");
  tr.dataset.testid = "call-row";
  tr.setAttribute("data-testid", "call-row");
  const cells = [fmt(call.started_at), call.caller || t("none"), call.queue || t("none")];
  for (const text of cells) {
    const td = document.createElement("td");
    td.textContent = text;
    tr.appendChild(td);
  }
  const outcome = document.createElement("td");
  outcome.appendChild(badge(call.outcome));
  tr.appendChild(outcome);
  const rec = document.createElement("td");
  rec.textContent = call.recordings.map((r) => t(`state.${r.state}`)).join(", ") || t("none");
  tr.appendChild(rec);
  tr.addEventListener("click", () => {
    for (const row of tr.parentElement.children) row.classList.remove("selected");
    tr.classList.add("selected");
    openCall(call.id);
  });
  return tr;
}

async function openCall(id) {
  try {
    const call = await api("GET", `/api/calls/${id}`);
    const facts = $("facts");
    facts.replaceChildren();
    const rows = [
      ["fact.started", fmt(call.started_at)], ["fact.caller", call.caller || t("none")],
      ["fact.called", call.called || t("none")], ["fact.id", call.id],
      ["fact.platform", call.external_id],
    ];
    for (const [key, value] of rows) {
      const dt = document.createElement("dt");
      dt.textContent = t(key);
      const dd = document.createElement("dd");
      dd.textContent = value;
      facts.append(dt, dd);
    }
    const dt = document.createElement("dt");
    dt.textContent = t("fact.outcome");
    const dd = document.createElement("dd");
    dd.appendChild(badge(call.outcome));
    facts.append(dt, dd);

    const recs = $("recordings");
    recs.replaceChildren();
    for (const r of call.recordings) recs.appendChild(recordingCard(r));
    const events = $("events");
    events.replaceChildren();
    for (const e of call.events) {
      const li = document.createElement("li");
      li.textContent = e.type;
      const at = document.createElement("span");
      at.className = "at";
      at.textContent = fmt(e.at);
      const hash = document.createElement("span");
      hash.className = "hash";
      hash.textContent = e.hash.slice(0, 12);
      li.append(at, hash);
      events.appendChild(li);
    }
    if (call.events_withheld > 0) {
      // casework (holds, data-subject requests) is for compliance; say that it exists
      const li = document.createElement("li");
      li.className = "withheld";
      li.textContent = t("detail.withheld", { n: call.events_withheld });
      events.appendChild(li);
    }
    $("detail").classList.remove("hidden");
    applyLanguage();
  } catch (err) { say(err.message, true); }
}

function recordingCard(r) {
  const node = $("recording-template").content.firstElementChild.cloneNode(true);
  node.querySelector(".rec-state").textContent = t(`state.${r.state}`);
  const meta = [];
  if (r.duration_s != null) meta.push(`${r.duration_s} ${t("rec.seconds")}`);
  if (r.retain_until) meta.push(`${t("rec.until")} ${fmt(r.retain_until)}`);
  if (r.held) meta.push(t("rec.held"));
  node.querySelector(".rec-meta").textContent = meta.join(" · ");
  const form = node.querySelector(".play-form");
  if (r.state !== "stored") form.classList.add("hidden");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const reason = form.querySelector(".reason").value.trim();
    if (!reason) { say(t("msg.reason"), true); return; }
    try {
      const link = await api("POST", `/api/recordings/${r.id}/playback`, { reason });
      const audio = node.querySelector(".player");
      audio.src = new URL(link.url).pathname;  // same origin as this page
      audio.classList.remove("hidden");
      await audio.play();
      say(t("msg.playing"));
    } catch (err) { say(err.message, true); }
  });
  return node;
}

document.addEventListener("DOMContentLoaded", () => {
  applyLanguage();
  showSignedIn();
  for (const b of document.querySelectorAll("[data-lang]")) {
    b.addEventListener("click", () => {
      lang = b.dataset.lang;
      sessionStorage.setItem("callvault.lang", lang);
      applyLanguage();
    });
  }
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem("callvault.token", $("token").value.trim());
    $("token").value = "";
    showSignedIn();
    search(false);
  });
  $("signout").addEventListener("click", signOut);
  $("search-form").addEventListener("submit", (ev) => { ev.preventDefault(); search(false); });
  $("more").addEventListener("click", () => search(true));
  $("close-detail").addEventListener("click", () => $("detail").classList.add("hidden"));
  if (token()) search(false);
});
