// jprefs label: the labelling page. No framework, no build step.
// Every piece of data and model output goes into the page through textContent (never innerHTML),
// and the server's Content-Security-Policy forbids inline scripts and handlers.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { me: null, item: null, shownAt: 0, busy: false, rankSel: 0, allBad: false,
                ab: null, review: null, pollTimer: null };

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

// Text with ``` fences: plain parts keep their line breaks, fenced parts are code in monospace.
function renderText(text) {
  const box = el("div", "body");
  const parts = String(text).split("```");
  parts.forEach((part, i) => {
    if (i % 2 === 1) {
      const nl = part.indexOf("\n");
      const lang = nl >= 0 ? part.slice(0, nl).trim() : "";
      const code = el("code", lang ? "lang" : "", nl >= 0 && /^[\w+#.-]*$/.test(lang) ? part.slice(nl + 1) : part);
      const pre = el("pre");
      pre.appendChild(code);
      box.appendChild(pre);
    } else if (part.length) {
      box.appendChild(el("div", "text", part));
    }
  });
  return box;
}

function renderConversation(target, prompt) {
  target.replaceChildren();
  const turns = typeof prompt === "string" ? [{ role: "user", content: prompt }] : prompt;
  for (const t of turns) {
    const d = el("div", "turn card");
    d.appendChild(el("span", "role", { user: "ユーザー / user", assistant: "アシスタント / assistant",
                                        system: "システム / system" }[t.role] || t.role));
    d.appendChild(renderText(t.content));
    target.appendChild(d);
  }
}

function status(text, kind) {
  const s = $("status");
  s.textContent = text;
  s.className = kind || "";
}

async function api(path, body) {
  const opts = body === undefined ? { method: "GET" } :
    { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  opts.credentials = "same-origin";
  const r = await fetch(path, opts);
  let data = {};
  try { data = await r.json(); } catch (e) { data = { error: "the server sent no JSON" }; }
  if (!r.ok) { const err = new Error(data.error || r.statusText); err.status = r.status; throw err; }
  return data;
}

function show(section) {
  for (const id of ["login", "work", "done", "admin"]) $(id).hidden = id !== section;
  $("guidelines").hidden = !(section === "work" || section === "done");
}

function setProgress(p) {
  if (!p) return;
  const target = p.target_labels || 0;
  $("progress").textContent = `あなた ${p.mine || 0} 件 / you: ${p.mine || 0}` +
    ` · 全体 ${p.labels}/${target} · complete ${p.complete}/${p.items}`;
  $("bar").max = Math.max(1, target);
  $("bar").value = p.labels;
}

// ------------------------------------------------------------------ start

async function start() {
  try {
    state.me = await api("/api/me");
  } catch (e) { status("サーバーに接続できません / cannot reach the server: " + e.message, "err"); return; }
  const me = state.me;
  document.title = me.title || "jprefs label";
  $("title").textContent = me.title || "jprefs label";
  $("mode").textContent = me.mode || "";
  $("guidelines-text").replaceChildren(renderText(me.guidelines || ""));
  if (!me.annotator) { show("login"); $("login-name").focus(); return; }
  $("who").textContent = me.annotator;
  $("logout").hidden = false;
  setProgress(me.progress);
  if (location.pathname === "/admin") {
    if (me.admin) return showAdmin();
    status("管理者としてログインしてください / the statistics page needs the admin account", "err");
  }
  if (me.admin && location.pathname !== "/admin") { location.href = "/admin"; return; }
  const n = await api("/api/next");
  load(n);
}

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    await api("/api/login", { name: $("login-name").value, token: $("login-token").value });
    $("login-token").value = "";
    status("");
    start();
  } catch (e) { status("ログインできません / " + e.message, "err"); }
});

$("logout").addEventListener("click", async () => {
  try { await api("/api/logout", {}); } catch (e) { /* gone already */ }
  location.href = "/";
});

// ------------------------------------------------------------------ items

function load(data, previous) {
  // a counter that scripts (and the browser tests) can wait on: the page has taken an answer
  document.body.dataset.loads = String(Number(document.body.dataset.loads || 0) + 1);
  setProgress(data.progress);
  clearTimeout(state.pollTimer);
  state.item = data.item;
  if (!state.item) {
    show("done");
    if (state.me.mode === "reward") {       // live rollouts: look again shortly
      $("done-text").textContent = "採点待ちの回答はありません。新しい回答を待っています… Waiting for new responses…";
      state.pollTimer = setTimeout(async () => { try { load(await api("/api/next")); } catch (e) { status(e.message, "err"); } }, 1500);
    }
    return;
  }
  show("work");
  state.shownAt = performance.now();
  $("comment").value = (previous && previous.comment) || "";
  const it = state.item;
  const mode = state.me.mode;
  if (mode === "review") renderReview(it, previous);
  else {
    $("prompt-box").hidden = false;
    renderConversation($("prompt"), it.prompt);
    if (mode === "rank") renderRank(it, previous);
    else if (mode === "ab") renderAB(it, previous);
    else renderReward(it, previous);
  }
  document.activeElement && document.activeElement.blur && document.activeElement.blur();
}

function button(label, key, fn, cls) {
  const b = el("button", cls || "");
  b.type = "button";
  b.appendChild(document.createTextNode(label + " "));
  if (key) b.appendChild(el("kbd", "", key));
  b.addEventListener("click", fn);
  return b;
}

function commonButtons(box) {
  box.appendChild(button("スキップ / skip", "s", skip));
  box.appendChild(button("取り消し / undo", "z", undo));
}

async function submit(value) {
  if (state.busy || !state.item) return;
  state.busy = true;
  value.comment = $("comment").value;
  const elapsed = Math.round(performance.now() - state.shownAt);
  try {
    const r = await api("/api/submit", { item_id: state.item.item_id, value, elapsed_ms: elapsed });
    status("保存しました / saved", "ok");
    load(r);
  } catch (e) {
    status("保存できませんでした / not saved: " + e.message, "err");
  } finally { state.busy = false; }
}

async function skip() {
  if (state.busy || !state.item) return;
  state.busy = true;
  try { load(await api("/api/skip", { item_id: state.item.item_id })); status("スキップしました / skipped", "ok"); }
  catch (e) { status(e.message, "err"); } finally { state.busy = false; }
}

async function undo() {
  if (state.busy) return;
  state.busy = true;
  try {
    const r = await api("/api/undo", {});
    if (!r.ok) { status("取り消すものがありません / nothing to undo"); }
    else { status("取り消しました / undone", "ok"); load(r, r.previous); }
  } catch (e) { status(e.message, "err"); } finally { state.busy = false; }
}

// ---- rank: order the responses (drag, or keys)
function renderRank(it, previous) {
  const list = el("ol");
  list.id = "ranklist";
  let order = it.responses.map((r) => r.index);
  if (previous && previous.order) order = previous.order.slice();
  const byIndex = new Map(it.responses.map((r) => [r.index, r.text]));
  state.allBad = !!(previous && previous.all_bad);
  state.rankSel = 0;
  for (const idx of order) {
    const li = el("li", "card");
    li.draggable = true;
    li.dataset.index = String(idx);
    li.appendChild(el("span", "rank"));
    const body = renderText(byIndex.get(idx));
    body.classList.add("response");
    li.appendChild(body);
    li.addEventListener("click", () => { state.rankSel = [...list.children].indexOf(li); paintRank(); });
    li.addEventListener("dragstart", (e) => { li.classList.add("dragging"); e.dataTransfer.setData("text/plain", idx); });
    li.addEventListener("dragend", () => { li.classList.remove("dragging"); paintRank(); });
    li.addEventListener("dragover", (e) => {
      e.preventDefault();
      const dragging = list.querySelector(".dragging");
      if (!dragging || dragging === li) return;
      const r = li.getBoundingClientRect();
      list.insertBefore(dragging, e.clientY < r.top + r.height / 2 ? li : li.nextSibling);
    });
    list.appendChild(li);
  }
  $("item").replaceChildren(list);
  const a = $("actions");
  a.replaceChildren();
  a.appendChild(button("送信 / submit", "Enter", submitRank, "primary"));
  const bad = button("全部だめ / all bad", "x", toggleAllBad, state.allBad ? "on" : "");
  bad.id = "all-bad";
  a.appendChild(bad);
  commonButtons(a);
  $("keys").textContent = "1-9: 選ぶ select · ↑/↓ (k/j): 上下に移動 move · Enter: 送信 submit · x: 全部だめ all bad · s: skip · z: undo · ドラッグでも並べ替え / drag to reorder";
  paintRank();
}

function paintRank() {
  const list = $("ranklist");
  if (!list) return;
  [...list.children].forEach((li, i) => {
    li.querySelector(".rank").textContent = `${i + 1}位`;
    li.classList.toggle("selected", i === state.rankSel);
  });
  const bad = $("all-bad");
  if (bad) bad.classList.toggle("on", state.allBad);
}

function moveRank(delta) {
  const list = $("ranklist");
  const items = [...list.children];
  const i = state.rankSel, j = i + delta;
  if (j < 0 || j >= items.length) return;
  if (delta < 0) list.insertBefore(items[i], items[j]); else list.insertBefore(items[j], items[i]);
  state.rankSel = j;
  paintRank();
}

function toggleAllBad() { state.allBad = !state.allBad; paintRank(); }

function submitRank() {
  const order = [...$("ranklist").children].map((li) => Number(li.dataset.index));
  submit({ order, all_bad: state.allBad });
}

// ---- ab: which answer is better
function renderAB(it, previous) {
  const cols = el("div", "cols");
  for (const side of ["left", "right"]) {
    const c = el("div", "card");
    c.id = "side-" + side;
    c.appendChild(el("h2", "", side === "left" ? "左 / left (A)" : "右 / right (B)"));
    c.appendChild(renderText(it[side]));
    if (previous && previous.label === side) c.classList.add("chosen");
    cols.appendChild(c);
  }
  $("item").replaceChildren(cols);
  const a = $("actions");
  a.replaceChildren();
  a.appendChild(button("左が良い / left", "a ←", () => submit({ label: "left" }), "primary"));
  a.appendChild(button("右が良い / right", "b →", () => submit({ label: "right" }), "primary"));
  a.appendChild(button("引き分け / tie", "t", () => submit({ label: "tie" })));
  a.appendChild(button("判断できない / can't tell", "c", () => submit({ label: "cant_tell" })));
  commonButtons(a);
  $("keys").textContent = "a / ←: 左 left · b / →: 右 right · t: 引き分け tie · c: 判断できない can't tell · s: skip · z: undo";
}

// ---- review: English source beside the Japanese translation
function renderReview(it, previous) {
  $("prompt-box").hidden = true;
  const box = el("div");
  if (it.rejected_by) box.appendChild(el("p", "flag", "翻訳の品質チェックで除外 / sent to rejects by: " + it.rejected_by.reasons.join(", ")));
  const flags = it.flags || {};
  const table = el("table");
  const head = el("tr");
  for (const h of ["", "English (source)", "日本語 (translation)", "flags"]) head.appendChild(el("th", "", h));
  table.appendChild(head);
  const fields = [];
  it.translated.prompt.forEach((m, i) => fields.push([`prompt.${i}`, `prompt ${i + 1} (${m.role})`,
    it.source && it.source.prompt && it.source.prompt[i] ? it.source.prompt[i].content : null, m.content]));
  fields.push(["chosen", "chosen", it.source ? it.source.chosen : null, it.translated.chosen]);
  fields.push(["rejected", "rejected", it.source ? it.source.rejected : null, it.translated.rejected]);
  const editors = {};
  const corrected = (previous && previous.corrected) || {};
  for (const [key, label, src, ja] of fields) {
    const tr = el("tr");
    tr.appendChild(el("th", "", label));
    const s = el("td");
    s.appendChild(src === null || src === undefined ? el("span", "hint", "(原文なし / source not kept)") : renderText(src));
    tr.appendChild(s);
    const t = el("td");
    t.appendChild(renderText(ja));
    const ed = el("textarea", "editor");
    ed.value = corrected[key] !== undefined ? corrected[key] : ja;
    ed.rows = Math.min(12, Math.max(2, ja.split("\n").length + 1));
    ed.hidden = true;
    ed.dataset.field = key;
    ed.dataset.original = ja;
    editors[key] = ed;
    t.appendChild(ed);
    tr.appendChild(t);
    const f = el("td");
    const name = key.startsWith("prompt.") ? key : key;
    for (const fl of (flags[name] || flags[key.split(".")[0]] || [])) f.appendChild(el("span", "flag", fl));
    tr.appendChild(f);
    table.appendChild(tr);
  }
  if (flags.row) { const p = el("p"); for (const fl of flags.row) p.appendChild(el("span", "flag", fl)); box.appendChild(p); }
  box.appendChild(table);
  const reason = el("input");
  reason.id = "reject-reason";
  reason.placeholder = "却下の理由 / reason for rejecting (誤訳 mistranslation, 欠落 omission, 不自然 unnatural, ...)";
  reason.setAttribute("list", "reasons");
  const dl = el("datalist");
  dl.id = "reasons";
  for (const r of ["誤訳 / mistranslation", "欠落 / omission", "不自然な日本語 / unnatural Japanese",
                   "英語のまま / left in English", "コード・URLの破損 / broken code or URL", "原文が不適切 / bad source"]) {
    const o = el("option"); o.value = r; dl.appendChild(o);
  }
  box.appendChild(reason);
  box.appendChild(dl);
  $("item").replaceChildren(box);
  state.review = { editors, editing: !!(previous && previous.verdict === "correct") };
  const a = $("actions");
  a.replaceChildren();
  a.appendChild(button("承認 / accept", "y", () => submit({ verdict: "accept" }), "primary"));
  a.appendChild(button("却下 / reject", "r", rejectReview));
  a.appendChild(button("修正 / correct", "e", startCorrect));
  const save = button("修正を保存 / save correction", "Ctrl+Enter", saveCorrect, "primary");
  save.id = "save-correction";
  save.hidden = true;
  a.appendChild(save);
  commonButtons(a);
  $("keys").textContent = "y: 承認 accept · r: 却下 reject (理由を入力 give a reason) · e: 修正 correct · Ctrl+Enter: 修正を保存 save · s: skip · z: undo";
  if (state.review.editing) startCorrect();
}

function rejectReview() {
  const r = $("reject-reason");
  if (!r.value.trim()) { status("却下の理由を入力してください / give a reason", "err"); r.focus(); return; }
  submit({ verdict: "reject", reason: r.value.trim() });
}

function startCorrect() {
  state.review.editing = true;
  for (const ed of Object.values(state.review.editors)) ed.hidden = false;
  $("save-correction").hidden = false;
  const first = Object.values(state.review.editors)[0];
  if (first) first.focus();
}

function saveCorrect() {
  const corrected = {};
  for (const [k, ed] of Object.entries(state.review.editors)) if (ed.value !== ed.dataset.original) corrected[k] = ed.value;
  if (!Object.keys(corrected).length) { status("変更がありません / nothing changed: use accept", "err"); return; }
  submit({ verdict: "correct", corrected });
}

// ---- reward: score one response (live PPO rollouts)
function renderReward(it, previous) {
  const c = el("div", "card");
  c.appendChild(el("h2", "", "回答 / response"));
  c.appendChild(renderText(it.response));
  $("item").replaceChildren(c);
  const a = $("actions");
  a.replaceChildren();
  if (state.me.reward_scale === "thumbs") {
    a.appendChild(button("👍 良い / good", "+", () => submit({ thumb: "up" }), "primary"));
    a.appendChild(button("👎 悪い / bad", "-", () => submit({ thumb: "down" }), "primary"));
    $("keys").textContent = "+: 良い good · -: 悪い bad · s: skip · z: undo";
  } else {
    for (let s = 1; s <= 5; s++) a.appendChild(button(String(s), String(s), () => submit({ score: s }), "primary"));
    $("keys").textContent = "1-5: 採点 score (1 = 悪い bad, 5 = とても良い very good) · s: skip · z: undo";
  }
  commonButtons(a);
}

// ------------------------------------------------------------------ keys

document.addEventListener("keydown", (e) => {
  const tag = (e.target && e.target.tagName) || "";
  const typing = tag === "INPUT" || tag === "TEXTAREA";
  const mode = state.me && state.me.mode;
  if (typing) {
    if (mode === "review" && e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); saveCorrect(); }
    if (e.key === "Escape") e.target.blur();
    return;
  }
  if (e.altKey || (e.ctrlKey && e.key !== "z") || e.metaKey) return;
  if (e.key === "z" || (e.ctrlKey && e.key === "z")) { e.preventDefault(); return undo(); }
  if (!state.item || $("work").hidden) return;
  if (e.key === "s") { e.preventDefault(); return skip(); }
  if (mode === "rank") {
    const n = $("ranklist").children.length;
    if (/^[1-9]$/.test(e.key) && Number(e.key) <= n) { state.rankSel = Number(e.key) - 1; paintRank(); }
    else if (e.key === "ArrowUp" || e.key === "k") { e.preventDefault(); moveRank(-1); }
    else if (e.key === "ArrowDown" || e.key === "j") { e.preventDefault(); moveRank(1); }
    else if (e.key === "x") toggleAllBad();
    else if (e.key === "Enter") { e.preventDefault(); submitRank(); }
  } else if (mode === "ab") {
    const m = { a: "left", ArrowLeft: "left", b: "right", ArrowRight: "right", t: "tie", c: "cant_tell" }[e.key];
    if (m) { e.preventDefault(); submit({ label: m }); }
  } else if (mode === "review") {
    if (e.key === "y") submit({ verdict: "accept" });
    else if (e.key === "r") { e.preventDefault(); const r = $("reject-reason"); if (r.value.trim()) rejectReview(); else r.focus(); }
    else if (e.key === "e") { e.preventDefault(); startCorrect(); }
  } else if (mode === "reward") {
    if (state.me.reward_scale === "thumbs") {
      if (e.key === "+") submit({ thumb: "up" }); else if (e.key === "-") submit({ thumb: "down" });
    } else if (/^[1-5]$/.test(e.key)) submit({ score: Number(e.key) });
  }
});

// ------------------------------------------------------------------ admin

function fmt(x, digits) {
  if (x === null || x === undefined || (typeof x === "number" && !isFinite(x))) return "n/a";
  return typeof x === "number" ? x.toFixed(digits === undefined ? 3 : digits) : String(x);
}

function table(headers, rows) {
  const t = el("table");
  const h = el("tr");
  for (const x of headers) h.appendChild(el("th", "", x));
  t.appendChild(h);
  for (const r of rows) {
    const tr = el("tr");
    for (const x of r) tr.appendChild(el("td", "", x));
    t.appendChild(tr);
  }
  return t;
}

async function showAdmin() {
  show("admin");
  const body = $("admin-body");
  try {
    const s = await api("/api/stats");
    body.replaceChildren();
    const p = s.progress;
    body.appendChild(el("p", "", `${s.mode}: ${p.items} items, overlap ${p.overlap}, ${p.labels} / ${p.target_labels} labels, ` +
      `${p.complete} complete`));
    body.appendChild(table(["annotator", "labels"], s.annotators.map((a) => [a, String(p.by_annotator[a] || 0)])));
    for (const [mode, rep] of Object.entries(s.agreement.modes || s.agreement)) {
      if (!rep || typeof rep !== "object" || !("pairs" in rep)) continue;
      body.appendChild(el("h2", "", `agreement (${mode})`));
      if (rep.note) body.appendChild(el("p", "hint", rep.note));
      body.appendChild(table(["annotators", "n", "raw agreement", "Cohen's kappa"],
        rep.pairs.map((x) => [x.annotators.join(" / "), String(x.n), fmt(x.agreement !== undefined ? x.agreement : x.raw_agreement), fmt(x.cohen_kappa)])));
      if (rep.fleiss) body.appendChild(el("p", "", `Fleiss' kappa: ${fmt(rep.fleiss.kappa)} (${rep.fleiss.n_items !== undefined ? rep.fleiss.n_items : rep.fleiss.n} items)`));
      if (rep.krippendorff) body.appendChild(el("p", "", `Krippendorff's alpha (${rep.krippendorff.level}): ${fmt(rep.krippendorff.alpha)} (${rep.krippendorff.n_units} units)`));
      const items = (rep.items || []).slice(0, 20);
      if (items.length) {
        body.appendChild(el("h2", "", "most disagreed items"));
        body.appendChild(table(["item", "annotators", "disagreement", "labels"],
          items.map((x) => [x.item_id, String(x.n), fmt(x.disagreement, 2), JSON.stringify(x.labels)])));
      }
    }
  } catch (e) { status(e.message, "err"); }
}

start();
