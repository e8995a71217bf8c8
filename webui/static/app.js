// Progressive enhancement for the server-rendered pages: drag-and-drop and pick-to-search,
// infinite scroll, "/" to jump to the search box, and live progress of a background job
// on the Models page. Everything works without it.
// Loaded as a static file: the Content-Security-Policy forbids inline script.
"use strict";

function setUpUpload() {
  const form = document.getElementById("upload");
  const input = document.getElementById("image");
  const zone = document.getElementById("dropzone");
  if (!form || !input || !zone) return;
  document.body.classList.add("js");
  const submit = () => {
    zone.classList.add("busy");
    zone.querySelector("span").textContent = "Searching…";
    form.submit();
  };
  input.addEventListener("change", () => {
    if (input.files.length) submit();
  });
  // Dropping anywhere on the page searches by that image; the zone lights up meanwhile.
  document.addEventListener("dragover", (event) => {
    if (!event.dataTransfer || !Array.from(event.dataTransfer.types).includes("Files")) return;
    event.preventDefault();
    zone.classList.add("over");
  });
  document.addEventListener("dragleave", (event) => {
    if (event.relatedTarget === null) zone.classList.remove("over");
  });
  document.addEventListener("drop", (event) => {
    if (!event.dataTransfer || !event.dataTransfer.files.length) return;
    event.preventDefault();
    zone.classList.remove("over");
    const files = new DataTransfer();
    files.items.add(event.dataTransfer.files[0]);
    input.files = files.files;
    submit();
  });
}

// Seconds as m:ss (h:mm:ss past an hour), as the page's `clock` filter writes them.
function clock(seconds) {
  const s = Math.floor(seconds);
  const two = (n) => String(n).padStart(2, "0");
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h ? `${h}:${two(m)}:${two(s % 60)}` : `${m}:${two(s % 60)}`;
}

function basename(path) {
  return path.split(/[\\/]/).pop();
}

// Built with DOM calls and textContent, never parsed as HTML: file names are untrusted.
function card(hit) {
  const li = document.createElement("li");
  const link = document.createElement("a");
  link.className = "card";
  link.href = hit.page_url;
  link.title = hit.path;
  const img = document.createElement("img");
  img.className = "thumb";
  img.src = hit.thumb_url;
  img.alt = basename(hit.path);
  img.loading = "lazy";
  img.decoding = "async";
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = basename(hit.path);
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = hit.score.toFixed(3);
  link.append(img, name, score);
  Object.entries(hit.highlights || {}).forEach(([field, html]) => {
    link.append(highlight(field, html));
  });
  if ((hit.tags || []).length) {
    const tags = document.createElement("span");
    tags.className = "tags";
    hit.tags.forEach((t) => {
      const chip = document.createElement("span");
      chip.className = "tag";
      chip.textContent = t;
      tags.append(chip);
    });
    link.append(tags);
  }
  if (hit.kind === "video") {
    const at = document.createElement("span");
    at.className = "video";
    at.title = "a video: shown at its best frame";
    at.textContent = `▶ ${clock(hit.t || 0)}`;
    link.append(at);
  }
  const copies = (hit.duplicates || []).length;
  if (copies) {
    const badge = document.createElement("span");
    badge.className = "copies";
    badge.title = "copies and edits of this photo, folded into it";
    badge.textContent = `+${copies} ${copies === 1 ? "copy" : "copies"}`;
    link.append(badge);
  }
  if (!hit.relevant) li.className = "below-cutoff";
  li.append(link);
  // "Teach a tag" is on: the page's own form, pointed at this image.
  const template = document.getElementById("teach-template");
  if (template) {
    const form = template.content.firstElementChild.cloneNode(true);
    // The attribute, not the property: a node cloned from a <template> has no base URL yet.
    const action = form.getAttribute("action").replace(/\/images\/0\/tags$/, `/images/${hit.id}/tags`);
    form.setAttribute("action", action);
    li.append(form);
  }
  return li;
}

// Why a hit matched: the server's escaped text with <mark>s; only text and <mark> are
// copied out of the parse (DOMParser runs no scripts), anything else becomes its text.
function highlight(field, html) {
  const span = document.createElement("span");
  span.className = "why";
  span.dataset.field = field;
  span.append(field + ": ");
  const parsed = new DOMParser().parseFromString(html, "text/html");
  parsed.body.childNodes.forEach((node) => {
    if (node.nodeName === "MARK") {
      const mark = document.createElement("mark");
      mark.textContent = node.textContent;
      span.append(mark);
    } else {
      span.append(node.textContent);
    }
  });
  return span;
}

function setUpInfiniteScroll() {
  const pager = document.getElementById("pager");
  const grid = document.getElementById("results");
  if (!pager || !grid || !pager.dataset.more || !("IntersectionObserver" in window)) return;
  let next = pager.dataset.more;
  let loading = false;
  const observer = new IntersectionObserver(async (entries) => {
    if (!entries.some((e) => e.isIntersecting) || loading || !next) return;
    loading = true;
    try {
      const response = await fetch(next, { headers: { Accept: "application/json" } });
      const body = await response.json();
      if (!response.ok) throw new Error(body.error || response.statusText);
      body.results.forEach((hit) => grid.append(card(hit)));
      const url = new URL(next, location.href);
      const k = Number(url.searchParams.get("k"));
      if (body.results.length < k) {
        next = null;
        observer.disconnect();
        pager.textContent = "That is everything that matched.";
      } else {
        url.searchParams.set("offset", String(Number(url.searchParams.get("offset")) + k));
        next = url.pathname + url.search;
        // The observer only reports changes: if the pager is still in reach after this
        // page (a tall screen), observing afresh reports it again and loads the next one.
        observer.unobserve(pager);
        observer.observe(pager);
      }
    } catch (error) {
      next = null;
      observer.disconnect();
      pager.textContent = "Could not load more results: " + error.message;
    } finally {
      loading = false;
    }
  }, { rootMargin: "600px" });
  pager.classList.add("auto");
  observer.observe(pager);
}

// Leave empty filters and the default sort out of the URL, so a bookmark reads ?q=beach.
function setUpCleanUrls() {
  const form = document.querySelector("form.search");
  if (!form) return;
  const defaults = { sort: "score", mode: "hybrid" };
  form.addEventListener("submit", () => {
    for (const field of form.elements) {
      if (field.name && (field.value === "" || field.value === defaults[field.name])) {
        field.disabled = true;
      }
    }
  });
  // Coming back through the history cache, the fields must be usable again.
  window.addEventListener("pageshow", () => {
    for (const field of form.elements) field.disabled = false;
  });
}

function setUpKeys() {
  const box = document.getElementById("q");
  document.addEventListener("keydown", (event) => {
    const typing = event.target.closest("input, textarea, select");
    if (event.key === "/" && !typing && box) {
      event.preventDefault();
      box.focus();
      box.select();
    } else if (event.key === "Escape" && event.target === box) {
      box.blur();
    }
  });
}

// As the Models page's template words it (models.html, job_text).
function jobText(job) {
  if (job.state === "done") return "Done: " + job.message;
  if (job.state === "failed") {
    return "Failed: " + job.message + (job.exit_code ? ` (exit code ${job.exit_code})` : "");
  }
  let text = `Step ${job.stage_number} of ${job.stages}: ${job.stage}`;
  if (job.desc) text += " — " + job.desc;
  if (job.total) text += ` ${job.done} / ${job.total} ${job.unit}`;
  else if (job.done) text += ` ${job.done} ${job.unit}`;
  if (job.rate) text += `, ${job.rate.toFixed(1)} ${job.unit}/s`;
  for (const [key, value] of Object.entries(job.postfix || {})) text += ` · ${key} ${value}`;
  return text;
}

const JOB_POLL_MS = 700;

// While a background job runs, show its progress; once it ends, reload the page so the
// model cards (active, serving, a newly trained model) show what it changed.
function setUpJobPanel() {
  const panel = document.getElementById("job");
  if (!panel || panel.dataset.state !== "running") return;
  const bar = document.getElementById("job-bar");
  const text = document.getElementById("job-text");
  const poll = async () => {
    let job;
    try {
      const response = await fetch(panel.dataset.url, { headers: { Accept: "application/json" } });
      job = await response.json();
      if (!response.ok) throw new Error(job.error || response.statusText);
    } catch (error) {
      text.textContent = "Could not read the job's progress (" + error.message + "); retrying…";
      setTimeout(poll, 5 * JOB_POLL_MS);
      return;
    }
    if (job.state !== "running") {
      location.reload();
      return;
    }
    if (job.total) {
      bar.max = job.total;
      bar.value = job.done;
    } else {
      bar.removeAttribute("value"); // an indeterminate bar: still loading, or no count
    }
    panel.dataset.stage = job.stage;
    text.textContent = jobText(job);
    setTimeout(poll, JOB_POLL_MS);
  };
  setTimeout(poll, JOB_POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  setUpUpload();
  setUpInfiniteScroll();
  setUpCleanUrls();
  setUpKeys();
  setUpJobPanel();
});
