// Foley's search page: no build step, no libraries. The URL holds the search and its
// filters, so a search can be reloaded and shared.
"use strict";

const PAGE = 20;
const MAX_K = 200;
const KEY = "foley.apiKey";
const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

const state = { q: "", mode: "hybrid", min: "", max: "", source: "", tags: [], like: "", view: "waveform", k: PAGE };
let example = null; // a File to search by; not kept in the URL
let playing = null; // the <audio> element playing now
let searchSeq = 0;
window.foleyTimings = []; // per search: ms from the API's answer to its rows on screen

// ---- helpers ----------------------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  node.append(...children);
  return node;
}

function mmss(seconds) {
  const s = Math.max(0, Math.round(seconds || 0));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function apiKey() {
  return localStorage.getItem(KEY) || "";
}

function headers() {
  const key = apiKey();
  return key ? { "X-API-Key": key } : {};
}

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return {};
  }
}

// Every error from the API said in words, with what to do about it.
function explain(response, body) {
  const detail = (body && body.detail) || response.statusText || "no details";
  switch (response.status) {
    case 401: return "This needs an API key: enter it under “Add sounds”.";
    case 403: return "The API key was refused: check it under “Add sounds”.";
    case 404: return `Not found: ${detail}`;
    case 409: return `Too late: ${detail}`;
    case 413: return `Too large: ${detail}`;
    case 422: return `Foley could not use that: ${detail}`;
    case 503: return `Foley is not ready: ${detail}`;
    default: return `Foley answered ${response.status}: ${detail}`;
  }
}

function say(text) {
  $("#status").textContent = text;
}

function showError(text) {
  $("#error").textContent = text;
}

// ---- the URL ----------------------------------------------------------------------------

function readUrl() {
  const p = new URLSearchParams(location.search);
  Object.assign(state, {
    q: p.get("q") || "",
    mode: ["audio", "words"].includes(p.get("mode")) ? p.get("mode") : "hybrid",
    min: p.get("min") || "",
    max: p.get("max") || "",
    source: p.get("source") || "",
    tags: p.getAll("tag"),
    like: p.get("like") || "",
    view: p.get("view") === "spectrogram" ? "spectrogram" : "waveform",
    k: PAGE,
  });
}

function writeUrl() {
  const p = new URLSearchParams();
  if (state.q) p.set("q", state.q);
  if (state.mode !== "hybrid") p.set("mode", state.mode);
  for (const name of ["min", "max", "source", "like"]) if (state[name]) p.set(name, state[name]);
  for (const tag of state.tags) p.append("tag", tag);
  if (state.view !== "waveform") p.set("view", state.view);
  const url = p.toString() ? `?${p}` : location.pathname;
  if (url !== location.search) history.pushState(null, "", url);
}

function filterParams(target) {
  if (state.min) target.append("min_duration", state.min);
  if (state.max) target.append("max_duration", state.max);
  if (state.source) target.append("source", state.source);
  for (const tag of state.tags) target.append("tag", tag);
  return target;
}

// ---- filters as chips -------------------------------------------------------------------

function chip(label, remove) {
  const button = el("button", { type: "button", className: "chip", textContent: label });
  button.setAttribute("aria-label", `Remove filter ${label}`);
  button.addEventListener("click", () => {
    remove();
    go();
  });
  return button;
}

function renderChips() {
  const chips = [];
  if (state.min) chips.push(chip(`≥ ${state.min} s`, () => (state.min = "")));
  if (state.max) chips.push(chip(`≤ ${state.max} s`, () => (state.max = "")));
  if (state.source) chips.push(chip(`source: ${state.source}`, () => (state.source = "")));
  for (const tag of state.tags) chips.push(chip(`tag: ${tag}`, () => (state.tags = state.tags.filter((t) => t !== tag))));
  if (state.like) chips.push(chip(`like sound ${state.like}`, () => (state.like = "")));
  if (example) chips.push(chip(`like ${example.name}`, () => (example = null)));
  $("#chips").replaceChildren(...chips);
}

function fillForm() {
  $("#q").value = state.q;
  $("#mode").value = state.mode;
  $("#min").value = state.min;
  $("#max").value = state.max;
  $("#source").value = state.source;
  for (const button of $$("#view button")) button.setAttribute("aria-pressed", String(button.dataset.view === state.view));
  renderChips();
}

function readFilters() {
  state.min = $("#min").value.trim();
  state.max = $("#max").value.trim();
  state.source = $("#source").value;
  const tag = $("#tag").value.trim().toLowerCase();
  if (tag && !state.tags.includes(tag)) state.tags.push(tag);
  $("#tag").value = "";
}

function filtersActive() {
  return Boolean(state.min || state.max || state.source || state.tags.length);
}

// ---- search -----------------------------------------------------------------------------

function go() {
  state.k = PAGE;
  writeUrl();
  fillForm();
  search(false);
}

function request() {
  if (example || state.like) {
    const form = filterParams(new FormData());
    if (example) form.append("file", example);
    else form.append("sound_id", state.like);
    form.append("k", String(state.k));
    return fetch("/api/search/audio", { method: "POST", body: form, headers: headers() });
  }
  const params = filterParams(new URLSearchParams({ q: state.q, mode: state.mode, k: String(state.k) }));
  return fetch(`/api/search?${params}`, { headers: headers() });
}

async function search(append) {
  showError("");
  if (!state.q && !state.like && !example) {
    $("#results").replaceChildren();
    $("#more").hidden = true;
    say("Describe a sound to search, or give an example clip.");
    return;
  }
  const seq = ++searchSeq;
  say(append ? "Loading more…" : "Searching…");
  let response;
  try {
    response = await request();
  } catch (error) {
    say("");
    showError(`Foley cannot be reached: ${error.message}`);
    return;
  }
  const body = await readJson(response);
  if (seq !== searchSeq) return; // a newer search has started
  const answered = performance.now();
  if (!response.ok) {
    say("");
    showError(explain(response, body));
    return;
  }
  show(body, append);
  requestAnimationFrame(() => setTimeout(() => window.foleyTimings.push(performance.now() - answered)));
}

function show(body, append) {
  const list = $("#results");
  if (!append) {
    stop();
    list.replaceChildren();
  }
  list.append(...body.data.slice(list.children.length).map((hit) => row(hit)));
  $("#more").hidden = body.count < state.k || state.k >= MAX_K;
  const what = example ? `like ${example.name}` : state.like ? `like sound ${state.like}` : `for “${state.q}”`;
  if (body.count === 0) {
    const hint = filtersActive() ? " Remove a filter above to widen the search." : " Try other words, or fewer of them.";
    say(`No sounds found ${what}.${hint}`);
  } else {
    say(`${body.count} sound${body.count === 1 ? "" : "s"} ${what}.`);
  }
  showMissing(body);
}

// ---- a result row -----------------------------------------------------------------------

function pictureUrl(id, kind, size) {
  return `/api/sounds/${id}/${kind}.png${size === "detail" ? "?size=detail" : ""}`;
}

function setPicture(img, hit, kind, size) {
  img.src = pictureUrl(hit.id, kind, size);
  img.alt = `${kind} of ${hit.title}`;
  img.onerror = () => (img.alt = `No ${kind} for ${hit.title}: the audio could not be read.`);
}

function row(hit, generated = false) {
  const li = $("#hit").content.firstElementChild.cloneNode(true);
  li.dataset.id = hit.id;
  li.hit = hit;
  li.setAttribute("aria-label", `${hit.title}, ${mmss(hit.duration)}`);
  setPicture($(".picture img", li), hit, state.view, "list");
  $(".title", li).textContent = hit.title;
  if (generated || hit.source === "generated") $(".title", li).append(el("span", { className: "badge", textContent: "generated" }));
  $(".caption", li).textContent = hit.caption || "";
  $(".tags", li).append(...(hit.tags || []).map((tag) => tagChip(tag)));
  $(".duration", li).textContent = mmss(hit.duration);
  $(".source", li).textContent = hit.source;
  $(".score", li).textContent = typeof hit.score === "number" ? `score ${hit.score.toFixed(3)}` : "new";
  const download = $(".download", li);
  download.href = hit.audio_url;
  download.download = hit.title;
  download.setAttribute("aria-label", `Download ${hit.title}`);
  $(".play", li).setAttribute("aria-label", `Play ${hit.title}`);
  $(".play", li).addEventListener("click", () => toggle(li));
  $(".similar", li).setAttribute("aria-label", `Find sounds similar to ${hit.title}`);
  $(".similar", li).addEventListener("click", () => findSimilar(hit.id));
  $(".details", li).addEventListener("click", () => toggleDetail(li));
  $(".picture", li).addEventListener("click", (event) => seek(li, event));
  wireAudio(li);
  return li;
}

function tagChip(tag) {
  const button = el("button", { type: "button", className: "chip", textContent: tag });
  button.setAttribute("aria-label", `Only sounds tagged ${tag}`);
  button.addEventListener("click", () => {
    if (!state.tags.includes(tag)) state.tags.push(tag);
    go();
  });
  return el("li", {}, button);
}

function findSimilar(id) {
  example = null;
  state.like = String(id);
  state.q = "";
  go();
}

// ---- playing ----------------------------------------------------------------------------

function audioOf(li) {
  const audio = $("audio", li);
  if (!audio.src) audio.src = li.hit.audio_url; // nothing loads until the first play
  return audio;
}

function wireAudio(li) {
  const audio = $("audio", li);
  audio.addEventListener("play", () => {
    if (playing && playing !== audio) playing.pause();
    playing = audio;
    li.classList.add("playing");
    li.classList.remove("paused");
    $(".play", li).textContent = "❚❚";
    $(".play", li).setAttribute("aria-label", `Pause ${li.hit.title}`);
  });
  const paused = () => {
    li.classList.remove("playing");
    li.classList.toggle("paused", audio.currentTime > 0 && !audio.ended);
    $(".play", li).textContent = "▶";
    $(".play", li).setAttribute("aria-label", `Play ${li.hit.title}`);
  };
  audio.addEventListener("pause", paused);
  audio.addEventListener("ended", paused);
  audio.addEventListener("timeupdate", () => moveLine(li, audio));
  audio.addEventListener("error", () => showError(`“${li.hit.title}” cannot be played: the server could not send its audio.`));
}

function moveLine(li, audio) {
  const duration = audio.duration || li.hit.duration || 1;
  const share = `${Math.min(100, (100 * audio.currentTime) / duration)}%`;
  for (const line of $$(".progress", li)) line.style.left = share;
}

function toggle(li) {
  const audio = audioOf(li);
  // AbortError: another sound started before this one could; nothing went wrong.
  const failed = (error) => error.name !== "AbortError" && showError(`Cannot play “${li.hit.title}”: ${error.message}`);
  if (audio.paused) audio.play().catch(failed);
  else audio.pause();
}

function seek(li, event) {
  const box = event.currentTarget.getBoundingClientRect();
  const share = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
  const audio = audioOf(li);
  const jump = () => (audio.currentTime = share * (audio.duration || li.hit.duration));
  if (audio.readyState >= 1) jump();
  else audio.addEventListener("loadedmetadata", jump, { once: true });
  if (audio.paused) toggle(li);
}

function stop() {
  if (!playing) return;
  playing.pause();
  playing.currentTime = 0;
  playing.closest(".hit")?.classList.remove("paused");
  playing = null;
}

// ---- detail -----------------------------------------------------------------------------

async function toggleDetail(li) {
  const detail = $(".detail", li);
  const button = $(".details", li);
  const open = detail.hidden;
  detail.hidden = !open;
  button.setAttribute("aria-expanded", String(open));
  if (!open || detail.childElementCount) return;
  for (const kind of ["waveform", "spectrogram"]) {
    const img = el("img", { width: 780, height: 301 });
    setPicture(img, li.hit, kind, "detail");
    const picture = el("div", { className: "picture" }, img, el("div", { className: "progress" }));
    picture.addEventListener("click", (event) => seek(li, event));
    detail.append(picture);
  }
  const response = await fetch(`/api/sounds/${li.hit.id}`, { headers: headers() });
  const sound = await readJson(response);
  if (!response.ok) return detail.append(el("p", { textContent: explain(response, sound) }));
  const facts = [
    ["format", `${sound.format}, ${sound.sample_rate} Hz, ${sound.channels} channel${sound.channels === 1 ? "" : "s"}`],
    ["size", `${(sound.size / 1024).toFixed(1)} KB`],
    ["duration", `${sound.duration.toFixed(2)} s`],
    ["words by", `title: ${sound.title_by || "–"}, caption: ${sound.caption_by || "–"}, tags: ${sound.tags_by || "–"}`],
    ["files", sound.locations.join("\n") || "–"],
  ];
  detail.append(el("dl", {}, ...facts.flatMap(([term, text]) => [el("dt", { textContent: term }), el("dd", { textContent: text })])));
}

// ---- generate if missing ----------------------------------------------------------------
// A search the library cannot answer well comes back with `missing: true` and a generation
// job (`job`), or where to start one (`generate_url`).

function showMissing(body) {
  const box = $("#missing");
  box.hidden = !body.missing;
  if (!body.missing) return box.replaceChildren();
  const start = el("button", { type: "button", className: "generate", textContent: "Generate it" });
  box.replaceChildren(el("p", { textContent: `Nothing in the library is close enough to “${state.q}”. Foley can generate one from its nearest sounds (listed below).` }), start);
  start.addEventListener("click", async () => {
    start.disabled = true;
    let job = body.job;
    if (!job && body.generate_url) {
      const response = await fetch(body.generate_url, { method: "POST", headers: headers() });
      job = await readJson(response);
      if (!response.ok) return box.append(el("p", { className: "why", textContent: explain(response, job) }));
    }
    const item = jobItem(`generating “${state.q}”`);
    box.append(item);
    follow(item, job, true);
  });
}

// ---- uploads and jobs -------------------------------------------------------------------

function jobItem(name) {
  const item = el("li", { className: "upload" });
  const cancel = el("button", { type: "button", className: "cancel", textContent: "Cancel", hidden: true });
  cancel.setAttribute("aria-label", `Cancel ${name}`);
  cancel.addEventListener("click", () => cancelJob(item));
  item.append(
    el("div", { className: "line" }, el("span", { className: "name", textContent: name }), el("span", { className: "state", textContent: "sending…" }), el("progress", { max: 1, value: 0 }), cancel),
    el("p", { className: "why", hidden: true }),
  );
  return item;
}

function setJobState(item, text, progress) {
  $(".state", item).textContent = text;
  if (progress !== undefined) $("progress", item).value = progress;
}

function fail(item, reason) {
  setJobState(item, "failed");
  $(".cancel", item).hidden = true;
  Object.assign($(".why", item), { hidden: false, textContent: reason });
}

async function uploadFile(file) {
  const item = jobItem(file.name);
  $("#uploads").prepend(item);
  const form = new FormData();
  form.append("files", file);
  let response;
  try {
    response = await fetch("/api/uploads", { method: "POST", body: form, headers: headers() });
  } catch (error) {
    return fail(item, `Foley cannot be reached: ${error.message}`);
  }
  const body = await readJson(response);
  if (!response.ok) {
    if (response.status === 401 || response.status === 403) $("#key").focus();
    return fail(item, explain(response, body));
  }
  follow(item, body.data[0], false);
}

function follow(item, job, generated) {
  item.job = job;
  item.generated = generated;
  $(".cancel", item).hidden = false;
  update(item, job);
  if (!finished(job)) poll(item, 250);
}

function finished(job) {
  return job.status === "failed" || job.status === "cancelled" || (job.status === "succeeded" && job.searchable !== false);
}

function poll(item, delay) {
  item.timer = setTimeout(async () => {
    let response;
    try {
      response = await fetch(item.job.url, { headers: headers() });
    } catch {
      return poll(item, Math.min(delay * 2, 8000)); // the server may be restarting
    }
    const job = await readJson(response);
    if (!response.ok) return fail(item, explain(response, job));
    update(item, job);
    if (!finished(job)) poll(item, Math.min(delay * 1.6, 4000));
  }, delay);
}

function update(item, job) {
  item.job = { ...item.job, ...job };
  item.dataset.status = job.status;
  const running = job.status === "queued" || job.status === "running";
  $(".cancel", item).hidden = !running;
  if (job.status === "failed") return fail(item, job.error || "the job failed without a reason");
  if (job.status === "cancelled") return setJobState(item, "cancelled");
  if (running) return setJobState(item, `${job.status}${job.message ? `: ${job.message}` : ""} ${Math.round(job.progress * 100)}%`, job.progress);
  if (job.searchable === false) return setJobState(item, "done, being indexed…", 1);
  setJobState(item, job.result && job.result.duplicate ? "done: already in the library" : "done", 1);
  if (job.result && job.result.sound_id) showNewSound(item, job.result.sound_id);
}

async function showNewSound(item, id) {
  const response = await fetch(`/api/sounds/${id}`, { headers: headers() });
  const sound = await readJson(response);
  if (!response.ok) return fail(item, explain(response, sound));
  item.append(el("ol", {}, row(sound, item.generated)));
}

async function cancelJob(item) {
  clearTimeout(item.timer);
  const response = await fetch(item.job.url, { method: "DELETE", headers: headers() });
  const job = await readJson(response);
  if (response.ok) return update(item, job);
  Object.assign($(".why", item), { hidden: false, textContent: explain(response, job) });
  poll(item, 250);
}

// ---- wiring -----------------------------------------------------------------------------

function dropZone(zone, onFiles) {
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    if (event.dataTransfer.files.length) onFiles([...event.dataTransfer.files]);
  });
}

function searchByExample(file) {
  example = file;
  state.like = "";
  go();
}

function onKey(event) {
  if (event.key === "Escape") return stop();
  const li = event.target.closest && event.target.closest(".hit");
  if (!li) return;
  if (event.key === " " && event.target === li) {
    event.preventDefault();
    toggle(li);
  } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
    const rows = $$(".hit", li.parentElement);
    const next = rows[rows.indexOf(li) + (event.key === "ArrowDown" ? 1 : -1)];
    event.preventDefault();
    if (next) next.focus();
  }
}

function wire() {
  $("#text").addEventListener("submit", (event) => {
    event.preventDefault();
    example = null;
    state.like = "";
    state.q = $("#q").value.trim();
    state.mode = $("#mode").value;
    readFilters();
    go();
  });
  $("#apply").addEventListener("click", () => {
    readFilters();
    go();
  });
  for (const input of ["#min", "#max", "#tag"]) {
    $(input).addEventListener("keydown", (event) => {
      if (event.key !== "Enter") return;
      event.preventDefault();
      readFilters();
      go();
    });
  }
  $("#source").addEventListener("change", () => {
    readFilters();
    go();
  });
  $("#example-file").addEventListener("change", (event) => event.target.files[0] && searchByExample(event.target.files[0]));
  dropZone($("#example"), (files) => searchByExample(files[0]));
  $("#more").addEventListener("click", () => {
    state.k = Math.min(MAX_K, state.k + PAGE);
    search(true);
  });
  for (const button of $$("#view button")) {
    button.addEventListener("click", () => {
      state.view = button.dataset.view;
      writeUrl();
      fillForm();
      for (const li of $$("#results .hit")) setPicture($(".picture img", li), li.hit, state.view, "list");
    });
  }
  $("#key").value = apiKey();
  $("#key").addEventListener("input", () => localStorage.setItem(KEY, $("#key").value.trim()));
  $("#forget").addEventListener("click", () => {
    localStorage.removeItem(KEY);
    $("#key").value = "";
  });
  $("#files").addEventListener("change", (event) => {
    [...event.target.files].forEach(uploadFile);
    event.target.value = "";
  });
  dropZone($("#drop"), (files) => files.forEach(uploadFile));
  document.addEventListener("keydown", onKey);
  window.addEventListener("popstate", () => {
    example = null; // a chosen clip is not in the URL, so going back leaves it
    readUrl();
    fillForm();
    search(false);
  });
}

wire();
readUrl();
fillForm();
search(false);
