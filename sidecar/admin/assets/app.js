// oidc-sidecar console: a little vanilla JavaScript over server-rendered
// pages. Every rule (validation, the trust-condition language) is the
// server's: this file only moves data between the form and the admin API.
"use strict";
(function () {
  const API = "/_sidecar/admin/v1";
  const csrf = document.body.dataset.csrf || "";
  const $ = (s, el) => (el || document).querySelector(s);
  const $$ = (s, el) => Array.from((el || document).querySelectorAll(s));

  async function api(method, path, body, headers) {
    const h = Object.assign({ "X-CSRF-Token": csrf }, headers || {});
    if (body !== undefined) h["Content-Type"] = "application/json";
    const r = await fetch(API + path, { method, headers: h, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body) });
    let data = null;
    const text = await r.text();
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = { error: text }; }
    return { status: r.status, data, etag: r.headers.get("ETag") };
  }
  function debounce(fn, ms) {
    let t;
    return function () { clearTimeout(t); t = setTimeout(fn, ms); };
  }
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // Copy buttons.
  $$("[data-copy]").forEach((b) => b.addEventListener("click", () => {
    const src = document.getElementById(b.dataset.copy);
    navigator.clipboard.writeText(src.textContent).then(() => { b.textContent = "Copied"; }, () => { b.textContent = "Copy failed: select the text"; });
  }));

  const form = $("#provider-form");
  if (!form) return;
  const original = JSON.parse(form.dataset.provider || "{}");
  const typeinfo = JSON.parse(form.dataset.typeinfo || "{}");
  const operators = JSON.parse(form.dataset.operators || "[]");
  const id = form.dataset.id;
  let etag = form.dataset.etag;

  // Fill the inputs the template leaves to us (lists, checkboxes).
  (function fill() {
    const scopes = original.scopes || [];
    $$("[data-kind=checks]", form).forEach((c) => { c.checked = scopes.indexOf(c.value) >= 0; });
    $$("[data-kind=list]", form).forEach((t) => { t.value = (original[t.dataset.field] || []).join("\n"); });
    const all = $("#all-workspaces");
    const ws = $("#f-workspaces");
    const sync = () => { ws.disabled = all.checked; };
    all.addEventListener("change", () => { sync(); changed(); });
    sync();
  })();

  // The provider as JSON: the original (fields the form does not show are
  // kept) overlaid with every input that has a data-field.
  function collect() {
    const out = Object.assign({}, original);
    delete out.id;
    const seen = {};
    $$("[data-field]", form).forEach((e) => {
      const f = e.dataset.field;
      switch (e.dataset.kind) {
        case "checks":
          if (!seen[f]) { out[f] = []; seen[f] = true; }
          if (e.checked) out[f].push(e.value);
          break;
        case "radio":
          if (e.checked) out[f] = e.value;
          break;
        case "list": {
          const l = e.value.split(/[\n,]/).map((s) => s.trim()).filter((s) => s);
          if (l.length) out[f] = l; else delete out[f];
          break;
        }
        default:
          if (e.value.trim() === "") delete out[f]; else out[f] = e.value;
      }
    });
    if ($("#all-workspaces").checked) delete out.workspaces;
    return out;
  }

  function showErrors(errors) {
    $$("p.error", form).forEach((p) => { p.hidden = true; p.textContent = ""; });
    $$("[aria-invalid]", form).forEach((e) => e.removeAttribute("aria-invalid"));
    (errors || []).forEach((e) => {
      const base = (e.field || "").replace(/[\[.].*$/, "");
      const p = document.getElementById("err-" + base) || document.getElementById("err-");
      p.hidden = false;
      p.textContent = (p.textContent ? p.textContent + " " : "") + (base !== e.field && e.field ? e.field + ": " : "") + e.message;
      const input = document.getElementById("f-" + base);
      if (input) input.setAttribute("aria-invalid", "true");
    });
  }

  const validate = debounce(async () => {
    const body = collect();
    if (id) body.id = id;
    const r = await api("POST", "/validate", body);
    if (r.status === 200) showErrors(r.data.errors);
  }, 300);
  function changed() { if (!form.dataset.readonly) validate(); }
  form.addEventListener("input", changed);
  form.addEventListener("change", changed);

  // CircleCI: the issuer follows the organization ID.
  const org = $("#f-organization_id");
  const derived = $("#derived-issuer");
  if (org && derived) org.addEventListener("input", () => { derived.textContent = derived.dataset.prefix + org.value.trim(); });

  // Trust-condition builder, kept in sync with the text through the
  // server's parser and renderer (one grammar).
  const builder = $("#builder");
  const text = $("#f-trust_conditions");
  const claims = typeinfo.claims || null;
  let rowSeq = 0;
  function addRow(c) {
    c = c || { claim: "", op: "is", values: [""] };
    const n = ++rowSeq;
    const row = el("div", { class: "row" });
    const claimId = "c-claim-" + n, opId = "c-op-" + n, valId = "c-val-" + n;
    row.appendChild(el("label", { for: claimId, class: "sr-only" }, "Claim"));
    let claim;
    if (claims) {
      claim = el("select", { id: claimId, class: "claim" });
      const list = claims.slice();
      if (c.claim && list.indexOf(c.claim) < 0) list.unshift(c.claim);
      if (!c.claim) claim.appendChild(el("option", { value: "" }, "— claim —"));
      list.forEach((k) => { const o = el("option", { value: k }, k); if (k === c.claim) o.selected = true; claim.appendChild(o); });
    } else {
      claim = el("input", { id: claimId, class: "claim", list: "claim-list", placeholder: "claim" });
      claim.value = c.claim;
    }
    row.appendChild(claim);
    row.appendChild(el("label", { for: opId, class: "sr-only" }, "Operator"));
    const op = el("select", { id: opId, class: "op" });
    operators.forEach((o) => { const x = el("option", { value: o }, o); if (o === c.op) x.selected = true; op.appendChild(x); });
    row.appendChild(op);
    row.appendChild(el("label", { for: valId, class: "sr-only" }, "Value"));
    const val = el("input", { id: valId, class: "value", placeholder: "value (one of: comma-separated)" });
    val.value = (c.values || []).join(", ");
    row.appendChild(val);
    const rm = el("button", { type: "button", class: "remove", "aria-label": "Remove this condition" }, "×");
    rm.addEventListener("click", () => { row.remove(); fromBuilder(); });
    row.appendChild(rm);
    const sync = () => { val.hidden = op.value === "exists"; };
    op.addEventListener("change", sync);
    sync();
    [claim, op, val].forEach((x) => x.addEventListener("input", fromBuilderSoon));
    [claim, op].forEach((x) => x.addEventListener("change", fromBuilderSoon));
    builder.appendChild(row);
    return row;
  }
  function rows() {
    return $$(".row", builder).map((r) => {
      const op = $(".op", r).value;
      let values = [$(".value", r).value];
      if (op === "is one of" || op === "is not one of") values = $(".value", r).value.split(",").map((s) => s.trim()).filter((s) => s);
      if (op === "exists") values = [];
      return { claim: $(".claim", r).value.trim(), op, values };
    });
  }
  async function fromBuilder() {
    const r = await api("POST", "/conditions/render", { conditions: rows() });
    if (r.status === 200) { text.value = r.data.text; changed(); }
  }
  const fromBuilderSoon = debounce(fromBuilder, 250);
  async function fromText() {
    const r = await api("POST", "/conditions/parse", { text: text.value });
    if (r.status !== 200) return; // the error shows at the field via validate
    builder.textContent = "";
    r.data.conditions.forEach(addRow);
  }
  if (builder) {
    text.addEventListener("input", debounce(fromText, 300));
    $("#add-row").addEventListener("click", () => { const r = addRow(); $(".claim", r).focus(); });
    if (text.value.trim()) fromText();
    else if ((typeinfo.required || []).indexOf("trust_conditions") >= 0) addRow({ claim: "repository_owner", op: "is", values: [""] });
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const status = $("#form-status");
    status.textContent = "Saving…";
    const body = collect();
    const r = id ? await api("PUT", "/providers/" + id, body, { "If-Match": etag }) : await api("POST", "/providers", body);
    if (r.status === 201) { location.href = "/providers/" + r.data.id + "?created=1"; return; }
    if (r.status === 200) { etag = r.etag; status.textContent = "Saved. The new revision is serving."; showErrors([]); return; }
    if (r.status === 422) { showErrors(r.data.errors); status.textContent = "Not saved: fix the fields marked below."; const bad = $("[aria-invalid]", form); if (bad) bad.focus(); return; }
    status.textContent = "Not saved: " + ((r.data && r.data.error) || ("HTTP " + r.status));
  });

  if (!id) return;

  // Test a token.
  $("#test-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const out = $("#test-result");
    const raw = $("#test-input").value.trim();
    let body;
    if (raw.startsWith("{")) {
      try { body = { claims: JSON.parse(raw) }; } catch (e) { out.textContent = "Not valid JSON: " + e.message; return; }
    } else body = { token: raw };
    const r = await api("POST", "/providers/" + id + "/evaluate", body);
    out.textContent = "";
    if (r.status !== 200) { out.appendChild(el("p", { class: "deny" }, (r.data.errors || [{ message: r.data.error }]).map((e) => e.message).join("; "))); return; }
    const d = r.data.decision;
    if (r.data.unverified) out.appendChild(el("p", { class: "note" }, "Note: " + r.data.note));
    (r.data.mismatch || []).forEach((m) => out.appendChild(el("p", { class: "note" }, "Note: " + m)));
    out.appendChild(el("p", { class: d.allow ? "allow" : "deny" }, d.allow ? "ALLOW — scopes " + (d.scopes || []).join(", ") : "DENY — " + d.reasons.length + " reason(s)"));
    const ul = el("ul", { class: "reasons" });
    d.reasons.forEach((x) => {
      const li = el("li");
      li.appendChild(el("code", {}, x.condition || x.code));
      li.appendChild(document.createTextNode(x.condition ? (x.missing ? " — claim " + x.claim + " is missing" : " — actual " + x.claim + " = " + JSON.stringify(x.actual)) : " — " + x.message));
      ul.appendChild(li);
    });
    out.appendChild(ul);
  });

  // Recent decisions.
  async function loadDecisions() {
    const box = $("#decisions");
    const r = await api("GET", "/providers/" + id + "/decisions");
    box.textContent = "";
    if (r.status !== 200) { box.textContent = r.data.error; return; }
    if (!r.data.decisions.length) { box.appendChild(el("p", { class: "hint" }, "No exchange for this provider yet.")); return; }
    const t = el("table");
    const head = el("tr");
    ["Time", "Outcome", "Failing conditions", "Client", "Replica", "Decision ID"].forEach((h) => head.appendChild(el("th", { scope: "col" }, h)));
    t.appendChild(head);
    r.data.decisions.forEach((d) => {
      const tr = el("tr");
      const reasons = (d.reasons || []).map((x) => (x.condition ? x.condition + " (actual " + (x.missing ? "missing" : JSON.stringify(x.actual)) + ")" : x.message)).join("; ");
      [new Date(d.time).toLocaleString(), d.outcome, reasons || d.message || "", d.client_ip, d.replica, d.decision_id].forEach((v) => tr.appendChild(el("td", {}, v)));
      t.appendChild(tr);
    });
    box.appendChild(t);
  }
  $("#decisions-refresh").addEventListener("click", loadDecisions);
  loadDecisions();

  // Delete, with confirmation.
  const del = $("#delete");
  if (del) {
    const dlg = $("#delete-dialog");
    del.addEventListener("click", () => dlg.showModal());
    $("#delete-cancel").addEventListener("click", () => dlg.close());
    $("#delete-confirm").addEventListener("click", async () => {
      const r = await api("DELETE", "/providers/" + id, undefined, { "If-Match": etag });
      dlg.close();
      if (r.status === 204) { location.href = "/?deleted=1"; return; }
      $("#form-status").textContent = "Not deleted: " + ((r.data && r.data.error) || ("HTTP " + r.status));
    });
  }
  const revoke = $("#revoke");
  if (revoke) revoke.addEventListener("click", async () => {
    if (!confirm("Revoke every token this provider issued? CI jobs holding one get 401 until they exchange again.")) return;
    const r = await api("POST", "/providers/" + id + "/revoke-tokens");
    $("#form-status").textContent = r.status === 204 || r.status === 200 ? "Every token of this provider is revoked." : "Not revoked: " + ((r.data && r.data.error) || r.status);
  });
})();
