// Progressive enhancement for the server-rendered pages: drag-and-drop and pick-to-search,
// infinite scroll, and "/" to jump to the search box. Everything works without it.
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
  li.append(link);
  return li;
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
  const defaults = { sort: "score" };
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

document.addEventListener("DOMContentLoaded", () => {
  setUpUpload();
  setUpInfiniteScroll();
  setUpCleanUrls();
  setUpKeys();
});
