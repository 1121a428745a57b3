// callvault compliance console: data-subject requests on their clocks, legal holds, the audit
// trail, the ledger and consent at a glance. Every action is one /api call with the officer's
// token (kept in this tab's sessionStorage by /qa/common.js), so the page adds no authority.
"use strict";

const TEXT = {
  en: {
    "title": "Compliance console", "console.title": "Compliance console",
    "signin.title": "Sign in",
    "signin.hint": "Paste your access token. It is kept in this browser tab only.",
    "signin.token": "Access token", "signin.submit": "Use this token", "signout": "Sign out",
    "lang.group": "Language", "nav.label": "Sections",
    "tenant.label": "Tenant: {name} · role: {role}", "tenant.none": "Platform token: choose a tenant.",
    "tenant.pick": "Tenant", "tenant.use": "Show this tenant",
    "noaccess": "This token (role {role}) has no access to the compliance console. Ask for a compliance token.",
    "requests.title": "Data-subject requests", "requests.show": "Show",
    "filter.open": "Open", "filter.closed": "Closed", "filter.all": "All",
    "requests.hint": "Soonest deadline first. Time left is counted by the database's clock.",
    "requests.none": "No requests.",
    "col.received": "Received", "col.kind": "Kind", "col.status": "Status",
    "col.ack_left": "Acknowledge by", "col.due_left": "Complete by", "col.open": "Open",
    "open": "Open", "close": "Close", "overdue": "OVERDUE",
    "left": "{t} left", "late": "overdue by {t}", "done": "done", "stopped": "—",
    "dur.dh": "{d} d {h} h", "dur.hm": "{h} h {m} min", "dur.m": "{m} min",
    "dsar.title": "Request details", "dsar.history": "History", "dsar.calls": "Calls",
    "dsar.nocalls": "No calls named by this request.",
    "fact.id": "Request id", "fact.kind": "Kind", "fact.status": "Status",
    "fact.received": "Received", "fact.ack_by": "Acknowledge by", "fact.due": "Complete by",
    "fact.clock": "Deadlines", "fact.result": "Result", "fact.bundle": "Access bundle",
    "bundle.ready": "ready until {when}", "bundle.none": "not ready",
    "hist.received": "Received", "hist.acknowledged": "Acknowledged",
    "hist.extended": "Extended by {days} days by {by}: {reason} (was due {before})",
    "hist.rejected": "Rejected: {reason}", "hist.completed": "Completed",
    "hist.lifted": "Restriction lifted", "receipt": "receipt",
    "act.acknowledge": "Acknowledge", "act.extend": "Extend", "act.reject": "Reject",
    "act.lift": "Lift restriction", "act.bundle": "Download access bundle",
    "confirm.ok": "Confirm", "confirm.cancel": "Cancel", "confirm.days": "Days to extend by",
    "confirm.reason": "Reason (required)", "confirm.need_reason": "Give a reason.",
    "ask.acknowledge": "Acknowledge this request?",
    "ask.acknowledge.text": "Record that the data subject has been told their request arrived. This is done once.",
    "ask.extend": "Extend this request?",
    "ask.extend.text": "A request may be extended once, before its deadline, with a reason the subject is given.",
    "ask.reject": "Reject this request?",
    "ask.reject.text": "The request is closed without being carried out. The reason is kept.",
    "ask.lift": "Lift this restriction?",
    "ask.lift.text": "Playback and export of this person's calls are allowed again.",
    "ask.bundle": "Download the access bundle?",
    "ask.bundle.text": "The download is written to the audit trail.",
    "ask.release": "Release this hold?",
    "ask.release.text": "Its recordings become subject to their retention again and may be purged.",
    "done.acknowledge": "Acknowledged.", "done.extend": "Extended: now due {when}.",
    "done.reject": "Rejected.", "done.lift": "Restriction lifted.",
    "done.bundle": "The access bundle is downloading.", "done.release": "Hold released.",
    "done.hold": "Hold placed.", "done.logged": "Request logged: due {when}.",
    "log.title": "Log a request received by email or phone", "log.kind": "Kind of request",
    "log.phone": "The subject's phone number", "log.received": "Received at (this computer's time)",
    "log.submit": "Log request", "log.channel": "Received by",
    "fact.channel": "Received by", "channel.none": "not recorded",
    "channel.phone": "phone", "channel.email": "email", "channel.letter": "letter",
    "channel.in_person": "in person", "channel.web": "web",
    "kind.access": "access", "kind.correct": "correction", "kind.erase": "erasure",
    "kind.withdraw": "withdrawal of consent", "kind.restrict": "restriction",
    "status.received": "received", "status.acknowledged": "acknowledged",
    "status.in_progress": "in progress", "status.waiting_for_hold": "waiting for a hold",
    "status.in_force": "in force", "status.completed": "completed", "status.rejected": "rejected",
    "holds.title": "Legal holds", "hold.on": "Hold", "hold.on.call": "a call (call id)",
    "hold.on.phone": "a phone number", "hold.target": "Call id or phone number",
    "hold.reason": "Reason", "hold.case": "Case reference", "hold.place": "Place hold",
    "hold.active": "active", "hold.released": "released", "hold.release": "Release",
    "hold.call": "call {id}", "hold.phone": "number {number}",
    "hold.phone.erased": "an erased number",
    "col.state": "State", "col.on": "On", "col.reason": "Reason", "col.case": "Case",
    "col.placed": "Placed", "col.released": "Released", "col.actions": "Actions",
    "audit.title": "Audit trail", "audit.from": "From", "audit.to": "To", "audit.actor": "Actor",
    "audit.action": "Action", "audit.any": "Any", "audit.submit": "Filter",
    "audit.count": "{n} entries.", "audit.one": "1 entry.",
    "audit.shown": "The newest {n} entries; there are more.", "more": "Load more", "audit.none": "No entries match.",
    "col.at": "At", "col.actor": "Actor", "col.action": "Action", "col.target": "Target",
    "action.playback": "recording played", "action.hold": "hold placed",
    "action.hold_released": "hold released", "action.dsar": "request received",
    "action.dsar_acknowledged": "request acknowledged", "action.dsar_extended": "request extended",
    "action.dsar_rejected": "request rejected", "action.dsar_lifted": "restriction lifted",
    "action.dsar_bundle_link": "access bundle downloaded", "action.receipt_issued": "receipt issued",
    "ledger.title": "Consent ledger", "ledger.verify": "Verify the ledger",
    "ledger.verifying": "Verifying…",
    "ledger.ok": "Intact: {calls} calls, {events} events, {seals} seals checked.",
    "ledger.broken": "BROKEN: {breaks} break(s) found in {calls} calls. First: {first}",
    "ledger.seal": "Latest seal",
    "seal.text": "Seal #{id} at {when}: {calls} calls, root {root}",
    "seal.none": "The ledger has not been sealed yet.",
    "ledger.receipt": "A call's consent receipt", "receipt.call": "Call id",
    "receipt.json": "Download signed JSON", "receipt.html": "Download printable page",
    "receipt.done": "Receipt downloaded.",
    "glance.title": "At a glance", "chart.consent": "Consent outcomes per day (30 days)",
    "chart.queues": "Consent outcomes per queue (30 days)",
    "chart.recordings": "Recordings stored and purged per day (30 days)",
    "chart.due": "Recordings due to be purged in the next 30 days",
    "chart.requests": "Requests by status",
    "chart.table": "The numbers as a table",
    "msg.badtoken": "This token was not accepted. Sign in again.",
    "msg.forbidden": "Your role may not do this.", "msg.error": "Something went wrong: {m}",
    "msg.network": "callvault cannot be reached. Try again.",
    "err.not_found": "Not found.", "err.no_seal": "Not sealed yet.", "err.no_calls": "This number has no calls.",
    "err.already_restricted": "This number is already restricted.",
    "err.too_many_requests": "Too many attempts. Wait a minute and try again.",
    "err.internal": "callvault had an internal error; it has been logged.",
    "err.unknown_tenant": "No such tenant.", "err.tenant_required": "Choose a tenant first.",
    "err.bad_phone": "Not a valid phone number.", "err.invalid_body": "Check the form: {m}",
    "err.restricted": "This person's data is restricted: lift the restriction first.",
    "err.bundle_expired": "The bundle has expired.", "err.bundle_erased": "The bundle was erased.",
    "err.conflict": "Not possible in this request's state.",
    "none": "—",
  },
  vi: {
    "title": "Bảng điều khiển tuân thủ", "console.title": "Bảng điều khiển tuân thủ",
    "signin.title": "Đăng nhập",
    "signin.hint": "Dán mã truy cập (token) của bạn. Mã chỉ được giữ trong thẻ trình duyệt này.",
    "signin.token": "Mã truy cập", "signin.submit": "Dùng mã này", "signout": "Đăng xuất",
    "lang.group": "Ngôn ngữ", "nav.label": "Mục",
    "tenant.label": "Khách hàng: {name} · vai trò: {role}",
    "tenant.none": "Mã của nền tảng: vui lòng chọn khách hàng.",
    "tenant.pick": "Khách hàng (mã)", "tenant.use": "Xem khách hàng này",
    "noaccess": "Mã này (vai trò {role}) không có quyền vào bảng điều khiển tuân thủ. Hãy xin mã của bộ phận tuân thủ.",
    "requests.title": "Yêu cầu của chủ thể dữ liệu", "requests.show": "Hiển thị",
    "filter.open": "Đang mở", "filter.closed": "Đã đóng", "filter.all": "Tất cả",
    "requests.hint": "Sắp xếp theo hạn gần nhất. Thời gian còn lại tính theo đồng hồ của cơ sở dữ liệu.",
    "requests.none": "Không có yêu cầu nào.",
    "col.received": "Nhận lúc", "col.kind": "Loại", "col.status": "Trạng thái",
    "col.ack_left": "Hạn xác nhận", "col.due_left": "Hạn hoàn thành", "col.open": "Mở",
    "open": "Mở", "close": "Đóng", "overdue": "QUÁ HẠN",
    "left": "còn {t}", "late": "quá hạn {t}", "done": "đã xong", "stopped": "—",
    "dur.dh": "{d} ngày {h} giờ", "dur.hm": "{h} giờ {m} phút", "dur.m": "{m} phút",
    "dsar.title": "Chi tiết yêu cầu", "dsar.history": "Lịch sử", "dsar.calls": "Cuộc gọi liên quan",
    "dsar.nocalls": "Yêu cầu này không nêu cuộc gọi nào.",
    "fact.id": "Mã yêu cầu", "fact.kind": "Loại", "fact.status": "Trạng thái",
    "fact.received": "Nhận lúc", "fact.ack_by": "Hạn xác nhận", "fact.due": "Hạn hoàn thành",
    "fact.clock": "Thời hạn", "fact.result": "Kết quả", "fact.bundle": "Gói dữ liệu",
    "bundle.ready": "sẵn sàng đến {when}", "bundle.none": "chưa có",
    "hist.received": "Đã nhận", "hist.acknowledged": "Đã xác nhận",
    "hist.extended": "Gia hạn {days} ngày bởi {by}: {reason} (hạn cũ {before})",
    "hist.rejected": "Đã từ chối: {reason}", "hist.completed": "Đã hoàn thành",
    "hist.lifted": "Đã gỡ hạn chế xử lý", "receipt": "biên nhận",
    "act.acknowledge": "Xác nhận đã nhận", "act.extend": "Gia hạn", "act.reject": "Từ chối",
    "act.lift": "Gỡ hạn chế xử lý", "act.bundle": "Tải gói dữ liệu",
    "confirm.ok": "Xác nhận", "confirm.cancel": "Huỷ", "confirm.days": "Số ngày gia hạn",
    "confirm.reason": "Lý do (bắt buộc)", "confirm.need_reason": "Vui lòng nêu lý do.",
    "ask.acknowledge": "Xác nhận đã nhận yêu cầu này?",
    "ask.acknowledge.text": "Ghi nhận rằng chủ thể dữ liệu đã được báo là yêu cầu đã đến. Chỉ làm một lần.",
    "ask.extend": "Gia hạn yêu cầu này?",
    "ask.extend.text": "Mỗi yêu cầu chỉ được gia hạn một lần, trước khi hết hạn, kèm lý do báo cho chủ thể.",
    "ask.reject": "Từ chối yêu cầu này?",
    "ask.reject.text": "Yêu cầu được đóng mà không thực hiện. Lý do được lưu lại.",
    "ask.lift": "Gỡ hạn chế xử lý này?",
    "ask.lift.text": "Các cuộc gọi của người này lại được nghe và xuất dữ liệu.",
    "ask.bundle": "Tải gói dữ liệu truy cập?",
    "ask.bundle.text": "Lượt tải được ghi vào nhật ký truy cập.",
    "ask.release": "Gỡ phong toả này?",
    "ask.release.text": "Các bản ghi lại tuân theo thời hạn lưu và có thể bị xoá.",
    "done.acknowledge": "Đã xác nhận.", "done.extend": "Đã gia hạn: hạn mới {when}.",
    "done.reject": "Đã từ chối.", "done.lift": "Đã gỡ hạn chế xử lý.",
    "done.bundle": "Đang tải gói dữ liệu.", "done.release": "Đã gỡ phong toả.",
    "done.hold": "Đã đặt phong toả.", "done.logged": "Đã ghi nhận yêu cầu: hạn {when}.",
    "log.title": "Ghi nhận yêu cầu nhận qua email hoặc điện thoại", "log.kind": "Loại yêu cầu",
    "log.phone": "Số điện thoại của chủ thể", "log.received": "Nhận lúc (giờ máy này)",
    "log.submit": "Ghi nhận", "log.channel": "Nhận qua",
    "fact.channel": "Nhận qua", "channel.none": "không ghi nhận",
    "channel.phone": "điện thoại", "channel.email": "email", "channel.letter": "thư",
    "channel.in_person": "trực tiếp", "channel.web": "trang web",
    "kind.access": "truy cập", "kind.correct": "chỉnh sửa", "kind.erase": "xoá",
    "kind.withdraw": "rút lại đồng ý", "kind.restrict": "hạn chế xử lý",
    "status.received": "đã nhận", "status.acknowledged": "đã xác nhận",
    "status.in_progress": "đang xử lý", "status.waiting_for_hold": "chờ gỡ phong toả",
    "status.in_force": "đang có hiệu lực", "status.completed": "đã hoàn thành",
    "status.rejected": "đã từ chối",
    "holds.title": "Phong toả pháp lý", "hold.on": "Phong toả",
    "hold.on.call": "một cuộc gọi (mã cuộc gọi)", "hold.on.phone": "một số điện thoại",
    "hold.target": "Mã cuộc gọi hoặc số điện thoại", "hold.reason": "Lý do",
    "hold.case": "Số hồ sơ vụ việc", "hold.place": "Đặt phong toả",
    "hold.active": "đang hiệu lực", "hold.released": "đã gỡ", "hold.release": "Gỡ",
    "hold.call": "cuộc gọi {id}", "hold.phone": "số {number}",
    "hold.phone.erased": "một số đã bị xoá",
    "col.state": "Tình trạng", "col.on": "Đối tượng", "col.reason": "Lý do", "col.case": "Hồ sơ",
    "col.placed": "Đặt lúc", "col.released": "Gỡ lúc", "col.actions": "Thao tác",
    "audit.title": "Nhật ký truy cập", "audit.from": "Từ", "audit.to": "Đến",
    "audit.actor": "Người thực hiện", "audit.action": "Hành động", "audit.any": "Tất cả",
    "audit.submit": "Lọc", "audit.count": "{n} mục.", "audit.shown": "{n} mục mới nhất; còn nữa.",
    "more": "Xem thêm", "audit.one": "1 mục.", "audit.none": "Không có mục nào khớp.",
    "col.at": "Thời điểm", "col.actor": "Người thực hiện", "col.action": "Hành động",
    "col.target": "Đối tượng",
    "action.playback": "nghe lại bản ghi", "action.hold": "đặt phong toả",
    "action.hold_released": "gỡ phong toả", "action.dsar": "nhận yêu cầu",
    "action.dsar_acknowledged": "xác nhận yêu cầu", "action.dsar_extended": "gia hạn yêu cầu",
    "action.dsar_rejected": "từ chối yêu cầu", "action.dsar_lifted": "gỡ hạn chế xử lý",
    "action.dsar_bundle_link": "tải gói dữ liệu", "action.receipt_issued": "cấp biên nhận",
    "ledger.title": "Sổ cái đồng ý", "ledger.verify": "Kiểm tra toàn vẹn",
    "ledger.verifying": "Đang kiểm tra…",
    "ledger.ok": "Toàn vẹn: đã kiểm tra {calls} cuộc gọi, {events} sự kiện, {seals} niêm phong.",
    "ledger.broken": "BỊ SỬA ĐỔI: {breaks} chỗ đứt trong {calls} cuộc gọi. Chỗ đầu tiên: {first}",
    "ledger.seal": "Niêm phong gần nhất",
    "seal.text": "Niêm phong số {id} lúc {when}: {calls} cuộc gọi, gốc {root}",
    "seal.none": "Sổ cái chưa được niêm phong lần nào.",
    "ledger.receipt": "Biên nhận đồng ý của một cuộc gọi", "receipt.call": "Mã cuộc gọi",
    "receipt.json": "Tải JSON có chữ ký", "receipt.html": "Tải bản in",
    "receipt.done": "Đã tải biên nhận.",
    "glance.title": "Tổng quan", "chart.consent": "Kết quả đồng ý mỗi ngày (30 ngày)",
    "chart.queues": "Kết quả đồng ý theo hàng chờ (30 ngày)",
    "chart.recordings": "Bản ghi được lưu và bị xoá mỗi ngày (30 ngày)",
    "chart.due": "Bản ghi đến hạn xoá trong 30 ngày tới",
    "chart.requests": "Yêu cầu theo trạng thái",
    "chart.table": "Số liệu dạng bảng",
    "msg.badtoken": "Mã này không được chấp nhận. Vui lòng đăng nhập lại.",
    "msg.forbidden": "Vai trò của bạn không được phép làm việc này.",
    "msg.error": "Đã có lỗi: {m}", "msg.network": "Không kết nối được callvault. Vui lòng thử lại.",
    "err.not_found": "Không tìm thấy.", "err.no_seal": "Chưa niêm phong.", "err.no_calls": "Số này không có cuộc gọi nào.",
    "err.already_restricted": "Số này đã bị hạn chế xử lý.",
    "err.too_many_requests": "Quá nhiều lần thử. Vui lòng đợi một phút rồi thử lại.",
    "err.internal": "callvault gặp lỗi nội bộ; lỗi đã được ghi lại.",
    "err.unknown_tenant": "Không có khách hàng này.",
    "err.tenant_required": "Vui lòng chọn khách hàng trước.",
    "err.bad_phone": "Số điện thoại không hợp lệ.", "err.invalid_body": "Vui lòng kiểm tra biểu mẫu: {m}",
    "err.restricted": "Dữ liệu của người này đang bị hạn chế xử lý: hãy gỡ hạn chế trước.",
    "err.bundle_expired": "Gói dữ liệu đã hết hạn.", "err.bundle_erased": "Gói dữ liệu đã bị xoá.",
    "err.conflict": "Không thể thực hiện ở trạng thái hiện tại của yêu cầu.",
    "none": "—",
  },
};
const CONSOLE_ROLES = ["compliance", "admin"];
let shownRequest = null;  // the request in the detail panel

function duration(seconds) {
  const s = Math.abs(seconds);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return t("dur.dh", { d, h });
  if (h > 0) return t("dur.hm", { h, m });
  return t("dur.m", { m });
}

// The time left on one clock: "2 d 3 h left", "overdue by 5 h", or done / not running.
function clockText(leftS, doneAt) {
  if (leftS == null) return doneAt ? t("done") : t("stopped");
  return leftS < 0 ? t("late", { t: duration(leftS) }) : t("left", { t: duration(leftS) });
}

function isOverdue(r) { return r.overdue.acknowledge || r.overdue.complete; }

// ---- requests ---------------------------------------------------------------------------

// A list shown a page at a time: the first page replaces it, "more" appends the next one
// (keyset: the API's next_cursor), and the button shows while there is a next page.
const PAGE = 50;
const cursors = {};

async function pageOf(list, path, params, more) {
  params.set("limit", String(PAGE));
  if (more === true && cursors[list]) params.set("cursor", cursors[list]);
  const page = await api("GET", `${path}?${params}`);
  if (more !== true) $(`${list}-body`).replaceChildren();
  cursors[list] = page.next_cursor;
  $(`${list}-more`).classList.toggle("hidden", !page.next_cursor);
  return page.items;
}

async function loadQueue(more) {
  try {
    const params = new URLSearchParams({ status: $("dsar-status").value });
    const items = await pageOf("queue", "/api/dsar", params, more);
    const body = $("queue-body");
    for (const r of items) body.appendChild(queueRow(r));
    $("queue-empty").classList.toggle("hidden", body.children.length > 0);
  } catch (err) { failIn("message", err); }
}

function queueRow(r) {
  const tr = document.createElement("tr");
  tr.setAttribute("data-testid", "request-row");
  tr.dataset.id = r.id;
  if (isOverdue(r)) tr.classList.add("overdue");
  cell(tr, () => fmt(r.received_at));
  cell(tr, () => word("kind", r.kind));
  const status = document.createElement("td");
  status.appendChild(live(document.createElement("span"), () => word("status", r.status)));
  if (isOverdue(r)) {
    const b = live(document.createElement("span"), () => t("overdue"));
    b.className = "badge overdue";
    b.setAttribute("data-testid", "overdue");
    status.appendChild(b);
  }
  tr.appendChild(status);
  const ack = cell(tr, () => clockText(r.time_left.acknowledge_s, r.acknowledged_at));
  ack.className = "left" + (r.overdue.acknowledge ? " late" : "");
  const due = cell(tr, () => clockText(r.time_left.complete_s, r.completed_at));
  due.className = "left" + (r.overdue.complete ? " late" : "");
  const td = document.createElement("td");
  const open = document.createElement("button");
  open.type = "button";
  open.className = "link";
  open.setAttribute("data-testid", "request-open");
  live(open, () => t("open"));
  open.addEventListener("click", () => openRequest(r.id));
  td.appendChild(open);
  tr.appendChild(td);
  return tr;
}

async function openRequest(id) {
  try {
    const r = await api("GET", `/api/dsar/${id}`);
    shownRequest = r;
    showRequest(r);
    $("dsar-detail").classList.remove("hidden");
    $("dsar-message").textContent = "";
    applyLanguage();
  } catch (err) { failIn("message", err); }
}

function showRequest(r) {
  const facts = $("dsar-facts");
  facts.replaceChildren();
  const rows = [
    ["fact.id", () => r.id], ["fact.kind", () => word("kind", r.kind)],
    ["fact.status", () => word("status", r.status)], ["fact.received", () => fmt(r.received_at)],
    ["fact.channel", () => (r.channel ? word("channel", r.channel) : t("channel.none"))],
    ["fact.ack_by", () => `${fmt(r.acknowledge_by)} (${clockText(r.time_left.acknowledge_s, r.acknowledged_at)})`],
    ["fact.due", () => `${fmt(r.due_at)} (${clockText(r.time_left.complete_s, r.completed_at)})`],
  ];
  if (r.kind === "access") {
    rows.push(["fact.bundle", () => (r.bundle_ready
      ? t("bundle.ready", { when: fmt(r.bundle_expires_at) }) : t("bundle.none"))]);
  }
  for (const [key, render] of rows) {
    const dt = live(document.createElement("dt"), () => t(key));
    const dd = live(document.createElement("dd"), render);
    if (key === "fact.status") dd.setAttribute("data-testid", "dsar-status-value");
    if (key === "fact.due") dd.setAttribute("data-testid", "dsar-due");
    if (key === "fact.channel") dd.setAttribute("data-testid", "dsar-channel");
    facts.append(dt, dd);
  }
  const hist = $("dsar-history");
  hist.replaceChildren();
  const event = (at, render) => {
    const li = document.createElement("li");
    li.append(live(document.createElement("span"), render));
    const when = live(document.createElement("span"), () => fmt(at));
    when.className = "at";
    li.append(when);
    hist.appendChild(li);
  };
  event(r.received_at, () => `${t("hist.received")} (${r.requested_by})`);
  if (r.acknowledged_at) event(r.acknowledged_at, () => t("hist.acknowledged"));
  if (r.extension) {
    const x = r.extension;
    event(x.at, () => t("hist.extended",
      { days: x.days, by: x.by, reason: x.reason, before: fmt(x.due_before) }));
  }
  if (r.status === "rejected") event(r.completed_at, () => t("hist.rejected", { reason: r.rejected_reason }));
  else if (r.completed_at) event(r.completed_at, () => t("hist.completed"));
  if (r.lifted_at) event(r.lifted_at, () => t("hist.lifted"));

  const calls = $("dsar-calls");
  calls.replaceChildren();
  if (r.call_ids.length === 0) calls.appendChild(live(document.createElement("li"), () => t("dsar.nocalls")));
  for (const id of r.call_ids) {
    const li = document.createElement("li");
    const code = document.createElement("code");
    code.textContent = id;
    const btn = document.createElement("button");
    btn.type = "button";
    btn.className = "link";
    live(btn, () => t("receipt"));
    btn.addEventListener("click", () => downloadReceipt(id, "html", "dsar-message"));
    li.append(code, " ", btn);
    calls.appendChild(li);
  }
  const running = !["completed", "rejected", "in_force"].includes(r.status);
  const can = {
    acknowledge: running && !r.acknowledged_at,
    extend: running && !r.extension,
    reject: !["completed", "rejected"].includes(r.status),
    lift: r.kind === "restrict" && r.status === "in_force",
    bundle: r.kind === "access" && r.bundle_ready,
  };
  for (const b of $("dsar-actions").querySelectorAll("button")) {
    b.disabled = !can[b.dataset.action];
    b.classList.toggle("hidden", (b.dataset.action === "lift" && r.kind !== "restrict")
      || (b.dataset.action === "bundle" && r.kind !== "access"));
  }
}

// A confirmation dialog: resolves with {days, reason} on confirm, null on cancel.
function confirmAction(what, { days = false, reason = false } = {}) {
  const dlg = $("confirm");
  live($("confirm-title"), () => t(`ask.${what}`));
  live($("confirm-text"), () => t(`ask.${what}.text`));
  $("confirm-days-label").classList.toggle("hidden", !days);
  $("confirm-reason-label").classList.toggle("hidden", !reason);
  $("confirm-reason").value = "";
  $("confirm-error").textContent = "";
  return new Promise((resolve) => {
    const form = $("confirm-form");
    const onSubmit = (ev) => {
      ev.preventDefault();
      if (ev.submitter && ev.submitter.value === "cancel") { finish(null); return; }
      const text = $("confirm-reason").value.trim();
      if (reason && !text) { live($("confirm-error"), () => t("confirm.need_reason")); return; }
      finish({ days: Number($("confirm-days").value), reason: text });
    };
    const onCancel = () => finish(null);
    function finish(value) {
      form.removeEventListener("submit", onSubmit);
      dlg.removeEventListener("cancel", onCancel);
      if (dlg.open) dlg.close();
      resolve(value);
    }
    form.addEventListener("submit", onSubmit);
    dlg.addEventListener("cancel", onCancel);
    dlg.showModal();
    (reason ? $("confirm-reason") : dlg.querySelector("[data-testid=confirm-ok]")).focus();
  });
}

function download(href, name) {
  const a = document.createElement("a");
  a.href = href;
  a.download = name || "";
  document.body.appendChild(a);
  a.click();
  a.remove();
}

async function requestAction(action) {
  const r = shownRequest;
  if (!r) return;
  const answer = await confirmAction(action,
    { days: action === "extend", reason: action === "extend" || action === "reject" });
  if (!answer) return;
  try {
    if (action === "bundle") {
      const link = await api("POST", `/api/dsar/${r.id}/bundle`);
      download(new URL(link.url).pathname, `callvault-access-${r.id}.zip`);
      note("dsar-message", "done.bundle", {}, "ok");
      return;
    }
    const body = action === "extend" ? { days: answer.days, reason: answer.reason }
      : action === "reject" ? { reason: answer.reason } : undefined;
    const after = await api("POST", `/api/dsar/${r.id}/${action}`, body);
    shownRequest = after;
    showRequest(after);
    note("dsar-message", `done.${action}`, { get when() { return fmt(after.due_at); } }, "ok");
    applyLanguage();
    loadQueue();
    loadCharts();
  } catch (err) { failIn("dsar-message", err); }
}

function localInput(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`
    + `T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

async function logRequest(ev) {
  ev.preventDefault();
  try {
    const created = await api("POST", "/api/dsar", {
      kind: $("log-kind").value, phone: $("log-phone").value.trim(), channel: $("log-channel").value,
      received_at: new Date($("log-received").value).toISOString(),
    });
    note("log-message", "done.logged", { get when() { return fmt(created.due_at); } }, "ok");
    $("log-phone").value = "";
    await loadQueue();
    openRequest(created.id);
    loadCharts();
  } catch (err) { failIn("log-message", err); }
}

// ---- holds ------------------------------------------------------------------------------

async function loadHolds(more) {
  try {
    // active ones first, then released; newest first within each (the API's order)
    const params = new URLSearchParams({ include_released: "true" });
    const items = await pageOf("holds", "/api/holds", params, more);
    for (const h of items) $("holds-body").appendChild(holdRow(h));
  } catch (err) { failIn("holds-message", err); }
}

function holdRow(h) {
  const tr = document.createElement("tr");
  tr.setAttribute("data-testid", "hold-row");
  tr.dataset.id = h.id;
  const state = document.createElement("td");
  const badge = live(document.createElement("span"), () => t(h.active ? "hold.active" : "hold.released"));
  badge.className = `badge ${h.active ? "active" : "released"}`;
  state.appendChild(badge);
  tr.appendChild(state);
  // a number is shown masked, as the API gives it (never whole); null once it was erased
  cell(tr, () => (h.on === "call" ? t("hold.call", { id: h.call_id })
    : h.phone ? t("hold.phone", { number: h.phone }) : t("hold.phone.erased")));
  cell(tr, () => h.reason);
  cell(tr, () => h.case_ref || t("none"));
  cell(tr, () => `${fmt(h.placed_at)} (${h.placed_by})`);
  cell(tr, () => (h.released_at ? `${fmt(h.released_at)} (${h.released_by})` : t("none")));
  const td = document.createElement("td");
  if (h.active) {
    const b = document.createElement("button");
    b.type = "button";
    b.setAttribute("data-testid", "hold-release");
    live(b, () => t("hold.release"));
    b.addEventListener("click", () => releaseHold(h.id));
    td.appendChild(b);
  }
  tr.appendChild(td);
  return tr;
}

async function placeHold(ev) {
  ev.preventDefault();
  const target = $("hold-target").value.trim();
  const body = { reason: $("hold-reason").value.trim() };
  body[$("hold-on").value === "call" ? "call_id" : "phone"] = target;
  if ($("hold-case").value.trim()) body.case_ref = $("hold-case").value.trim();
  try {
    await api("POST", "/api/holds", body);
    for (const id of ["hold-target", "hold-reason", "hold-case"]) $(id).value = "";
    await loadHolds();
    note("holds-message", "done.hold", {}, "ok");
    loadCharts();
  } catch (err) { failIn("holds-message", err); }
}

async function releaseHold(id) {
  if (!await confirmAction("release")) return;
  try {
    await api("DELETE", `/api/holds/${id}`);
    await loadHolds();
    note("holds-message", "done.release", {}, "ok");
    loadCharts();
  } catch (err) { failIn("holds-message", err); }
}

// ---- audit ------------------------------------------------------------------------------

async function loadAudit(ev, more) {
  if (ev) ev.preventDefault();
  const params = new URLSearchParams();
  if ($("audit-from").value) params.set("from", new Date($("audit-from").value).toISOString());
  if ($("audit-to").value) params.set("to", new Date($("audit-to").value).toISOString());
  if ($("audit-actor").value.trim()) params.set("actor", $("audit-actor").value.trim());
  if ($("audit-action").value) params.set("action", $("audit-action").value);
  try {
    const items = await pageOf("audit", "/api/audit", params, more);
    const body = $("audit-body");
    for (const e of items) {
      const tr = document.createElement("tr");
      tr.setAttribute("data-testid", "audit-row");
      cell(tr, () => fmt(e.at));
      cell(tr, () => e.actor);
      cell(tr, () => word("action", e.action)).title = e.action;
      cell(tr, () => (e.target_type ? `${e.target_type} ${e.target_id || ""}` : t("none")));
      cell(tr, () => (e.details && e.details.reason) || "").setAttribute("data-testid", "audit-reason");
      body.appendChild(tr);
    }
    const n = body.children.length;
    const key = n === 1 ? "audit.one" : !n ? "audit.none" : cursors.audit ? "audit.shown" : "audit.count";
    note("audit-message", key, { n });
  } catch (err) { failIn("audit-message", err); }
}

// ---- ledger -----------------------------------------------------------------------------

async function verifyLedger() {
  note("verify-result", "ledger.verifying");
  try {
    const r = await api("GET", "/api/ledger/verify");
    if (r.ok) note("verify-result", "ledger.ok", { calls: r.calls, events: r.events, seals: r.seals ?? 0 }, "ok");
    else {
      note("verify-result", "ledger.broken",
        { breaks: r.breaks ?? 1, calls: r.calls, first: JSON.stringify(r.first_break) }, "error");
    }
    loadSeal();
  } catch (err) { failIn("verify-result", err); }
}

async function loadSeal() {
  try {
    const s = await api("GET", "/api/ledger/seals/latest");
    live($("seal"), () => t("seal.text",
      { id: s.id, when: fmt(s.at), calls: s.calls, root: s.root.slice(0, 16) }));
  } catch (err) {
    if (err.key === "err.no_seal") live($("seal"), () => t("seal.none"));
    else failIn("seal", err);
  }
}

async function downloadReceipt(callId, format, messageId) {
  try {
    const headers = { Authorization: `Bearer ${token()}` };
    if (tenant()) headers["Callvault-Tenant"] = tenant();
    const resp = await fetch(`/api/calls/${encodeURIComponent(callId)}/receipt?format=${format}`, { headers });
    if (!resp.ok) {
      const data = resp.headers.get("Content-Type")?.includes("json") ? await resp.json() : null;
      const code = data?.error?.code;
      throw new UiError(code && has(`err.${code}`) ? `err.${code}` : "msg.error",
        { m: data?.error?.message || resp.status });
    }
    const url = URL.createObjectURL(await resp.blob());
    download(url, `callvault-receipt-${callId}.${format}`);
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    note(messageId, "receipt.done", {}, "ok");
  } catch (err) { failIn(messageId, err); }
}

// ---- charts: SVG drawn by the server (/api/stats/charts/*), inserted as it is ----------

const CHARTS = ["consent", "queues", "recordings", "due", "requests"];
let chartsWanted = false;  // signed in and shown: a language switch redraws them
let chartsRun = 0;  // only the latest drawing lands (a switch while one is loading)

async function fetchText(path) {
  const headers = { Authorization: `Bearer ${token()}` };
  if (tenant()) headers["Callvault-Tenant"] = tenant();
  const resp = await fetch(path, { headers });
  if (resp.status === 401) { signOut(); throw new UiError("msg.badtoken"); }
  if (!resp.ok) throw new UiError("msg.error", { m: resp.status });
  return resp.text();
}

// The text alternative: a table of every bar's numbers, read from the SVG's data attributes
// (the legend names the series, each bar group its row), so it says what the chart says.
function chartTable(svg) {
  const table = document.createElement("table");
  table.className = "calls";
  const legend = [...svg.querySelectorAll("g[data-total]:not([data-extra])")];
  const head = document.createElement("tr");
  const corner = document.createElement("td");
  head.appendChild(corner);
  for (const g of legend) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = g.dataset.name;
    head.appendChild(th);
  }
  table.createTHead().appendChild(head);
  const body = table.createTBody();
  for (const bar of svg.querySelectorAll("g[data-label]")) {
    const tr = document.createElement("tr");
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = bar.dataset.label;
    tr.appendChild(th);
    for (const g of legend) {
      const td = document.createElement("td");
      td.className = "num";
      const rect = bar.querySelector(`rect[data-series="${g.dataset.series}"]`);
      td.textContent = rect ? rect.dataset.value : "0";
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
  return table;
}

async function loadCharts() {
  chartsWanted = true;
  const run = ++chartsRun;
  const drawnIn = lang;
  try {
    const texts = await Promise.all(CHARTS.map(
      (c) => fetchText(`/api/stats/charts/${c}?days=30&lang=${drawnIn}`)));
    if (run !== chartsRun) return;  // a newer drawing was asked for meanwhile
    CHARTS.forEach((c, i) => {
      const parsed = new DOMParser().parseFromString(texts[i], "image/svg+xml").documentElement;
      const svg = document.importNode(parsed, true);
      const details = document.createElement("details");
      const summary = document.createElement("summary");
      summary.setAttribute("data-i18n", "chart.table");
      summary.textContent = t("chart.table");
      details.append(summary, chartTable(svg));
      $(`chart-${c}`).replaceChildren(svg, details);
    });
    $("glance").dataset.lang = drawnIn;  // what tests wait for after a switch
  } catch (err) { failIn("message", err); }
}

// ---- sign in, roles, tenant -------------------------------------------------------------

function showSignedIn() {
  const signedIn = !!token();
  $("signin").classList.toggle("hidden", signedIn);
  $("who-card").classList.toggle("hidden", !signedIn);
  if (!signedIn) {
    chartsWanted = false;  // signed out (common.js signOut): a language switch draws nothing
    showWork(false);
  }
}

function showWork(on) {
  for (const el of document.querySelectorAll(".work")) el.classList.toggle("hidden", !on);
  $("nav").classList.toggle("hidden", !on);
}

// Who the token is: compliance or admin of a tenant sees the console; a platform token picks
// the tenant first; any other role is told it has no access (the API would refuse it anyway).
async function start() {
  showWork(false);
  $("message").textContent = "";
  try {
    const me = await api("GET", "/api/whoami");
    if (!CONSOLE_ROLES.includes(me.role)) {
      $("tenant-form").classList.add("hidden");
      $("who").textContent = "";
      note("message", "noaccess", { role: me.role }, "error");
      return;
    }
    $("tenant-form").classList.toggle("hidden", !me.platform);
    if (!me.tenant) { live($("who"), () => t("tenant.none")); return; }
    live($("who"), () => t("tenant.label", { name: me.tenant.name, role: me.role }));
    showWork(true);
    $("dsar-detail").classList.add("hidden");
    $("log-received").value = localInput(new Date());
    await Promise.all([loadQueue(), loadHolds(), loadAudit(), loadSeal(), loadCharts()]);
    document.body.dataset.ready = "true";
  } catch (err) {
    if (err.key === "err.unknown_tenant" && tenant()) {
      sessionStorage.removeItem("callvault.tenant");
      return start();
    }
    failIn("message", err);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  applyLanguage();
  showSignedIn();
  wireLanguage();
  for (const b of document.querySelectorAll("[data-lang]")) {
    b.addEventListener("click", () => { if (chartsWanted) loadCharts(); });
  }
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
    start();
  });
  $("signout").addEventListener("click", signOut);
  $("dsar-status").addEventListener("change", loadQueue);
  $("dsar-close").addEventListener("click", () => $("dsar-detail").classList.add("hidden"));
  for (const b of $("dsar-actions").querySelectorAll("button")) {
    b.addEventListener("click", () => requestAction(b.dataset.action));
  }
  $("log-form").addEventListener("submit", logRequest);
  $("hold-form").addEventListener("submit", placeHold);
  $("audit-form").addEventListener("submit", loadAudit);
  $("queue-more").addEventListener("click", () => loadQueue(true));
  $("holds-more").addEventListener("click", () => loadHolds(true));
  $("audit-more").addEventListener("click", () => loadAudit(null, true));
  $("verify").addEventListener("click", verifyLedger);
  $("receipt-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    downloadReceipt($("receipt-call").value.trim(), ev.submitter?.dataset.format || "json",
      "receipt-message");
  });
  if (token()) start();
});
