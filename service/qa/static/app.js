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
    "msg.network": "callvault cannot be reached. Try again.",
    "err.not_playable": "This recording cannot be played (it is no longer stored).",
    "err.not_found": "Not found: it may have been erased.",
    "err.too_many_requests": "Too many attempts. Wait a minute and try again.",
    "err.internal": "callvault had an internal error; it has been logged.",
    "event.call_started": "Call started", "event.notice_played": "Recording notice played",
    "event.consent_given": "Consent given", "event.consent_refused": "Consent refused",
    "event.no_input": "No key pressed", "event.not_asked": "Not asked (never recorded)",
    "event.hung_up_during_notice": "Hung up during the notice", "event.call_ended": "Call ended",
    "event.recording_completed": "Recording finished at the platform",
    "event.recording_absent": "No recording at the platform",
    "event.recording_failed": "Recording failed at the platform",
    "event.recording_in_progress": "Recording in progress",
    "event.recording_stored": "Recording stored",
    "event.recording_discarded": "Recording discarded (no consent)",
    "event.platform_copy_deleted": "Platform's copy deleted", "event.accessed": "Recording played",
    "event.platform_copy_retained": "Platform's copy kept (no delete at the platform)",
    "event.recording_paused": "Recording paused", "event.recording_resumed": "Recording resumed",
    "pause.title": "Paused (not in the recording)",
    "pause.span": "At {offset} of the audio ({when}), {length} left out: {reason}",
    "pause.open": "At {offset} of the audio ({when}), never resumed: the rest of the call is not recorded ({reason})",
    "event.purged": "Purged (retention ended)", "event.erased": "Erased on request",
    "event.hold_placed": "Legal hold placed", "event.hold_released": "Legal hold released",
    "event.dsar_received": "Data-subject request received",
    "event.subject_access": "Included in an access request", "event.other": "Event: {type}",
    "lang.group": "Language",
    "tenant.label": "Tenant: {name}", "tenant.none": "Platform token: choose a tenant.",
    "tenant.pick": "Tenant", "tenant.use": "Show this tenant",
    "err.unknown_tenant": "No such tenant.",
    "err.tenant_required": "Choose a tenant first.",
    "ret.title": "Why it is still here",
    "ret.until.tenant": "Kept until {when}: the client's retention policy",
    "ret.until.queue": "Kept until {when}: the queue's retention policy",
    "ret.until.number": "Kept until {when}: the called number's retention policy",
    "ret.hold": "Legal hold since {when}: {reason}",
    "ret.hold.hidden": "Legal hold since {when} (the reason is shown to compliance only)",
    "ret.request": "Open data-subject request: {kind}, {status}",
    "ret.purge_at": "Will be purged at {when} if nothing changes",
    "ret.purge_due": "Its retention has ended: the next purge run deletes it",
    "ret.kept": "Not purged while anything above keeps it",
    "kind.access": "access", "kind.correct": "correction", "kind.restrict": "restriction",
    "status.received": "received", "status.acknowledged": "acknowledged",
    "status.in_progress": "in progress", "status.waiting_for_hold": "waiting for a hold",
    "status.in_force": "in force",
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
    "msg.playing": "Đang phát. Lượt nghe này đã được ghi nhật ký.",
    "msg.network": "Không kết nối được với callvault. Vui lòng thử lại.",
    "err.not_playable": "Không thể phát bản ghi này (bản ghi không còn được lưu).",
    "err.not_found": "Không tìm thấy: có thể đã bị xoá.",
    "err.too_many_requests": "Quá nhiều lần thử. Vui lòng chờ một phút rồi thử lại.",
    "err.internal": "callvault gặp lỗi nội bộ; lỗi đã được ghi lại.",
    "event.call_started": "Bắt đầu cuộc gọi", "event.notice_played": "Đã phát thông báo ghi âm",
    "event.consent_given": "Đồng ý ghi âm", "event.consent_refused": "Từ chối ghi âm",
    "event.no_input": "Không bấm phím", "event.not_asked": "Không hỏi (không bao giờ ghi âm)",
    "event.hung_up_during_notice": "Gác máy khi nghe thông báo",
    "event.call_ended": "Kết thúc cuộc gọi",
    "event.recording_completed": "Tổng đài đã ghi xong",
    "event.recording_absent": "Tổng đài không có bản ghi",
    "event.recording_failed": "Tổng đài ghi âm lỗi",
    "event.recording_in_progress": "Đang ghi âm",
    "event.recording_stored": "Đã lưu bản ghi",
    "event.recording_discarded": "Đã huỷ bản ghi (không đồng ý)",
    "event.platform_copy_deleted": "Đã xoá bản sao ở tổng đài",
    "event.platform_copy_retained": "Bản sao vẫn còn ở tổng đài (không xoá được)",
    "event.accessed": "Đã nghe lại bản ghi",
    "event.purged": "Đã xoá (hết hạn lưu)", "event.erased": "Đã xoá theo yêu cầu",
    "event.hold_placed": "Đặt phong toả pháp lý", "event.hold_released": "Gỡ phong toả pháp lý",
    "event.dsar_received": "Nhận yêu cầu của chủ thể dữ liệu",
    "event.subject_access": "Đưa vào yêu cầu truy cập dữ liệu", "event.other": "Sự kiện: {type}",
    "lang.group": "Ngôn ngữ",
    "tenant.label": "Khách hàng: {name}",
    "tenant.none": "Mã của nền tảng: vui lòng chọn khách hàng.",
    "tenant.pick": "Khách hàng (mã)", "tenant.use": "Xem khách hàng này",
    "err.unknown_tenant": "Không có khách hàng này.",
    "err.tenant_required": "Vui lòng chọn khách hàng trước.",
    "ret.title": "Vì sao bản ghi còn được lưu",
    "event.recording_paused": "Tạm dừng ghi âm", "event.recording_resumed": "Ghi âm tiếp",
    "pause.title": "Đã tạm dừng (không có trong bản ghi)",
    "pause.span": "Tại {offset} của bản ghi ({when}), bỏ qua {length}: {reason}",
    "pause.open": "Tại {offset} của bản ghi ({when}), không ghi tiếp: phần còn lại của cuộc gọi không được ghi ({reason})",
    "ret.until.tenant": "Lưu đến {when}: chính sách lưu trữ của khách hàng",
    "ret.until.queue": "Lưu đến {when}: chính sách lưu trữ của hàng chờ",
    "ret.until.number": "Lưu đến {when}: chính sách lưu trữ của số được gọi",
    "ret.hold": "Phong toả pháp lý từ {when}: {reason}",
    "ret.hold.hidden": "Phong toả pháp lý từ {when} (lý do chỉ hiển thị với bộ phận tuân thủ)",
    "ret.request": "Yêu cầu của chủ thể dữ liệu đang mở: {kind}, {status}",
    "ret.purge_at": "Sẽ bị xoá lúc {when} nếu không có gì thay đổi",
    "ret.purge_due": "Đã hết hạn lưu: lần xoá định kỳ tiếp theo sẽ xoá bản ghi",
    "ret.kept": "Không bị xoá khi còn lý do nêu trên",
    "kind.access": "truy cập", "kind.correct": "chỉnh sửa", "kind.restrict": "hạn chế xử lý",
    "status.received": "đã nhận", "status.acknowledged": "đã xác nhận",
    "status.in_progress": "đang xử lý", "status.waiting_for_hold": "chờ gỡ phong toả",
    "status.in_force": "đang có hiệu lực",
    "none": "—",
  },
};

let nextCursor = null;
let shown = 0;

function eventLabel(type) {
  return has(`event.${type}`) ? t(`event.${type}`) : t("event.other", { type });
}

function showSignedIn() {
  const signedIn = !!token();
  $("signin").classList.toggle("hidden", signedIn);
  $("search-card").classList.toggle("hidden", !signedIn);
  if (!signedIn) $("detail").classList.add("hidden");
}

function badge(outcome) {
  const span = document.createElement("span");
  span.className = `badge ${outcome}`;
  return live(span, () => t(`outcome.${outcome}`));
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
  say("msg.searching");
  try {
    const page = await api("GET", `/api/calls?${params}`);
    const tbody = $("calls").querySelector("tbody");
    if (!more) { tbody.replaceChildren(); shown = 0; }
    for (const call of page.items) tbody.appendChild(callRow(call));
    shown += page.items.length;
    nextCursor = page.next_cursor;
    $("more").classList.toggle("hidden", !nextCursor);
    $("calls").classList.toggle("hidden", shown === 0);
    const n = shown;
    say(n === 0 ? "msg.none" : "msg.count", { n });
  } catch (err) { fail(err); }
}

function callRow(call) {
  const tr = document.createElement("tr");
  tr.dataset.testid = "call-row";
  tr.setAttribute("data-testid", "call-row");
  const cells = [
    () => fmt(call.started_at), () => call.caller || t("none"), () => call.queue || t("none"),
  ];
  for (const render of cells) cell(tr, render);
  const outcome = document.createElement("td");
  outcome.appendChild(badge(call.outcome));
  tr.appendChild(outcome);
  cell(tr, () => call.recordings.map((r) => t(`state.${r.state}`)).join(", ") || t("none"));
  tr.addEventListener("click", () => {
    for (const row of tr.parentElement.children) row.classList.remove("selected");
    tr.classList.add("selected");
    openCall(call.id);
  });
  return tr;
}

let shownCall = null;  // the call in the detail card

async function openCall(id) {
  try {
    const call = await api("GET", `/api/calls/${id}`);
    shownCall = call.id;
    const facts = $("facts");
    facts.replaceChildren();
    const rows = [
      ["fact.started", () => fmt(call.started_at)], ["fact.caller", () => call.caller || t("none")],
      ["fact.called", () => call.called || t("none")], ["fact.id", () => call.id],
      ["fact.platform", () => call.external_id],
    ];
    for (const [key, render] of rows) {
      const dt = document.createElement("dt");
      dt.dataset.i18n = key;
      facts.append(dt, live(document.createElement("dd"), render));
    }
    const dt = document.createElement("dt");
    dt.dataset.i18n = "fact.outcome";
    const dd = document.createElement("dd");
    dd.appendChild(badge(call.outcome));
    facts.append(dt, dd);

    const recs = $("recordings");
    recs.replaceChildren();
    for (const r of call.recordings) recs.appendChild(recordingCard(r, call.id));
    showEvents(call);
    $("detail").classList.remove("hidden");
    applyLanguage();
  } catch (err) { fail(err); }
}

function showEvents(call) {
  const events = $("events");
  events.replaceChildren();
  for (const e of call.events) {
    const li = document.createElement("li");
    li.title = e.type;  // the ledger's own name for it, for auditors
    const label = live(document.createElement("span"), () => eventLabel(e.type));
    label.className = "type";
    const at = live(document.createElement("span"), () => fmt(e.at));
    at.className = "at";
    const hash = document.createElement("span");
    hash.className = "hash";
    hash.textContent = e.hash.slice(0, 12);
    li.append(label, at, hash);
    events.appendChild(li);
  }
  if (call.events_withheld > 0) {
    // casework (holds, data-subject requests) is for compliance; say that it exists
    const li = document.createElement("li");
    li.className = "withheld";
    live(li, () => t("detail.withheld", { n: call.events_withheld }));  // follows the language
    events.appendChild(li);
  }
}

function recordingCard(r, callId) {
  const node = $("recording-template").content.firstElementChild.cloneNode(true);
  live(node.querySelector(".rec-state"), () => t(`state.${r.state}`));
  live(node.querySelector(".rec-meta"), () => {
    const meta = [];
    if (r.duration_s != null) meta.push(`${r.duration_s} ${t("rec.seconds")}`);
    if (r.retain_until) meta.push(`${t("rec.until")} ${fmt(r.retain_until)}`);
    if (r.held) meta.push(t("rec.held"));
    return meta.join(" · ");
  });
  if (r.state === "stored" || r.state === "pending") showRetention(node, r.id);
  showPauses(node, r.pauses || []);
  const form = node.querySelector(".play-form");
  if (r.state !== "stored") form.classList.add("hidden");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const reason = form.querySelector(".reason").value.trim();
    if (!reason) { say("msg.reason", {}, true); return; }
    try {
      const link = await api("POST", `/api/recordings/${r.id}/playback`, { reason });
      const audio = node.querySelector(".player");
      audio.src = new URL(link.url).pathname;  // same origin as this page
      audio.classList.remove("hidden");
      await audio.play();
      say("msg.playing");
      // the playback was written to the call's ledger before the URL was issued: show it
      // (the event list only, so the recording keeps playing)
      const again = await api("GET", `/api/calls/${callId}`);
      if (shownCall === callId) { showEvents(again); applyLanguage(); }
    } catch (err) { fail(err); }
  });
  return node;
}


// Where the recording was paused (card payments): the gaps, each at its place in the audio.
function clock(seconds) {
  if (seconds == null) return "?";
  const s = Math.round(seconds);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function showPauses(node, pauses) {
  const box = node.querySelector(".rec-pauses");
  const list = box.querySelector("ul");
  list.replaceChildren();
  for (const p of pauses) {
    const vars = () => ({
      offset: clock(p.offset_s), when: fmt(p.paused_at), reason: p.reason || t("none"),
      length: `${p.duration_s} ${t("rec.seconds")}`,
    });
    const li = live(document.createElement("li"), () => t(p.open ? "pause.open" : "pause.span", vars()));
    li.setAttribute("data-testid", "pause");
    if (p.open) li.classList.add("open");
    list.appendChild(li);
  }
  box.classList.toggle("hidden", pauses.length === 0);
}

// "Why is this still here?": the recording's retention, what keeps it, and when it goes, as
// GET /api/recordings/{id}/retention explains it (the purge reads the same explanation).
async function showRetention(node, id) {
  const box = node.querySelector(".rec-retention");
  let why;
  try { why = await api("GET", `/api/recordings/${id}/retention`); } catch (err) { return; }
  const list = box.querySelector("ul");
  list.replaceChildren();
  const line = (render, testid) => {
    const li = live(document.createElement("li"), render);
    if (testid) li.setAttribute("data-testid", testid);
    list.appendChild(li);
  };
  if (why.retain_until) {
    line(() => t(`ret.until.${why.source || "tenant"}`, { when: fmt(why.retain_until) }),
      "retention-until");
  }
  for (const h of why.holds) {
    line(() => (h.reason == null
      ? t("ret.hold.hidden", { when: fmt(h.placed_at) })
      : t("ret.hold", { when: fmt(h.placed_at), reason: h.reason })), "retention-hold");
  }
  for (const q of why.requests) {
    line(() => t("ret.request", { kind: word("kind", q.kind), status: word("status", q.status) }),
      "retention-request");
  }
  if (why.purge_at == null) {
    if (why.holds.length || why.requests.length) line(() => t("ret.kept"), "retention-purge");
  } else if (new Date(why.purge_at) <= new Date(why.checked_at)) {
    line(() => t("ret.purge_due"), "retention-purge");
  } else {
    line(() => t("ret.purge_at", { when: fmt(why.purge_at) }), "retention-purge");
  }
  box.classList.remove("hidden");
}

// Who the token is and which tenant the page shows; a platform token picks its tenant first.
async function start() {
  try {
    const me = await api("GET", "/api/whoami");
    $("tenant-form").classList.toggle("hidden", !me.platform);
    if (me.tenant) live($("who"), () => t("tenant.label", { name: me.tenant.name }));
    else live($("who"), () => t("tenant.none"));
    if (me.tenant) search(false);
  } catch (err) {
    // a stale tenant in this tab (e.g. removed since): forget it and ask again
    if (err.key === "err.unknown_tenant" && tenant()) {
      sessionStorage.removeItem("callvault.tenant");
      return start();
    }
    fail(err);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  applyLanguage();
  showSignedIn();
  wireLanguage();
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem("callvault.token", $("token").value.trim());
    $("token").value = "";
    showSignedIn();
    start();
  });
  $("tenant-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem("callvault.tenant", $("tenant").value.trim());
    $("calls").querySelector("tbody").replaceChildren();
    $("calls").classList.add("hidden");
    $("detail").classList.add("hidden");
    start();
  });
  $("signout").addEventListener("click", signOut);
  $("search-form").addEventListener("submit", (ev) => { ev.preventDefault(); search(false); });
  $("more").addEventListener("click", () => search(true));
  $("close-detail").addEventListener("click", () => $("detail").classList.add("hidden"));
  if (token()) start();
});
