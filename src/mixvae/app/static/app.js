// mixvae serve: the interactive parts of the pages (no dependency but plotly on the map page).
"use strict";
const mixvae = (() => {
  const $ = (sel) => document.querySelector(sel);
  const SVG_POINTS = 20000;

  async function curate(decision) {
    const r = await fetch("/api/curate", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify(decision)});
    const answer = await r.json().catch(() => ({error: `the app answered ${r.status}`}));
    if (!r.ok) { ($("#curate-message") || $("#picked-count")).textContent = answer.error; return null; }
    return answer;
  }

  function expertPage() {
    const samples = $("#samples"), k = samples.dataset.expert;
    const save = $("#save-name"), merge = $("#merge");
    if (save) {
      save.addEventListener("click", async () => {
        if (await curate({action: "name", expert: Number(k), name: $("#cluster-name").value})) location.reload();
      });
    }
    $("#reset-curation").addEventListener("click", async () => {
      if (await curate({action: "reset"})) location.reload();
    });
    if (merge) {
      merge.addEventListener("click", async () => {
        const into = Number($("#merge-into").value);
        if (await curate({action: "merge", expert: Number(k), into})) location.assign(`/expert/${into}`);
      });
    }
    const temp = $("#temperature"), tempOut = $("#temperature-value");
    let batch = 0;
    const resample = () => {
      batch += 1;
      const t = Number(temp.value);
      tempOut.textContent = t.toFixed(2);
      [...samples.querySelectorAll("img")].forEach((img, i) => {
        img.src = `/sample/${k}/${batch * 1000 + i}.png?t=${t}`;
      });
    };
    temp.addEventListener("change", resample);
    temp.addEventListener("input", () => { tempOut.textContent = Number(temp.value).toFixed(2); });
    $("#resample").addEventListener("click", resample);
    const decoded = $("#decoded"), sliders = [...document.querySelectorAll("#sliders input.z")];
    let pending = null;
    const redraw = () => {
      if (pending) return;  // one request in flight at a time; the last position wins
      pending = setTimeout(() => {
        pending = null;
        decoded.src = `/decode/${k}.png?z=${sliders.map((s) => s.value).join(",")}`;
      }, 30);
    };
    sliders.forEach((s) => s.addEventListener("input", redraw));
    $("#zero").addEventListener("click", () => { sliders.forEach((s) => { s.value = 0; }); redraw(); });
  }

  function clearRouting() {
    const chart = $("#chart");
    chart.innerHTML = "";
    delete chart.dataset.probabilities;
    $("#score").textContent = "–";
    $("#recons").innerHTML = "";
    $("#seen-box").hidden = true;
    $("#seen")?.remove();
  }

  function showRouting(answer) {
    const box = $("#seen-box");
    const seen = $("#seen") || box.appendChild(Object.assign(document.createElement("img"),
      {id: "seen", alt: "the image as the model takes it"}));
    seen.src = answer.image;  // the image as the model takes it
    box.hidden = false;
    const chart = $("#chart");
    chart.innerHTML = "";
    chart.dataset.probabilities = JSON.stringify(answer.probabilities);
    answer.probabilities.forEach((p, k) => {
      const row = document.createElement("div");
      row.className = "bar" + (k === answer.expert ? " top" : "");
      const name = answer.matched[k] !== null ? `expert ${k} (${answer.matched[k]})` : `expert ${k}`;
      row.innerHTML = `<span class="name"></span><span class="fill"></span><span class="p"></span>`;
      row.querySelector(".name").textContent = name;
      row.querySelector(".fill").style.width = `${(100 * p).toFixed(1)}%`;
      row.querySelector(".p").textContent = p.toFixed(3);
      chart.appendChild(row);
    });
    $("#score").textContent = answer.outlier_score.toFixed(1);
    const recons = $("#recons");
    recons.innerHTML = "";
    answer.reconstructions.forEach((uri, k) => {
      const fig = document.createElement("figure");
      fig.innerHTML = `<img alt="reconstruction by expert ${k}"><figcaption>${k}</figcaption>`;
      fig.querySelector("img").src = uri;
      recons.appendChild(fig);
    });
  }

  async function send(body, headers) {
    const message = $("#message");
    const r = await fetch("/api/route", {method: "POST", body, headers});
    const answer = await r.json().catch(() => ({error: `the app answered ${r.status}`}));
    if (!r.ok) { clearRouting(); message.textContent = answer.error; return; }  // never an old answer beside it
    message.textContent = "";
    showRouting(answer);
  }

  function tryPage() {
    const canvas = $("#canvas"), ctx = canvas.getContext("2d");
    const blank = () => { ctx.fillStyle = "black"; ctx.fillRect(0, 0, canvas.width, canvas.height); };
    const clear = () => { blank(); clearRouting(); $("#message").textContent = ""; $("#file").value = ""; };
    blank();
    ctx.strokeStyle = "white"; ctx.lineWidth = 22; ctx.lineCap = "round"; ctx.lineJoin = "round";
    let last = null;
    const at = (e) => {
      const b = canvas.getBoundingClientRect();
      return [(e.clientX - b.left) * canvas.width / b.width, (e.clientY - b.top) * canvas.height / b.height];
    };
    const route = () => canvas.toBlob((blob) => {
      const form = new FormData();
      form.append("image", blob, "drawing.png");
      send(form);
    }, "image/png");
    canvas.addEventListener("pointerdown", (e) => { last = at(e); canvas.setPointerCapture(e.pointerId); });
    canvas.addEventListener("pointermove", (e) => {
      if (!last) return;
      const p = at(e);
      ctx.beginPath(); ctx.moveTo(...last); ctx.lineTo(...p); ctx.stroke();
      last = p;
    });
    const up = () => { if (last) { last = null; route(); } };
    canvas.addEventListener("pointerup", up);
    canvas.addEventListener("pointercancel", up);
    $("#clear").addEventListener("click", clear);
    $("#file").addEventListener("change", (e) => {
      const file = e.target.files[0];
      if (!file) return;
      const form = new FormData();
      form.append("image", file, file.name);
      const shown = new Image();  // the upload on the canvas, as it is, until the answer shows the model's view
      shown.onload = () => {
        blank();
        const s = Math.min(canvas.width / shown.width, canvas.height / shown.height);
        ctx.drawImage(shown, (canvas.width - shown.width * s) / 2, (canvas.height - shown.height * s) / 2,
          shown.width * s, shown.height * s);
        URL.revokeObjectURL(shown.src);
      };
      shown.onerror = () => URL.revokeObjectURL(shown.src);
      shown.src = URL.createObjectURL(file);
      send(form);
    });
  }

  async function mapPage() {
    const r = await fetch("/api/map");
    const m = await r.json().catch(() => ({error: `the app answered ${r.status}`}));
    if (!r.ok) { $("#map-status").textContent = m.error; return; }
    $("#map-status")?.remove();
    const K = Number(document.body.dataset.experts);
    // SVG up to SVG_POINTS images (drawn everywhere); WebGL above, where SVG is slow, when the browser
    // has it (?draw=svg asks for SVG whatever the size)
    const hasWebgl = !!document.createElement("canvas").getContext("webgl");
    const webgl = m.x.length > SVG_POINTS && hasWebgl && new URLSearchParams(location.search).get("draw") !== "svg";
    const type = webgl ? "scattergl" : "scatter";
    const groups = (keyOf, names) => names.map((name, g) => {
      const idx = m.x.flatMap((_, i) => (keyOf(i) === g ? [i] : []));
      return {type, mode: "markers", name, x: idx.map((i) => m.x[i]), y: idx.map((i) => m.y[i]), customdata: idx,
        text: idx.map((i) => m.source[i]), hovertemplate: "%{text}<extra>" + name + "</extra>",
        marker: {size: 4, opacity: 0.7}};
    }).filter((t) => t.x.length);
    const colourings = {
      expert: () => groups((i) => m.expert[i], [...Array(K).keys()].map((k) =>
        (m.matched && m.matched[k] !== null ? `expert ${k} (${m.matched[k]})` : `expert ${k}`))),
      label: () => groups((i) => m.labels.indexOf(m.label[i]), m.labels),
      score: () => [{type, mode: "markers", name: "outlier score", x: m.x, y: m.y, customdata: [...m.x.keys()],
        text: m.source, hovertemplate: "%{text}: %{marker.color:.1f} nats<extra></extra>",
        marker: {size: 4, opacity: 0.8, color: m.score, colorscale: "Viridis", showscale: true,
          colorbar: {title: {text: "outlier score"}}}}],
    };
    const el = $("#map");
    const choice = $("#colour-by");
    if (!m.labels || m.labels.length < 2) choice.querySelector('option[value="label"]').remove();
    const draw = () => Plotly.react(el, colourings[choice.value](), {margin: {l: 20, r: 20, t: 20, b: 20},
      legend: {itemsizing: "constant"}, xaxis: {showticklabels: false, zeroline: false},
      yaxis: {showticklabels: false, zeroline: false}}, {responsive: true, displaylogo: false});
    await draw();
    choice.addEventListener("change", async () => { await draw(); el.dataset.colour = choice.value; });
    el.dataset.colour = choice.value;
    el.dataset.points = String(m.x.length);
    const pick = async (e) => {
      const i = e.points[0].customdata;
      const info = await (await fetch(`/api/image/${i}`)).json();
      const box = $("#picked");
      box.innerHTML = `<img alt="picked image"><p class="src"></p><p class="route"></p><a class="item">open the image</a> · <a class="expert">open the expert</a>`;
      box.querySelector("img").src = `/image/${i}.png`;
      box.querySelector(".src").textContent = info.source;
      box.querySelector(".route").textContent =
        `expert ${info.expert} (p=${info.probability.toFixed(3)}), runner-up ${info.runner_up}; outlier rank ${info.rank}`;
      box.querySelector("a.item").href = `/item/${i}`;
      box.querySelector("a.expert").href = `/expert/${info.expert}`;
    };
    el.on("plotly_hover", pick);
    el.on("plotly_click", pick);
    // a lasso or box selection (the map's toolbar): its images, exported as assign's CSV rows
    const selection = $("#selection");
    el.on("plotly_selected", async (e) => {
      const ids = e && e.points ? e.points.map((p) => p.customdata) : [];
      selection.innerHTML = "";
      selection.dataset.ids = ids.join(",");
      if (!ids.length) return;
      const r = await fetch("/api/export", {method: "POST", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({ids})});
      if (!r.ok) { selection.textContent = (await r.json()).error; return; }
      const link = Object.assign(document.createElement("a"), {href: URL.createObjectURL(await r.blob()),
        download: "mixvae-selection.csv", textContent: `export the ${ids.length} selected images as CSV`});
      const files = Object.assign(document.createElement("button"), {type: "button", id: "selection-zip",
        textContent: "download their images (zip)"});
      files.addEventListener("click", () => downloadZip(ids, selection));
      selection.append(link, " ", files);
    });
  }

  // a selection's images themselves: a zip of the image folder's files (or PNGs of an array's images)
  async function downloadZip(ids, where) {
    const r = await fetch("/api/export", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({ids, format: "zip"})});
    let link = where.querySelector("a.zip");
    if (!link) { link = Object.assign(document.createElement("a"), {className: "zip"}); where.append(" ", link); }
    if (!r.ok) { link.removeAttribute("href"); link.textContent = (await r.json()).error; return; }
    Object.assign(link, {href: URL.createObjectURL(await r.blob()), download: "mixvae-selection.zip",
      textContent: `mixvae-selection.zip (${ids.length} images)`});
    link.click();
  }

  // the left and right arrows follow a page's previous and next links (not while typing or drawing)
  document.addEventListener("keydown", (e) => {
    if (e.altKey || e.ctrlKey || e.metaKey || e.shiftKey || /^(INPUT|SELECT|TEXTAREA)$/.test(e.target.tagName)) return;
    const link = document.querySelector(e.key === "ArrowLeft" ? 'a[rel="prev"]' : e.key === "ArrowRight" ? 'a[rel="next"]' : null);
    if (link) { e.preventDefault(); link.click(); }
  });

  // checkboxes on a grid of images: the checked ones exported as assign's CSV rows
  function picking() {
    const bar = $("#picked-bar");
    if (!bar) return;
    const boxes = [...document.querySelectorAll("input.pick")];
    const checked = () => boxes.filter((b) => b.checked).map((b) => Number(b.value));
    const update = () => {
      const n = checked().length;
      $("#picked-count").textContent = `${n} selected`;
      $("#export-picked").disabled = $("#zip-picked").disabled = $("#move-picked").disabled =
        $("#junk-picked").disabled = n === 0;
      $("#picked-file").hidden = true;
    };
    boxes.forEach((b) => b.addEventListener("change", update));
    $("#move-picked").addEventListener("click", async () => {
      if (await curate({action: "move", ids: checked(), into: Number($("#move-into").value)})) location.reload();
    });
    $("#junk-picked").addEventListener("click", async () => {
      if (await curate({action: "junk", ids: checked()})) location.reload();
    });
    $("#pick-all").addEventListener("click", () => { boxes.forEach((b) => { b.checked = true; }); update(); });
    $("#zip-picked").addEventListener("click", () => downloadZip(checked(), bar));
    $("#export-picked").addEventListener("click", async () => {
      const ids = checked();
      bar.dataset.ids = ids.join(",");
      const r = await fetch("/api/export", {method: "POST", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({ids})});
      const file = $("#picked-file");
      if (!r.ok) { file.textContent = (await r.json()).error; file.removeAttribute("href"); file.hidden = false; return; }
      Object.assign(file, {href: URL.createObjectURL(await r.blob()), download: "mixvae-selection.csv",
        textContent: `mixvae-selection.csv (${ids.length} images)`, hidden: false});
      file.click();
    });
  }
  picking();

  const pages = {expert: expertPage, try: tryPage, map: mapPage};
  document.addEventListener("DOMContentLoaded", () => {
    const run = pages[document.body.dataset.page];
    if (run) run();
  });
  return pages;
})();
